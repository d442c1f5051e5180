"""A location's databases on a services node (docs/services-node.md): the client's side.

``host`` sets the app's databases up on the services node (``services-host``: the
server certificate from this machine's CA, the passwords derived from its key,
the members admitted by their address on the nodes' network), then tells each
member how to reach them (``services-use``: the credentials and the CA, for
``sslmode=verify-full``). The data commands go to the services node for the
databases (``data_node``), and take the members off the air around a restore.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from silverlining import nodes, protocol, topology
from silverlining.commands._front import parallel
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location
from silverlining.services import mysql, redis
from silverlining.services._system import db_name
from silverlining.services.postgresql import run_role

if TYPE_CHECKING:       # app.ini's parser is for the commands that read one
    from silverlining.appconfig import AppConfig

HOSTABLE = ("postgresql", "postgis", "mysql", "redis")


def resolve(location: Location, given: str | None) -> str | None:
    """``--services-node``, else the one recorded for the location."""
    recorded = topology.services_node(str(location))
    if given and recorded and given != recorded:
        raise UsageError(f"{location}'s databases are on {recorded}, not {given} (moving them "
                         "to another services node is not built: 'silver backup' and "
                         "'silver restore' them)")
    return given or recorded


def check(config: AppConfig, node: str) -> None:
    """The app has data a services node holds."""
    if not any(n in config.services for n in HOSTABLE):
        raise UsageError(f"--services-node {node}: {config.ini_path} has no "
                         "service.postgresql, service.postgis, service.mysql or "
                         "service.redis for it to hold")


def passwords(app: str) -> dict[str, str]:
    """The app's roles', MariaDB users' and Redis user's passwords: derived, so every
    update sends the same ones (MariaDB's keyed ``mysql:USER``: its users have the
    roles' names; Redis's ``redis:USER``)."""
    # here, not at the top: the CA's cryptography import (15-40 ms) is not for the
    # commands that use this module only to find members (activate, backup, clear)
    from silverlining import servicesca

    role, my = db_name(app), mysql.SECRET_PREFIX
    return {role: servicesca.password(f"postgresql:{app}"),
            run_role(role): servicesca.password(f"postgresql-run:{app}"),
            my + role: servicesca.password(f"mysql:{app}"),
            my + mysql.run_user(role): servicesca.password(f"mysql-run:{app}"),
            redis.SECRET_PREFIX + redis.app_user(app): servicesca.password(f"redis:{app}")}


def host(console: Console, node: str, config: AppConfig, app: str, location: Location,
         members: list[str], add: bool = False, drop: tuple[str, ...] = (),
         then: Callable[[], None] | None = None,
         refused: Callable[[BaseException], None] | None = None) -> dict:
    """The app's databases on ``node`` for ``members`` (``add``: besides those admitted
    before; ``drop``: no longer), ``then`` run (a move's restore there), and only then
    each of ``members`` told how to reach them and the location recorded against
    ``node``; ``refused`` runs when ``node`` fails to take them or ``then`` fails or is
    interrupted (no member was told anything, nothing recorded)."""
    if node in members:
        raise UsageError(f"{node} is {location}'s services node: it cannot be a member too")
    from silverlining import servicesca      # as in ``passwords``

    reach = {m: nodes.peer_address(node, from_node=m) for m in members}
    cert = servicesca.server_cert(node, set(reach.values()))
    secrets = passwords(app)
    stdin = json.dumps({"app_ini": config.ini_path.read_text(), "cert": cert.cert,
                        "key": cert.key, "passwords": secrets})
    try:
        session = open_node(console, node, check=False)
        try:
            result = session.send(protocol.ServicesHost(
                app=app, location=str(location), add=add, drop=drop,
                members=tuple(f"{m}={nodes.peer_address(m, from_node=node)}"
                              for m in members)), input=stdin)
        finally:
            session.close()
        if then is not None:
            then()
    except BaseException as exc:
        if refused is not None:
            refused(exc)
        raise
    tell_members(console, node, app, result, members, cert.ca)
    topology.put_services_node(str(location), node, app)
    console.step(node, f"{app}'s {', '.join(result['services'])} for "
                 f"{', '.join(sorted(result['members'])) or 'no member'} (TLS)")
    return result


def tell_members(console: Console, node: str, app: str, held: dict, members: list[str],
                 ca: str) -> None:
    """``services-use`` on each of ``members``: the app's databases are on ``node``
    (``held``: its ``services-host`` answer), reached at its address as each sees it."""
    secrets = passwords(app)
    prefix = {"postgresql": "", "mysql": mysql.SECRET_PREFIX, "redis": redis.SECRET_PREFIX}

    def use(member: str) -> None:
        host = nodes.peer_address(node, from_node=member)
        given: dict = {"ca": ca, "services": held["services"]}
        for family, key in prefix.items():
            if answer := held.get(family):
                given[family] = {**answer, "node": node, "host": host,
                                 "password": secrets[key + answer["user"]]}
                if "run_user" in answer:        # Redis has no maintenance login
                    given[family]["run_password"] = secrets[key + answer["run_user"]]
        session = open_node(console, member, check=False)
        try:
            session.send(protocol.ServicesUse(app=app), quiet=True, input=json.dumps(given))
        finally:
            session.close()

    for member, r in parallel(use, members).items():
        if isinstance(r, SilverError):
            raise SilverError(f"{member}: {r.message}")


def data_node(location: Location, node: str | None) -> tuple[str, bool]:
    """Where a data command goes: ``--node``, else the location's services node, else
    its node; and whether that is a services node."""
    if node is None and (services := topology.services_node(str(location))):
        return services, True
    return node_for(location, node), False


def members(console: Console, node: str, location: Location) -> list[str]:
    """The members the services node admits for ``location``."""
    session = open_node(console, node, check=False)
    try:
        return session.send(protocol.ServicesMembers(location=str(location)),
                            quiet=True)["members"]
    finally:
        session.close()


@contextmanager
def off_the_air(console: Console, node: str, location: Location) -> Iterator[list[str]]:
    """The location's members answer 503 meanwhile (a restore on the services node);
    a member disabled before stays so. Not re-enabled when the body fails."""
    names = members(console, node, location)

    def set_state(member: str, command: protocol.Command) -> dict:
        s = open_node(console, member, check=False)
        try:
            return s.send(command, quiet=True)
        finally:
            s.close()

    results = parallel(lambda m: set_state(m, protocol.Disable(location=str(location))), names)
    for member, r in results.items():
        if isinstance(r, SilverError):
            raise SilverError(f"{member}: {r.message}")
    try:
        yield names
    except BaseException:
        console.warn(f"{', '.join(names)} left answering 503 at {location}: 'silver enable "
                     f"{location} --node NODE' each once it is fixed")
        raise
    again = [m for m, r in results.items() if isinstance(r, dict) and r.get("changed")]
    for member, r in parallel(lambda m: set_state(m, protocol.Enable(location=str(location))),
                              again).items():
        if isinstance(r, SilverError):
            raise SilverError(f"{member}: {r.message}")


def backup_before(console: Console, node: str, location: Location, member: str) -> None:
    """``update --backup``: the data the live version left, kept on the services node
    for ``activate --restore-data``."""
    session = open_node(console, member, check=False)
    try:
        live = session.send(protocol.Served(location=str(location)), quiet=True)["version"]
    except SilverError:
        console.step(node, f"backup: nothing is live at {location}: nothing to back up")
        return
    finally:
        session.close()
    name = f"before-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    session = open_node(console, node, check=False)
    try:
        session.send(protocol.Backup(location=str(location), remote=name, of_version=live),
                     timeout=None)
    finally:
        session.close()
    console.step(node, f"backup: remote:{name} (the data of {live})")
