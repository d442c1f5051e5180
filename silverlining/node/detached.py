"""Detached runs (``silver run --detach``): a script in a transient unit of the app's user.

``silver-APP.run-ID.service`` (the '.' keeps it apart from every other unit of
ours) runs like ``silver run`` would, but under systemd, so it outlives the
SSH session; ``RemainAfterExit`` keeps its exit status until it is listed.
Its output goes to ``SILVER_LOGS/run-ID.log``. ``jobs`` lists an app's runs,
``job-stop`` stops one, ``job-attach`` (raw) follows its log until it ends and
exits with its status.
"""

from __future__ import annotations

import re
import shlex
import secrets
import subprocess
import time

from silverlining.node import audit, instances, paths, slices
from silverlining.node._env import format_env
from silverlining.node._errors import NodeError
from silverlining.node._job import log_path
from silverlining.node._state import instance_dir, served
from silverlining.node._switch import location_key
from silverlining.node._util import app_ids, app_user, check_app, run, write_private
from silverlining.node.data import app_services
from silverlining.node.scripts import maintenance_env, script_path

_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}\Z")


def unit(app: str, job_id: str) -> str:
    return f"silver-{app}.run-{job_id}.service"


def check_id(job_id: str) -> str:
    if not _ID.match(job_id):
        raise NodeError(f"bad job id {job_id!r} (see silver jobs LOCATION)")
    return job_id


def start(args) -> dict:
    app, version = served(location_key(args.location))
    inst = instance_dir(app, version)
    script_path(inst, args.script)
    job_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
    user = app_user(app)
    config, services = app_services(app, version)
    # the maintenance logins (as for silver run), in a file only root (systemd) reads
    maintenance = paths.ENV / app / "run.env"
    write_private(maintenance, format_env(maintenance_env(config, services)).encode(), 0, 0o600)
    run(["systemd-run", "--quiet", f"--unit={unit(app, job_id)}",
         f"--description=silver run --detach {shlex.join([args.script, *args.args])[:200]}"
         f" ({app}.{version})",
         f"--uid={user}", f"--gid={user}", "-p", "RemainAfterExit=yes",
         "-p", f"WorkingDirectory={inst}", "-p", f"EnvironmentFile={instances.env_path(app, version)}",
         "-p", f"EnvironmentFile={maintenance}",
         "-p", f"Slice={slices.slice_name(app)}", "-p", f"LimitNPROC={config.limits.tasks}",
         "-p", "NoNewPrivileges=yes", "-p", "PrivateTmp=yes", "-p", "ProtectSystem=full",
         "-p", "ProtectHome=yes", "-p", "UMask=0027",
         "/usr/bin/python3", "-m", "silverlining.node._job", app, version, "run", job_id,
         args.script, *args.args], what="starting the detached run")
    audit.record("run-detach", app, who=args.who, version=version, job=job_id,
                 script=args.script)
    return {"app": app, "version": version, "id": job_id}


def _state(app: str, job_id: str) -> dict:
    out = subprocess.run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState",
                          "-p", "ExecMainStatus", "-p", "ExecMainExitTimestamp",
                          "-p", "MainPID", "-p", "Description", "-p", "LoadState",
                          unit(app, job_id)], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def listing(args) -> dict:
    app, _ = served(location_key(args.location))
    found = []
    for log in sorted((paths.APP_LOGS / app).glob("run-*.log")):
        job_id = log.name[len("run-"):-len(".log")]
        if not _ID.match(job_id):
            continue
        state = _state(app, job_id)
        if state.get("LoadState") != "loaded":
            status = "ended (status lost: the node restarted)"
        elif state.get("ExecMainExitTimestamp"):
            status = f"exit {state.get('ExecMainStatus')}"
        else:
            status = "running"
        found.append({"id": job_id, "status": status,
                      "what": state.get("Description", "").removeprefix("silver run --detach ")})
    return {"app": app, "jobs": found}


def stop(args) -> dict:
    app, _ = served(location_key(args.location))
    job_id = check_id(args.id)
    if _state(app, job_id).get("LoadState") != "loaded":
        raise NodeError(f"no job {job_id} of {app} is known to systemd")
    run(["systemctl", "stop", unit(app, job_id)], what=f"stopping job {job_id}")
    audit.record("job-stop", app, who=args.who, job=job_id)
    return {"app": app, "id": job_id}


def attach(args) -> int:
    """Follow the job's log (as the app) until the job ends; its exit status is ours."""
    app = check_app(args.app)
    job_id = check_id(args.id)
    state = _state(app, job_id)
    if state.get("LoadState") != "loaded":
        raise NodeError(f"no job {job_id} of {app} is known to systemd")
    uid, gid = app_ids(app)
    pid = state.get("MainPID", "0")
    follow = ["-f", f"--pid={pid}"] if pid != "0" else []
    try:
        subprocess.run(["tail", "-n", "+1", *follow, "--", log_path(app, "", "run", job_id)],
                       user=uid, group=gid, extra_groups=[])
    except KeyboardInterrupt:
        return 130
    for _ in range(50):            # systemd records the status just after the process ends
        state = _state(app, job_id)
        if state.get("ExecMainExitTimestamp"):
            return int(state.get("ExecMainStatus") or 0)
        time.sleep(0.1)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("run-detach", help="start a script of a live app in the background")
    p.add_argument("--who")
    p.add_argument("location")
    p.add_argument("script")
    p.add_argument("args", nargs="...")
    p.set_defaults(handler=start)
    p = subparsers.add_parser("jobs", help="an app's detached runs")
    p.add_argument("location")
    p.set_defaults(handler=listing)
    p = subparsers.add_parser("job-stop", help="stop a detached run")
    p.add_argument("location")
    p.add_argument("id")
    p.add_argument("--who")
    p.set_defaults(handler=stop)
    p = subparsers.add_parser("job-attach", help="follow a detached run until it ends")
    p.add_argument("app")
    p.add_argument("id")
    p.set_defaults(handler=attach, raw=True)
