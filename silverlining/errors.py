"""Errors that end a command with one clear line instead of a traceback."""

from __future__ import annotations


class SilverError(Exception):
    """A failure the user can act on; the CLI prints it as one line.

    ``exit_code`` is 1 for operational failures and 2 for bad input
    (configuration, arguments), like click's own usage errors.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(SilverError):
    """A configuration file is wrong; names the file, line and key."""

    exit_code = 2

    def __init__(self, path: str, message: str, line: int | None = None,
                 key: str | None = None, section: str | None = None) -> None:
        where = str(path) + (f":{line}" if line else "")
        what = ""
        if section and key:
            what = f"[{section}] {key}: "
        elif key:
            what = f"{key}: "
        super().__init__(f"{where}: {what}{message}")
        self.path, self.line, self.key, self.section = path, line, key, section


class UsageError(SilverError):
    """Bad arguments on the command line."""

    exit_code = 2
