"""Packages for local nodes: the host's apt sources and a private apt-cacher-ng.

Nodes live in network namespaces without a route out (we never NAT or touch
the host firewall). They reach the Debian archive through apt-cacher-ng on the
host: one private instance listening on 127.0.0.1 only (its own config, cache
and pid file, so a system apt-cacher-ng is left alone), and a per-node
forwarder on 10.213.N.1:3142 (see local_supervise). Mirror URLs are never
hard-coded: they come from the host's apt sources or the ``mirror`` setting.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.providers.local_host import RUN_DIR, find_tool, host_lock, pid_alive

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
ACNG_HOST = "127.0.0.1"
ACNG_PORT = 3143          # private instance; 3142 is left to a system apt-cacher-ng
NODE_PROXY_PORT = 3142    # what nodes use, at 10.213.N.1
ACNG_HOME = Path("/var/cache/silverlining-local/apt-cacher-ng")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} {' '.join(self.components)}"


def host_sources() -> list[AptSource]:
    """The enabled ``deb`` entries of the host (one-line and deb822 formats)."""
    found: list[AptSource] = []
    files = [APT_SOURCES] + sorted(APT_SOURCES_DIR.glob("*.list"))
    for path in files:
        if path.is_file():
            found += _parse_one_line(path.read_text())
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        found += _parse_deb822(path.read_text())
    return found


def _parse_one_line(text: str) -> list[AptSource]:
    out = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "deb":
            if words[1].startswith("["):            # options: deb [arch=amd64 ...] uri
                while words and not words[0].endswith("]"):
                    words.pop(0)
                words = ["deb"] + words[1:]
            if len(words) >= 3:
                out.append(AptSource(words[1], words[2], tuple(words[3:])))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
            elif ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(AptSource(uri, suite, tuple(fields.get("components", "").split())))
    return out


# Debian's release names, oldest first: a host source for one of them names a
# Debian archive, so the same archive serves a node of another release.
DEBIAN_SUITES = ("bullseye", "bookworm", "trixie", "forky")


def sources_for(suite: str, mirror: str | None = None) -> list[AptSource]:
    """The host's http sources for ``suite`` (and its -updates/-security); ``mirror``
    replaces the main archive URI. Raises when there is nothing to install from.

    A host of another Debian release lends its archives with the suites renamed
    (a Debian 12 host's ``bookworm-security`` becomes ``trixie-security`` at the
    same URI), so one host builds nodes of every release it knows the keys of.
    """
    http = [s for s in host_sources() if s.uri.startswith("http://")]
    picked = [s for s in http if s.suite.split("-")[0] == suite]
    if not picked and suite in DEBIAN_SUITES:
        picked = [_renamed(s, suite) for s in http if s.suite.split("-")[0] in DEBIAN_SUITES]
    if mirror:
        mirror = mirror.rstrip("/")
        main = [s for s in picked if not s.suite.endswith("-security")]
        picked = [s for s in picked if s.suite.endswith("-security")]
        suites = sorted({s.suite for s in main}) or [suite]
        comps = next((s.components for s in main), ("main",))
        picked = [AptSource(mirror, x, comps) for x in suites] + picked
    if not picked:
        raise SilverError(f"no http:// apt source for Debian {suite} in {APT_SOURCES} or "
                          f"{APT_SOURCES_DIR}: set mirror = http://YOUR-DEBIAN-MIRROR/debian "
                          "in the [provider:...] section")
    seen: dict[tuple[str, str], AptSource] = {}
    for s in picked:
        seen.setdefault((s.uri.rstrip("/"), s.suite), s)
    return list(seen.values())


def _renamed(source: AptSource, suite: str) -> AptSource:
    """``source`` for release ``suite``: ``bookworm-updates`` -> ``trixie-updates``."""
    _, dash, pocket = source.suite.partition("-")
    return AptSource(source.uri, suite + dash + pocket, source.components)


def node_apt_files(sources: list[AptSource], host_addr: str) -> dict[str, str]:
    """Files (path inside the node -> content) that send the node's apt through the proxy."""
    return {
        "etc/apt/sources.list": "".join(s.line() + "\n" for s in sources),
        "etc/apt/apt.conf.d/01silverlining-proxy":
            f'Acquire::http::Proxy "http://{host_addr}:{NODE_PROXY_PORT}";\n',
    }


def _acng_listening() -> bool:
    try:
        with socket.create_connection((ACNG_HOST, ACNG_PORT), timeout=1):
            return True
    except OSError:
        return False


def ensure_proxy() -> None:
    """Start the private apt-cacher-ng unless it already runs (idempotent, host-global)."""
    pidfile = RUN_DIR / "acng.pid"
    with host_lock():
        pid = _read_pid(pidfile)
        if pid_alive(pid, "apt-cacher-ng") and _acng_listening():
            return
        exe = find_tool("apt-cacher-ng")
        if not exe:
            raise SilverError("local nodes need apt-cacher-ng (packages for nodes): "
                              "run scripts/host-setup.sh or apt-get install apt-cacher-ng")
        conf = RUN_DIR / "acng"
        conf.mkdir(parents=True, exist_ok=True)
        for sub in ("cache", "log"):
            (ACNG_HOME / sub).mkdir(parents=True, exist_ok=True)
        (conf / "acng.conf").write_text(
            f"CacheDir: {ACNG_HOME / 'cache'}\n"
            f"LogDir: {ACNG_HOME / 'log'}\n"
            "SupportDir: /usr/lib/apt-cacher-ng\n"
            f"Port: {ACNG_PORT}\n"
            f"BindAddress: {ACNG_HOST}\n"
            f"PidFile: {pidfile}\n"
            f"SocketPath: {RUN_DIR / 'acng.socket'}\n"
            "ForeGround: 0\n"
            "ExThreshold: 4\n")
        subprocess.run([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       start_new_session=True, timeout=30, check=False)
        deadline = time.monotonic() + 15
        while not _acng_listening():
            if time.monotonic() > deadline:
                raise SilverError(f"apt-cacher-ng did not start on {ACNG_HOST}:{ACNG_PORT} "
                                  f"(see {ACNG_HOME / 'log'})")
            time.sleep(0.1)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
