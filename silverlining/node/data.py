"""An app's service data: ``backup``, ``restore`` and ``clear`` (``silver backup/restore/clear``).

The data belongs to the app name, so each works on the app live at a
location with the services of that version. Archives are made and checked by
``silverlining.backups``; a ``remote:NAME`` backup stays in ``BACKUPS/APP``
(root only), any other is handed to the deploy user in an upload directory
for the CLI to fetch with rsync, and removed by ``backup-discard``. A
restore checks the whole archive before it touches anything, takes the app
off the air meanwhile, and leaves it disabled if a service failed half-way.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import secrets
import shutil
import time
from argparse import Namespace
from pathlib import Path

from silverlining.appconfig import AppConfig
from silverlining.backups import (BackupError, check_name, default_name, remove_tree, verify,
                                  write_archive)
from silverlining.errors import SilverError
from silverlining.node import audit, instances, paths
from silverlining.node._env import read_env
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, app_lock, instance_dir, served
from silverlining.node._switch import location_key
from silverlining.node._util import app_ids, check_app, make_dir, say

_TOKEN_LEN = 16


def app_services(app: str, version: str) -> tuple[AppConfig, list[str]]:
    """The live version's config and its services, one per database (postgis covers
    postgresql: they are the same database)."""
    try:
        config = dataclasses.replace(AppConfig.load(instance_dir(app, version)), app_name=app)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    names = sorted(config.services)
    if "postgis" in names and "postgresql" in names:
        names.remove("postgresql")
    return config, names


def backup_dir(app: str) -> Path:
    return make_dir(paths.BACKUPS / app, 0, 0, 0o700)


def staging_dir(app: str) -> Path:
    path = backup_dir(app) / f".staging-{secrets.token_hex(8)}"
    path.mkdir(mode=0o700)
    return path


def _call(service_name: str, method: str, *args) -> None:
    from silverlining.services import get_service
    try:
        getattr(get_service(service_name), method)(*args)
    except SilverError as exc:
        raise NodeError(f"service {service_name}: {exc.message}") from None


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB" if total >= 100_000 else f"{total} bytes"


def _backup_name(name: str) -> str:
    try:
        return check_name(name)
    except SilverError as exc:
        raise NodeError(exc.message) from None


def backup(args: Namespace) -> dict:
    app, version = served(location_key(args.location))
    name = _backup_name(args.remote) if args.remote else default_name(app)
    if args.remote and (paths.BACKUPS / app / f"{name}.tar.gz").exists():
        raise NodeError(f"backup remote:{name} of {app} already exists")
    config, services = app_services(app, version)
    if not services:
        raise NodeError(f"{app} has no services: nothing to back up")
    staging = staging_dir(app)
    try:
        with app_lock(app, args.lock_wait):
            for service in services:
                started = time.monotonic()
                say(f"{service}: dumping")
                part = staging / service
                part.mkdir(mode=0o700)
                _call(service, "backup", config, paths, part)
                say(f"{service}: {_size(part)} in {time.monotonic() - started:.1f}s")
        archive = staging / "archive.tar.gz"
        say("packing the archive")
        manifest = write_archive(staging, archive, app, version, services)
        size = archive.stat().st_size
        if args.remote:
            final = paths.BACKUPS / app / f"{name}.tar.gz"
            os.replace(archive, final)
            audit.record("backup", app, who=args.who, version=version, name=f"remote:{name}")
            return {"app": app, "version": version, "name": name, "size": size,
                    "path": str(final), "services": services, "time": manifest.time}
        deploy = pwd.getpwnam(paths.DEPLOY_USER)
        token = secrets.token_hex(_TOKEN_LEN // 2)
        root = make_dir(paths.UPLOADS / app, deploy.pw_uid, deploy.pw_gid, 0o700)
        out = make_dir(root / f"backup-{token}", deploy.pw_uid, deploy.pw_gid, 0o700)
        final = out / f"{name}.tar.gz"
        os.replace(archive, final)
        os.chown(final, deploy.pw_uid, deploy.pw_gid)
        audit.record("backup", app, who=args.who, version=version, name="download")
        return {"app": app, "version": version, "name": name, "size": size,
                "path": str(final), "token": token, "services": services,
                "time": manifest.time}
    finally:
        remove_tree(staging)


def _token_dir(app: str, kind: str, token: str) -> Path:
    check_app(app)
    if len(token) != _TOKEN_LEN or not all(c in "0123456789abcdef" for c in token):
        raise NodeError(f"bad token {token!r}")
    return paths.UPLOADS / app / f"{kind}-{token}"


def discard(args: Namespace) -> dict:
    shutil.rmtree(_token_dir(args.app, "backup", args.token), ignore_errors=True)
    return {}


def restore_prepare(args: Namespace) -> dict:
    """An upload directory the deploy user can rsync a local archive into."""
    app, _ = served(location_key(args.location))
    deploy = pwd.getpwnam(paths.DEPLOY_USER)
    token = secrets.token_hex(_TOKEN_LEN // 2)
    root = make_dir(paths.UPLOADS / app, deploy.pw_uid, deploy.pw_gid, 0o700)
    upload = make_dir(root / f"restore-{token}", deploy.pw_uid, deploy.pw_gid, 0o700)
    return {"app": app, "token": token, "upload_dir": str(upload)}


def _set_disabled(app: str, disabled: bool, who: str | None, lock_wait: float) -> None:
    from silverlining.node.disable import set_disabled
    set_disabled(Namespace(app=app, location=None, who=who, lock_wait=lock_wait), disabled)


def restore(args: Namespace) -> dict:
    app, version = served(location_key(args.location))
    if args.remote:
        archive = paths.BACKUPS / app / f"{_backup_name(args.remote)}.tar.gz"
        if not archive.is_file():
            raise NodeError(f"no backup remote:{args.remote} of {app} on this node")
        upload = None
    else:
        upload = _token_dir(app, "restore", args.upload)
        found = [p for p in upload.iterdir() if p.is_file()] if upload.is_dir() else []
        if len(found) != 1:
            raise NodeError("the uploaded archive is missing")
        archive = found[0]
    config, services = app_services(app, version)
    staging = staging_dir(app)
    try:
        say("checking the archive")
        try:
            manifest = verify(archive, extract_to=staging)
        except BackupError as exc:
            raise NodeError(exc.message.replace(str(archive), "backup")) from None
        if manifest.app != app and not args.force_app:
            raise NodeError(f"this is a backup of {manifest.app}, not of {app} "
                            "(--force-app to restore it anyway)")
        missing = [s for s in services if s not in manifest.services]
        if missing:
            raise NodeError(f"the backup has no data for {', '.join(missing)} "
                            f"(it holds {', '.join(manifest.services) or 'nothing'})")
        for extra in sorted(set(manifest.services) - set(services)):
            say(f"{extra}: in the backup but not used by {app}.{version}: skipped")
        was_disabled = AppState.load(app).disabled
        if not was_disabled:
            _set_disabled(app, True, args.who, args.lock_wait)
        with app_lock(app, args.lock_wait):
            for service in services:
                say(f"{service}: restoring")
                try:
                    _call(service, "restore", config, paths, staging / service)
                except NodeError as exc:
                    raise NodeError(f"{exc}; {app} is left disabled: fix this and restore "
                                    f"again, or 'silver enable'") from None
        if not was_disabled:
            _set_disabled(app, False, args.who, args.lock_wait)
        audit.record("restore", app, who=args.who, version=version,
                     backup_app=manifest.app, backup_time=manifest.time)
    finally:
        remove_tree(staging)
        if upload is not None:
            shutil.rmtree(upload, ignore_errors=True)
    return {"app": app, "version": version, "services": services,
            "backup": {"app": manifest.app, "version": manifest.version,
                       "time": manifest.time}}


def clear(args: Namespace) -> dict:
    """Empty every service of the app, then run its update_fetch on the live version."""
    from silverlining.node.deploy import run_update_fetch
    app, version = served(location_key(args.location))
    config, services = app_services(app, version)
    uid, gid = app_ids(app)
    with app_lock(app, args.lock_wait):
        for service in services:
            _call(service, "clear", config, paths)
        env = read_env(instances.env_path(app, version))
        run_update_fetch(config, app, version, env["SILVER_CANONICAL_HOSTNAME"],
                         env["SILVER_MATCH_PATH"], uid, gid)
    audit.record("clear", app, who=args.who, version=version)
    return {"app": app, "version": version, "services": services}


def list_backups(app: str) -> list[dict]:
    """The ``remote:`` backups kept for an app (name, size, time)."""
    root = paths.BACKUPS / app
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.glob("*.tar.gz")):
        st = path.stat()
        out.append({"name": path.name[:-len(".tar.gz")], "size": st.st_size,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))})
    return out


def register(subparsers) -> None:
    p = subparsers.add_parser("backup", help="dump the services of the app at a location")
    p.add_argument("location")
    p.add_argument("--remote", metavar="NAME", help="keep it on the node as remote:NAME")
    p.add_argument("--who")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=backup)
    p = subparsers.add_parser("backup-discard", help="remove a fetched backup's copy")
    p.add_argument("app")
    p.add_argument("token")
    p.set_defaults(handler=discard)
    p = subparsers.add_parser("restore-prepare", help="an upload dir for an archive to restore")
    p.add_argument("location")
    p.set_defaults(handler=restore_prepare)
    p = subparsers.add_parser("restore", help="replace the app's data with a checked backup")
    p.add_argument("location")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--upload", metavar="TOKEN")
    src.add_argument("--remote", metavar="NAME")
    p.add_argument("--force-app", action="store_true")
    p.add_argument("--who")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=restore)
    p = subparsers.add_parser("clear", help="empty the app's service data, then update_fetch")
    p.add_argument("location")
    p.add_argument("--who")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=clear)
