"""af3core.packages: the availability of an engine installed from the package index."""
import importlib.machinery
import importlib.metadata
import importlib.util
import sys
import types

from af3core import cuequivariance_error, installed_distribution, missing_modules, package_check


def test_an_installed_engine_is_available_with_its_version():
    version = importlib.metadata.version("pytest")
    assert installed_distribution("no-such-dist-af3", "pytest") == ("pytest", version)
    ok = package_check("Pytest", ("no-such-dist-af3", "pytest"), "pytest", ("json", "csv"), "pip install pytest")
    assert ok.ok and ok.source_version == f"pytest {version}"


def test_a_missing_distribution_or_module_says_what_and_the_fix():
    absent = package_check("Nothing", ("no-such-dist-af3",), "pytest", (), "pip install nothing")
    assert not absent.ok and absent.reason == "Nothing is not installed" and absent.fix == "pip install nothing"
    lacking = package_check("Pytest", ("pytest",), "pytest", ("json", "no_such_module_af3"), "fix it")
    assert not lacking.ok and "no_such_module_af3" in lacking.reason and "json" not in lacking.reason
    assert missing_modules(["json", "no_such_module_af3"]) == ["no_such_module_af3"]


def _fake_module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None)
    module.__dict__.update(attrs)
    return module


def test_cuequivariance_error_names_what_is_missing(monkeypatch):
    """Finding cuequivariance_torch is not enough: ops without their Triton kernels are named, with the
    import that the ops package swallowed (a --no-deps install without platformdirs did this on a GPU)."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert cuequivariance_error() == "cuequivariance-torch is not installed"
    monkeypatch.undo()

    for name in ("cuequivariance_torch", "cuequivariance_ops_torch", "cuequivariance_ops", "cuequivariance_ops.triton"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", _fake_module("cuequivariance_torch"))
    monkeypatch.setitem(sys.modules, "cuequivariance_ops_torch",
                        _fake_module("cuequivariance_ops_torch", triangle_attention=object()))
    monkeypatch.setitem(sys.modules, "cuequivariance_ops", _fake_module("cuequivariance_ops"))
    monkeypatch.setitem(sys.modules, "cuequivariance_ops.triton", None)  # import of it raises ImportError
    error = cuequivariance_error()
    assert error is not None and error.startswith("cuequivariance_ops_torch lacks triangle_multiplicative_update: ")
    assert "cuequivariance_ops.triton" in error

    monkeypatch.setitem(sys.modules, "cuequivariance_ops_torch", _fake_module(
        "cuequivariance_ops_torch", triangle_attention=object(), triangle_multiplicative_update=object()))
    assert cuequivariance_error() is None
