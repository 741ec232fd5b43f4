"""The errors that end a command, each with its exit status."""
from __future__ import annotations

import signal


class UsageError(Exception):
    """Bad input from the user (unknown plugin, malformed flag, unusable device...): one line on
    stderr, exit status 2, no traceback, nothing run."""


class ResultsWriteError(Exception):
    """The results folder stopped taking writes (disk full, quota, folder removed): the run stops,
    keeps what it wrote, and exits 1 with one line."""


class Interrupted(KeyboardInterrupt):
    """The host was asked to stop (Ctrl-C, SIGTERM from ``timeout``/Slurm/systemd, SIGHUP)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    @property
    def reason(self) -> str:
        return "interrupted by the user (Ctrl-C)" if self.signum == signal.SIGINT else \
            f"stopped by {signal.Signals(self.signum).name}"
