"""``activate`` (point a location at a kept version, e.g. rollback) and ``deactivate``.

Activation starts the kept instance if needed and puts it through the same
health gate as a deploy before any request is routed to it: rollback takes
seconds and uploads nothing.
"""

from __future__ import annotations

import re

from silverlining import protocol
from silverlining.node import audit, data, haproxy, instances, jobs
from silverlining.node._config import app_services
from silverlining.node._errors import NodeError
from silverlining.node._state import (AppState, app_lock, canonical_hostname, instance_dir,
                                      load_routes, location_key)
from silverlining.node._switch import retire, switch, unroute
from silverlining.node._util import app_ids

_SPEC = re.compile(r"^(?:(?P<app>[a-z0-9][a-z0-9_-]*)\.)?v?(?P<number>[1-9][0-9]*)\Z")


def resolve(location: str, spec: str) -> tuple[str, str]:
    """(app, version) for ``prev``, ``vN``, ``N`` or ``APP.vN`` at ``location``."""
    entry = load_routes().get(location) or {}
    if spec == "prev":
        if not entry.get("prev"):
            raise NodeError(f"no previous version is recorded for {location}")
        return entry["app"], entry["prev"]
    m = _SPEC.match(spec)
    if not m:
        raise NodeError(f"bad version {spec!r}: use prev, vN or APP.vN")
    app = m.group("app") or entry.get("app")
    if not app:
        raise NodeError(f"nothing is served at {location}: name the version as APP.vN")
    return app, f"v{m.group('number')}"


def _check_and_start(args: protocol.Activate, app: str, version: str, location: str, host: str,
                     meta: dict) -> None:
    """The kept instance runs and passes the health gate, or is stopped again: at once if
    it was not running, or after its drain if it was (``start_kept`` cancelled that stop)
    and no location serves it."""
    was_running = False
    try:
        was_running = instances.start_kept(app, version)
        _, slash, rest = location.partition("/")
        prefix = slash + rest
        instances.wait_ready(app, version, host, prefix,
                             timeout=meta.get("start_timeout", instances.START_TIMEOUT))
        instances.health_gate(app, version, host, meta.get("health_check"), prefix)
    except BaseException as exc:
        if not was_running:
            instances.stop_now(app, version)
        else:
            retire(load_routes(), {(app, version)})
        audit.record("activate", app, who=args.who, result="failed", version=version,
                     location=location, error=str(exc))
        raise


def data_backup_for(app: str, version: str) -> str:
    """The newest ``update --backup`` taken of the data ``version`` left behind."""
    state = AppState.load(app)
    for later in reversed(state.ordered()):
        recorded = state.versions[later].get("backup") or {}
        if recorded.get("of") == version:
            return recorded["name"]
    raise NodeError(f"no backup holds the data of {app}.{version} (take one with "
                    "silver update --backup)")


def activate(args: protocol.Activate) -> protocol.ActivateResult:
    haproxy.refuse_apps()
    location = location_key(args.location)
    app, version = resolve(location, args.version)
    if not args.restore_data:
        return _activate(args, app, version, location)
    name = data_backup_for(app, version)
    archive = data.backup_dir(app) / f"{name}.tar.gz"
    config, services = app_services(app, version)
    staging = data.staging_dir(app)
    try:
        data.check_archive(app, archive, services, False, staging)
        was_disabled = AppState.load(app).disabled
        if not was_disabled:
            data.set_disabled(app, True, args.who, args.lock_wait)
        try:
            result = _activate(args, app, version, location,
                               before=lambda: data.restore_services(app, config, services,
                                                                    staging))
        except NodeError as exc:
            if "left disabled" in str(exc):
                raise
            raise NodeError(f"{exc}; {app} is left disabled (its data was restored): "
                            "fix this and activate again, or 'silver enable'") from None
        if not was_disabled:
            data.set_disabled(app, False, args.who, args.lock_wait)
    finally:
        data.remove_tree(staging)
    audit.record("restore", app, who=args.who, version=version, backup=f"remote:{name}")
    return {**result, "restored": f"remote:{name}"}


def _activate(args: protocol.Activate, app: str, version: str, location: str,
              before=None) -> protocol.ActivateResult:
    """Switch ``location`` to ``version`` under the app's lock; ``before`` runs first
    under that lock (the data restore of ``--restore-data``)."""
    with app_lock(app, args.lock_wait):
        meta = AppState.load(app).get(version)
        if meta.get("status") != "ok":
            raise NodeError(f"{app}.{version} cannot be activated: its deploy did not "
                            f"succeed (status {meta.get('status')})")
        if not instance_dir(app, version).is_dir():
            raise NodeError(f"{app}.{version} cannot be activated: its files were removed")
        jobs.upgrade_kept(app, {version: meta}, app_ids(app)[1])
        if before is not None:
            before()
        current = (load_routes().get(location) or {})
        if current.get("app") == app and current.get("version") == version:
            return {"app": app, "version": version, "location": location, "previous": version,
                    "unchanged": True}
        host = canonical_hostname(app, location)
        if instances.has_web(app, version):      # an @APP version brings back only its jobs
            _check_and_start(args, app, version, location, host, meta)
        previous = switch(app, version, location)
        audit.record("activate", app, who=args.who, version=version, location=location,
                     previous=previous)
    return {"app": app, "version": version, "location": location, "previous": previous}


def deactivate(args: protocol.Deactivate) -> protocol.DeactivateResult:
    locations = [location_key(loc) for loc in args.locations]
    removed = unroute(locations, args.keep_prev)
    for location, entry in removed:
        audit.record("deactivate", entry["app"], who=args.who, version=entry["version"],
                     location=location, keep_prev=args.keep_prev)
    return {"removed": [{"location": loc, "app": e["app"], "version": e["version"]}
                        for loc, e in removed]}
