"""``silver query NODE [GLOB...]``: apps on a node, their versions, where they are live,
their services (names only, never credentials) and the backups kept on the node."""

from __future__ import annotations

from silverlining import protocol
from silverlining.commands import _balanced
from silverlining.commands._remote import open_node
from silverlining.console import Console
from silverlining.errors import UsageError


def format_jobs(jobs: dict) -> list[str]:
    """Workers (instances running, restarts, crash loops) and crons (last and next run)."""
    lines = []
    for name, instances in sorted(jobs.get("processes", {}).items()):
        up = sum(1 for i in instances if i["running"])
        restarts = sum(i["restarts"] for i in instances)
        state = f"{up}/{len(instances)} running"
        if any(i["crash_loop"] for i in instances):
            state += ", CRASH LOOP (see silver logs --process " + name + ")"
        lines.append(f"        process {name}: {state}, {restarts} restarts")
    for name, cron in sorted(jobs.get("crons", {}).items()):
        if cron["running"]:
            last = "running now"
        elif cron["result"] is None:
            last = "not run yet"
        else:
            last = f"last run {cron['last_run']}: exit {cron['exit_status']} ({cron['result']})"
        lines.append(f"        cron {name} [{cron['schedule']}]: {last}; next "
                     f"{cron['next_run'] or '-'}")
    return lines


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def format_usage(usage: dict) -> list[str]:
    """The app's slice against its limits (app.ini ``limits.*``), saying which ones
    this node's kernel does not enforce."""
    limits = usage["limits"]
    line = (f"  limits: memory {_mb(usage['memory'])} of {limits['memory']}, tasks "
            f"{usage['tasks']} of {limits['tasks']}, cpu weight {limits['cpu_weight']}, "
            f"io weight {limits['io_weight']}")
    enforced = usage.get("enforced")
    if enforced is None:
        return [line + " (nothing running)"]
    names = {"memory": "memory", "cpu_weight": "cpu weight", "io_weight": "io weight"}
    lax = [names[k] for k in names if not enforced.get(k)]
    if lax:
        line += (f"; not enforced on this node (no writable cgroup controller): "
                 f"{', '.join(lax)}")
    if not enforced.get("tasks"):
        line += "; tasks held by the per-user process limit"
    return [line]


def format_disk(disk: dict) -> list[str]:
    versions = ", ".join(f"{v} {_mb(size)}" for v, size in disk["versions"].items())
    return [f"  disk: data {_mb(disk['data'])}" + (f"; versions {versions}" if versions else "")]


def format_certs(certs: dict, renewals: bool) -> list[str]:
    """One line per hostname: issuer, expiry and, with ``renewals``, the last renewal."""
    lines = []
    for host, c in sorted(certs.items()):
        line = (f"certificate {host}: {c['issuer'] or 'unreadable'}, expires "
                f"{c['not_after'] or '?'} ({c['days_left']} days left; {c['source']})")
        if renewals:
            last = c.get("last_renewal")
            line += ("; last renewal: never" if not last else
                     f"; last renewal {last['time']}: "
                     f"{'ok' if last['ok'] else 'FAILED: ' + last['message']}")
        lines.append(line)
    return lines


def format_query(result: dict) -> list[str]:
    lines = []
    for app in result["apps"]:
        lines.append(app["app"] + ("  (disabled)" if app["disabled"] else ""))
        if app.get("services"):
            lines.append(f"  services: {', '.join(app['services'])}")
        if app.get("usage"):
            lines += format_usage(app["usage"])
        if app.get("disk"):
            lines += format_disk(app["disk"])
        for b in app.get("backups", []):
            lines.append(f"  backup remote:{b['name']}  {b['time']}  {b['size']} bytes")
        for v in app["versions"]:
            where = []
            if v["live_at"]:
                where.append("live at " + ", ".join(v["live_at"]))
            if v["prev_at"]:
                where.append("prev at " + ", ".join(v["prev_at"]))
            state = "running" if v["running"] else v.get("status", "?")
            lines.append(f"  {v['version']:<5} {v.get('time', '?'):<20}  {v.get('who') or '?':<24} "
                         f"{state:<8} {'; '.join(where)}".rstrip())
            details = []
            if v.get("source"):
                details.append(f"from {v['source']}")
            if dep := v.get("deps"):
                details.append(f"dependencies {dep['fingerprint']} ({dep['count']} packages)")
            if v.get("params_changed"):
                details.append("parameters changed: " + ", ".join(v["params_changed"]))
            if details:
                lines.append("        " + "; ".join(details))
            lines += format_jobs(v.get("jobs") or {})
    lines += format_services_node(result.get("hosted", {}), result.get("replication", {}))
    if not (result["apps"] or result.get("balancer") or result.get("hosted")):
        lines.append("no apps")
    return lines


def format_services_node(hosted: dict, replication: dict) -> list[str]:
    """What a services node holds, for whom, and its replication with the lag."""
    lines = []
    for app, held in sorted(hosted.items()):
        whom = ", ".join(held["members"]) or "no member"
        lines.append(f"databases of {app} for {held['location']}: "
                     + ("fenced (its replica took over)" if held.get("fenced") else whom))
    if replication.get("role") == "primary" and replication.get("primary"):
        lines.append(f"primary, promoted from {replication['primary']}")
    if replication.get("role") == "replica":
        lines.append(f"replica of {replication['primary']}: {replication['state']}, "
                     f"{replication['lag_bytes']} bytes received but not yet replayed")
    for r in replication.get("replicas", []):
        lag = (f", {r['lag_bytes']} bytes and {r['lag_seconds'] * 1000:.0f} ms behind"
               if "lag_bytes" in r else "")
        lines.append(f"replica {r['name']}: {r['state']}{lag}")
    return lines


def format_balancer(sites: dict, versions: dict[tuple[str, str], str]) -> list[str]:
    """What a balancer fronts: each location's members, the version each serves, the
    health HAProxy sees and whether it takes traffic."""
    lines = []
    for location, site in sorted(sites.items()):
        held = f", databases on {site['services']}" if site.get("services") else ""
        lines.append(f"{location}  (balanced: {site.get('app') or '?'}, batch "
                     f"{site.get('batch') or '1'}{held})")
        for m in site["members"]:
            traffic = {"ready": "takes traffic", "drain": "draining",
                       "maint": "out of rotation"}.get(m["state"], m["state"])
            if m["state"] == "ready" and not m["status"].startswith("UP"):
                traffic = "no traffic (health check failing)"
            lines.append(f"  {m['name']:<20} {m['address']:<16} "
                         f"{versions.get((m['name'], location), '?'):<8} "
                         f"{m['status']:<10} {traffic}; {m['sessions']} in flight")
    return lines


def _member_versions(console: Console, sites: dict) -> dict[tuple[str, str], str]:
    """The version each member serves at each location (asked in parallel)."""
    pairs = [(m["name"], loc) for loc, site in sites.items() for m in site["members"]]

    def one(key: str) -> str:
        member, location = key.split(" ", 1)
        session = open_node(console, member, check=False)
        try:
            return session.send(protocol.Served(location=location), quiet=True)["version"]
        finally:
            session.close()

    found = _balanced.parallel(one, [f"{m} {loc}" for m, loc in pairs])
    return {tuple(k.split(" ", 1)): (v if isinstance(v, str) else "none")
            for k, v in found.items()}


def run(console: Console, node: str, globs: tuple[str, ...], health: bool = False,
        certs: bool = False) -> int:
    if _balanced.is_provider(node):
        raise UsageError(f"{node} is a provider's load balancer, not a node: query a member "
                         "(silver query NODE) or the provider's console")
    session = open_node(console, node, check=False)
    try:
        result = session.send(protocol.Query(globs=tuple(globs), health=health,
                                             all_certs=certs and not globs), quiet=True)
    finally:
        session.close()
    lines = format_query(result)
    if sites := result.get("balancer"):
        _balanced.remember(sites, session.name)
        lines += format_balancer(sites, _member_versions(console, sites))
    for line in lines + format_certs(result.get("certs", {}), renewals=certs):
        console.out(line)
    unhealthy = 0
    for location, body in sorted(result.get("health", {}).items()):
        unhealthy += not body["ok"]
        console.out(f"health of {location}: " + ("ok" if body["ok"] else
                                                  "; ".join(body["problems"])))
    return 1 if unhealthy else 0
