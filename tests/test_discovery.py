"""Plugins are found through real entry points of pip-installed distributions, and none of them can
take a command down: not by raising (SystemExit included) at import, not with a check that hangs
or raises, not with a hook that raises, not by claiming another plugin's name."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_plugins_json_lists_available_unavailable_and_broken(af3):
    proc = af3.run("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    ok = entries["testplugin"]
    assert (ok["kind"], ok["distribution"], ok["version"], ok["available"]) == ("engine", "af3-testplugin",
                                                                               "0.0.1", True)
    assert ok["settings"]["fault"]["default"] == "none"  # the settings a --set can name
    missing = entries["testplugin_unavailable"]
    assert missing["available"] is False
    assert missing["reason"] == "engine source not found" and "AF3_TEST_SRC" in missing["fix"]
    broken = entries["brokenplugin"]
    assert broken["kind"] == "broken" and "broken on purpose" in broken["reason"]


def test_plugins_table_shows_reason_and_fix(af3):
    proc = af3.run("plugins", COLUMNS="200")
    assert proc.returncode == 0
    assert "testplugin" in proc.stdout and "engine source not found" in proc.stdout
    assert "AF3_TEST_SRC" in proc.stdout and "broken on purpose" in proc.stdout


def test_unavailable_plugin_exits_2_with_the_fix(af3):
    proc = af3.run("bench", "--plugin", "testplugin_unavailable", "--device", "cpu")
    assert proc.returncode == 2
    assert "engine source not found" in proc.stderr and "AF3_TEST_SRC" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_broken_plugin_is_reported_and_others_still_run(af3, tmp_path):
    proc = af3.run("bench", "--plugin", "brokenplugin", "--device", "cpu")
    assert proc.returncode == 2 and "broken on purpose" in proc.stderr
    # A bare run plans every available plugin and says which it skipped and why.
    proc = af3.run("bench", "--device", "cpu", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "skipped brokenplugin: broken" in proc.stdout and "skipped testplugin_unavailable" in proc.stdout
    assert "testplugin mode=trunk" in proc.stdout
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--out", str(tmp_path / "out"),
                   "--passes", "1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "testplugin.jsonl").exists()


def test_a_plugin_that_exits_at_import_is_listed_as_broken(af3, tmp_path):
    proc = af3.run("plugins", "--json", AF3_BROKEN_HOW="exit")
    assert proc.returncode == 0, proc.stderr
    broken = {e["name"]: e for e in json.loads(proc.stdout)}["brokenplugin"]
    assert broken["kind"] == "broken" and "SystemExit" in broken["reason"]
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out",
                   str(tmp_path / "out"), AF3_BROKEN_HOW="exit")
    assert proc.returncode == 0, proc.stderr


def test_a_hanging_check_is_cut_off_and_only_checked_when_needed(af3, tmp_path):
    t0 = time.monotonic()
    proc = af3.run("plugins", "--json", AF3_TEST_CHECK="hang", AF3_CHECK_TIMEOUT="2")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 30
    entry = {e["name"]: e for e in json.loads(proc.stdout)}["testplugin_unavailable"]
    assert "did not answer within 2 s" in entry["reason"]
    # A command that does not need the hanging plugin never runs its check.
    t0 = time.monotonic()
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out",
                   str(tmp_path / "out"), AF3_TEST_CHECK="hang", AF3_CHECK_TIMEOUT="600")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_check_that_raises_makes_its_plugin_unavailable(af3, how):
    proc = af3.run("plugins", "--json", AF3_TEST_CHECK=how)
    assert proc.returncode == 0, proc.stderr
    entry = {e["name"]: e for e in json.loads(proc.stdout)}["testplugin_unavailable"]
    assert entry["available"] is False and "availability check raised" in entry["reason"]


def test_a_hook_that_raises_is_reported_and_the_others_run(af3, tmp_path):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--dry-run", AF3_TEST_HOOK="raise")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "its validate raised ValueError: the test plugin's hook broke" in proc.stderr
    proc = af3.run("bench", "--device", "cpu", "--dry-run", AF3_TEST_HOOK="raise")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout
    assert "skipped testplugin: plugin testplugin: its validate raised" in proc.stdout


def test_a_name_registered_twice_is_a_conflict_never_resolved_silently(af3_with_clash):
    af3 = af3_with_clash
    proc = af3.run("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    claimants = [e for e in json.loads(proc.stdout) if e["name"] == "testplugin"]
    assert {(e["kind"], e["distribution"]) for e in claimants} == {("conflict", "af3-testplugin"),
                                                                  ("conflict", "af3-clashplugin")}
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "af3-testplugin" in proc.stderr and "af3-clashplugin" in proc.stderr and "pip uninstall" in proc.stderr
    proc = af3.run("bench", "--device", "cpu", "--dry-run")
    assert "skipped testplugin: conflict" in proc.stdout


#: What registering and checking a plugin must not import: the frameworks and the engines' own code.
HEAVY = ("torch", "jax", "jaxlib", "triton", "haiku", "tokamax", "alphafold3", "src", "boltz", "rdkit")


#: Every plugin distribution of this repository (plugins/<package>/<package>/plugin.py), and the test plugin.
PLUGIN_MODULES = sorted(f"{d.name}.plugin" for d in (ROOT / "plugins").iterdir() if (d / "pyproject.toml").exists())


@pytest.mark.parametrize("module", [*PLUGIN_MODULES, "af3_testplugin.plugin"])
def test_registering_and_checking_imports_no_framework(plugin_site, module):
    """Each plugin's registration and availability check stay light: frameworks load in workers only."""
    code = (f"import sys, importlib; m = importlib.import_module({module!r}); found = []; "
            "m.register_plugins(register=found.append); [p.availability() for p in found]; "
            f"print(sorted(x for x in {HEAVY!r} if x in sys.modules))")
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT), os.environ.get("PYTHONPATH", "")]), "PATH": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode and "ModuleNotFoundError" in proc.stderr:
        pytest.skip(f"{module} is not installed here")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_discovery_imports_no_framework(plugin_site):
    code = ("import sys; from af3core import discovery; r = discovery.load(); r.availability(); "
            f"print(sorted(x for x in {HEAVY!r} if x in sys.modules))")
    env = {"PYTHONPATH": f"{plugin_site}:{ROOT}", "PATH": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_plugins_name_lists_one_plugins_settings(af3):
    proc = af3.run("plugins", "testplugin")
    assert proc.returncode == 0, proc.stderr
    assert "work_ms" in proc.stdout and "float" in proc.stdout and "modes:" in proc.stdout
    proc = af3.run("plugins", "testplugin", "--json")
    entry = json.loads(proc.stdout)
    assert entry["settings"]["work_ms"] == {"type": "float", "default": 0.0, "help": "extra sleep per pass, ms",
                                            "choices": None}
    assert "none" in entry["settings"]["fault"]["choices"]
    proc = af3.run("plugins", "nosuchplugin")
    assert proc.returncode == 2 and "no plugin named 'nosuchplugin'" in proc.stderr and "testplugin" in proc.stderr
