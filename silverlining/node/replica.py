"""PostgreSQL streaming replicas of a services node (docs/services-node.md).

The primary lets the replica in as ``silver_replica`` (a REPLICATION role whose
password the client derives), over ``hostssl`` from the replica's address only,
with a physical slot so it keeps the WAL the replica has not received. The
replica starts from ``pg_basebackup`` and streams over TLS verified against the
client's CA (``sslmode=verify-full``; the password in a passfile of postgres'
own, never in a configuration file or an argv). It keeps the primary's hosted
records, so on ``promote`` it serves the same apps' databases to the same
members. Before a promote the old primary, when it answers, is fenced: it admits
no member any more, ends the apps' sessions and says where its WAL ends, and the
replica is promoted only once it has replayed that far: no committed row is left
behind.
"""

from __future__ import annotations

import ipaddress
import pwd
import re
import shutil
from pathlib import Path

from silverlining import protocol
from silverlining.errors import SilverError
from silverlining.node import audit, hosting, paths
from silverlining.node._errors import NodeError
from silverlining.node._util import ensure_app_user
from silverlining.node.base import apt_install, make_dir, run, say, wait_until, write_atomic
from silverlining.services import get_service
from silverlining.services._system import db_name, scram_verifier, server_lock, systemctl_start
from silverlining.services.postgresql import REPLICATION_ROLE, SERVICE as POSTGRESQL
from silverlining.services.postgresql import pg_ready, psql, run_role

PASSFILE = Path("/var/lib/postgresql/.silver-replica.pgpass")


def slot_name(replica: str) -> str:
    return "silver_" + re.sub(r"[^a-z0-9_]", "_", replica.lower())[:50]


def _address(text: str) -> str:
    try:
        if ipaddress.ip_address(text).version == 4:
            return text
    except ValueError:
        pass
    raise NodeError(f"{text!r} is not an IPv4 address")


def _tls_dir() -> Path:
    pg = pwd.getpwnam("postgres")
    return make_dir(paths.SERVICES_TLS / "postgresql", pg.pw_uid, pg.pw_gid, 0o700)


def primary(call: protocol.ReplicaPrimary) -> protocol.ReplicaPrimaryResult:
    """``replica-primary``: the replication role, a slot, and the replica admitted."""
    if not hosting.hosted_apps():
        raise NodeError("this node holds no app's databases ('silver update ... "
                        "--services-node' first)")
    if hosting.replication().get("primary"):
        raise NodeError("this node is a replica itself: give its primary")
    other = [a for a in hosting.hosted_apps() if hosting.unreplicated(hosting.config(a)[1])]
    if other:
        raise NodeError(f"this node holds MariaDB or Redis data ({', '.join(other)}), which a "
                        "replica does not follow: a promote would leave it behind")
    address = _address(call.address)
    given = hosting.read_stdin()
    slot = slot_name(call.replica)
    with server_lock("postgresql"):
        POSTGRESQL.serve_tls(paths, given["cert"], given["key"])     # the replica's address too
        psql("postgres", f"\\set verifier '{scram_verifier(given['password'])}'\n"
             "SELECT format('CREATE ROLE %I', :'r') WHERE NOT EXISTS "
             "(SELECT 1 FROM pg_roles WHERE rolname = :'r') \\gexec\n"
             "ALTER ROLE :\"r\" LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE "
             "CONNECTION LIMIT 4 PASSWORD :'verifier';\n"
             "SELECT pg_create_physical_replication_slot(:'slot') WHERE NOT EXISTS "
             "(SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot');\n",
             r=REPLICATION_ROLE, slot=slot)
    record = hosting.replication()
    record.setdefault("replicas", {})[call.replica] = address
    hosting.save_replication(record)
    hosting.admit()
    audit.record("replica-primary", "-", who=call.who, replica=call.replica)
    hosted = {app: {"app_ini": (paths.HOSTED / app / "app.ini").read_text(),
                    "record": hosting.load(app)} for app in hosting.hosted_apps()}
    return {"port": psql("postgres", "SHOW port;").strip(), "slot": slot, "hosted": hosted}


def follow(call: protocol.ReplicaFollow) -> protocol.ReplicaFollowResult:
    """``replica-follow``: this node's cluster replaced by a streaming copy of the
    primary's, and the primary's hosted records kept here."""
    own = [a for a in hosting.hosted_apps() if not hosting.replication().get("primary")]
    if own:
        raise NodeError(f"this node holds databases of its own ({', '.join(own)}): a "
                        "replica needs a node of its own")
    address = _address(call.address)
    if not re.fullmatch(r"[0-9]{1,5}", call.port) or not re.fullmatch(r"silver_[a-z0-9_]+",
                                                                         call.slot):
        raise NodeError("replica-follow: bad port or slot")
    given = hosting.read_stdin()
    with server_lock("postgresql"):
        apt_install(POSTGRESQL.packages)
        pg = pwd.getpwnam("postgres")
        data_dir = _data_dir()
        tls = _tls_dir()
        ca = tls / "primary-ca.crt"
        write_atomic(ca, given["ca"], mode=0o644, uid=pg.pw_uid, gid=pg.pw_gid)
        write_atomic(PASSFILE, f"{address}:{call.port}:*:{REPLICATION_ROLE}:"
                     f"{given['password']}\n", mode=0o600, uid=pg.pw_uid, gid=pg.pw_gid)
        for app, held in given.get("hosted", {}).items():
            hosting.keep_record(app, held["app_ini"], held["record"])
        hosting.save_replication({"primary": {"name": call.primary, "address": address,
                                              "port": call.port}})
        say(f"copying {call.primary}'s databases (pg_basebackup over TLS)")
        run(["systemctl", "stop", "postgresql", "postgresql@*"], what="stopping PostgreSQL")
        wait_until(lambda: not (data_dir / "postmaster.pid").exists(), 60,
                   failed="PostgreSQL did not stop")
        for entry in data_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        conninfo = (f"host={address} port={call.port} user={REPLICATION_ROLE} "
                    f"passfile={PASSFILE} sslmode=verify-full sslrootcert={ca} "
                    f"application_name={slot_name_of(call.slot)}")
        # -c fast: the primary's checkpoint at once, not spread over minutes
        run(["pg_basebackup", "-D", str(data_dir), "-X", "stream", "-c", "fast",
             "-S", call.slot, "-d", conninfo], user="postgres", what="pg_basebackup",
            timeout=7200,
            env={"HOME": pg.pw_dir, "PATH": "/usr/bin:/bin"})     # postgres' ~/.postgresql
        auto = data_dir / "postgresql.auto.conf"
        with open(auto, "a") as fh:
            fh.write(f"primary_conninfo = '{conninfo}'\nprimary_slot_name = '{call.slot}'\n")
        (data_dir / "standby.signal").touch()
        for path in (auto, data_dir / "standby.signal"):
            shutil.chown(path, "postgres", "postgres")
        systemctl_start("postgresql")
        wait_until(pg_ready, 90,
                   failed="PostgreSQL did not come up as a replica")
        POSTGRESQL.serve_tls(paths, given["cert"], given["key"])
    hosting.admit()
    wait_until(lambda: _receiver_state() == "streaming", 60,
               failed=f"the replica does not stream from {call.primary}")
    audit.record("replica-follow", "-", who=call.who, primary=call.primary)
    return {"primary": call.primary, "state": "streaming"}


def slot_name_of(slot: str) -> str:
    """The replica's name in the primary's pg_stat_replication (its slot's)."""
    return slot.removeprefix("silver_")


def _data_dir() -> Path:
    """The cluster's data directory, from Debian's list (the server may be down)."""
    lines = run(["pg_lsclusters", "--no-header"], what="pg_lsclusters").split("\n")
    fields = [line.split() for line in lines if line.strip()]
    if len(fields) != 1 or len(fields[0]) < 6:
        raise NodeError("a replica needs the one PostgreSQL cluster Debian's package makes")
    return Path(fields[0][5])


def _has_postgres() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return shutil.which("psql") is not None


def _receiver_state() -> str:
    return psql("postgres", "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), "
                "'stopped');").strip()


def fence(call: protocol.ServicesFence) -> protocol.ServicesFenceResult:
    """``services-fence``: no member gets in any more, the apps' sessions end, and the
    WAL position a replica must replay before it takes over."""
    apps = hosting.hosted_apps()
    for app in apps:
        hosting.fence(app)
    hosting.admit()
    roles = [r for app in apps for r in (db_name(app), run_role(db_name(app)))]
    psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
         "WHERE usename = ANY(string_to_array(:'roles', ','));", roles=",".join(roles))
    lsn = psql("postgres", "SELECT pg_current_wal_lsn();").strip()
    audit.record("services-fence", "-", who=call.who, lsn=lsn)
    return {"lsn": lsn}


def promote(call: protocol.ReplicaPromote) -> protocol.ReplicaPromoteResult:
    """``replica-promote``: caught up to ``wait_lsn``, then the primary, serving its
    apps' databases (the same passwords: the roles came with the copy)."""
    record = hosting.replication()
    was = record.get("primary")
    given = hosting.read_stdin()
    if was:
        if call.wait_lsn:
            if not re.fullmatch(r"[0-9A-F]{1,8}/[0-9A-F]{1,8}", call.wait_lsn):
                raise NodeError(f"bad WAL position {call.wait_lsn!r}")
            say(f"waiting to replay {was['name']}'s writes up to {call.wait_lsn}")
            wait_until(lambda: psql("postgres", "SELECT pg_wal_lsn_diff("
                                    "pg_last_wal_replay_lsn(), :'lsn') >= 0;",
                                    lsn=call.wait_lsn).strip() == "t", 120,
                       failed=f"the replica did not catch up with {was['name']}")
        psql("postgres", "SELECT pg_promote(true, 60);")
        say("promoted: this node is the primary")
        hosting.save_replication({"promoted_from": was["name"]})
        PASSFILE.unlink(missing_ok=True)
    elif record.get("promoted_from") and hosting.hosted_apps():
        was = {"name": record["promoted_from"]}
        say(f"already the primary (promoted from {was['name']}): its apps' databases again")
    else:
        raise NodeError("this node is not a replica")
    tls = {"cert": given["cert"], "key": given["key"]}
    out: dict[str, protocol.ServicesHostResult] = {}
    for app in hosting.hosted_apps():
        hosting.unfence(app)
        cfg, services = hosting.config(app)
        _, gid = ensure_app_user(app)
        make_dir(paths.DATA / app, 0, gid, 0o751)
        answers = {}
        for name in services:
            try:
                answers[name] = get_service(name).host(cfg, paths, given["passwords"], tls)
            except SilverError as exc:
                raise NodeError(f"{app}: service {name}: {exc.message}") from None
        record = hosting.load(app)
        out[app] = {"app": app, "location": record["location"], "services": services,
                    "members": record.get("members", {}), **hosting.by_family(answers)}
    hosting.admit()
    audit.record("replica-promote", "-", who=call.who, was_replica_of=was["name"])
    return {"was_replica_of": was["name"], "hosted": out}


def status() -> protocol.ReplicaStatusResult:
    """The replication this node takes part in (empty: none)."""
    record = hosting.replication()
    if not record or not _has_postgres():
        return {}
    try:
        return _status(record)
    except SilverError as exc:
        return {"role": "replica" if record.get("primary") else "primary",
                "primary": record.get("primary", {}).get("name", ""),
                "state": f"PostgreSQL does not answer ({exc.message})", "lag_bytes": 0,
                "replicas": []}


def _status(record: dict) -> protocol.ReplicaStatusResult:
    if was := record.get("primary"):
        row = psql("postgres", "SELECT greatest(0, pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
                   "pg_last_wal_replay_lsn()))::bigint;").strip()
        return {"role": "replica", "primary": was["name"], "state": _receiver_state(),
                "lag_bytes": int(row or 0)}
    if "promoted_from" in record:
        return {"role": "primary", "primary": record["promoted_from"], "replicas": []}
    replicas = []
    out = psql("postgres", "SELECT application_name, state, "
               "coalesce(extract(epoch FROM replay_lag), 0), "
               "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint "
               "FROM pg_stat_replication;")
    seen = {}
    for line in out.splitlines():
        name, state, seconds, lag = line.split("|")
        seen[name] = {"state": state, "lag_seconds": float(seconds), "lag_bytes": int(lag)}
    for name in sorted(record.get("replicas", {})):
        replicas.append({"name": name, **seen.get(slot_name(name).removeprefix("silver_"),
                                                   {"state": "not connected"})})
    return {"role": "primary", "replicas": replicas}


def status_cmd(call: protocol.ReplicaStatus) -> protocol.ReplicaStatusResult:
    return status()
