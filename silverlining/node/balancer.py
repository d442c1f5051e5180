"""A balancer node: the topology it fronts, HAProxy's configuration and its runtime state.

``BALANCER/topology.json`` records each balanced location: its app, the batch
size of its rolling deploys and its members (name, address on the nodes'
network, state). It is what another developer's ``silver`` reads to find the
members, and what ``haproxy.cfg`` is generated from. A topology change writes
the new configuration, checks it with ``haproxy -c`` and reloads HAProxy
(master-worker: the old worker finishes its connections, none is dropped);
a state change (drain, ready, maint) goes through the runtime API, no reload.

A balancer node serves no apps itself: HAProxy takes port 80, so nginx is
stopped there (setup-node leaves it stopped on a node with a topology).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time

from silverlining import protocol
from silverlining.locations import HOSTNAME_RE
from silverlining.node import certs as node_certs
from silverlining.node import haproxy, paths
from silverlining.node._errors import NodeError
from silverlining.node._state import load_routes, location_key
from silverlining.node.base import apt_install, node_lock, run, say, wait_until, write_atomic

TOPOLOGY = haproxy.TOPOLOGY
UP_TIMEOUT = 15.0


def load() -> dict[str, dict]:
    """``{location: {app, batch, members: [{name, address, state}]}}``."""
    try:
        data = json.loads(TOPOLOGY.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NodeError(f"{TOPOLOGY} is corrupt: {exc}") from None
    return data.get("sites", {}) if isinstance(data, dict) else {}


def _save(sites: dict[str, dict]) -> None:
    paths.BALANCER.mkdir(parents=True, exist_ok=True)
    write_atomic(TOPOLOGY, json.dumps({"sites": sites}, indent=1, sort_keys=True) + "\n")


def _sites(sites: dict[str, dict]) -> list[haproxy.Site]:
    return [haproxy.Site(loc, tuple(haproxy.Member(m["name"], m["address"], m["state"])
                                    for m in site["members"]), site.get("https", "off"))
            for loc, site in sites.items()]


def _tls_pems(sites: dict[str, dict]) -> frozenset[str]:
    """One combined PEM (chain, then key) per host a site asks HTTPS for and that has a
    certificate in ``paths.CERTS``; stale ones removed. Returns the hosts with one."""
    wanted = {haproxy.cert_host(loc.partition("/")[0]) for loc, site in sites.items()
              if site.get("https", "off") != "off"}
    have = set()
    haproxy.TLS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(haproxy.TLS_DIR, 0, 0)
    os.chmod(haproxy.TLS_DIR, 0o700)
    for host in sorted(wanted):
        source = paths.CERTS / host
        if not HOSTNAME_RE.match(host) or node_certs.facts(host) is None:
            continue
        pem = (source / "fullchain.pem").read_bytes().rstrip(b"\n") + b"\n" + \
            (source / "privkey.pem").read_bytes()
        target = haproxy.TLS_DIR / f"{host}.pem"
        if not target.is_file() or target.read_bytes() != pem:
            write_atomic(target, pem, mode=0o600)
        have.add(host)
    for old in haproxy.TLS_DIR.glob("*.pem"):
        if old.name[:-4] not in have:
            old.unlink()
    return frozenset(have)


def _lock():
    return node_lock("balancer", 300, "the balancer's topology")


def _active(unit: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0


def _load_config(sites: dict[str, dict]) -> None:
    """Write, check and load haproxy.cfg for ``sites``; HAProxy keeps the old one
    if the new one is refused."""
    before = {p.name: p.read_bytes() for p in haproxy.TLS_DIR.glob("*.pem")} \
        if haproxy.TLS_DIR.is_dir() else {}
    tls_hosts = _tls_pems(sites)
    after = {p.name: p.read_bytes() for p in haproxy.TLS_DIR.glob("*.pem")}
    text = haproxy.generate(_sites(sites), tls_hosts)
    if haproxy.CONFIG.exists() and haproxy.CONFIG.read_text() == text and \
            before == after and _active("haproxy"):
        return
    new = haproxy.CONFIG.with_name("haproxy.cfg.silver-new")
    write_atomic(new, text)
    try:
        run(["haproxy", "-c", "-q", "-f", str(new)], what="haproxy -c (the new configuration)")
    except NodeError:
        new.unlink(missing_ok=True)
        raise
    new.replace(haproxy.CONFIG)
    if _active("nginx"):
        say("stopping nginx: HAProxy takes port 80 on a balancer node")
        run(["systemctl", "disable", "--now", "nginx"], what="systemctl disable nginx")
    if _active("haproxy"):
        say("reloading HAProxy (connections in flight finish on the old worker)")
        old = haproxy.worker_pid()
        run(["systemctl", "reload", "haproxy"], what="systemctl reload haproxy")
        # the reload returns once the master has the signal; until the new worker is
        # ready the old one serves, with the old configuration and certificates, and
        # takes what the runtime API is told (the drain states below)
        wait_until(lambda: haproxy.worker_pid() not in (None, old)
                   and not haproxy.still_listening(old), 10, 0.02,
                   failed="HAProxy's new worker did not take over")
    else:
        run(["systemctl", "enable", "--now", "haproxy"], what="systemctl start haproxy")
    wait_until(_runtime_ready, 10, 0.1, failed="HAProxy's runtime API did not answer")
    for loc, site in sites.items():       # drain is written disabled: set it again
        backend = haproxy.Site(loc, ()).backend
        for m in site["members"]:
            if m["state"] == "drain":
                _set(backend, m["name"], "drain")


def _runtime_ready() -> bool:
    try:
        return "pxname" in haproxy.runtime("show stat")
    except OSError:
        return False


def _set(backend: str, member: str, state: str) -> None:
    _runtime_ok(f"set server {backend}/{member} state {state}")


def _runtime_ok(command: str) -> None:
    """A runtime API command that answers nothing when it worked."""
    answer = haproxy.runtime(command).strip()
    if answer:
        raise NodeError(f"HAProxy refused '{command}': {answer}")


def _stats() -> dict[tuple[str, str], dict[str, str]]:
    try:
        rows = haproxy.parse_stat(haproxy.runtime("show stat"))
    except OSError:
        return {}
    return {(r["pxname"], r["svname"]): r for r in rows}


def _report(sites: dict[str, dict]) -> protocol.BalancerResult:
    stats = _stats()
    out: dict[str, dict] = {}
    for loc, site in sorted(sites.items()):
        backend = haproxy.Site(loc, ()).backend
        members = []
        for m in site["members"]:
            row = stats.get((backend, m["name"]), {})
            members.append({**m, "status": row.get("status", "unknown"),
                            "sessions": int(row.get("scur") or 0),
                            "check": row.get("check_status", "")})
        out[loc] = {"app": site.get("app", ""), "batch": site.get("batch", ""),
                    "services": site.get("services", ""), "members": members}
    return {"sites": out}


def apply(call: protocol.BalancerApply) -> protocol.BalancerResult:
    """``balancer-apply``: front ``location`` by ``members`` (or drop it)."""
    location = location_key(call.location)
    served = sorted(loc for loc, e in load_routes().items() if e.get("version"))
    if served:
        raise NodeError(f"this node serves {', '.join(served)}: a balancer node serves no "
                        "apps itself (HAProxy takes its port 80); use another node")
    if call.https not in ("", "off", "auto", "required"):
        raise NodeError(f"balancer-apply: bad https mode {call.https!r}")
    members = []
    for text in call.members:
        name, eq, address = text.partition("=")
        try:
            ok = bool(eq and HOSTNAME_RE.match(name) and ipaddress.ip_address(address))
        except ValueError:
            ok = False
        if not ok:
            raise NodeError(f"balancer-apply: member {text!r} is not NODE=IP-ADDRESS")
        members.append((name, address))
    apt_install(["haproxy"], "the balancer")
    with _lock():
        sites = load()
        if call.remove:
            sites.pop(location, None)
        else:
            old = {m["name"]: m for m in sites.get(location, {}).get("members", [])}
            sites[location] = {
                "app": call.app or sites.get(location, {}).get("app", ""),
                "batch": call.batch or sites.get(location, {}).get("batch", ""),
                "https": call.https or sites.get(location, {}).get("https", "off"),
                "services": call.services or sites.get(location, {}).get("services", ""),
                "members": [{"name": n, "address": a,
                             "state": old[n]["state"] if n in old else
                             "maint" if n in call.maint else "ready"}
                            for n, a in members]}
        _load_config(sites)
        _save(sites)
        return _report(sites)


def reload_tls() -> None:
    """After certificates changed (issued, renewed): rebuild the PEMs and reload HAProxy
    gracefully (the old worker finishes its connections)."""
    with _lock():
        _load_config(load())


def certs(call: protocol.BalancerCerts) -> protocol.CertsPrepareResult:
    """``balancer-certs``: the certificate of a balanced location's host, here where TLS
    ends (ACME HTTP-01 answered by certbot's standalone server behind HAProxy's port
    80, or the user's own from stdin), then HAProxy serves it."""
    location = location_key(call.location)
    if location not in load():
        raise NodeError(f"this balancer does not front {location}")
    given = json.loads(sys.stdin.buffer.read() or b"{}") if call.stdin else {}
    host = node_certs.check_host(haproxy.cert_host(location.partition("/")[0]))
    ca = node_certs.store_ca(given["ca"]) if given.get("ca") else None
    pair = (given["cert"].encode(), given["key"].encode()) if given.get("cert") else None
    result, _ = node_certs._prepare_host(host, call.directory, call.email, ca, pair)
    reload_tls()
    return {"hosts": {host: result}}


def set_state(call: protocol.BalancerState) -> protocol.BalancerResult:
    """``balancer-state``: members in rotation, draining, or out (runtime API, recorded)."""
    if call.state not in haproxy.STATES:
        raise NodeError(f"balancer-state: state must be one of {', '.join(haproxy.STATES)}")
    location = location_key(call.location)
    with _lock():
        sites = load()
        site = sites.get(location)
        if site is None:
            raise NodeError(f"this balancer does not front {location}")
        names = {m["name"]: m for m in site["members"]}
        unknown = sorted(set(call.members) - set(names))
        if unknown:
            raise NodeError(f"{', '.join(unknown)}: not a member of {location} here")
        backend = haproxy.Site(location, ()).backend
        for name in call.members:
            if call.state == "ready" and names[name]["state"] == "maint":
                # out of rotation until now: in only once HAProxy's checks passed
                _runtime_ok(f"set server {backend}/{name} health down")
            _set(backend, name, call.state)
            names[name]["state"] = call.state
        _save(sites)
    if call.state == "drain":
        _wait_idle(backend, call.members, call.wait)
    elif call.state == "ready":
        _wait_up(backend, call.members)
    return _report(sites)


def _wait_idle(backend: str, members: tuple[str, ...], wait: float) -> None:
    """Until the drained members have no request in flight (at most ``wait`` seconds:
    a member's own switch is graceful anyway)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        stats = _stats()
        if all(int(stats.get((backend, m), {}).get("scur") or 0) == 0 for m in members):
            return
        time.sleep(0.1)
    say(f"{', '.join(members)}: requests still in flight after {wait:g}s of draining")


def _wait_up(backend: str, members: tuple[str, ...]) -> None:
    """Until HAProxy's own checks see the members up: the next batch is drained only
    when this one takes traffic."""
    def up() -> bool:
        stats = _stats()
        return all(stats.get((backend, m), {}).get("status") == "UP"
                   and stats[(backend, m)].get("check_status", "").lstrip("* ") == "L7OK"
                   for m in members)

    wait_until(up, UP_TIMEOUT, 0.1, failed=lambda: NodeError(
        f"{', '.join(members)}: HAProxy's health check did not pass within "
        f"{UP_TIMEOUT:g}s"))


def query(call: protocol.BalancerQuery) -> protocol.BalancerResult:
    """``balancer-query``: the topology, with HAProxy's view of each member."""
    sites = load()
    if call.location is not None:
        location = location_key(call.location)
        sites = {location: sites[location]} if location in sites else {}
    return _report(sites)
