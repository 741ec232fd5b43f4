"""af3core.packages: the availability of an engine installed from the package index."""
import importlib.metadata

from af3core import installed_distribution, missing_modules, package_check


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
