"""Shared fixtures: the test plugins installed with pip into a private folder, and a runner for the
real ``af3`` command in a subprocess (no mocks: discovery goes through real entry points)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


def pip_install_test_plugin(name: str, tmp_path_factory, site: Path | None = None) -> Path:
    """pip-install one test plugin (real dist-info, real entry points) into ``site`` (default: a new folder)."""
    site = site or tmp_path_factory.mktemp(f"site-{name}")
    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    source = shutil.copytree(TEST_PLUGINS / name, tmp_path_factory.mktemp("sources") / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"installing {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return site


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """The third-party test plugins every command test sees: one that runs, one that is broken."""
    site = tmp_path_factory.mktemp("site")
    for name in ("af3_testplugin", "af3_brokenplugin"):
        pip_install_test_plugin(name, tmp_path_factory, site)
    return site


class Af3:
    def __init__(self, site: Path, cwd: Path, extra_paths: list[str] = ()):
        self.site = site
        self.cwd = cwd
        self.extra_paths = list(extra_paths)

    def env(self, **extra) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*self.extra_paths, str(self.site), str(ROOT), env.get("PYTHONPATH", "")])
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 120, **env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "af3core", *args], cwd=self.cwd, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, **env) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "af3core", *args], cwd=self.cwd, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def af3(plugin_site, tmp_path) -> Af3:
    return Af3(plugin_site, tmp_path)


@pytest.fixture(scope="session")
def clash_site(tmp_path_factory) -> Path:
    """A plugin that registers the name ``testplugin`` too (kept out of every other test's path)."""
    return pip_install_test_plugin("af3_clashplugin", tmp_path_factory)


@pytest.fixture
def af3_with_clash(plugin_site, clash_site, tmp_path) -> Af3:
    return Af3(plugin_site, tmp_path, extra_paths=[str(clash_site)])


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` is dead (or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def gone():
    return _gone
