"""``deploy``: turn an uploaded version into a live instance, or leave everything as it was.

Under the app's lock: build the instance directory (hard links to the
previous instance for unchanged files), give the app its user, packages,
service data and environment, start it on its own socket, run update_fetch,
pass the health gate, and only then switch the location to it. Any failure
before the switch stops the new instance and leaves routing untouched.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import traceback
from pathlib import Path

from silverlining import __version__
from silverlining.appconfig import AppConfig
from silverlining.errors import SilverError
from silverlining.node import apps, audit, instances, paths
from silverlining.node._env import read_env, write_env
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, app_lock, instance_dir, instance_name,
                                      load_routes, referenced)
from silverlining.node._switch import canonical_hostname, location_key, switch
from silverlining.node._util import (empty_dir, ensure_app_user, make_dir, run, say,
                                     version_number)
from silverlining.secret import ENV_VAR as SECRET_ENV
from silverlining.secret import derive


def build_instance(app: str, version: str, source: Path, basis: str | None, gid: int) -> Path:
    """Copy the upload into the instance dir, root-owned and group-readable by the app.

    Unchanged files become hard links to the previous instance (``--link-dest``).
    """
    target = instance_dir(app, version)
    if target.exists():
        raise NodeError(f"{target} already exists")
    argv = ["rsync", "-a", f"--chown=0:{gid}", "--chmod=go-w,o-rwx"]
    if basis:
        argv.append(f"--link-dest={instance_dir(app, basis)}")
    run(argv + [f"{source}/", f"{target}/"], what="building the instance directory")
    os.chown(target, 0, gid)
    os.chmod(target, 0o750)
    return target


def install_packages(packages: tuple[str, ...]) -> None:
    missing = []
    for pkg in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                              capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            missing.append(pkg)
    if not missing:
        return
    say(f"installing packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env,
        what="apt-get install", timeout=1800)


def install_services(config: AppConfig, clear: bool) -> dict[str, str]:
    """Each service ready for the app (emptied first with ``clear``); returns their
    CONFIG_* variables. A ready service costs a cheap check, nothing more."""
    from silverlining.services import get_service

    env: dict[str, str] = {}
    for name in sorted(config.services):
        service = get_service(name)
        try:
            (service.clear if clear else service.install)(config, paths)
            env.update(service.env(config, paths))
        except SilverError as exc:
            raise NodeError(f"service {name}: {exc.message}") from None
        say(f"service {name}: ready")
    return env


def write_app_secret(app: str, gid: int) -> Path:
    """``DATA/APP/secret``, derived from the node's secret (same for every version),
    readable by the app's group: what ``silverlining.secret.get_secret`` reads."""
    from silverlining.services.base import write_group_file

    path = paths.DATA / app / "secret"
    try:
        master = paths.SECRET.read_bytes().strip()
    except FileNotFoundError:
        raise NodeError(f"{paths.SECRET} is missing: run silver setup-node") from None
    text = derive(master, app) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_group_file(path, text, gid)
    return path


def instance_env(config: AppConfig, app: str, version: str, location: str,
                 service_env: dict[str, str], config_dir: Path | None) -> dict[str, str]:
    host, slash, rest = location.partition("/")
    env = {
        "SILVER_VERSION": f"silverlining/{__version__}",
        "SILVER_APP_NAME": app,
        "SILVER_INSTANCE_NAME": instance_name(app, version),
        "SILVER_CANONICAL_HOSTNAME": canonical_hostname(app, location),
        "SILVER_MATCH_PATH": slash + rest,
        "SILVER_LOGS": str(paths.APP_LOGS / app),
        "TEMP": str(paths.TMP / app),
        "PYTHONPATH": str(paths.LIB),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    if config_dir is not None:
        env["SILVER_APP_CONFIG"] = str(config_dir)
    elif config.config_default:
        env["SILVER_APP_CONFIG"] = str(instance_dir(app, version) / config.config_default)
    env.update(service_env)
    return env


def run_update_fetch(config: AppConfig, app: str, version: str, host: str, prefix: str,
                     uid: int, gid: int) -> None:
    """Internal requests and scripts that prepare the new version (tables, caches...)."""
    for entry in config.update_fetch:
        if entry.url:
            say(f"update_fetch: GET {entry.url}")
            try:
                status, body = instances.request(app, version, entry.url, host, prefix=prefix,
                                                 update=True, timeout=300)
            except OSError as exc:
                raise NodeError(f"update_fetch {entry.url} failed: {exc}") from None
            if status >= 400:
                snippet = body[:300].decode("utf-8", "replace").strip()
                raise NodeError(f"update_fetch {entry.url} answered {status}: {snippet}")
            continue
        say(f"update_fetch: script {entry.script} {' '.join(entry.args)}".rstrip())
        env = read_env(instances.env_path(app, version))
        proc = subprocess.run(
            ["/usr/bin/python3", "-m", "silverlining.apploader", "run",
             str(instance_dir(app, version)), entry.script or "", *entry.args],
            user=uid, group=gid, extra_groups=[], env=env, cwd=instance_dir(app, version),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
        for line in proc.stdout.splitlines():
            say(f"  {line}")
        if proc.returncode != 0:
            raise NodeError(f"update_fetch script {entry.script} exited with status "
                            f"{proc.returncode}")


def _deploy(app: str, version: str, location: str, clear: bool, backup: bool,
            state: AppState) -> dict:
    meta = state.get(version)
    upload = apps.upload_root(app) / version
    if not (upload / "app" / "app.ini").is_file():
        raise NodeError(f"nothing was uploaded for {instance_name(app, version)}")
    uid, gid = ensure_app_user(app)
    make_dir(paths.APPS / app, 0, gid, 0o750)
    make_dir(paths.APP_LOGS / app, uid, gid, 0o750)
    make_dir(paths.ENV / app, uid, gid, 0o700)
    make_dir(paths.DATA / app, 0, gid, 0o750)
    temp = make_dir(paths.TMP / app, uid, gid, 0o700)
    basis = state.newest_built(before=version)
    say(f"building {instance_name(app, version)}"
        + (f" (unchanged files linked to {basis})" if basis else ""))
    build_instance(app, version, upload / "app", basis, gid)
    try:
        config = dataclasses.replace(AppConfig.load(instance_dir(app, version)), app_name=app)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    config_dir = None
    if (upload / "config").is_dir():
        config_dir = paths.ENV / app / f"{version}.config"
        run(["rsync", "-a", "--delete", f"--chown={uid}:{gid}", "--chmod=go-rwx",
             f"{upload / 'config'}/", f"{config_dir}/"], what="installing the deployment config")
        os.chmod(config_dir, 0o700)
    install_packages(config.packages)
    if backup:
        from silverlining.node.data import backup_before
        meta["backup"] = backup_before(app, version, location)
        state.save()
    service_env = install_services(config, clear)
    service_env[SECRET_ENV] = str(write_app_secret(app, gid))
    empty_dir(temp)
    env = instance_env(config, app, version, location, service_env, config_dir)
    write_env(instances.env_path(app, version), env, uid, gid)
    meta.update(services=sorted(config.services), interface=config.interface,
                runner=config.runner.spec, health_check=config.health_check)
    state.save()                     # the routing reads the services from the record
    host, prefix = env["SILVER_CANONICAL_HOSTNAME"], env["SILVER_MATCH_PATH"]
    say(f"starting {instance_name(app, version)} ({config.interface}, "
        f"{'gunicorn' if config.interface == 'wsgi' else 'uvicorn'})")
    instances.install_unit(app, version, config.interface)
    try:
        instances.start(app, version)
        instances.wait_ready(app, version, host, prefix)
        run_update_fetch(config, app, version, host, prefix, uid, gid)
        instances.health_gate(app, version, host, config.health_check, prefix)
        previous = switch(app, version, location)
    except BaseException:
        if version not in referenced(load_routes(), app):    # never stop what now serves
            instances.stop_now(app, version)
        raise
    return {"app": app, "version": version, "location": location, "previous": previous,
            "instance": instance_name(app, version), "host": host}


def deploy(args) -> dict:
    app, version = args.app, args.version
    version_number(version)
    location = location_key(args.location)
    with app_lock(app, args.lock_wait):
        state = AppState.load(app)
        meta = state.get(version)
        if meta.get("status") != "reserved":
            raise NodeError(f"{instance_name(app, version)} was already deployed "
                            f"(status {meta.get('status')}); run silver update again")
        try:
            result = _deploy(app, version, location, args.clear, args.backup, state)
        except BaseException as exc:
            message = str(exc) if isinstance(exc, NodeError) else \
                f"internal error: {type(exc).__name__}: {exc}"
            if not isinstance(exc, NodeError):
                for line in traceback.format_exc().splitlines():
                    say(line)
            meta["status"] = "failed"
            meta["error"] = message
            state.save()
            audit.record("update", app, who=args.who, result="failed", version=version,
                         location=location, error=message)
            raise NodeError(message) from None
        meta["status"] = "ok"
        state.save()
        audit.record("update", app, who=args.who, version=version, location=location,
                     previous=result["previous"])
        apps.prune_uploads(app, version)
    return result


def register(subparsers) -> None:
    p = subparsers.add_parser("deploy", help="build, start, check and switch to an uploaded version")
    p.add_argument("app")
    p.add_argument("version")
    p.add_argument("--location", required=True)
    p.add_argument("--clear", action="store_true")
    p.add_argument("--backup", action="store_true",
                   help="keep the live version's data as remote:before-VERSION first")
    p.add_argument("--who")
    p.add_argument("--lock-wait", type=float, default=300.0)
    p.set_defaults(handler=deploy)
