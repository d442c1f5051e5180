"""``deploy``: turn an uploaded version into a live instance, or leave everything as it was.

Under the app's lock: build the instance directory (hard links to the
previous instance for unchanged files), give the app its user, packages,
service data and environment, start it on its own socket, run update_fetch,
pass the health gate, and only then switch the location to it. Any failure
before the switch stops the new instance and leaves routing untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from silverlining import __version__, protocol
from silverlining.appconfig import AppConfig
from silverlining.errors import SilverError
from silverlining.node import (apps, audit, certs, deps, instances, jobs, params, paths, routing,
                               slices)
from silverlining.node._env import write_env
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, app_lock, canonical_hostname, instance_dir,
                                      instance_name, load_routes, location_key, referenced,
                                      served)
from silverlining.node._switch import switch
from silverlining.node._util import ensure_app_user, version_number
from silverlining.node.base import (apt_install, client_gone, make_dir, run, say,
                                    watch_client_stdin, write_atomic)
from silverlining.node.data import backup_before
from silverlining.node.scripts import run_update_fetch
from silverlining.secret import ENV_VAR as SECRET_ENV
from silverlining.secret import derive
from silverlining.services import get_service


def build_instance(app: str, version: str, source: Path, basis: str | None, gid: int) -> Path:
    """Copy the upload into the instance dir, root-owned and readable by the app's group.

    Unchanged files become hard links to the previous instance (``--link-dest``).
    Symlinks that point outside the tree and special files (FIFOs, devices) are
    not copied. Only ``static/`` is readable by others (nginx is "other" for
    every app: it must not read any app's code), copied in its own pass so its
    mode never differs from the basis and hard links keep working.
    """
    target = instance_dir(app, version)
    if target.exists():
        raise NodeError(f"{target} already exists")
    static = source / "static"
    if static.is_symlink() or (static.exists() and not static.is_dir()):
        raise NodeError("static is not a directory in the upload: make it a plain directory")
    # --modify-window=-1: times to the nanosecond (rsync 3.1.3+, every node has it), else
    # a file saved again with the same size within a second would be linked unchanged
    base = ["rsync", "-a", "--no-D", "--safe-links", "--modify-window=-1", f"--chown=0:{gid}"]
    passes = [(["--chmod=go-w,o-rwx", "--exclude=/static"], source, target, "")]
    if static.is_dir():
        passes.append((["--chmod=go-w,o+rX"], static, target / "static", "/static"))
    argvs = [base + extra + ([f"--link-dest={instance_dir(app, basis)}{sub}"] if basis else [])
             + [f"{src}/", f"{dest}/"] for extra, src, dest, sub in passes]
    # the passes write apart (static/ is excluded from the first) and run at once: on
    # a redeploy they are mostly two rsync starts; root's alone until both are done
    target.mkdir(mode=0o700)
    with ThreadPoolExecutor(len(argvs)) as pool:
        for done in [pool.submit(run, argv, what="building the instance directory")
                     for argv in argvs]:
            done.result()
    os.chown(target, 0, gid)
    os.chmod(target, 0o751)
    return target


def install_services(config: AppConfig, clear: bool) -> dict[str, str]:
    """Each service ready for the app (emptied first with ``clear``); returns their
    CONFIG_* variables. A ready service costs a cheap check, nothing more."""
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
    path = paths.DATA / app / "secret"
    try:
        master = paths.SECRET.read_bytes().strip()
    except FileNotFoundError:
        raise NodeError(f"{paths.SECRET} is missing: run silver setup-node") from None
    text = derive(master, app) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text, mode=0o640, gid=gid)
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
        "TEMP": str(instances.temp_dir(app, version)),
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


def _deploy(app: str, version: str, location: str, clear: bool, state: AppState,
            changes: dict, backup: bool = False, deps_set: str | None = None,
            deps_sent: bool = False) -> dict:
    meta = state.get(version)
    upload = apps.upload_root(app) / version
    if not (upload / "app" / "app.ini").is_file():
        raise NodeError(f"nothing was uploaded for {instance_name(app, version)}")
    uid, gid = ensure_app_user(app)
    # Root-owned, so nothing root later writes or trusts in them can be swapped for
    # a link by the app; 0751 where nginx must pass through to static/ and writable_root.
    make_dir(paths.APPS / app, 0, gid, 0o751)
    make_dir(paths.APP_LOGS / app, uid, gid, 0o750)
    make_dir(paths.ENV / app, 0, gid, 0o750)
    make_dir(paths.DATA / app, 0, gid, 0o751)
    make_dir(paths.TMP / app, 0, gid, 0o750)
    make_dir(instances.temp_dir(app, version), uid, gid, 0o700)
    instances.ensure_socket_dir(app, uid)
    jobs.upgrade_kept(app, state.versions, gid)
    basis = state.newest_built(before=version)
    say(f"building {instance_name(app, version)}"
        + (f" (unchanged files linked to {basis})" if basis else ""))
    build_instance(app, version, upload / "app", basis, gid)
    try:
        config = dataclasses.replace(AppConfig.load(instance_dir(app, version)), app_name=app)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    web = config.runner is not None
    if web != (not location.startswith("@")):
        raise NodeError(f"{location}: an app with a runner is deployed to a HOST[/PATH] "
                        "location, one without to @APP")
    config_dir = None
    if (upload / "config").is_dir():
        config_dir = paths.ENV / app / f"{version}.config"
        run(["rsync", "-a", "--delete", "--no-D", "--safe-links", f"--chown=0:{gid}",
             "--chmod=D0750,F0640", f"{upload / 'config'}/", f"{config_dir}/"],
            what="installing the deployment config")
        os.chmod(config_dir, 0o750)
    stored = params.load(app)
    values = params.merged(config, stored, changes)
    param_env = params.environment(config, values)
    apt_install(config.packages, why="app.ini packages")
    if backup:
        meta["backup"] = backup_before(app, version, location)
        state.save()
    service_env = install_services(config, clear)
    service_env[SECRET_ENV] = str(write_app_secret(app, gid))
    meta["services"] = sorted(config.services)      # what nginx's route reads
    state.save()
    with _routed_ahead(app, version, location, web) as routed:
        env = instance_env(config, app, version, location, service_env, config_dir)
        env.update(param_env)
        if deps_set:
            if deps_sent:       # the set came next to the upload; the steps above overlapped it
                params.wait_line(params.DEPS_INSTALLED, f"dependency set {deps_set} did not "
                                 "arrive: nothing was deployed")
            env[deps.ENV_VAR] = str(deps.installed(deps_set))
            meta["deps"] = deps.summary(deps_set)
        write_env(instances.env_path(app, version), env, gid)
        ports = jobs.install_units(app, version, config)
        meta.update(interface=config.interface, web=web,
                    runner=config.runner.spec if web else None, health_check=config.health_check,
                    start_timeout=config.start_timeout, memory_max=config.memory_max,
                    limits=dataclasses.asdict(config.limits),
                    processes={n: p.instances for n, p in config.processes.items()},
                    params_changed=sorted(n for n in values.keys() | stored.keys()
                                          if values.get(n) != stored.get(n)),
                    worker_checks={key: [port, config.processes[key.split("@")[0]].health_check]
                                   for key, port in ports.items()})
        state.save()                     # the routing and the status pages read the record
        host, prefix = env["SILVER_CANONICAL_HOSTNAME"], env["SILVER_MATCH_PATH"]
        if slices.install(app, config.limits):
            instances.load_units(slices.slice_name(app))
        if web:
            say(f"starting {instance_name(app, version)} ({config.interface}, "
                f"{'gunicorn' if config.interface == 'wsgi' else 'uvicorn'})")
            instances.install_unit(app, version, config.interface, config.memory_max,
                                   config.limits, reload_all=bool(config.processes or config.crons))
        else:
            instances.daemon_reload()
        try:
            if web:
                instances.start_new(app, version)
                instances.wait_ready(app, version, host, prefix, timeout=config.start_timeout)
            run_update_fetch(config, app, version, host, prefix, uid, gid)
            if web:
                instances.health_gate(app, version, host, config.health_check, prefix)
            jobs.start_workers(app, version, config, ports, config.start_timeout)
            if client_gone():
                raise NodeError(f"the client disconnected before the switch: "
                                f"{instance_name(app, version)} was stopped, the old version "
                                "keeps serving")
            routed()
            previous = switch(app, version, location)
        except BaseException:
            if version not in referenced(load_routes(), app):    # never stop what now serves
                instances.stop_now(app, version)
                jobs.sync(app)
            raise
        if values != stored:        # kept only once a version using them is live
            params.save(app, values, gid)
        return {"app": app, "version": version, "location": location, "previous": previous,
                "instance": instance_name(app, version), "host": host}


@contextlib.contextmanager
def _routed_ahead(app: str, version: str, location: str, web: bool
                  ) -> Iterator[Callable[[], object]]:
    """``routing.preroute`` in a thread of its own while the version starts; the
    caller calls what this yields before its switch (the route is then in place, or
    its error raised). A deploy that fails takes the route back."""
    if not web:
        yield lambda: None
        return
    pool = ThreadPoolExecutor(1)
    routing_ahead = pool.submit(routing.preroute, app, version, location)
    pool.shutdown(wait=False)
    try:
        yield routing_ahead.result
    except BaseException:
        try:
            routed = routing_ahead.result()
        except Exception:       # refused: nginx kept the routing it had
            routed = False
        if routed:
            try:
                routing.reapply()
            except Exception as exc:
                say(f"nginx still routes {location} (502) until the node's routing changes "
                    f"again: taking its route back failed: {exc}")
        raise


def deploy(args: protocol.Deploy) -> protocol.DeployResult:
    version_number(args.version)
    changes = params.read_changes(args.wait_upload) if args.params_stdin else {}
    if args.wait_upload:
        watch_client_stdin()
    return run_deploy(args.app, args.version, location_key(args.location), args.clear,
                      changes, args.who, args.lock_wait, args.backup, args.fingerprint,
                      args.deps, args.deps_sent)


def run_deploy(app: str, version: str, location: str, clear: bool, changes: dict,
               who: str | None, lock_wait: float, backup: bool = False,
               fingerprint: str | None = None, deps_set: str | None = None,
               deps_sent: bool = False) -> dict:
    """Deploy a reserved, uploaded version under the app's lock; record how it went
    (with the upload's ``fingerprint``, which lets the next identical upload stop early)."""
    with app_lock(app, lock_wait):
        state = AppState.load(app)
        meta = state.get(version)
        if meta.get("status") != "reserved":
            raise NodeError(f"{instance_name(app, version)} was already deployed "
                            f"(status {meta.get('status')}); run silver update again")
        newer = [v for v in state.ordered() if version_number(v) > version_number(version)
                 and state.versions[v].get("status") == "ok"]
        if newer:
            meta.update(status="failed", error=f"superseded by {newer[-1]}")
            state.save()
            raise NodeError(f"{app}.{newer[-1]} was deployed while {version} was uploading: "
                            f"the newer version stays live; run silver update again to "
                            "deploy these files")
        try:
            result = _deploy(app, version, location, clear, state, changes, backup, deps_set,
                             deps_sent)
        except BaseException as exc:
            message = str(exc) if isinstance(exc, NodeError) else \
                f"internal error: {type(exc).__name__}: {exc}"
            if not isinstance(exc, NodeError):
                for line in traceback.format_exc().splitlines():
                    say(line)
            meta["status"] = "failed"
            meta["error"] = message
            state.save()
            audit.record("update", app, who=who, result="failed", version=version,
                         location=location, error=message)
            raise NodeError(message) from None
        meta["status"] = "ok"
        if fingerprint:
            meta["fingerprint"] = fingerprint
        state.save()
        audit.record("update", app, who=who, version=version, location=location,
                     previous=result["previous"])
        apps.prune_uploads(app, version)
    return result


def redeploy(args: protocol.Redeploy) -> protocol.DeployResult:
    """A new version with the live version's files and new parameter values: the same
    build, gate and switch as an upload (``silver params --set``), nothing uploaded."""
    location = location_key(args.location)
    app, live = served(location)
    changes = params.read_changes()
    why = "parameters changed on" if changes.get("set") or changes.get("unset") else \
        "restart of"
    reserved = apps.reserve(protocol.Reserve(app=app, who=args.who, lock_wait=args.lock_wait,
                                             source=f"{why} {instance_name(app, live)}"))
    certs.keep_mode(app, live, reserved["version"], args.lock_wait)
    upload = Path(reserved["upload_dir"])
    deploy_user = pwd.getpwnam(paths.DEPLOY_USER)
    sources = [(instance_dir(app, live), upload / "app")]
    if (paths.ENV / app / f"{live}.config").is_dir():
        sources.append((paths.ENV / app / f"{live}.config", upload / "config"))
    for src, dest in sources:     # owned by the deploy user, like an upload (the next basis)
        run(["rsync", "-a", "--no-D", f"--chown={deploy_user.pw_uid}:{deploy_user.pw_gid}",
             "--chmod=u+rwX", f"{src}/", f"{dest}/"], what="copying the live version")
    kept = AppState.load(app).get(live)
    return run_deploy(app, reserved["version"], location, False, changes, args.who,
                      args.lock_wait, fingerprint=kept.get("fingerprint"),
                      deps_set=(kept.get("deps") or {}).get("fingerprint"))
