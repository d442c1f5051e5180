"""Services nodes (docs/services-node.md): databases held for a location's members.

On the services node, ``services-host`` keeps what it serves in ``HOSTED/APP``: the
app's app.ini (its services and limits) and ``hosted.json`` (the location, the
members admitted by name and address, the backups ``update --backup`` took). It
sets each database up as on one node, with the passwords the client derives and
the server certificate the client's CA signed, then admits every hosted app's
members and nobody else: each service's own access list (pg_hba.conf, MariaDB's
host-limited accounts; Redis: each app's own instance and TLS port) and the
node firewall (``FIREWALL_D/services.nft``, loaded after the firewall's own rules,
so a reboot keeps it). The data commands (``data.py``) find a hosted app by its
location here.

On a member, ``services-use`` records how to reach the services node (the
credentials, marked ``remote``) and the CA, readable by the app alone.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import sys
from pathlib import Path
from types import SimpleNamespace

from silverlining import protocol
from silverlining.appconfig import AppConfig
from silverlining.errors import SilverError
from silverlining.locations import HOSTNAME_RE
from silverlining.node import audit, paths
from silverlining.node._env import repoint_versions
from silverlining.node._errors import NodeError
from silverlining.node._state import app_lock, location_key
from silverlining.node._util import check_app, ensure_app_user
from silverlining.node.base import make_dir, node_lock, run, say, write_atomic
from silverlining.services import SERVICE_NAMES, get_service

REPLICATION = "replication.json"        # HOSTED/replication.json: replicas, or the primary
FIREWALL_FILE = "services.nft"
FIREWALL_SET = "inet silverlining service_peers"
ENGINES = {"mysql": "MariaDB", "redis": "Redis"}       # what a replica leaves behind


def read_stdin() -> dict:
    try:
        data = json.loads(sys.stdin.buffer.read() or b"{}")
    except ValueError:
        raise NodeError("the input is not JSON") from None
    if not isinstance(data, dict):
        raise NodeError("the input is not a JSON object")
    return data


def _record_path(app: str) -> Path:
    return paths.HOSTED / check_app(app) / "hosted.json"


def load(app: str) -> dict:
    try:
        return json.loads(_record_path(app).read_text())
    except FileNotFoundError:
        return {}


def _save(app: str, record: dict) -> None:
    write_atomic(_record_path(app), json.dumps(record, indent=1, sort_keys=True) + "\n",
                 mode=0o600)


def replication() -> dict:
    """``{"replicas": {NAME: ADDRESS}}`` on a primary, ``{"primary": {name, address,
    port}}`` on a replica (node/replica.py)."""
    try:
        return json.loads((paths.HOSTED / REPLICATION).read_text())
    except FileNotFoundError:
        return {}


def save_replication(record: dict) -> None:
    make_dir(paths.HOSTED, 0, 0, 0o700)
    write_atomic(paths.HOSTED / REPLICATION, json.dumps(record, sort_keys=True) + "\n",
                 mode=0o600)


def hosted_apps() -> list[str]:
    if not paths.HOSTED.is_dir():
        return []
    return sorted(p.parent.name for p in paths.HOSTED.glob("*/hosted.json"))


def config(app: str) -> tuple[AppConfig, list[str]]:
    """A hosted app's config and the services held here (postgis covers postgresql)."""
    try:
        cfg = dataclasses.replace(AppConfig.load(paths.HOSTED / app, check_files=False),
                                  app_name=app)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    names = [n for n in sorted(cfg.services) if get_service(n).hostable]
    if "postgis" in names and "postgresql" in names:
        names.remove("postgresql")
    return cfg, names


def at(location: str) -> str | None:
    """The app whose databases this node holds for ``location`` (a location key)."""
    for app in hosted_apps():
        if load(app).get("location") == location:
            return app
    return None


def keep_record(app: str, app_ini: str, record: dict) -> None:
    """A primary's record of ``app``, kept on its replica (node/replica.py)."""
    make_dir(paths.HOSTED, 0, 0, 0o700)
    make_dir(paths.HOSTED / check_app(app), 0, 0, 0o700)
    write_atomic(paths.HOSTED / app / "app.ini", app_ini, mode=0o600)
    _save(app, record)


def fence(app: str) -> None:
    """Admit none of ``app``'s members any more (its replica takes over)."""
    _save(app, {**load(app), "fenced": True})


def unfence(app: str) -> None:
    record = load(app)
    record.pop("fenced", None)
    _save(app, record)


def add_backup(app: str, name: str, of_version: str) -> None:
    """Record that backup ``name`` holds the data ``of_version`` left (``update
    --backup``), for ``activate --restore-data`` (caller holds the app's lock)."""
    record = load(app)
    record["backups"] = [*record.get("backups", []), {"name": name, "of": of_version}]
    _save(app, record)


def backup_of(app: str, version: str) -> str:
    """The newest backup of the data ``version`` left behind."""
    for entry in reversed(load(app).get("backups", [])):
        if entry.get("of") == version:
            return entry["name"]
    raise NodeError(f"no backup holds the data of {app}.{version} (take one with "
                    "silver update --backup)")


def _members(texts: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for text in texts:
        name, eq, address = text.partition("=")
        try:
            ok = bool(eq and HOSTNAME_RE.match(name) and ipaddress.ip_address(address).version == 4)
        except ValueError:
            ok = False
        if not ok:
            raise NodeError(f"services-host: member {text!r} is not NODE=IPV4-ADDRESS")
        out[name] = address
    return out


def host(call: protocol.ServicesHost) -> protocol.ServicesHostResult:
    """``services-host``: the app's databases here, for its location's members."""
    app, location = check_app(call.app), location_key(call.location)
    given = read_stdin()
    members = _members(call.members)
    _, gid = ensure_app_user(app)   # its credentials files are the app's group's, as anywhere
    with app_lock(app, call.lock_wait):
        make_dir(paths.DATA / app, 0, gid, 0o751)
        other = at(location)
        if other not in (None, app):
            raise NodeError(f"this node holds {other}'s databases for {location}, not {app}'s")
        make_dir(paths.HOSTED, 0, 0, 0o700)
        make_dir(paths.HOSTED / app, 0, 0, 0o700)
        write_atomic(paths.HOSTED / app / "app.ini", str(given.get("app_ini", "")), mode=0o600)
        cfg, services = config(app)
        if not services:
            raise NodeError("a services node holds PostgreSQL, PostGIS, MariaDB and Redis "
                            "databases; the app has none")
        if (left := unreplicated(services)) and (replication().get("replicas")
                                                 or replication().get("primary")):
            engines = " and ".join(ENGINES[n] for n in left)
            raise NodeError(f"this node has a PostgreSQL replica or is one, and {engines} "
                            f"{'is' if len(left) == 1 else 'are'} not replicated: the app's "
                            "data here would be left behind by a promote (give the app "
                            "another services node)")
        record = load(app)
        admitted = dict(record.get("members", {})) if call.add else {}
        admitted.update(members)
        for name in call.drop:
            admitted.pop(name, None)
        tls = {"cert": given.get("cert", ""), "key": given.get("key", "")}
        answers: dict[str, dict[str, str]] = {}
        for name in sorted(cfg.services):
            service = get_service(name)
            if service.hostable:
                try:
                    answers[name] = service.host(cfg, paths, given.get("passwords", {}), tls)
                except SilverError as exc:
                    raise NodeError(f"service {name}: {exc.message}") from None
                say(f"service {name}: ready for {', '.join(sorted(admitted)) or 'no member'}")
        _save(app, {**record, "location": location, "members": admitted})
    admit()
    audit.record("services-host", app, who=call.who, location=location,
                 members=sorted(admitted))
    return {"app": app, "location": location, "services": services, "members": admitted,
            **by_family(answers)}


def unreplicated(services: list[str]) -> list[str]:
    """Those of ``services`` a PostgreSQL replica does not follow."""
    return [n for n in services if get_service(n).family != "postgresql"]


def by_family(answers: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Each service's ``host`` answer under its server's name (``postgresql``, ``mysql``,
    ``redis``; empty when the app has none there), as the members are told it."""
    out: dict[str, dict[str, str]] = {"postgresql": {}, "mysql": {}, "redis": {}}
    for name, answer in answers.items():
        out[get_service(name).family] = answer
    return out


def admit() -> None:
    """Every hosted app's members into their own databases (not those of a fenced
    app: its databases moved to a replica), and the replicas to replication, nobody
    else: each service's access list, then the firewall's set of (address, port)."""
    peers: dict[str, dict[str, list[str]]] = {}
    for app in hosted_apps():
        _, services = config(app)
        record = load(app)
        addresses = [] if record.get("fenced") else sorted(record.get("members", {}).values())
        for name in services:
            peers.setdefault(name, {})[app] = addresses
    replicas = sorted(replication().get("replicas", {}).values())
    allowed: set[tuple[str, int]] = set()
    for name, apps in peers.items():
        allowed |= get_service(name).admit(apps, replicas)
    elements = ", ".join(f"{a} . {p}" for a, p in sorted(allowed))
    text = (f"# silverlining: who reaches this services node's databases (docs/services-node.md)\n"
            f"flush set {FIREWALL_SET}\n"
            + (f"add element {FIREWALL_SET} {{ {elements} }}\n" if elements else ""))
    with node_lock("services-firewall", 60, "the services firewall"):
        make_dir(paths.FIREWALL_D, 0, 0, 0o755)
        path = paths.FIREWALL_D / FIREWALL_FILE
        write_atomic(path, text, mode=0o644)
        run(["nft", "-f", str(path)], what="the services firewall")
    for name, apps in peers.items():
        get_service(name).disconnect_others(paths, apps)


def use(call: protocol.ServicesUse) -> protocol.Nothing:
    """``services-use``: on a member, the app's databases are on a services node."""
    app = check_app(call.app)
    given = read_stdin()
    _, gid = ensure_app_user(app)
    with app_lock(app, call.lock_wait):
        make_dir(paths.DATA / app, 0, gid, 0o751)
        ca = paths.DATA / app / paths.SERVICES_CA
        write_atomic(ca, str(given.get("ca", "")), mode=0o640, gid=gid)
        services = given.get("services")
        if not isinstance(services, list):
            raise NodeError("services-use: give services and their values")
        view = SimpleNamespace(app_name=app)
        node = ""
        for name in services:
            if name not in SERVICE_NAMES or not get_service(name).hostable:
                raise NodeError(f"services-use: {name} is not on a services node")
            service = get_service(name)
            values = given.get(service.family)
            if not isinstance(values, dict):
                raise NodeError(f"services-use: give the {service.family} values")
            service.use_remote(view, paths, values, ca)
            node = values.get("node", "")
            # kept versions too: a rollback reaches the database where it is now
            moved = repoint_versions(app, service.env_marker, service.env_prefixes,
                                     service.env(view, paths), gid)
            if moved:
                say(f"{', '.join(moved)}: their {service.env_prefixes[0]}* name {node} now "
                    "(running ones read it when restarted)")
    audit.record("services-use", app, who=call.who, node=node)
    return {}


def members_cmd(call: protocol.ServicesMembers) -> protocol.ServicesMembersResult:
    location = location_key(call.location)
    app = at(location)
    if app is None:
        raise NodeError(f"this node holds no databases for {location}")
    return {"app": app, "members": sorted(load(app).get("members", {}))}


def leave(call: protocol.ServicesLeave) -> protocol.ServicesMembersResult:
    """``services-leave``: members that stopped serving the location are let in no
    more; the app's databases and its other members stay."""
    location = location_key(call.location)
    app = at(location)
    if app is None:
        raise NodeError(f"this node holds no databases for {location}")
    with app_lock(app, call.lock_wait):
        record = load(app)
        admitted = {n: a for n, a in record.get("members", {}).items() if n not in call.drop}
        _save(app, {**record, "members": admitted})
    admit()
    audit.record("services-leave", app, who=call.who, location=location,
                 dropped=sorted(call.drop))
    return {"app": app, "members": sorted(admitted)}
