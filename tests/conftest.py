"""Shared fixtures: the test plugins installed with pip into a private folder, and a runner for the
real ``af3`` command in a subprocess (no mocks: discovery goes through real entry points)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """pip-install the third-party test plugins (real dist-info, real entry points) into a folder."""
    site = tmp_path_factory.mktemp("site")
    sources = tmp_path_factory.mktemp("sources")
    for name in ("af3_testplugin", "af3_brokenplugin"):
        # Build from a copy: setuptools writes build/ and egg-info next to the sources.
        source = shutil.copytree(TEST_PLUGINS / name, sources / name)
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                               "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"installing {name} failed:\n{proc.stdout}\n{proc.stderr}"
    return site


class Af3:
    def __init__(self, site: Path, cwd: Path):
        self.site = site
        self.cwd = cwd

    def env(self, **extra) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), str(ROOT), env.get("PYTHONPATH", "")])
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
