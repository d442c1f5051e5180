"""``silver promote REPLICA``: a streaming replica becomes its apps' services node.

When the old primary answers, it is fenced first: it admits no member any more,
ends the apps' sessions and says where its write-ahead log ends, and the replica
is promoted once it has replayed that far, so no committed row is lost. (When it
does not answer, the replica is promoted as it is, and what it had not received
is lost: said so.) Then every location the primary held is re-pointed: each
member is told the new node (its kept versions too), and restarts through the
health gate, a balanced location batch by batch behind its balancer.
"""

from __future__ import annotations

import json

from silverlining import nodes, protocol, servicesca, topology
from silverlining.commands import _balanced
from silverlining.commands._remote import open_node
from silverlining.commands._services import passwords, tell_members
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError


def fence(console: Console, primary: str, replica: str) -> str | None:
    """The old primary fenced; where its writes end (None: it does not answer)."""
    old = open_node(console, primary, check=False)
    try:
        lsn = old.send(protocol.ServicesFence())["lsn"]
    except SilverError as exc:
        console.warn(f"{primary} cannot be fenced ({exc.message}): promoting {replica} "
                     "as it is; writes it had not received are lost")
        return None
    finally:
        old.close()
    console.step(primary, f"fenced: no member gets in; its writes end at {lsn}")
    return lsn


def run(console: Console, replica: str) -> int:
    replica = nodes.resolve(replica, start=False).name
    session = open_node(console, replica, check=False)
    try:
        status = session.send(protocol.ReplicaStatus(), quiet=True)
        if not status.get("primary"):
            raise UsageError(f"{replica} is not a replica ('silver create-replica PRIMARY "
                             f"{replica}' first)")
        primary, lsn = status["primary"], None
        if status["role"] == "replica":
            lsn = fence(console, primary, replica)
        else:               # promoted before: its members re-pointed again
            console.info(f"{replica} was promoted already: re-pointing {primary}'s members")
        held = topology.services_locations(primary)
        secrets = {k: v for app in set(held.values()) for k, v in passwords(app).items()}
        cert = servicesca.server_cert(replica, set())
        with console.ticking(replica, "promoting"):
            promoted = session.send(protocol.ReplicaPromote(wait_lsn=lsn), timeout=None,
                                    input=json.dumps({"passwords": secrets, "cert": cert.cert,
                                                      "key": cert.key}))
    finally:
        session.close()
    console.out(f"{replica}: primary now (was a replica of {primary})")
    code = 0
    for app, answer in sorted(promoted["hosted"].items()):
        location = answer["location"]
        members = sorted(answer["members"])
        tell_members(console, replica, app, answer, members, cert.ca)
        topology.put_services_node(location, replica, app)
        topo = topology.get(location)
        if topo is not None:
            with _balanced.balancer(console, topo) as lb:       # its record names the new primary
                lb.apply(topo.members, maint=[], app=app, services=replica)
            code |= _balanced.redeploy(console, topo, "{}")
            continue
        for member in members:
            try:
                console.out(_balanced.redeploy_on(console, member, location, "{}").text)
            except SilverError as exc:
                console.out(f"{member}: FAILED: {exc.message} (its running version still "
                            f"has {primary}'s address)")
                code = 1
    return code
