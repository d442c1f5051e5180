"""INI reading that remembers where each key was, so errors can name the line."""

from __future__ import annotations

import configparser
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from silverlining.errors import ConfigError

_SECTION_RE = re.compile(r"^\s*\[([^\]]+)\]")
_KEY_RE = re.compile(r"^([^\s#;=:][^=:]*?)\s*[=:]")


@dataclass
class IniFile:
    """A parsed INI file: sections of raw string values, plus line numbers."""

    path: Path
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    lines: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def line(self, section: str, key: str | None = None) -> int | None:
        return self.lines.get((section, key))

    def error(self, message: str, section: str | None = None,
              key: str | None = None) -> ConfigError:
        line = self.line(section, key) if section else None
        return ConfigError(str(self.path), message, line=line, key=key, section=section)


def read_ini(path: Path | str, missing_ok: bool = False) -> IniFile:
    """Parse ``path``; keys keep their case, interpolation is off."""
    path = Path(path)
    ini = IniFile(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return ini
        raise ConfigError(str(path), "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       default_section="\x00none")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(str(path), "a key comes before any [section] header",
                          line=exc.lineno) from None
    except (configparser.DuplicateSectionError, configparser.DuplicateOptionError) as exc:
        kind = "section" if isinstance(exc, configparser.DuplicateSectionError) else "key"
        name = exc.section if kind == "section" else getattr(exc, "option", "")
        raise ConfigError(str(path), f"duplicate {kind} {name!r}", line=exc.lineno) from None
    except configparser.ParsingError as exc:
        lineno = exc.errors[0][0] if exc.errors else None
        raise ConfigError(str(path), "cannot parse this line", line=lineno) from None
    for name in parser.sections():
        ini.sections[name] = {k: v.strip() for k, v in parser.items(name)}
    section = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if m := _SECTION_RE.match(raw):
            section = m.group(1).strip()
            ini.lines.setdefault((section, None), number)
        elif section and (m := _KEY_RE.match(raw)):
            ini.lines.setdefault((section, m.group(1).strip()), number)
    return ini


def suggest(name: str, valid: list[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt key, or ''."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def split_lines(value: str) -> list[str]:
    """A multi-line value as its non-empty, non-comment lines."""
    return [ln.strip() for ln in value.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def parse_bool(ini: IniFile, section: str, key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ini.error(f"expected true or false, got {value!r}", section, key)
