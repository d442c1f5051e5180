"""Facts about TLS certificates, the same on the user's machine and on the node.

Standard library only (the node imports it): ``ssl`` decodes a PEM file and
checks that a key belongs to a certificate, so neither side needs the
``cryptography`` package or an ``openssl`` binary to agree on what a
certificate says.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# A hostname we keep a certificate for: lowercase DNS labels, no wildcard, so it
# is also a safe directory name on the node.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\Z")
# Names no public CA validates (RFC 2606/6761 and friends): with the default
# (public) ACME directory we do not even ask for them.
RESERVED_SUFFIXES = ("test", "example", "invalid", "localhost", "local", "internal",
                     "home.arpa", "lan")


@dataclass(frozen=True)
class CertFacts:
    names: tuple[str, ...]       # DNS names it is valid for (subjectAltName, else CN)
    issuer: str                  # the issuer's CN (else O), as people name CAs
    not_after: float             # expiry, seconds since the epoch

    def days_left(self, now: float | None = None) -> float:
        return (self.not_after - (time.time() if now is None else now)) / 86400


def covers(names: Iterable[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (RFC 6125: a ``*``
    stands for exactly one whole leftmost label)."""
    host = host.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == name[2:] and "*" not in rest:
                return True
    return False


def is_public_name(host: str) -> bool:
    """Whether a public CA could validate ``host`` (a dotted name outside the
    reserved test and local domains, not an address)."""
    host = host.lower().rstrip(".")
    if "." not in host or re.fullmatch(r"[0-9.]+", host):
        return False
    return not any(host == s or host.endswith("." + s) for s in RESERVED_SUFFIXES)


def read_facts(path: Path | str) -> CertFacts:
    """The first certificate of a PEM file; ValueError if it is not one."""
    import ssl      # here: its import is a tenth of the CLI's start, and few commands read certs
    try:
        info = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"not a PEM certificate ({exc.args[-1] if exc.args else exc})") \
            from None
    names = tuple(v for k, v in info.get("subjectAltName", ()) if k == "DNS")
    if not names:
        names = tuple(v for rdn in info.get("subject", ()) for k, v in rdn if k == "commonName")
    issuer = dict(kv for rdn in info.get("issuer", ()) for kv in rdn)
    return CertFacts(names=names,
                     issuer=issuer.get("commonName") or issuer.get("organizationName") or "?",
                     not_after=float(ssl.cert_time_to_seconds(info["notAfter"])))


def check_pair(cert: Path | str, key: Path | str) -> str | None:
    """Why ``key`` cannot serve ``cert`` (unreadable, not PEM, another key's), or None."""
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            return "the key does not belong to the certificate"
        return f"not a PEM certificate and private key ({exc.reason or exc})"
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def problems(cert: Path | str, key: Path | str, host: str,
             now: float | None = None) -> str | None:
    """What keeps this certificate and key from serving ``host``, or None."""
    try:
        facts = read_facts(cert)
    except ValueError as exc:
        return f"{cert}: {exc}"
    why = check_pair(cert, key)
    if why:
        return f"{key}: {why}"
    if not covers(facts.names, host):
        return f"{cert}: not valid for {host} (it is for {', '.join(facts.names) or 'no name'})"
    if facts.days_left(now) <= 0:
        return f"{cert}: expired on {time.strftime('%Y-%m-%d', time.gmtime(facts.not_after))}"
    return None
