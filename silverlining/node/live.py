"""Looking at a live app: ``logs`` (raw: tail of its log), ``manifest`` and ``cat`` (for ``silver diff``).

``manifest`` hashes every file of the version live at a location, so the CLI
compares with the local app without fetching anything; ``cat`` then returns
only the files that differ.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
from pathlib import Path

from silverlining.appconfig import JOB_NAME
from silverlining.node import instances
from silverlining.node._job import log_path as job_log_path
from silverlining.node._errors import NodeError
from silverlining.node._state import instance_dir, served
from silverlining.node._switch import location_key
from silverlining.node._util import app_ids, check_app, version_number

CAT_LIMIT = 2_000_000      # bytes per file; a bigger file is reported, not shown


def file_digest(path: str) -> str:
    """sha256 of a file's content, or of ``link:TARGET`` for a symlink."""
    if os.path.islink(path):
        return hashlib.sha256(b"link:" + os.readlink(path).encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _instance(app: str, version: str):
    check_app(app)
    version_number(version)
    inst = instance_dir(app, version)
    if not inst.is_dir():
        raise NodeError(f"{app}.{version} is not on this node any more")
    return inst


def manifest(args) -> dict:
    app, version = served(location_key(args.location))
    inst = _instance(app, version)
    files = {}
    for dirpath, dirnames, filenames in os.walk(inst):
        dirnames.sort()
        rel = os.path.relpath(dirpath, inst)
        prefix = "" if rel == "." else rel + "/"
        for name in filenames:
            files[prefix + name] = file_digest(os.path.join(dirpath, name))
    from silverlining.node import deps
    from silverlining.node._state import AppState

    return {"app": app, "version": version, "files": files,
            "deps": AppState.load(app).get(version).get("deps"), "target": deps.target()}


def cat(args) -> dict:
    inst = _instance(args.app, args.version).resolve()
    out = {}
    for rel in args.paths:
        path = (inst / rel)
        if not path.resolve().is_relative_to(inst) or not path.is_file():
            raise NodeError(f"no file {rel!r} in {args.app}.{args.version}")
        if path.stat().st_size > CAT_LIMIT:
            out[rel] = None
            continue
        out[rel] = base64.b64encode(path.read_bytes()).decode()
    return {"files": out}


def served_cmd(args) -> dict:
    app, version = served(location_key(args.location))
    return {"app": app, "version": version}


def logs(args) -> int:
    _instance(args.app, args.version)
    if args.journal:         # what systemd said: failed starts, crash loops, kills
        units = [instances.unit_name(args.app, args.version),
                 f"silver-{args.app}-{args.version}.*"]
        argv = ["journalctl", "--no-pager", "-o", "short-iso", "-n", str(args.lines),
                *(["-f"] if args.follow else []), *[f"--unit={u}" for u in units]]
        try:
            return subprocess.run(argv).returncode
        except KeyboardInterrupt:
            return 0
    if args.job:
        from silverlining.node.detached import check_id

        log = Path(job_log_path(args.app, args.version, "run", check_id(args.job)))
    elif args.process or args.cron:
        kind, name = ("process", args.process) if args.process else ("cron", args.cron)
        if not JOB_NAME.match(name):
            raise NodeError(f"bad {kind} name {name!r}")
        log = Path(job_log_path(args.app, args.version, kind, name))
    else:
        log = instances.log_path(args.app, args.version)
    if not log.is_file():
        raise NodeError(f"{args.app}.{args.version} has no log yet ({log})")
    uid, gid = app_ids(args.app)
    argv = ["tail", "-n", str(args.lines), *(["-F"] if args.follow else []), "--", str(log)]
    try:     # as the app: the log directory is the app's, whatever it links to it can read
        return subprocess.run(argv, user=uid, group=gid, extra_groups=[]).returncode
    except KeyboardInterrupt:
        return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("served", help="the app version live at a location")
    p.add_argument("location")
    p.set_defaults(handler=served_cmd)
    p = subparsers.add_parser("manifest", help="sha256 of each file of the version at a location")
    p.add_argument("location")
    p.set_defaults(handler=manifest)
    p = subparsers.add_parser("cat", help="the contents of files of an app version (base64)")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("paths", nargs="+")
    p.set_defaults(handler=cat)
    p = subparsers.add_parser("logs", help="the end of an app version's log")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--process", help="a worker's log ([process:NAME])")
    p.add_argument("--cron", help="a cron job's log ([cron:NAME])")
    p.add_argument("--journal", action="store_true", help="systemd's lines on the version's units")
    p.add_argument("--job", help="a detached run's output (silver run --detach)")
    p.set_defaults(handler=logs, raw=True)
