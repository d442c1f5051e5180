"""``silver doctor``'s checks of one node, as root over SSH: reachable, host key,
server files (current, or stale and by how much), disk, memory, nginx, HTTPS
certificates near expiry, failed units.

Read-only: doctor changes nothing on the node; each problem names the command
that fixes it.
"""

from __future__ import annotations

import hashlib
import json
import time

from silverlining import nodes, protocol, serverfiles, transport
from silverlining.commands._doctor_report import Finding, ok, problem, warn
from silverlining.errors import SilverError
from silverlining.node import paths
from silverlining.state import NodeRegistry, known_hosts_path

DISK_WARN, DISK_PROBLEM = 0.85, 0.95        # fraction of / used
MEMORY_WARN = 0.10                          # fraction of memory available
# Renewals start 30 days before expiry, twice a day: a certificate this close to it
# means they have been failing for two weeks (or it is one the user brought).
CERT_WARN_DAYS = 14


def check_node(name: str) -> tuple[str, list[Finding]]:
    """(title, findings) for one node; never raises for the node's own faults."""
    try:
        where = nodes.resolve(name)
    except SilverError as exc:
        return name, [problem("node", exc.message, "silver list-nodes (the names you have)")]
    title = f"{where.name} ({where.address})"
    registered = NodeRegistry().get(where.name) is not None
    try:
        transport.wait_for_ssh(where.address, timeout=5, label=where.name)
    except SilverError as exc:
        return title, [problem("reachable", exc.message,
                               f"silver list-nodes (is {where.name} running?)")]
    found = [ok("reachable", f"SSH answers on {where.address}")]
    if not transport.has_host_key(where.address):
        fix = (f"silver create-node {where.name} --if-not-exists --wait" if registered else
               f"check the key, then add it to {known_hosts_path()}")
        return title, found + [problem("host key", f"no key recorded for {where.address}", fix)]
    try:
        ssh = transport.SSH(where.address, label=where.name)
    except transport.HostKeyError as exc:
        return title, found + [problem(
            "host key", exc.message, f"only if you know {where.name} was re-installed: silver "
            f"forget-host {where.name}, then silver create-node {where.name} "
            "--if-not-exists --wait")]
    except SilverError as exc:
        return title, found + [problem(
            "login", exc.message, "put your public key into the node's "
            "/root/.ssh/authorized_keys")]
    with ssh:
        found.append(ok("host key", "recorded, and the node presents it"))
        try:
            found += _node_checks(ssh, where.name)
        except (SilverError, ValueError, IndexError, KeyError) as exc:
            # a node too broken (or too foreign) to answer the checks as expected
            reason = exc.message if isinstance(exc, SilverError) else f"unexpected output ({exc})"
            found.append(problem("checks", f"stopped: {reason}",
                                 f"silver setup-node {where.name} (if it fails too, the node "
                                 f"needs a look: ssh root@{where.address})"))
    return title, found


def _node_checks(ssh: transport.SSH, name: str) -> list[Finding]:
    found = [_server_files(ssh, name)]
    found += _resources(ssh, name)
    if ssh.run(["test", "-s", str(paths.BALANCER / "topology.json")], check=False).ok:
        found += _haproxy(ssh, name)
    elif ssh.run(["sh", "-c", "command -v nginx"], check=False).ok:
        found += _nginx(ssh, name)
    found += _certs(ssh, name)
    found += _apps_health(ssh, name)
    found.append(_failed_units(ssh))
    return found


def _server_files(ssh: transport.SSH, name: str) -> Finding:
    fix = f"silver setup-node {name}"
    result = ssh.run(["stat", "-c", "%Y", str(paths.SERVER_VERSION)], check=False)
    if not result.ok:
        return problem("server files", "never set up", fix)
    node_version = ssh.run(["cat", str(paths.SERVER_VERSION)]).stdout.strip()
    age = _age(time.time() - int(result.stdout.strip() or 0))
    ours = serverfiles.version()
    if node_version == ours:
        return ok("server files", f"current ({ours}, set up {age} ago)")
    differ, missing, extra = _compare_tree(ssh)
    return problem("server files", f"stale: set up {age} ago with {node_version}, this silver "
                   f"has {ours}; {differ} file{'s' * (differ != 1)} differ, {missing} missing "
                   f"on the node, {extra} only on the node", fix)


def _compare_tree(ssh: transport.SSH) -> tuple[int, int, int]:
    """(files that differ, missing on the node, only on the node) of the pushed tree."""
    root = str(paths.SERVER_FILES)
    out = ssh.run(["find", root, "-type", "f", "-not", "-path", "*/__pycache__/*",
                   "-exec", "sha256sum", "{}", "+"], check=False).stdout
    remote = {}
    for line in out.splitlines():
        digest, _, path = line.partition("  ")
        if path.startswith(root + "/"):
            remote[path[len(root) + 1:]] = digest
    local = {rel: hashlib.sha256(path.read_bytes()).hexdigest()
             for rel, path in serverfiles.pushed_files()}
    differ = sum(1 for rel in local.keys() & remote.keys() if local[rel] != remote[rel])
    return differ, len(local.keys() - remote.keys()), len(remote.keys() - local.keys())


def _age(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{max(seconds, 0):.0f} seconds"


def _resources(ssh: transport.SSH, name: str) -> list[Finding]:
    found = []
    df = ssh.run(["df", "-P", "-k", "/"]).stdout.splitlines()[-1].split()
    total, avail = int(df[1]), int(df[3])
    used = 1 - avail / total if total else 0.0
    detail = f"/ is {used:.0%} full ({avail // 1024} MB free)"
    if used >= DISK_PROBLEM:
        found.append(problem("disk", detail, f"silver clean-node {name}"))
    elif used >= DISK_WARN:
        found.append(warn("disk", detail, f"silver clean-node {name}"))
    else:
        found.append(ok("disk", detail))
    meminfo = dict(line.split(":", 1) for line in
                   ssh.run(["cat", "/proc/meminfo"]).stdout.splitlines() if ":" in line)
    total_kb = int(meminfo["MemTotal"].split()[0])
    avail_kb = int(meminfo.get("MemAvailable", meminfo["MemFree"]).split()[0])
    detail = f"{avail_kb // 1024} MB of {total_kb // 1024} MB available"
    if total_kb and avail_kb / total_kb < MEMORY_WARN:
        found.append(warn("memory", detail + ": apps may be killed when memory runs out",
                          f"silver clean-node {name}, or a bigger node (silver list-sizes)"))
    else:
        found.append(ok("memory", detail))
    return found


def _nginx(ssh: transport.SSH, name: str) -> list[Finding]:
    fix = f"silver setup-node {name}"
    found = []
    test = ssh.run(["nginx", "-t", "-q"], check=False)
    if test.ok:
        found.append(ok("nginx config", "nginx -t passes"))
    else:
        lines = [ln for ln in test.stderr.splitlines() if ln.strip()]
        found.append(problem("nginx config", lines[0] if lines else f"nginx -t exited "
                             f"{test.status}", f"correct the file nginx names, then {fix}"))
    state = ssh.run(["systemctl", "is-active", "nginx"], check=False).stdout.strip()
    if state == "active":
        found.append(ok("nginx", "running"))
    else:
        found.append(problem("nginx", f"not running ({state or 'unknown'}): no app answers",
                             fix))
    return found


def _haproxy(ssh: transport.SSH, name: str) -> list[Finding]:
    """A balancer node (docs/balancer.md): HAProxy instead of nginx."""
    test = ssh.run(["haproxy", "-c", "-q", "-f", "/etc/haproxy/haproxy.cfg"], check=False)
    if test.ok:
        found = [ok("haproxy config", "haproxy -c passes")]
    else:
        lines = [ln for ln in (test.stderr + test.stdout).splitlines() if ln.strip()]
        found = [problem("haproxy config", lines[0] if lines else f"haproxy -c exited "
                         f"{test.status}", "silver update one of its locations again (the "
                         "balancer writes the file from its topology)")]
    state = ssh.run(["systemctl", "is-active", "haproxy"], check=False).stdout.strip()
    if state == "active":
        found.append(ok("haproxy", "running (a balancer node)"))
    else:
        found.append(problem("haproxy", f"not running ({state or 'unknown'}): the balanced "
                             "locations do not answer", f"ssh root@{name} systemctl start "
                             "haproxy"))
    return found


def _certs(ssh: transport.SSH, name: str) -> list[Finding]:
    """Certificates that expire soon; nothing on a node without any (or too old to say)."""
    result = ssh.run([str(paths.ENTRY), protocol.CertsList.NAME], check=False)
    lines = result.stdout.strip().splitlines()
    if not result.ok or not lines:
        return []
    certs = json.loads(lines[-1]).get("certs", {})
    if not certs:
        return []
    late = sorted((c["days_left"], host, c["source"]) for host, c in certs.items()
                  if c["days_left"] is not None and c["days_left"] < CERT_WARN_DAYS)
    if not late:
        return [ok("certificates", f"{len(certs)}, none within {CERT_WARN_DAYS} days of "
                   "expiry")]
    days, host, source = late[0]
    what = f"{host} expires in {days:g} days" if days > 0 else f"{host} has expired"
    more = f" ({len(late) - 1} more within {CERT_WARN_DAYS} days)" if len(late) > 1 else ""
    fix = (f"silver update APP_DIR {host} --cert FILE --key FILE (a new one of yours)"
           if source == "user" else f"silver query {name} --certs (why renewals fail), then "
           f"ssh root@{ssh.address} {paths.ENTRY} certs-renew")
    return [(warn if days > 0 else problem)("certificates", what + more, fix)]


def _apps_health(ssh: transport.SSH, name: str) -> list[Finding]:
    """Each live location whose /.silver/health is not ok (a worker down or in a crash
    loop, the web app failing its check), with the commands that show why."""
    query = protocol.Query(health=True)
    result = ssh.run([str(paths.ENTRY), query.NAME, query.encode()], check=False)
    lines = result.stdout.strip().splitlines()
    if not result.ok or not lines:
        return []
    health = json.loads(lines[-1]).get("health", {})
    if not health:
        return []
    found = []
    for location, body in sorted(health.items()):
        if body.get("ok"):
            continue
        problems = body.get("problems") or ["not ok"]
        workers = [p.split()[1].rstrip(":").split("@")[0] for p in problems if p.startswith("process ")]
        why = (f"silver logs {location} --process {workers[0]} --node {name}" if workers
               else f"silver logs {location} --node {name}")
        found.append(problem(f"app {body.get('app', '?')}", f"{location}: "
                             f"{'; '.join(problems)}",
                             f"silver query {name} --health, then {why} (why)"))
    return found or [ok("apps", f"{len(health)} live location(s), all healthy")]


def _failed_units(ssh: transport.SSH) -> Finding:
    out = ssh.run(["systemctl", "list-units", "--failed", "--plain", "--no-legend",
                   "--no-pager"], check=False).stdout
    units = [line.split()[0] for line in out.splitlines() if line.strip()]
    if not units:
        return ok("systemd units", "none failed")
    return problem("systemd units", f"failed: {', '.join(units)}",
                   f"ssh root@{ssh.address} journalctl -u {units[0]} (why), then "
                   f"ssh root@{ssh.address} systemctl reset-failed")
