"""User-facing errors.

`MftError` is for bad input a user can fix (a config key, a missing file, a
corrupt checkpoint). The CLI prints its message on one line and exits 2; any
other exception is a bug and keeps its traceback.
"""


class MftError(Exception):
    """Bad input: the message names what is wrong and where (file, key, line)."""


class ConfigError(MftError):
    """A config file or override is invalid."""
