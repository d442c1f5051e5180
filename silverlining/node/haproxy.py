"""A balancer node's HAProxy: its configuration, generated from the topology, and its runtime API.

``generate`` is pure (the topology in, haproxy.cfg text out) so it is unit-tested;
``parse_stat`` reads the runtime API's ``show stat`` CSV. Each balanced location
is one backend whose servers are the members' nginx on port 80, reached over the
nodes' network:

- members are health-checked with ``GET PREFIX/.silver/health`` and the location's
  Host header (``inter``/``fall`` put a silent member out of rotation within 3 s,
  ``rise`` brings it back once it answers);
- a failed connection is retried on another member (``option redispatch``,
  ``retry-on``); only GET and HEAD are retried after the request was sent;
- the client's address travels as ``X-Forwarded-For`` (set, never appended: what a
  client sends there is not trusted), which the members' nginx trusts from the
  balancer only;
- a member's administrative state (ready, drain, maint) is the topology's: ``maint``
  and ``drain`` are written ``disabled`` (a reload never hands a member traffic it
  should not get) and set again through the runtime API after the reload;
- HTTPS (docs/balancer.md): TLS ends here, ``bind :443 ssl crt TLS_DIR`` with one
  combined PEM per host (root only); the members get ``X-Forwarded-Proto`` (set here,
  never passed through from a client); ACME HTTP-01 challenges on port 80 go to
  certbot's standalone server on ``127.0.0.1:ACME_PORT``; a ``required`` site
  redirects plain HTTP (301) and sends HSTS over HTTPS.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from silverlining.node import paths
from silverlining.node._errors import NodeError

CONFIG = Path("/etc/haproxy/haproxy.cfg")
TOPOLOGY = paths.BALANCER / "topology.json"     # what this node fronts: it is a balancer
RUNTIME_SOCKET = Path("/run/haproxy/admin.sock")
TLS_DIR = Path("/etc/haproxy/silver-certs")
"""HOST.pem (certificate chain then key), 0600 in a 0700 directory: HAProxy reads them
as root before it drops to its own user."""
ACME_PORT = 8402
"""certbot --standalone listens here (127.0.0.1 only) while it validates a name."""
HSTS = "max-age=31536000"
STATES = ("ready", "drain", "maint")
CHECK = "check inter 700ms fastinter 300ms downinter 1s fall 2 rise 2"
"""A member that stops answering is out after two failed checks: at most
0.7 s + 0.8 s (``timeout check``) + 0.3 s + 0.8 s, under 3 s."""


@dataclass(frozen=True)
class Member:
    name: str           # the node's name: the HAProxy server's name
    address: str        # where the balancer reaches its nginx
    state: str = "ready"


@dataclass(frozen=True)
class Site:
    """One balanced location: its backend and members."""

    location: str       # HOST[/PATH], as parsed by silverlining.locations
    members: tuple[Member, ...]
    https: str = "off"  # off, auto or required: what the location's version asks

    @property
    def host(self) -> str:
        return self.location.partition("/")[0]

    @property
    def path(self) -> str:
        host, slash, rest = self.location.partition("/")
        return slash + rest

    @property
    def backend(self) -> str:
        """A name HAProxy accepts ([A-Za-z0-9._-]), distinct for each location."""
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:8]
        return "loc_" + re.sub(r"[^A-Za-z0-9._-]", "_", self.location)[:60] + "_" + digest


def _host_acl(host: str) -> str:
    if host == "*":
        return ""
    if host.startswith("."):
        return f"{{ var(txn.host) -m str {host[1:]} }} || {{ var(txn.host) -m end {host} }}"
    return f"{{ var(txn.host) -m str {host} }}"


def _condition(site: Site) -> str:
    """The ``use_backend`` condition of a site: its host, and its path prefix (the
    prefix itself or anything below it)."""
    host = _host_acl(site.host)
    if not site.path:
        return host or "TRUE"
    paths = [f"{{ path -m str {site.path} }}", f"{{ path -m beg {site.path}/ }}"]
    if not host:
        return " || ".join(paths)
    if site.host.startswith("."):
        hosts = [f"{{ var(txn.host) -m str {site.host[1:]} }}",
                 f"{{ var(txn.host) -m end {site.host} }}"]
        return " || ".join(f"{h} {p}" for h in hosts for p in paths)
    return " || ".join(f"{host} {p}" for p in paths)


def _order(site: Site) -> tuple[int, int, str]:
    """Exact hosts before ``.suffix`` wildcards before ``*``; longest path first."""
    kind = 2 if site.host == "*" else 1 if site.host.startswith(".") else 0
    return (kind, -len(site.path), site.location)


def _server(member: Member) -> str:
    address = f"[{member.address}]" if ":" in member.address else member.address
    line = f"    server {member.name} {address}:80 {CHECK}"
    return line + (" disabled" if member.state != "ready" else "")


def cert_host(host: str) -> str:
    """Whose certificate serves a location's host (``.example.com``: example.com's)."""
    return host.removeprefix(".")


def generate(sites: list[Site], tls_hosts: frozenset[str] = frozenset()) -> str:
    """The whole haproxy.cfg (deterministic: same topology, same text). ``tls_hosts``
    have a PEM in ``TLS_DIR``: with any, HAProxy also listens on 443 (refusing a
    handshake for a name it has no certificate for, ``strict-sni``)."""
    out = ["# Generated by silver-node from the balancer's topology: do not edit.",
           "global",
           "    log /dev/log local0",
           "    chroot /var/lib/haproxy",
           f"    stats socket {RUNTIME_SOCKET} mode 600 level admin",
           "    stats timeout 30s",
           "    user haproxy",
           "    group haproxy",
           "",
           "defaults",
           "    mode http",
           "    log global",
           "    option httplog",
           "    option dontlognull",
           "    timeout connect 2s",
           "    timeout check 800ms",
           "    timeout client 60s",
           "    timeout server 300s",
           "    timeout http-request 10s",
           "    timeout http-keep-alive 10s",
           "    retries 3",
           "    option redispatch 1",
           "    retry-on conn-failure empty-response response-timeout",
           "",
           "frontend silver",
           "    bind :80"]
    if tls_hosts:
        out.append(f"    bind :443 ssl crt {TLS_DIR} strict-sni")
    out += ["    http-request set-header X-Forwarded-For %[src]",
            "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
            "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
            "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
            "    use_backend silver_acme if !{ ssl_fc } { path_beg /.well-known/acme-challenge/ }"]
    for site in sorted(sites, key=_order):
        out.append(f"    use_backend {site.backend} if {_condition(site)}")
    out += ["    default_backend silver_none", "",
            "backend silver_none",
            '    http-request return status 404 content-type text/plain string "not found"',
            "", "backend silver_acme",
            f"    server certbot 127.0.0.1:{ACME_PORT}"]
    for site in sorted(sites, key=lambda s: s.location):
        out += ["", f"backend {site.backend}",
                f"    # {site.location}",
                "    balance roundrobin",
                "    http-request disable-l7-retry if !METH_GET",
                "    option httpchk",
                f"    http-check send meth GET uri {site.path}/.silver/health ver HTTP/1.1 "
                f"hdr Host {health_host(site.host)}",
                "    http-check expect status 200"]
        if site.https == "required" and cert_host(site.host) in tls_hosts:
            out += ["    http-request redirect scheme https code 301 if !{ ssl_fc }",
                    f"    http-response set-header Strict-Transport-Security {HSTS} if {{ ssl_fc }}"]
        out += [_server(m) for m in sorted(site.members, key=lambda m: m.name)]
    return "\n".join(out) + "\n"


def health_host(host: str) -> str:
    """The Host header a check sends: the location's own host, or one it matches."""
    if host == "*":
        return "localhost"
    return host.removeprefix(".")


# --- the runtime API ---------------------------------------------------------------

def is_balancer() -> bool:
    """Whether this node is a balancer (HAProxy on its ports 80/443, nginx stopped)."""
    return TOPOLOGY.is_file()


def refuse_apps() -> None:
    """A balancer runs no app: HAProxy hands every fronted host's ACME challenges to
    ``127.0.0.1:ACME_PORT``, where an app's process could answer them (and so be
    issued certificates for those names)."""
    if is_balancer():
        raise NodeError("this node is a balancer: it runs no app (deploy to its members)")


STAT_FIELDS = ("pxname", "svname", "scur", "status", "weight", "check_status")


def parse_stat(text: str) -> list[dict[str, str]]:
    """``show stat`` (CSV with a ``# pxname,svname,...`` header) as one dict per line,
    with the fields in ``STAT_FIELDS``; FRONTEND and BACKEND lines are left out."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return []
    rows = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    out = []
    for row in rows:
        if row.get("svname") in (None, "FRONTEND", "BACKEND"):
            continue
        out.append({f: row.get(f) or "" for f in STAT_FIELDS})
    return out


def runtime(command: str, timeout: float = 5.0) -> str:
    """One runtime API command on the stats socket; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(RUNTIME_SOCKET))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def worker_pid() -> str | None:
    """The pid of the worker that answers the runtime API (``show info``), None when
    none answers."""
    try:
        info = runtime("show info")
    except OSError:
        return None
    for line in info.splitlines():
        if line.startswith("Pid:"):
            return line.partition(":")[2].strip()
    return None


def still_listening(pid: str | None) -> bool:
    """Whether process ``pid`` still holds a listening TCP socket: an old worker after a
    reload keeps accepting (with the old configuration and certificates) until its
    soft stop closes its listeners."""
    if pid is None:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:             # gone: it listens no more
        return False
    inodes = set()
    for fd in fds:
        with contextlib.suppress(OSError):      # closed meanwhile
            inodes.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and f"socket:[{fields[9]}]" in inodes:
                return True
    return False

