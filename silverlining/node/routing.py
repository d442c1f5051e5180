"""The node's nginx routing, generated from the routing table.

``generate`` is pure (locations in, nginx text out) so it is unit-tested;
``apply`` writes it next to the live file, checks it with ``nginx -t``, puts
it in place and reloads nginx gracefully (in-flight requests finish on the
old workers). A broken config is never left in place.

Matching: exact hosts beat ``.example.com`` suffix wildcards, which beat
``*``; within a host the longest path prefix wins and the app sees it as
SCRIPT_NAME (``X-Script-Name``). ``static/`` of the instance, then the
``writable_root`` service's files (per-host subdirectory first), are served
by nginx; everything else goes to the app's unix socket. nginx reaches both
through ``LIVE/<location>``, a link to the served version's ``FRONTS`` directory:
switching a location to another version of the same app flips that link, and
the nginx text, which names no version, stays the same (no reload). ``www.HOST``
redirects to ``HOST``. The special location ``not-found`` serves unknown
hosts and unmatched paths; ``disabled`` serves disabled apps' requests
(only localhost still reaches a disabled app).

HTTPS (docs/https.md): every port-80 server answers ACME HTTP-01 challenges
from the root-owned webroot, so certificates are had with no downtime. A
host with a certificate in ``paths.CERTS`` also gets a ``listen 443 ssl``
copy of its server; a ``.example.com`` wildcard uses ``example.com``'s. A
route whose version was deployed with ``https = required`` redirects plain
HTTP to HTTPS (status pages and challenges excepted) and its host sends HSTS.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from silverlining import protocol
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, instance_dir, load_routes, location_key,
                                      routing_lock)
from silverlining.node.base import make_dir, point_link, say, wait_until, write_atomic
from silverlining.node.headers import (REAL_IP_HEADER, SCRIPT_NAME_HEADER,
                                      STATUS_LOCATION_HEADER, UPDATE_HEADER)

CONF_NAME = "routes.conf"
_CATCH_ALL = "~^.+$"
LISTEN = ("    listen 80;", "    listen [::]:80;")
# In each server, not once for http: Debian 13's nginx.conf already sets it there
# (a second http-level one is an error) and Debian 12's leaves it commented out.
NO_VERSION = "    server_tokens off;"
HSTS = 'add_header Strict-Transport-Security "max-age=31536000" always;'


@dataclass(frozen=True)
class Route:
    """One location served by one app instance."""

    host: str                 # example.com, .example.com, *, not-found, disabled
    path: str                 # '' or '/prefix'
    app: str
    version: str
    socket: str
    static_dir: str | None = None
    writable_root: str | None = None
    disabled: bool = False
    https: str = "off"        # the version's mode: off, auto, required
    via: str | None = None    # the balancer's address (or network): only it may reach the location

    @property
    def location(self) -> str:
        return self.host + self.path


def _regex_path(path: str) -> str:
    return path.replace(".", r"\.")


def _proxy(route: Route, indent: str) -> list[str]:
    lines = [
        f"proxy_pass http://unix:{route.socket}:;",
        "proxy_http_version 1.1;",
        "proxy_set_header Host $host;",
        f"proxy_set_header {REAL_IP_HEADER} $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto "
        f"{_proto_variable(route.via) if route.via else '$scheme'};",
        "proxy_set_header X-Forwarded-Host $host;",
        f'proxy_set_header {SCRIPT_NAME_HEADER} "{route.path}";',
        f'proxy_set_header {UPDATE_HEADER} "";',
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $silver_connection;",
        "proxy_redirect off;",
        "proxy_read_timeout 300s;",
    ]
    return [indent + line for line in lines]


def _guard(route: Route, indent: str) -> list[str]:
    if not route.disabled:
        return []
    return [f"{indent}if ($silver_from_localhost = 0) {{ return 503; }}"]


def _via(route: Route, indent: str) -> list[str]:
    """For a location behind a balancer (``route.via``): the client's address from the
    balancer's ``X-Forwarded-For`` (trusted from the balancer only), and 403 for a
    request that came any other way than through the balancer (or this node)."""
    if route.via is None:
        return []
    return [f"{indent}set_real_ip_from {route.via};", f"{indent}real_ip_header X-Forwarded-For;",
            f"{indent}if ({_via_variable(route.via)} = 0) {{ return 403; }}"]


def _via_variable(address: str) -> str:
    return "$silver_via_" + re.sub(r"[^0-9a-f]", "_", address.lower())


def _proto_variable(address: str) -> str:
    return "$silver_proto_" + re.sub(r"[^0-9a-f]", "_", address.lower())


def _via_maps(routes: list[Route]) -> list[str]:
    """Per balancer: whether the connection came from it (or from this node), by the
    address nginx accepted it from (before the balancer's header is applied); ``via``
    is its address, or the network a provider's balancer connects from (a CIDR)."""
    out = []
    for via in sorted({r.via for r in routes if r.via is not None}):
        name = re.sub(r"[^0-9a-f]", "_", via.lower())
        out += [f"geo $realip_remote_addr {_via_variable(via)} {{", "    default 0;",
                f"    {via} 1;", "    127.0.0.1 1;", "    ::1 1;", "}",
                # the scheme the client used, as the balancer (where TLS ends) says,
                # believed from the balancer's own connections only
                f"geo $realip_remote_addr $silver_from_{name} {{", "    default 0;",
                f"    {via} 1;", "}",
                f'map "$silver_from_{name}$http_x_forwarded_proto" {_proto_variable(via)} {{',
                "    default $scheme;", '    "1https" https;', "}"]
    return out


def _status_locations(route: Route) -> list[str]:
    """``/.silver/health`` and ``/.silver/info`` of the location, answered by the node's
    status server (never the app), which learns the location from nginx, not the client."""
    out = []
    for page in ("health", "info"):
        out += [f"    location = {route.path}/.silver/{page} {{", *_via(route, "        "),
                f"        proxy_pass http://unix:{paths.STATUS_SOCKET}:;",
                f'        proxy_set_header {STATUS_LOCATION_HEADER} "{route.location}";',
                "    }"]
    return out


def _route_locations(route: Route, key: str, redirect: bool = False) -> list[str]:
    """nginx locations for one route: its status pages, static/writable_root files, then
    the app; with ``redirect`` (HTTPS required, plain HTTP) a redirect instead."""
    rx = _regex_path(route.path)
    if redirect:
        return [f"    # {route.location} -> {route.app} (HTTPS required)",
                *_status_locations(route), f"    location ~ ^{rx}(/.*)?$ {{",
                *_via(route, "        "), "        return 301 https://$host$request_uri;", "    }"]
    tries = []
    if route.static_dir:
        tries.append(f"{route.static_dir}$silver_rest")
    if route.writable_root:
        tries += [f"{route.writable_root}/$host$silver_rest", f"{route.writable_root}$silver_rest"]
    out = [f"    # {route.location} -> {route.app}", *_status_locations(route)]
    if not tries:
        out.append(f"    location ~ ^{rx}(/.*)?$ {{")
        out += _via(route, "        ") + _guard(route, "        ") + _proxy(route, "        ") + ["    }"]
        return out
    # URIs ending in '/' are never files: they go straight to the app (try_files
    # would otherwise serve or refuse a directory).
    out.append(f"    location ~ ^{rx}(/.*)?/$ {{")
    out += _via(route, "        ") + _guard(route, "        ") + _proxy(route, "        ") + ["    }"]
    out.append(f"    location ~ ^{rx}(?<silver_rest>/.*)?$ {{")
    out += _via(route, "        ") + _guard(route, "        ")
    # an app may put symlinks in its writable_root: nginx (in every app's group)
    # must not follow them to files the app does not own
    out += ["        root /;", "        disable_symlinks if_not_owner;",
            f"        try_files {' '.join(tries)} @{key};", "    }"]
    out.append(f"    location @{key} {{")
    out += _via(route, "        ") + _proxy(route, "        ") + ["    }"]
    return out


def _acme_challenge() -> list[str]:
    """HTTP-01 answers, written by certbot as root; they beat every app's regex location."""
    return ["    location ^~ /.well-known/acme-challenge/ {",
            f"        root {paths.ACME_WEBROOT};", "        default_type text/plain;",
            "        try_files $uri =404;", "    }"]


def _head(names: str, cert_dir: str | None, hsts: bool = False) -> list[str]:
    """A server's start: port 80 with the ACME challenges, or 443 with the certificate
    in ``cert_dir`` (and HSTS if asked)."""
    if cert_dir is None:
        return ["server {", *LISTEN, f"    server_name {names};", NO_VERSION,
                *_acme_challenge()]
    out = ["server {", "    listen 443 ssl;", "    listen [::]:443 ssl;",
           f"    server_name {names};", NO_VERSION,
           f"    ssl_certificate {cert_dir}/fullchain.pem;",
           f"    ssl_certificate_key {cert_dir}/privkey.pem;"]
    return out + ([f"    {HSTS}"] if hsts else [])


def _server(names: str, routes: list[Route], pages: str, specials: dict[str, Route],
            counter: list[int], cert_dir: str | None = None, tls: bool = False) -> list[str]:
    """One server block: port 80 (``tls`` False; required routes redirect when the host
    has a certificate) or its HTTPS twin on 443."""
    required = any(r.https == "required" for r in routes)
    out = _head(names, cert_dir if tls else None, hsts=required)
    if "not-found" in specials:
        out.append("    error_page 404 = @silver_not_found;")
    else:
        out.append("    error_page 404 /.silverlining/not-found.html;")
    if "disabled" in specials:
        out.append("    error_page 503 = @silver_disabled;")
    else:
        out.append("    error_page 503 /.silverlining/disabled.html;")
    for page in ("not-found", "disabled"):
        out += [f"    location = /.silverlining/{page}.html {{",
                "        internal;", "        default_type text/html;",
                f"        alias {pages}/{page}.html;", "    }"]
    for special, route in sorted(specials.items()):
        key = "silver_" + special.replace("-", "_")
        out.append(f"    location @{key} {{")
        out += _proxy(Route(route.host, "", route.app, route.version, route.socket), "        ")
        out.append("    }")
    for route in sorted(routes, key=lambda r: (-len(r.path), r.path)):
        counter[0] += 1
        redirect = not tls and cert_dir is not None and route.https == "required"
        out += _route_locations(route, f"silver_app_{counter[0]}", redirect)
    if not any(r.path == "" for r in routes):
        out += ["    location / {", "        return 404;", "    }"]
    out.append("}")
    return out


def cert_host(host: str) -> str:
    """The hostname whose certificate a routing host uses (``.example.com`` shares
    ``example.com``'s)."""
    return host.removeprefix(".")


def wants_https(routes: list[Route]) -> bool:
    """A host is served over HTTPS (given a certificate) when a version live there was
    deployed with https auto or required."""
    return any(r.https != "off" and r.host != "*" for r in routes)


def generate(routes: list[Route], pages: str = str(paths.PAGES),
             certs: Mapping[str, str] | None = None) -> str:
    """The whole routing file for these routes (deterministic: same input, same text);
    ``certs`` maps a hostname to the directory of its certificate."""
    certs = certs or {}
    specials = {r.host: r for r in routes if r.host in ("not-found", "disabled")}
    by_host: dict[str, list[Route]] = {}
    for route in routes:
        if route.host not in specials or specials[route.host] is not route:
            by_host.setdefault(route.host, []).append(route)
    if "not-found" in specials and "*" not in by_host:
        nf = specials["not-found"]
        by_host["*"] = [Route("*", "", nf.app, nf.version, nf.socket, nf.static_dir,
                              nf.writable_root, nf.disabled)]
    exact = {h for h in by_host if h != "*" and not h.startswith(".")}
    out = ["# Generated by silver-node from the routing table: do not edit.",
           "map $remote_addr $silver_from_localhost {",
           "    default 0;", "    127.0.0.1 1;", "    ::1 1;", "}",
           "map $http_upgrade $silver_connection {",
           "    default upgrade;", "    '' '';", "}", *_via_maps(routes)]
    counter = [0]

    def order(host: str) -> tuple[int, str]:
        return (2 if host == "*" else 1 if host.startswith(".") else 0, host)

    for host in sorted(by_host, key=order):
        if host == "*":
            names = _CATCH_ALL
        elif host.startswith("."):
            names = f"*{host}" if host[1:] in exact else host
        else:
            names = host
        cert_dir = certs.get(cert_host(host)) if wants_https(by_host[host]) else None
        for tls in (False, True) if cert_dir else (False,):
            out.append("")
            out += _server(names, by_host[host], pages, specials, counter, cert_dir, tls)
    for host in sorted(exact):
        www = f"www.{host}"
        if host.startswith("www.") or www in exact:
            continue
        tls = www in certs and wants_https(by_host[host])
        for cert_dir in (None, certs[www]) if tls else (None,):
            scheme = "https" if cert_dir else "$scheme"
            out += ["", *_head(www, cert_dir), "    location / {", f"        return 301 {scheme}://{host}$request_uri;",
                    "    }", "}"]
    return "\n".join(out) + "\n"


# --- applying it on the node ---------------------------------------------------

def live_link(location: str) -> Path:
    """The location's link to the version it serves (``quote``: no '/', ':' or '$',
    which nginx would read as a path, the socket's end or a variable)."""
    return paths.LIVE / urllib.parse.quote(location, safe="")


def static_dir(app: str, version: str) -> Path | None:
    static = instance_dir(app, version) / "static"
    return static if static.is_dir() and not static.is_symlink() else None


def load_balanced() -> dict[str, str]:
    """``{location: balancer address}``: the locations only a balancer may reach."""
    try:
        data = json.loads(paths.BALANCED.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NodeError(f"{paths.BALANCED} is corrupt: {exc}") from None
    return data if isinstance(data, dict) else {}


def routes_from_table(table: dict[str, dict]) -> list[Route]:
    """Routes for every location that serves a version, from the node's records."""
    states: dict[str, AppState] = {}
    balanced = load_balanced()
    routes = []
    for location, entry in sorted(table.items()):
        app, version = entry.get("app"), entry.get("version")
        if not app or not version or location.startswith("@"):    # @APP: no web part
            continue
        state = states.setdefault(app, AppState.load(app))
        meta = state.versions.get(version, {})
        host, slash, rest = location.partition("/")
        link = live_link(location)
        wr = paths.DATA / app / "writable_root"
        routes.append(Route(
            host=host, path=slash + rest, app=app, version=version,
            socket=f"{link}/sock",
            static_dir=f"{link}/static" if static_dir(app, version) else None,
            writable_root=str(wr) if "writable_root" in meta.get("services", ()) else None,
            disabled=state.disabled, https=meta.get("https", "off"),
            via=balanced.get(location)))
    return routes


def _front(app: str, version: str) -> Path:
    """``FRONTS/APP/vN`` with ``sock`` and ``static`` links to the version (made once;
    root's, in root's directories, so no app can redirect them)."""
    front = paths.FRONTS / app / version
    if not front.is_dir():
        tmp = make_dir(paths.FRONTS / app, 0, 0, 0o755) / f".{version}.new"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o755)
        os.symlink(paths.SOCKETS / app / f"{version}.sock", tmp / "sock")
        if static := static_dir(app, version):
            os.symlink(static, tmp / "static")
        os.rename(tmp, front)
    return front


def _live_links() -> dict[Path, Path]:
    if not paths.LIVE.is_dir():
        return {}
    return {p: Path(os.readlink(p)) for p in paths.LIVE.iterdir()
            if p.is_symlink() and not p.name.startswith(".")}


def _prune_fronts(kept: set[Path]) -> None:
    """Drop the fronts of versions no location serves."""
    for app_dir in paths.FRONTS.iterdir() if paths.FRONTS.is_dir() else []:
        for front in app_dir.iterdir():
            if front not in kept:
                shutil.rmtree(front, ignore_errors=True)


def installed_certs() -> dict[str, str]:
    """Hostname -> directory of each certificate nginx can load (both files present)."""
    if not paths.CERTS.is_dir():
        return {}
    return {d.name: str(d) for d in sorted(paths.CERTS.iterdir())
            if (d / "fullchain.pem").is_file() and (d / "privkey.pem").is_file()}


def _nginx_main() -> str:
    """The pid of nginx's main process, from its pid file (root's, in /run)."""
    try:
        return paths.NGINX_PID.read_text().strip()
    except OSError:
        return ""


def _is_worker(pid: str, main: str) -> bool:
    """Whether ``pid`` is one of nginx's workers: a child of its main process with
    their title. The title alone is not enough: an app may call its own processes
    anything, but none of them can be nginx's child."""
    try:
        ppid = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return ppid == main and title.replace(b"\0", b" ").strip() == b"nginx: worker process"


def _worker_pids() -> set[str]:
    main = _nginx_main()
    return {entry.name for entry in os.scandir("/proc")
            if main and entry.name.isdigit() and _is_worker(entry.name, main)}


def _signal_reload() -> None:
    """SIGHUP to nginx's main process, or nginx started if it does not run."""
    hup = subprocess.run(["systemctl", "kill", "--kill-whom=main", "--signal=HUP", "nginx"],
                         capture_output=True, text=True)
    if hup.returncode != 0:             # not running: started, with the new routing
        proc = subprocess.run(["systemctl", "start", "nginx"], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise NodeError("nginx reload failed: "
                            f"{proc.stderr.strip() or proc.stdout.strip()}")


def reload_nginx(refused: str) -> None:
    """``nginx -t``, then reload gracefully and wait until the old workers stopped taking
    requests. A configuration nginx refuses is never loaded: ``NodeError(refused: why)``.

    The reload is SIGHUP to nginx's main process, sent by systemd (``systemctl kill``):
    what the unit's ``ExecReload`` does too, but without starting a second nginx that
    reads the whole configuration again only to find that process (a reload's half)."""
    check = subprocess.run(["nginx", "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        message = " | ".join(ln for ln in check.stderr.splitlines() if ln.strip())
        raise NodeError(f"{refused}: {message}")
    before = _worker_pids()
    _signal_reload()

    def new_workers() -> bool:      # the old ones gone (a look at each), new ones there
        main = _nginx_main()
        return not any(_is_worker(pid, main) for pid in before) and bool(_worker_pids())

    wait_until(new_workers, 10, 0.01,
               failed=lambda: NodeError("nginx did not start new workers within 10s after "
                                        "a reload"))


def apply(table: dict[str, dict]) -> bool:
    """Point each location's live link at its version, then regenerate, check and load
    the routing if its text changed; returns whether nginx was reloaded.

    On any failure (``nginx -t`` refuses it, the reload fails) the old links and the
    old file are put back byte for byte before the error is raised, so the caller's
    routing table, saved only after this returns, still matches what nginx serves.
    """
    routes = routes_from_table(table)
    text = generate(routes, certs=installed_certs()).encode()
    make_dir(paths.LIVE, 0, 0, 0o755)
    before = _live_links()
    wanted = {live_link(r.location): _front(r.app, r.version) for r in routes}
    for link, front in wanted.items():
        if before.get(link) != front:
            point_link(link, front)
    try:
        reloaded = _put(text)
    except BaseException:
        for link in wanted.keys() | before.keys():
            point_link(link, before.get(link))
        raise
    for link in before.keys() - wanted.keys():
        point_link(link, None)
    _prune_fronts(set(wanted.values()))
    return reloaded


def hides(location: str, table: Mapping[str, dict]) -> bool:
    """Whether a route for ``location`` would take requests that something ``table``
    serves answers now: a special location, a host already served (a new path takes
    part of its requests), the catch-all ``*``, an app serving ``not-found`` (it answers
    unknown hosts) or a ``.suffix`` covering the host (a new exact host takes its
    requests and its ``www.`` twin's), or the ``www.`` twin of a served host
    (redirected there now)."""
    host = location.partition("/")[0]
    if host in ("not-found", "disabled", "*"):
        return True
    for served, entry in table.items():
        other = served.partition("/")[0]
        if not entry.get("version") or served.startswith("@"):
            continue
        if other in (host, "*", "not-found") or host == f"www.{other}":
            return True
        if other.startswith(".") and (host == other[1:] or host.endswith(other)):
            return True
    return False


def preroute(app: str, version: str, location: str) -> bool:
    """A deploy to a location that hides nothing served (``hides``): nginx is given its
    route while the new version is still on its way (``deploy`` runs this beside the
    app's start), so that the switch only makes the location's link, with no reload
    (the new text is the same), instead of waiting for one (a fifth of a second, most
    of it nginx's own pause before it retires the old workers). The link is not made
    here: until the switch nginx finds no socket there and answers 502 where it
    answered 404 (an unknown host or path), and the version is never reached before
    its health gate. Returns whether nginx was given a route; ``reapply`` takes it
    back when the deploy fails."""
    with routing_lock():
        table = load_routes()
        if hides(location, table):
            return False
        pending = {**table, location: {"app": app, "version": version, "prev": None}}
        return _put(generate(routes_from_table(pending), certs=installed_certs()).encode(),
                    f"routing {location} in nginx ahead of the switch")


def reapply() -> bool:
    """nginx's routing made again from the routing table (a route ``preroute`` gave a
    deploy that failed goes); returns whether nginx was reloaded."""
    with routing_lock():
        return apply(load_routes())


def _put(text: bytes, why: str = "requests in flight finish on the old workers") -> bool:
    """The routing file with ``text``, nginx reloaded, if it differs from the file in
    place; returns whether it did."""
    target = paths.NGINX_ROUTES / CONF_NAME
    old = target.read_bytes() if target.exists() else None
    return old != text and _load(target, old, text, why)


def _load(target: Path, old: bytes | None, text: bytes, why: str) -> bool:
    """Put the new routing file in place, check it and reload nginx, or put the old
    one back."""
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    try:
        say(f"reloading nginx ({why})")
        reload_nginx("the new nginx routing was refused by 'nginx -t' (kept the old one)")
    except BaseException:
        if old is None:
            target.unlink(missing_ok=True)
        else:
            write_atomic(target, old)
        # nginx may have taken the new file: give it the old one again
        with contextlib.suppress(NodeError):
            _signal_reload()
        raise
    return True


def apply_table(call: protocol.RoutingApply) -> protocol.RoutingApplyResult:
    """``routing-apply``: the nginx routing made again from the routing table."""
    return {"changed": reapply()}


def balanced(call: protocol.Balanced) -> protocol.BalancedResult:
    """``balanced``: let only the balancer at ``via`` (and this node) reach ``location``,
    with the client's address taken from it; ``via`` None serves it directly again."""
    location = location_key(call.location)
    if call.via is not None:
        try:
            ipaddress.ip_network(call.via)
        except ValueError:
            raise NodeError(f"balanced: {call.via!r} is not an IP address or network") \
                from None
    with routing_lock():
        table = dict(load_balanced())
        if table.get(location) == call.via:
            return {"changed": False}
        if call.via is None:
            table.pop(location, None)
        else:
            table[location] = call.via
        old = paths.BALANCED.read_bytes() if paths.BALANCED.exists() else None
        write_atomic(paths.BALANCED, json.dumps(table, indent=1, sort_keys=True) + "\n")
        try:
            apply(load_routes())
        except BaseException:
            if old is None:
                paths.BALANCED.unlink(missing_ok=True)
            else:
                write_atomic(paths.BALANCED, old)
            raise
    return {"changed": True}
