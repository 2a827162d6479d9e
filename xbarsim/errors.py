"""User-facing errors: one line, ``file:line: key: what is wrong (got X)``."""

from __future__ import annotations


class XbarsimError(Exception):
    """An error the user can act on. The CLI prints ``str(err)`` and exits with status 2."""


class ConfigError(XbarsimError):
    """Invalid configuration or input file, located by file, line and key."""

    def __init__(self, file, line, key, message, got=None, has_got=True):
        self.file = str(file) if file is not None else "<input>"
        self.line = line
        self.key = key
        self.message = message
        self.got = got
        self.has_got = has_got and got is not None
        super().__init__(self.format())

    def format(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.has_got:
            got = _show(self.got)
            text += f" (got {got if len(got) <= 80 else got[:77] + '...'})"
        return text


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"  # as YAML spells it
    if isinstance(value, str):
        return repr(value) if _needs_quotes(value) else value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _needs_quotes(text: str) -> bool:
    """Quote strings that would otherwise read as something else: empty, padded, or a YAML
    number/boolean/null written in quotes (``stride: '2'`` shows as ``'2'``, not ``2``)."""
    if text == "" or text != text.strip() or not text.isprintable():
        return True  # repr() keeps a newline or control character on the one line
    if text.lower() in ("true", "false", "yes", "no", "on", "off", "null", "~"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


class DataError(XbarsimError):
    """A data set or input array that is missing or malformed."""


class InputFileError(DataError):
    """A file named by a command-line flag that is missing or malformed: ``file: --flag: what``.
    Printed after ``xbarsim: error:`` like other :class:`DataError` s (``path`` names the file)."""

    def __init__(self, file, flag: str, message: str):
        self.path = str(file)
        self.flag = flag
        self.message = message
        super().__init__(f"{self.path}: {flag}: {message}")
