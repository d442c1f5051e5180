"""Choose one image, size or location from a provider's list with a short matcher.

``id X``, ``name GLOB`` (a bare word is a name glob), ``ram N`` (MB; ``2G``
works too), and a trailing ``first`` to accept the first of several matches.
Ambiguity is an error that lists the candidates, so a provider adding a new
image never silently changes what ``create-node`` builds.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from silverlining.errors import UsageError

KINDS = ("id", "name", "ram")
_LISTED = 12


@dataclass(frozen=True)
class Matcher:
    kind: str          # "id", "name", "ram" or "any" (just "first")
    value: str
    first: bool = False
    text: str = ""

    def matches(self, item: Any) -> bool:
        if self.kind == "any":
            return True
        if self.kind == "id":
            return str(getattr(item, "id", "")) == self.value
        if self.kind == "ram":
            ram = getattr(item, "ram", None)
            return ram is not None and int(ram) == int(self.value)
        name = str(getattr(item, "name", "") or "")
        return fnmatch.fnmatchcase(name.lower(), self.value.lower())


def parse(text: str, what: str = "item") -> Matcher:
    """Parse a matcher; bad syntax is a UsageError naming the forms."""
    words = text.split()
    first = bool(words) and words[-1].lower() == "first"
    if first:
        words = words[:-1]
    if not words:
        if first:
            return Matcher("any", "", True, text)
        raise UsageError(f"empty {what} matcher")
    kind = words[0].lower()
    if kind in KINDS and len(words) >= 2:
        value = " ".join(words[1:])
    elif kind in KINDS:
        raise UsageError(f"bad {what} matcher {text!r}: '{kind}' needs a value")
    else:
        kind, value = "name", " ".join(words)
    if kind == "ram":
        value = str(_parse_ram(value, text, what))
    return Matcher(kind, value, first, text)


def _parse_ram(value: str, text: str, what: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([mMgG][bB]?)?", value)
    if not m:
        raise UsageError(f"bad {what} matcher {text!r}: 'ram' takes megabytes, e.g. "
                         "'ram 2048' or 'ram 2G'")
    number = int(m.group(1))
    return number * 1024 if m.group(2) and m.group(2)[0] in "gG" else number


def describe(item: Any) -> str:
    """One item as the user would pick it: name and id (and RAM for sizes)."""
    name = getattr(item, "name", None) or "?"
    text = f"{name} (id {getattr(item, 'id', '?')}"
    ram = getattr(item, "ram", None)
    return text + (f", {ram} MB)" if ram is not None else ")")


def _listing(items: Sequence[Any]) -> str:
    shown = ", ".join(describe(i) for i in items[:_LISTED])
    more = len(items) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def select(items: Sequence[Any], text: str | None, what: str,
           source: str = "") -> Any:
    """The one item ``text`` picks out of ``items``.

    ``text`` None means no matcher anywhere: acceptable only when there is
    exactly one item. ``source`` says where the matcher came from, for errors.
    """
    origin = f" (from {source})" if source else ""
    if text is None:
        if len(items) == 1:
            return items[0]
        if not items:
            raise UsageError(f"the provider offers no {what}s")
        raise UsageError(f"choose a {what} with --{what} or '{what} =' in the provider "
                         f"section; available: {_listing(items)}")
    matcher = parse(text, what)
    found = [item for item in items if matcher.matches(item)]
    if not found:
        raise UsageError(f"no {what} matches {text!r}{origin}; available: "
                         f"{_listing(items) or 'none'}")
    if len(found) > 1 and not matcher.first:
        raise UsageError(f"{len(found)} {what}s match {text!r}{origin}: {_listing(found)}; "
                         f"be more specific or add 'first'")
    return found[0]


def find_default(items: Sequence[Any], text: str | None) -> Any | None:
    """The configured default among ``items`` for marking in listings, or None.

    With nothing configured it is the driver's own (``extra["default"]``, as the
    local driver marks it), or the only item.
    """
    if text is None:
        marked = [i for i in items if (getattr(i, "extra", None) or {}).get("default")]
        if len(marked) == 1:
            return marked[0]
        return items[0] if len(items) == 1 else None
    try:
        return select(items, text, "item")
    except UsageError:
        return None
