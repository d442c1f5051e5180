"""``silver create-replica PRIMARY REPLICA``: a PostgreSQL streaming replica of a services node.

The primary gets a replication role (its password derived from this machine's
services CA, like the apps'), a slot and the replica's address in pg_hba.conf and
its firewall; the replica copies the cluster with ``pg_basebackup`` and streams
from then on, both over TLS verified against the services CA. The replica keeps
the primary's records of which apps and members it serves, so ``silver promote
REPLICA`` can make it the primary (docs/services-node.md).
"""

from __future__ import annotations

import json

from silverlining import nodes, protocol, servicesca, topology
from silverlining.commands._remote import open_node
from silverlining.console import Console
from silverlining.errors import UsageError

PURPOSE = "postgresql-replication"


def run(console: Console, primary: str, replica: str) -> int:
    primary, replica = nodes.resolve(primary, start=False).name, \
        nodes.resolve(replica, start=False).name
    if primary == replica:
        raise UsageError("a replica needs a node of its own: give two nodes")
    held = topology.services_locations(primary)
    if not held:
        raise UsageError(f"{primary} holds no location's databases (deploy with "
                         f"'silver update APP LOCATION --services-node {primary}' first)")
    if topology.services_locations(replica):
        raise UsageError(f"{replica} holds databases of its own: a replica needs a node of "
                         "its own")
    password = servicesca.password(PURPOSE)
    cert = servicesca.server_cert(primary, {nodes.peer_address(primary, from_node=replica)})
    session = open_node(console, primary, check=False)
    try:
        prepared = session.send(protocol.ReplicaPrimary(
            replica=replica, address=nodes.peer_address(replica, from_node=primary)),
            input=json.dumps({"password": password, "cert": cert.cert, "key": cert.key}))
    finally:
        session.close()
    # the replica's certificate covers the addresses the members will reach it on
    members = {m for held_app in prepared["hosted"].values()
               for m in held_app["record"].get("members", {})}
    own = servicesca.server_cert(replica, {nodes.peer_address(replica, from_node=m)
                                           for m in members})
    session = open_node(console, replica, check=False)
    try:
        with console.ticking(replica, f"copying {primary}'s databases"):
            session.send(protocol.ReplicaFollow(
                primary=primary, address=nodes.peer_address(primary, from_node=replica),
                port=prepared["port"], slot=prepared["slot"]),
                input=json.dumps({"password": password, "ca": own.ca, "cert": own.cert,
                                  "key": own.key, "hosted": prepared["hosted"]}),
                timeout=None)
    finally:
        session.close()
    console.out(f"{replica}: streaming replica of {primary} (holding "
                f"{', '.join(sorted(prepared['hosted']))}; 'silver query {primary}' shows "
                f"its lag, 'silver promote {replica}' makes it the primary)")
    return 0
