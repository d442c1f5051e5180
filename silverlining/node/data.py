"""An app's service data: ``backup``, ``restore`` and ``clear`` (``silver backup/restore/clear``).

The data belongs to the app name, so each works on the app live at a
location with the services of that version. Archives are made and checked by
``silverlining.backups``; a ``remote:NAME`` backup stays in ``BACKUPS/APP``
(root only), any other is handed to the deploy user in an upload directory
for the CLI to fetch with rsync, and removed by ``backup-discard``. A
restore checks the whole archive before it touches anything, takes the app
off the air meanwhile, leaves it disabled if a service failed half-way, and
restarts the app's workers so they start from the restored data.

On a services node (``hosting``) the app is found by its location in the hosted
records, not the routes: its databases are here, its code and workers on the
members (the CLI takes those off the air and back). On a member, a service held
by a services node is backed up, restored and cleared there, not here.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import time
from pathlib import Path

from silverlining import protocol
from silverlining.appconfig import AppConfig
from silverlining.backups import (BackupError, check_name, default_name, remove_tree, verify,
                                  write_archive)
from silverlining.errors import SilverError
from silverlining.node import audit, disable, hosting, instances, jobs, paths
from silverlining.node._config import app_services
from silverlining.node._env import read_env
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, app_lock, load_routes, location_key, served
from silverlining.node._util import app_ids, check_app
from silverlining.node.base import make_dir, say
from silverlining.node.scripts import run_update_fetch
from silverlining.services import get_service

_TOKEN_LEN = 16


def backup_dir(app: str) -> Path:
    return make_dir(paths.BACKUPS / app, 0, 0, 0o700)


def staging_dir(app: str) -> Path:
    path = backup_dir(app) / f".staging-{secrets.token_hex(8)}"
    path.mkdir(mode=0o700)
    return path


def target(location: str) -> tuple[str, str, AppConfig, list[str], bool]:
    """The app at ``location`` (a location key) whose data a command works on: its
    name, live version, config and services, and whether this is its services node
    (version ``hosted``: the versions live on the members)."""
    try:
        app, version = served(location)
    except NodeError:
        app = hosting.at(location)
        if app is None:
            raise
        config, services = hosting.config(app)
        return app, "hosted", config, services, True
    config, services = app_services(app, version)
    return app, version, config, held_here(config, services), False


def held_here(config: AppConfig, services: list[str]) -> list[str]:
    """Those of ``services`` whose data is on this node (not on a services node)."""
    local = []
    for name in services:
        elsewhere = get_service(name).remote_node(config, paths)
        if elsewhere is None:
            local.append(name)
        else:
            say(f"{name}: held by services node {elsewhere}: its data is there")
    return local


def _call(service_name: str, method: str, *args) -> None:
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


def make_backup(app: str, version: str, config: AppConfig, services: list[str],
                dest: Path) -> dict:
    """Dump ``services`` of the app into the archive ``dest``; the caller holds the
    app's lock (no deploy changes the data meanwhile)."""
    staging = staging_dir(app)
    try:
        for service in services:
            started = time.monotonic()
            say(f"{service}: dumping")
            part = staging / service
            part.mkdir(mode=0o700)
            _call(service, "backup", config, paths, part)
            say(f"{service}: {_size(part)} in {time.monotonic() - started:.1f}s")
        say("packing the archive")
        archive = staging / "archive.tar.gz"
        manifest = write_archive(staging, archive, app, version, services)
        os.replace(archive, dest)
    finally:
        remove_tree(staging)
    return {"app": app, "version": version, "services": services, "time": manifest.time,
            "size": dest.stat().st_size, "path": str(dest)}


def backup_before(app: str, version: str, location: str) -> dict | None:
    """``silver update --backup``: the data as the version live at ``location`` left
    it, kept as ``remote:before-VERSION`` (caller holds the lock). None when no
    version of the app is live there or it has no services."""
    entry = load_routes().get(location) or {}
    if entry.get("app") != app or not entry.get("version"):
        say(f"backup: no version of {app} is live at {location}: nothing to back up")
        return None
    config, services = app_services(app, entry["version"])
    services = held_here(config, services)
    if not services:
        say(f"backup: {app}.{entry['version']} has no services: nothing to back up")
        return None
    name = f"before-{version}"
    make_backup(app, entry["version"], config, services, backup_dir(app) / f"{name}.tar.gz")
    say(f"backup: remote:{name} (the data of {app}.{entry['version']})")
    return {"name": name, "of": entry["version"]}


def backup(args: protocol.Backup) -> protocol.BackupResult:
    app, version, config, services, hosted = target(location_key(args.location))
    if args.remote:
        name = _backup_name(args.remote)
        final = backup_dir(app) / f"{name}.tar.gz"
        if final.exists():
            raise NodeError(f"backup remote:{name} of {app} already exists")
        if not services:
            raise NodeError(f"{app} has no services here: nothing to back up")
        with app_lock(app, args.lock_wait):
            result = {**make_backup(app, version, config, services, final), "name": name}
            if hosted and args.of_version:
                hosting.add_backup(app, name, args.of_version)
        audit.record("backup", app, who=args.who, version=version, name=f"remote:{args.remote}")
        return result
    if not services:
        raise NodeError(f"{app} has no services: nothing to back up")
    deploy = pwd.getpwnam(paths.DEPLOY_USER)
    token = secrets.token_hex(_TOKEN_LEN // 2)
    root = make_dir(paths.UPLOADS / app, deploy.pw_uid, deploy.pw_gid, 0o700)
    out = make_dir(root / f"backup-{token}", deploy.pw_uid, deploy.pw_gid, 0o700)
    name = default_name(app)
    try:
        with app_lock(app, args.lock_wait):
            result = make_backup(app, version, config, services, out / f"{name}.tar.gz")
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    os.chown(result["path"], deploy.pw_uid, deploy.pw_gid)
    audit.record("backup", app, who=args.who, version=version, name="download")
    return {**result, "name": name, "token": token}


def _token_dir(app: str, kind: str, token: str) -> Path:
    check_app(app)
    if len(token) != _TOKEN_LEN or not all(c in "0123456789abcdef" for c in token):
        raise NodeError(f"bad token {token!r}")
    return paths.UPLOADS / app / f"{kind}-{token}"


def discard(args: protocol.BackupDiscard) -> protocol.Nothing:
    shutil.rmtree(_token_dir(args.app, "backup", args.token), ignore_errors=True)
    return {}


def restore_prepare(args: protocol.RestorePrepare) -> protocol.RestorePrepareResult:
    """An upload directory the deploy user can rsync a local archive into."""
    app = target(location_key(args.location))[0]
    deploy = pwd.getpwnam(paths.DEPLOY_USER)
    token = secrets.token_hex(_TOKEN_LEN // 2)
    root = make_dir(paths.UPLOADS / app, deploy.pw_uid, deploy.pw_gid, 0o700)
    upload = make_dir(root / f"restore-{token}", deploy.pw_uid, deploy.pw_gid, 0o700)
    return {"app": app, "token": token, "upload_dir": str(upload)}


def check_archive(app: str, archive: Path, services: list[str], force_app: bool,
                  staging: Path):
    """The archive verified and unpacked into ``staging``, and fit for this app:
    nothing has been touched yet if this raises."""
    say("checking the archive")
    try:
        manifest = verify(archive, extract_to=staging)
    except BackupError as exc:
        raise NodeError(exc.message.replace(str(archive), "backup")) from None
    if manifest.app != app and not force_app:
        raise NodeError(f"this is a backup of {manifest.app}, not of {app} "
                        "(--force-app to restore it anyway)")
    missing = [s for s in services if s not in manifest.services]
    if missing:
        raise NodeError(f"the backup has no data for {', '.join(missing)} "
                        f"(it holds {', '.join(manifest.services) or 'nothing'})")
    for extra in sorted(set(manifest.services) - set(services)):
        say(f"{extra}: in the backup but not used by {app}: skipped")
    return manifest


def restore_services(app: str, config: AppConfig, services: list[str], staging: Path,
                     hosted: bool = False) -> None:
    """Replace each service's data with the checked parts (caller holds the lock and
    has disabled the app); a failure leaves the app disabled, and says so (on a
    services node the app runs elsewhere: the CLI says what its members do)."""
    for service in services:
        say(f"{service}: restoring")
        try:
            _call(service, "restore", config, paths, staging / service)
        except NodeError as exc:
            if hosted:
                raise
            raise NodeError(f"{exc}; {app} is left disabled: fix this and restore "
                            f"again, or 'silver enable'") from None


def set_disabled(app: str, disabled: bool, who: str | None, lock_wait: float) -> None:
    disable.set_disabled(protocol.Disable(app=app, who=who, lock_wait=lock_wait), disabled)


def restore(args: protocol.Restore) -> protocol.RestoreResult:
    app, version, config, services, hosted = target(location_key(args.location))
    remote = args.remote
    if args.data_of:
        remote = hosting.backup_of(app, args.data_of)
    if remote:
        archive = paths.BACKUPS / app / f"{_backup_name(remote)}.tar.gz"
        if not archive.is_file():
            raise NodeError(f"no backup remote:{remote} of {app} on this node")
        upload = None
    else:
        upload = _token_dir(app, "restore", args.upload)
        found = [p for p in upload.iterdir() if p.is_file()] if upload.is_dir() else []
        if len(found) != 1:
            raise NodeError("the uploaded archive is missing")
        archive = found[0]
    if not services:
        raise NodeError(f"{app} has no services here: nothing to restore")
    staging = staging_dir(app)
    try:
        manifest = check_archive(app, archive, services, args.force_app, staging)
        # on a services node the app runs elsewhere: the CLI disables its members
        was_disabled = hosted or AppState.load(app).disabled
        if not was_disabled:
            set_disabled(app, True, args.who, args.lock_wait)
        with app_lock(app, args.lock_wait):
            restore_services(app, config, services, staging, hosted)
            if not hosted:
                jobs.restart_workers(app)
        if not was_disabled:
            set_disabled(app, False, args.who, args.lock_wait)
        audit.record("restore", app, who=args.who, version=version,
                     backup_app=manifest.app, backup_time=manifest.time)
    finally:
        remove_tree(staging)
        if upload is not None:
            shutil.rmtree(upload, ignore_errors=True)
    return {"app": app, "version": version, "services": services,
            "backup": {"app": manifest.app, "version": manifest.version,
                       "time": manifest.time}}


def clear(args: protocol.Clear) -> protocol.ClearResult:
    """Empty every service of the app, then run its update_fetch on the live version
    (on a services node: the CLI runs it on a member afterwards)."""
    app, version, config, services, hosted = target(location_key(args.location))
    with app_lock(app, args.lock_wait):
        for service in services:
            _call(service, "clear", config, paths)
        if hosted:
            audit.record("clear", app, who=args.who, version=version)
            return {"app": app, "version": version, "services": services}
        uid, gid = app_ids(app)
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
