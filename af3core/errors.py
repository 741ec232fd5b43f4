"""User-facing errors: one line on stderr, exit status 2, no traceback."""


class UsageError(Exception):
    """Bad input from the user (unknown plugin, malformed flag, unusable device...)."""
