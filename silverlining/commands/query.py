"""``silver query NODE [GLOB...]``: apps on a node, their versions, where they are live,
their services (names only, never credentials) and the backups kept on the node."""

from __future__ import annotations

from silverlining.commands._https import format_certs, query_certs
from silverlining.commands._remote import open_node
from silverlining.console import Console


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


def format_query(result: dict) -> list[str]:
    lines = []
    for app in result["apps"]:
        lines.append(app["app"] + ("  (disabled)" if app["disabled"] else ""))
        if app.get("services"):
            lines.append(f"  services: {', '.join(app['services'])}")
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
    if not result["apps"]:
        lines.append("no apps")
    return lines


def run(console: Console, node: str, globs: tuple[str, ...], health: bool = False,
        certs: bool = False) -> int:
    session = open_node(console, node, check=False)
    try:
        result = session.call("query", *globs, *(["--health"] if health else []), quiet=True)
        live = {loc: e for loc, e in result.get("routes", {}).items() if e.get("version")}
        found = query_certs(session, live, certs and not globs)
    finally:
        session.close()
    for line in format_query(result) + format_certs(found, renewals=certs):
        console.out(line)
    unhealthy = 0
    for location, body in sorted(result.get("health", {}).items()):
        unhealthy += not body["ok"]
        console.out(f"health of {location}: " + ("ok" if body["ok"] else
                                                  "; ".join(body["problems"])))
    return 1 if unhealthy else 0
