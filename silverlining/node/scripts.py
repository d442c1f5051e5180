"""``run-prepare`` and ``run``: a script of a deployed app, in its environment (``silver run``).

``run-prepare`` (JSON) finds the version live at a location, checks the
script exists and, when the CLI has local files to pass, makes an upload
directory the deploy user can rsync into. ``run`` (raw: the script owns
stdout and its exit status is ours) moves those files into the app's TEMP,
runs the script as the app's user (or root) with the instance's environment,
and removes the files afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import time
from pathlib import Path

from silverlining.apploader import script_command
from silverlining.appconfig import AppConfig
from silverlining.node import instances, params, paths, slices
from silverlining.node._env import read_env
from silverlining.node._errors import NodeError
from silverlining.node._state import instance_dir, served
from silverlining.node.data import app_services
from silverlining.node._switch import location_key
from silverlining.node._util import app_ids, check_app, make_dir, version_number, write_private

PYTHON = "/usr/bin/python3"
_TOKEN = re.compile(r"^[0-9a-f]{16}\Z")


def script_path(inst: Path, script: str) -> Path | None:
    """The script inside the instance (``SCRIPT`` or ``bin/SCRIPT``); None for ``python``."""
    if script == "python":
        return None
    for candidate in (inst / script, inst / "bin" / script):
        resolved = candidate.resolve()
        if resolved.is_file() and resolved.is_relative_to(inst.resolve()):
            return resolved
    raise NodeError(f"no script {script!r} in {inst.parent.name}.{inst.name} (looked in the "
                    "app directory and its bin/)")


def script_argv(inst: Path, script: str, args: list[str]) -> list[str]:
    """``python`` gets the app's paths (no local venv needed); a script runs as
    everywhere else (``apploader.script_command``)."""
    path = script_path(inst, script)
    if path is None:
        return [PYTHON, "-m", "silverlining.apploader", "python", str(inst), *args]
    return script_command(PYTHON, inst, str(path.relative_to(inst.resolve())), args)


def maintenance_env(config: AppConfig, services: list[str]) -> dict[str, str]:
    """The services' maintenance logins (``Service.run_env``): what ``silver run``
    connects with, so a migration gets through while the app holds all its own
    database connections."""
    from silverlining.services import get_service

    env: dict[str, str] = {}
    for name in services:
        env.update(get_service(name).run_env(config, paths))
    return env


def run_dir(app: str, token: str) -> Path:
    return paths.TMP / app / f"silver-run-{token}"


def prepare(args) -> dict:
    app, version = served(location_key(args.location))
    script_path(instance_dir(app, version), args.script)
    result = {"app": app, "version": version}
    if args.upload:
        deploy = pwd.getpwnam(paths.DEPLOY_USER)
        token = secrets.token_hex(8)
        root = make_dir(paths.UPLOADS / app, deploy.pw_uid, deploy.pw_gid, 0o700)
        prune_stale_runs(root)
        upload = make_dir(root / f"run-{token}", deploy.pw_uid, deploy.pw_gid, 0o700)
        result.update(token=token, upload_dir=str(upload), run_dir=str(run_dir(app, token)))
    if args.params_stdin:          # values for this run only: a root-only file until it runs
        changes = params.read_changes()
        values = params.merged(params.live_config(app, version), params.load(app), changes)
        token = secrets.token_hex(8)
        make_dir(paths.TMP / app, 0, app_ids(app)[1], 0o750)
        write_private(overrides_path(app, token), json.dumps(values).encode(), 0, 0o600)
        result["params"] = token
    return result


def overrides_path(app: str, token: str) -> Path:
    return paths.TMP / app / f"params-{token}.json"


def _take_overrides(app: str, version: str, token: str) -> dict[str, str]:
    """The parameter environment of this run (the file is gone once read)."""
    if not _TOKEN.match(token):
        raise NodeError(f"bad parameters id {token!r}")
    path = overrides_path(app, token)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise NodeError("the parameters of this run are missing") from None
    finally:
        path.unlink(missing_ok=True)
    return params.environment(params.live_config(app, version), values)


STALE_RUN = 3600


def prune_stale_runs(root: Path) -> None:
    """Upload dirs of ``silver run`` that never ran (interrupted during the upload)."""
    now = time.time()
    for path in root.glob("run-*"):
        try:
            if now - path.lstat().st_mtime > STALE_RUN:
                shutil.rmtree(path)
        except OSError:
            continue


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.chown(name, uid, gid, follow_symlinks=False)


def run(args) -> int:
    app, version = check_app(args.app), args.version
    version_number(version)
    inst = instance_dir(app, version)
    if not inst.is_dir():
        raise NodeError(f"{app}.{version} is not on this node any more")
    uid, gid = app_ids(app)
    config, services = app_services(app, version)
    env = {**read_env(instances.env_path(app, version)), **maintenance_env(config, services)}
    if args.params:
        env.update(_take_overrides(app, version, args.params))
    argv = script_argv(inst, args.script, args.args)
    files = None
    if args.upload:
        if not _TOKEN.match(args.upload):
            raise NodeError(f"bad upload id {args.upload!r}")
        files = run_dir(app, args.upload)
        make_dir(files.parent, 0, gid, 0o750)
        try:
            os.rename(paths.UPLOADS / app / f"run-{args.upload}", files)
        except OSError as exc:
            raise NodeError(f"the uploaded files of this run are missing: {exc.strerror}") \
                from None
        if args.user == "app":
            _chown_tree(files, uid, gid)
    as_app = args.user == "app"
    try:
        status = slices.run_in_slice(app, config.limits, uid if as_app else None,
                                     gid if as_app else None, argv, env=env,
                                     cwd=inst).returncode
    finally:
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)
    return 128 - status if status < 0 else status


def register(subparsers) -> None:
    p = subparsers.add_parser("run-prepare", help="check a script of a live app before running it")
    p.add_argument("location")
    p.add_argument("script")
    p.add_argument("--upload", action="store_true", help="make a directory for local files")
    p.add_argument("--params-stdin", action="store_true",
                   help="parameter values for this run, as JSON on stdin")
    p.set_defaults(handler=prepare)
    p = subparsers.add_parser("run", help="run a script of an app version in its environment")
    p.add_argument("--user", choices=("app", "root"), default="app")
    p.add_argument("--upload", metavar="ID", help="files uploaded after run-prepare --upload")
    p.add_argument("--params", metavar="ID", help="parameters stored by run-prepare")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("script")
    p.add_argument("args", nargs="...")
    p.set_defaults(handler=run, raw=True)
