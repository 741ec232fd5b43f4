"""An engine's own environment: registered once, then its workers (and its availability check)
run under that interpreter; `af3 plugins` says which. Real runs of the test plugin, with a wrapper
script standing in for another environment's python (it marks what runs under it)."""
from __future__ import annotations

import json
import subprocess
import sys


def _wrapper(tmp_path, mark: str):
    path = tmp_path / f"python-{mark}"
    path.write_text(f"#!/bin/sh\nexport AF3_TESTPLUGIN_ENV={mark}\nexec {sys.executable} \"$@\"\n")
    path.chmod(0o755)
    return path


def _envs(af3, *args, **env):
    return subprocess.run([sys.executable, "-m", "af3core.envs", *args], capture_output=True, text=True,
                          env=af3.env(**env), cwd=af3.cwd)


def _row(af3, out, **env):
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out", str(out), **env)
    assert proc.returncode == 0, proc.stderr
    [row] = [json.loads(line) for line in (out / "testplugin.jsonl").read_text().splitlines()]
    return row


def _listed(af3, **env):
    proc = af3.run("plugins", "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return next(e for e in json.loads(proc.stdout) if e["name"] == "testplugin")


def test_a_registered_environment_runs_the_workers_and_shows_in_af3_plugins(af3, tmp_path):
    registry = tmp_path / "interpreters.json"
    own = _wrapper(tmp_path, "own-env")
    proc = _envs(af3, "register", "testplugin", str(own), AF3_ENVS_FILE=str(registry))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(registry.read_text()) == {"testplugin": str(own)}

    entry = _listed(af3, AF3_ENVS_FILE=str(registry))
    assert entry["python"] == str(own) and entry["python_source"].startswith("registered in")
    assert entry["available"]  # checked under that interpreter, where the plugin is installed too
    assert _row(af3, tmp_path / "registered", AF3_ENVS_FILE=str(registry))["info"]["env_seen"] == "own-env"

    # This shell's AF3_PYTHON_<NAME> still wins over the registry.
    shell = _wrapper(tmp_path, "shell-choice")
    row = _row(af3, tmp_path / "override", AF3_ENVS_FILE=str(registry), AF3_PYTHON_TESTPLUGIN=str(shell))
    assert row["info"]["env_seen"] == "shell-choice"

    # Unregistered: the host's interpreter again.
    assert _envs(af3, "unregister", "testplugin", AF3_ENVS_FILE=str(registry)).returncode == 0
    entry = _listed(af3, AF3_ENVS_FILE=str(registry))
    assert entry["python_source"] == "host" and entry["python"] == sys.executable
    assert _row(af3, tmp_path / "host", AF3_ENVS_FILE=str(registry))["info"]["env_seen"] != "own-env"


def test_registering_something_that_is_not_an_interpreter_is_refused(af3, tmp_path):
    registry = tmp_path / "interpreters.json"
    proc = _envs(af3, "register", "testplugin", str(tmp_path / "no-such-python"), AF3_ENVS_FILE=str(registry))
    assert proc.returncode == 2 and "not an executable file" in proc.stderr and "Traceback" not in proc.stderr
    assert not registry.exists()


def test_a_registered_environment_without_the_plugin_is_refused_before_any_case(af3, tmp_path):
    """The plugin is checked where it will run: an environment that lacks it is a plan-time error."""
    registry = tmp_path / "interpreters.json"
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\nexec /usr/bin/env -i python3 -I \"$@\"\n")  # neither af3core nor the plugin
    bare.chmod(0o755)
    assert _envs(af3, "register", "testplugin", str(bare), AF3_ENVS_FILE=str(registry)).returncode == 0
    out = tmp_path / "bare"
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--out", str(out),
                   AF3_ENVS_FILE=str(registry))
    assert proc.returncode == 2 and str(bare) in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "testplugin.jsonl").exists()


def test_in_process_refuses_a_plugin_that_runs_elsewhere(af3, tmp_path):
    registry = tmp_path / "interpreters.json"
    own = _wrapper(tmp_path, "own-env")
    assert _envs(af3, "register", "testplugin", str(own), AF3_ENVS_FILE=str(registry)).returncode == 0
    proc = af3.run("bench", "--plugin", "testplugin", "--device", "cpu", "--passes", "1", "--in-process",
                   "--dry-run", AF3_ENVS_FILE=str(registry))
    assert proc.returncode == 2 and "--in-process runs in this interpreter" in proc.stderr and str(own) in proc.stderr


def test_an_unreadable_registry_is_a_clear_error(af3, tmp_path):
    registry = tmp_path / "interpreters.json"
    registry.write_text("{not json")
    for proc in (af3.run("plugins", AF3_ENVS_FILE=str(registry)),
                 _envs(af3, "list", AF3_ENVS_FILE=str(registry))):
        assert proc.returncode == 2 and "unreadable" in proc.stderr and "Traceback" not in proc.stderr
