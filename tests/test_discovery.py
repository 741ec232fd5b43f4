"""Plugins are found through real entry points of pip-installed distributions."""
import json


def test_plugins_json_lists_available_unavailable_and_broken(af3):
    proc = af3.run("plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = {e["name"]: e for e in json.loads(proc.stdout)}
    ok = entries["testplugin"]
    assert (ok["kind"], ok["distribution"], ok["version"], ok["available"]) == ("engine", "af3-testplugin",
                                                                               "0.0.1", True)
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


def test_registering_does_not_import_frameworks(plugin_site):
    import subprocess
    import sys

    code = ("import sys; from af3core import plugins; plugins.load(); "
            "print(sorted(m for m in ('torch', 'jax', 'triton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(plugin_site), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
