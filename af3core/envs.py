"""Which Python runs a plugin's workers: the host's, or an engine's own virtual environment.

An engine whose pins conflict with the project's (Protenix 2.0.0 pins torch 2.7.1, for one) can
run in an environment of its own: ``bash scripts/setup.sh --engine-env NAME`` makes one
(``.venv-NAME``, the engine with its declared pins plus af3core and the plugin) and registers it
here, in a small JSON file inside the host's environment (``python -m af3core.envs register NAME
PYTHON`` does the same by hand). ``af3 plugins`` shows each plugin's interpreter and why.

The choice, first match wins: ``AF3_PYTHON_<NAME>`` in the environment (this shell only); an
interpreter registered for the plugin; the plugin's own ``python`` field; the host's interpreter.
A plugin that runs elsewhere also has its availability checked there (``check`` below), since
its engine package may exist only in that environment.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from af3core.errors import UsageError
from af3core.plugin import Availability, Plugin

HOST = "host"


def registry_path() -> Path:
    """The registry of the host's environment (``AF3_ENVS_FILE`` overrides it, for tests)."""
    return Path(os.environ.get("AF3_ENVS_FILE") or Path(sys.prefix) / "etc" / "af3-bench" / "interpreters.json")


def registered() -> dict[str, str]:
    try:
        data = json.loads(registry_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{registry_path()}: unreadable ({exc}); delete it and register again") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def register(name: str, python: str) -> str:
    """Record ``python`` as the interpreter of plugin ``name``; returns the absolute path stored."""
    path = Path(python).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path  # not resolved: a venv's python is a link to the base interpreter
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ValueError(f"{python}: not an executable file")
    table = registered()
    table[name] = str(path)
    _write(table)
    return str(path)


def unregister(name: str) -> bool:
    table = registered()
    if table.pop(name, None) is None:
        return False
    _write(table)
    return True


def _write(table: dict[str, str]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def interpreter(plugin: Plugin) -> tuple[str, str]:
    """(the interpreter of ``plugin``'s workers, where that choice came from)."""
    variable = f"AF3_PYTHON_{plugin.name.upper()}"
    if os.environ.get(variable):
        return os.environ[variable], variable
    table = registered()
    if plugin.name in table:
        return table[plugin.name], f"registered in {registry_path()}"
    if plugin.python:
        return plugin.python, f"the plugin's python ({plugin.distribution or plugin.name})"
    return sys.executable, HOST


def foreign_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Variables for another interpreter that must still import af3core: this source tree on its
    path when af3core runs from a checkout. An installed af3core's folder is the host's
    site-packages, whose torch or numpy must not shadow the other environment's own: then the
    other environment needs af3core installed (the set-up does that)."""
    env = dict(os.environ if base is None else base)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def check_elsewhere(plugin: Plugin, python: str, timeout_s: float) -> Availability:
    """Run ``plugin``'s availability check under ``python`` (its engine may exist only there)."""
    try:
        proc = subprocess.run([python, "-m", "af3core.envs", "check", plugin.name], capture_output=True, text=True,
                              timeout=timeout_s, env=foreign_env(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability.no(f"its interpreter {python} could not check it: {exc}",
                               "fix or re-register it: python -m af3core.envs register "
                               f"{plugin.name} PYTHON (or unregister {plugin.name})")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
        return Availability(bool(answer["ok"]), str(answer.get("reason", "")), str(answer.get("fix", "")),
                            answer.get("source_version"))
    except (IndexError, ValueError, KeyError, TypeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Availability.no(f"its interpreter {python} could not check it (exit {proc.returncode}: {tail})",
                               f"install af3-bench and the plugin there: bash scripts/setup.sh --engine-env {plugin.name}")


def _check_here(name: str) -> int:
    """The ``check`` command, run under the plugin's own interpreter: one JSON line."""
    from af3core import discovery

    registry = discovery.load()
    if name not in registry.plugins:
        answer = Availability.no(f"the plugin {name!r} is not installed in {sys.executable}",
                                 f"bash scripts/setup.sh --engine-env {name}")
    else:
        plugin = registry.plugins[name]
        answer = plugin.check() if plugin.check is not None else Availability.yes()
    print(json.dumps({"ok": answer.ok, "reason": answer.reason, "fix": answer.fix,
                      "source_version": answer.source_version}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m af3core.envs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser("register", help="run plugin NAME's workers under PYTHON")
    reg.add_argument("name")
    reg.add_argument("python")
    unreg = sub.add_parser("unregister", help="plugin NAME's workers use the host's interpreter again")
    unreg.add_argument("name")
    sub.add_parser("list", help="the registered interpreters")
    check = sub.add_parser("check", help="(internal) plugin NAME's availability here, as one JSON line")
    check.add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.command == "register":
            path = register(args.name, args.python)
            print(f"{args.name}: workers run under {path} (recorded in {registry_path()})")
        elif args.command == "unregister":
            print(f"{args.name}: " + ("the host's interpreter again" if unregister(args.name) else "was not registered"))
        elif args.command == "list":
            for name, path in sorted(registered().items()):
                print(f"{name}\t{path}")
        else:
            return _check_here(args.name)
    except (ValueError, UsageError) as exc:
        print(f"af3core.envs: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
