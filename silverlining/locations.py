"""Locations: ``HOST[/PATH]``, ``.example.com``, ``*``, the special names, and ``@APP``
(an app without a web part, deployed to a node by name)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from silverlining.errors import UsageError

SPECIAL = ("not-found", "disabled")
_HOST_RE = re.compile(r"^(\*|\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)\Z")
_PATH_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*\Z")
_APP_ONLY_RE = re.compile(r"^@[a-z0-9][a-z0-9_-]{0,62}\Z")
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")


@dataclass(frozen=True)
class Location:
    """Where an app is mounted: a host pattern and a path prefix ('' for root)."""

    host: str
    path: str = ""

    def __str__(self) -> str:
        return self.host + self.path

    @property
    def is_special(self) -> bool:
        return self.host in SPECIAL

    @property
    def is_app_only(self) -> bool:
        """``@APP``: an app with no web part (workers, crons, scripts), known by name."""
        return self.host.startswith("@")

    @property
    def is_exact_host(self) -> bool:
        return not (self.host == "*" or self.host.startswith(".") or self.is_special
                    or self.is_app_only)


def parse_location(text: str) -> Location:
    """Parse and validate; anything that could smuggle shell or nginx syntax is refused."""
    raw = text.strip()
    if raw.startswith(("http://", "https://")):
        raw = raw.split("://", 1)[1]
    if raw in SPECIAL or _APP_ONLY_RE.match(raw):
        return Location(raw)
    host, slash, path = raw.partition("/")
    host = host.lower()
    path = ("/" + path).rstrip("/") if slash else ""
    if not host or not _HOST_RE.match(host) or len(host) > 253 \
            or any(len(label) > 63 for label in host.split(".")):
        raise UsageError(f"bad location {text!r}: the host must be a hostname, "
                         "'.example.com' or '*'")
    segments = path.split("/")[1:]
    if not _PATH_RE.match(path) or len(path) > 200 or any(s in (".", "..") for s in segments):
        raise UsageError(f"bad location {text!r}: the path may only hold letters, "
                         "digits and . _ ~ - between slashes (no '.' or '..' segments)")
    return Location(host, path)


def check_hostname(name: str) -> str:
    """A node's hostname: ``[a-z0-9.-]+``, nothing a shell would interpret."""
    if not HOSTNAME_RE.match(name) or len(name) > 253:
        raise UsageError(f"bad hostname {name!r}: use lowercase letters, digits, '.' and '-'")
    return name
