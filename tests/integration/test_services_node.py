"""A location's PostgreSQL on a services node, shared by two members over verified TLS.

Real local nodes on the nodes' private network: ``sdb-TAG`` holds the database,
``sweb1-TAG`` and ``sweb2-TAG`` serve ``tls.test`` behind the balancer
``slb-TAG`` (each member is asked on itself, so each one's reads and writes are
known), ``sdb2-TAG`` becomes its streaming replica and then the primary. The
attacks come first: a plain connection, a client trusting other CAs, a node that
is no longer a member, and the same after the services node rebooted; then the
data commands on the services node, moving a one-node app's database there, and
the replica. Then ``mariaapp``'s MariaDB and Redis on ``sdb2`` (the primary after
the promote), shared by both members over verified TLS, and the same attacks; last,
a one-node app's MariaDB and Redis moved there."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import shlex
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.fixtures_apps import http_get, make_app, probe

pytestmark = pytest.mark.node

TAG = os.environ.get("SILVER_TEST_NODE_TAG") or "svc"
DB = f"sdb-{TAG}"
LB = f"slb-{TAG}"
REPLICA = f"sdb2-{TAG}"
WEB = [f"sweb1-{TAG}", f"sweb2-{TAG}"]
HOST = "tls.test"
MOVED = "move.test"
MY_MOVED = "mymove.test"
CREDENTIALS = "/var/lib/silverlining/data/tlsapp/postgresql.credentials"
CA = "/var/lib/silverlining/data/tlsapp/services-ca.crt"      # installed for the app
MARIA = "maria.test"
MY_CREDENTIALS = "/var/lib/silverlining/data/mariaapp/mysql.credentials"
REDIS_CREDENTIALS = "/var/lib/silverlining/data/mariaapp/redis.credentials"

# Run as root on a member: connect to the services node with the app's credentials
# and the libpq options in argv[1] (JSON), print what happened as JSON.
CONNECT = r"""
import json, sys, psycopg2
creds = dict(l.strip().split("=", 1) for l in open(%r) if "=" in l)
options = json.loads(sys.argv[1])
try:
    conn = psycopg2.connect(host=options.pop("host", creds["host"]), port=creds["port"],
                            dbname=creds["dbname"], user=creds["user"],
                            password=creds["password"], connect_timeout=4, **options)
    conn.close()
    print(json.dumps({"connected": True}))
except psycopg2.Error as exc:
    print(json.dumps({"connected": False, "error": str(exc).strip()}))
""" % CREDENTIALS


@pytest.fixture(scope="module")
def nodes(node_env, make_module_node):
    with ThreadPoolExecutor(max_workers=5) as pool:
        made = list(pool.map(lambda n: make_module_node(n, "--setup-node"),
                             [DB, *WEB, REPLICA, LB]))
    return {n.name: n.address for n in made}


@pytest.fixture(scope="module")
def app(nodes, node_env, tmp_path_factory) -> Path:
    """``tlsapp`` live on both members behind the balancer, its database on the
    services node."""
    app = make_app(tmp_path_factory.mktemp("tls"), "tlsapp", ("postgresql",),
                   ("python3-psycopg2",))
    node_env.silver("-y", "update", str(app), HOST, "--node", WEB[0], "--node", WEB[1],
                    "--balancer", LB, "--services-node", DB, "--noetchosts", check=True)
    return app


def member_connect(node_env, member: str, **options: str) -> dict:
    """Connect from ``member`` as the app would (its CA unless ``sslrootcert`` is given)."""
    options = {"sslrootcert": CA, **options}
    script = f"python3 -c {shlex.quote(CONNECT)} {shlex.quote(json.dumps(options))}"
    with node_env.ssh(member) as ssh:
        return json.loads(ssh.run(["sh", "-c", script]).stdout.strip().splitlines()[-1])


def root(node_env, name: str, command: str) -> str:
    with node_env.ssh(name) as ssh:
        return ssh.run(["sh", "-c", command]).stdout


def ask(node_env, member: str, path: str, host: str = HOST) -> dict:
    """The app on ``member`` itself (a balanced location answers the node itself)."""
    out = root(node_env, member, f"curl -s -m 10 -H 'Host: {host}' "
                                 f"{shlex.quote('http://127.0.0.1' + path)}")
    return json.loads(out)


def rows(node_env, member: str, host: str = HOST) -> list[str]:
    return ask(node_env, member, "/pg/list", host)["rows"]


def table(node_env, name: str, db: str) -> list[str]:
    """The rows of ``items`` in database ``db`` on node ``name``, read as postgres."""
    return root(node_env, name, f"runuser -u postgres -- psql -At -d {db} "
                                "-c 'SELECT v FROM items ORDER BY id'").split()


def test_both_members_write_and_read_the_same_rows_over_verified_tls(node_env, nodes, app):
    assert ask(node_env, WEB[0], "/pg/add?v=one")["added"] == "one"
    assert ask(node_env, WEB[1], "/pg/add?v=two")["added"] == "two"
    assert rows(node_env, WEB[0]) == rows(node_env, WEB[1]) == ["one", "two"]
    assert probe(nodes[LB], HOST, "/pg/list")["rows"] == ["one", "two"]
    for member in WEB:
        tls = ask(node_env, member, "/pg/tls")
        assert tls["ssl"] is True and tls["version"].startswith("TLSv1.")
        assert tls["sslmode"] == "verify-full"
    # the rows are on the services node, not on a member
    assert table(node_env, DB, "sl_tlsapp") == ["one", "two"]
    assert root(node_env, WEB[0], "test -e /etc/postgresql && echo has || echo none"
                ).strip() == "none"
    # issue 24's limit holds on the services node's role
    assert root(node_env, DB, "runuser -u postgres -- psql -At -c \"SELECT rolconnlimit "
                              "FROM pg_roles WHERE rolname = 'sl_tlsapp'\"").strip() != "-1"


def test_a_plain_connection_from_a_member_is_refused(node_env, nodes, app):
    result = member_connect(node_env, WEB[0], sslmode="disable")
    assert not result["connected"]
    assert "no pg_hba.conf entry" in result["error"] and "no encryption" in result["error"]


def test_a_client_trusting_other_cas_refuses_the_server(node_env, nodes, app):
    result = member_connect(node_env, WEB[0], sslmode="verify-full",
                            sslrootcert="/etc/ssl/certs/ca-certificates.crt")
    assert not result["connected"]
    assert "certificate verify failed" in result["error"]
    # with the CA silver installed for the app, the same connection is made
    assert member_connect(node_env, WEB[0], sslmode="verify-full")["connected"]
    mode = root(node_env, WEB[0], f"stat -c '%a %U %G' {CA}").split()
    assert mode == ["640", "root", "sl-tlsapp"]


def test_backup_clear_and_restore_run_on_the_services_node(node_env, nodes, app, tmp_path):
    before = rows(node_env, WEB[0])
    assert before
    dest = tmp_path / "tls.tar.gz"
    proc = node_env.silver("backup", HOST, str(dest), check=True)
    assert "postgresql" in proc.stdout and dest.is_file()
    with tarfile.open(dest) as tar:
        assert any(n.endswith("database.dump") for n in tar.getnames())
    proc = node_env.silver("-y", "clear", HOST, check=True)
    assert f"on {DB}: cleared postgresql" in proc.stdout
    assert rows(node_env, WEB[0]) == rows(node_env, WEB[1]) == []
    proc = node_env.silver("restore", str(dest), HOST, check=True)
    assert "restored postgresql" in proc.stdout
    assert rows(node_env, WEB[0]) == rows(node_env, WEB[1]) == before
    assert not root(node_env, WEB[0], "ls /var/lib/silverlining/backups/ 2>/dev/null || true"
                    ).strip()


def test_a_node_taken_out_of_the_location_is_refused(node_env, nodes, app):
    assert member_connect(node_env, WEB[1], sslmode="verify-full")["connected"]
    proc = node_env.silver("-y", "update", str(app), HOST, "--remove-node", WEB[1],
                           "--noetchosts", check=True)
    assert f"{WEB[1]}: removed from {HOST}" in proc.stdout
    refused = member_connect(node_env, WEB[1], sslmode="verify-full")
    assert not refused["connected"]
    assert "timeout" in refused["error"] or "refused" in refused["error"], refused
    assert member_connect(node_env, WEB[0], sslmode="verify-full")["connected"]
    hba = root(node_env, DB, "cat $(runuser -u postgres -- psql -At -c 'SHOW hba_file')")
    assert f"hostssl sl_tlsapp sl_tlsapp,slrun_tlsapp {nodes_private(node_env, WEB[0])}/32" \
        in hba
    assert nodes_private(node_env, WEB[1]) not in hba
    assert rows(node_env, WEB[0]) == ["one", "two"]


def test_a_rebooted_services_node_serves_the_members_again_and_only_them(node_env, nodes,
                                                                        app):
    before = rows(node_env, WEB[0])
    node_env.reboot(DB)
    node_env.silver("query", DB, check=True)        # starts it again, waits for its SSH
    deadline = time.monotonic() + 60
    while not member_connect(node_env, WEB[0], sslmode="verify-full")["connected"]:
        assert time.monotonic() < deadline, "PostgreSQL did not come back on the services node"
        time.sleep(1)
    assert rows(node_env, WEB[0]) == before
    # the firewall loaded the members' set at boot: the removed node is still out
    assert nodes_private(node_env, WEB[0]) in root(
        node_env, DB, "nft list set inet silverlining service_peers")
    assert not member_connect(node_env, WEB[1], sslmode="verify-full")["connected"]


def test_update_backup_then_activate_restore_data_on_the_services_node(node_env, nodes, app):
    before = rows(node_env, WEB[0])
    proc = node_env.silver("-y", "update", str(app), HOST, "--backup", "--force",
                           "--noetchosts", check=True)
    assert "backup: remote:before-" in proc.stderr
    old = re.search(r"live at tls\.test \(was (v\d+)", proc.stdout).group(1)
    ask(node_env, WEB[0], "/pg/add?v=late")
    assert rows(node_env, WEB[0]) == [*before, "late"]
    proc = node_env.silver("-y", "activate", HOST, old, "--restore-data", check=True)
    assert f"data of {old} restored on {DB}" in proc.stdout
    assert f"{WEB[0]}: tlsapp.{old} live at {HOST}" in proc.stdout
    assert rows(node_env, WEB[0]) == before


def test_an_app_on_one_node_moves_its_database_to_the_services_node(node_env, nodes,
                                                                    tmp_path):
    """sweb2, out of tls.test now, serves another app with a database of its own."""
    other = make_app(tmp_path, "moveapp", ("postgresql",), ("python3-psycopg2",))
    node_env.silver("-y", "update", str(other), MOVED, "--node", WEB[1], "--noetchosts",
                    check=True)
    ask(node_env, WEB[1], "/pg/add?v=kept", MOVED)
    # a detached run leaves its maintenance login in a root-only file beside the versions'
    node_env.silver("run", "--detach", "--node", WEB[1], MOVED, "python", "-c", "0",
                    check=True)
    proc = node_env.silver("-y", "update", str(other), MOVED, "--node", WEB[1],
                           "--services-node", DB, "--noetchosts", check=True)
    assert "old database is left on the node" in proc.stdout
    assert root(node_env, WEB[1], "stat -c %a:%U:%G /var/lib/silverlining/env/moveapp/run.env"
                ).strip() == "600:root:root"
    assert "run: their" not in proc.stderr, proc.stderr
    assert rows(node_env, WEB[1], MOVED) == ["kept"]
    assert ask(node_env, WEB[1], "/pg/tls", MOVED)["sslmode"] == "verify-full"
    ask(node_env, WEB[1], "/pg/add?v=moved", MOVED)
    assert table(node_env, DB, "sl_moveapp") == ["kept", "moved"]
    assert table(node_env, WEB[1], "sl_moveapp") == ["kept"]      # the old copy, unused


def test_the_replica_follows_and_after_promote_the_app_loses_no_row(node_env, nodes, app):
    proc = node_env.silver("create-replica", DB, REPLICA, check=True)
    assert f"{REPLICA}: streaming replica of {DB}" in proc.stdout
    for v in ("r1", "r2", "r3"):
        ask(node_env, WEB[0], f"/pg/add?v={v}")
    written = rows(node_env, WEB[0])
    deadline = time.monotonic() + 20
    while table(node_env, REPLICA, "sl_tlsapp") != written and time.monotonic() < deadline:
        time.sleep(0.2)
    assert table(node_env, REPLICA, "sl_tlsapp") == written
    shown = node_env.silver("query", DB, check=True).stdout
    assert f"replica {REPLICA}: streaming" in shown and "behind" in shown
    # written just before the promote: the fenced primary's last writes are waited for
    ask(node_env, WEB[0], "/pg/add?v=last")
    proc = node_env.silver("promote", REPLICA, check=True)
    assert f"{REPLICA}: primary now (was a replica of {DB})" in proc.stdout
    assert f"{WEB[0]}: tlsapp." in proc.stdout and "restarted from" in proc.stdout
    assert f"{WEB[1]}: moveapp." in proc.stdout       # every location db1 held
    probe(nodes[LB], HOST, "/pg/add?v=after")
    assert rows(node_env, WEB[0]) == [*written, "last", "after"]
    assert rows(node_env, WEB[1], MOVED) == ["kept", "moved"]
    assert ask(node_env, WEB[0], "/pg/tls")["sslmode"] == "verify-full"
    # the old primary lets the member in no more; the data commands follow the promote
    assert "fenced" in node_env.silver("query", DB, check=True).stdout
    assert not member_connect(node_env, WEB[0], host=nodes_private(node_env, DB))["connected"]
    assert f"on {REPLICA}" in node_env.silver("backup", HOST, "remote:after-promote",
                                               check=True).stdout


def test_a_move_the_services_node_refuses_leaves_the_node_serving(node_env, nodes,
                                                                  tmp_path):
    """db1 has had a replica, so it takes no MariaDB or Redis: a one-node app's move
    there stops before anything points the app away, and its node serves again (the
    last test moves it to sdb2)."""
    other = make_app(tmp_path, "mymove", ("mysql", "redis"), ("python3-pymysql",
                                                             "python3-redis"))
    node_env.silver("-y", "update", str(other), MY_MOVED, "--node", WEB[1], "--noetchosts",
                    check=True)
    ask(node_env, WEB[1], "/mysql/set?k=a&v=kept", MY_MOVED)
    ask(node_env, WEB[1], "/redis/set?k=r&v=kept", MY_MOVED)
    proc = node_env.silver("-y", "update", str(other), MY_MOVED, "--node", WEB[1],
                           "--services-node", DB, "--noetchosts")
    assert proc.returncode == 1 and "MariaDB and Redis are not replicated" in proc.stderr, \
        proc.stderr
    assert f"{WEB[1]}: {MY_MOVED} serves from its own database again" in proc.stderr
    assert ask(node_env, WEB[1], "/mysql/get?k=a", MY_MOVED)["value"] == "kept"
    assert ask(node_env, WEB[1], "/redis/get?k=r", MY_MOVED)["value"] == "kept"


def nodes_private(node_env, name: str) -> str:
    return node_env.registry()[name]["private_address"]


# Run as root on a member: connect to MariaDB with mariaapp's credentials and the PyMySQL
# options in argv[1] (JSON; "tls": verify against the app's CA), print the outcome.
MY_CONNECT = r"""
import json, sys, pymysql
creds = dict(l.strip().split("=", 1) for l in open(%r) if "=" in l)
options = json.loads(sys.argv[1])
if options.pop("tls", False):
    options = {"ssl_ca": creds["ssl_ca"], "ssl_verify_cert": True,
               "ssl_verify_identity": True, **options}
try:
    pymysql.connect(host=creds["host"], port=int(creds["port"]), user=creds["user"],
                    password=creds["password"], database=creds["dbname"], connect_timeout=4,
                    **options).close()
    print(json.dumps({"connected": True}))
except Exception as exc:
    print(json.dumps({"connected": False, "error": repr(exc)}))
""" % MY_CREDENTIALS


@pytest.fixture(scope="module")
def maria_app(nodes, node_env, tmp_path_factory) -> Path:
    """``mariaapp`` on both members (plain several nodes), its MariaDB and Redis on
    ``sdb2``."""
    app = make_app(tmp_path_factory.mktemp("maria"), "mariaapp", ("mysql", "redis"),
                   ("python3-pymysql", "python3-redis"))
    node_env.silver("-y", "update", str(app), MARIA, "--node", WEB[0], "--node", WEB[1],
                    "--services-node", REPLICA, "--noetchosts", check=True)
    return app


def my_connect(node_env, member: str, **options) -> dict:
    script = f"python3 -c {shlex.quote(MY_CONNECT)} {shlex.quote(json.dumps(options))}"
    return json.loads(root(node_env, member, script).strip().splitlines()[-1])


def accounts(node_env) -> list[str]:
    """mariaapp's accounts on the services node: USER@HOST SSL_TYPE LIMIT."""
    return root(node_env, REPLICA, "mariadb --skip-ssl -N -B -e \"SELECT concat(User, '@', "
                                   "Host, ' ', ssl_type, ' ', max_user_connections) FROM "
                                   "mysql.user WHERE User LIKE '%mariaapp' ORDER BY 1\""
                ).splitlines()


def test_mariadb_both_members_write_and_read_the_same_row_over_verified_tls(node_env, nodes,
                                                                            maria_app):
    verified = my_connect(node_env, WEB[0], tls=True)
    assert verified["connected"], verified
    assert ask(node_env, WEB[0], "/mysql/set?k=a&v=one", MARIA)["value"] == "one"
    assert ask(node_env, WEB[1], "/mysql/get?k=a", MARIA)["value"] == "one"
    assert ask(node_env, WEB[1], "/mysql/set?k=a&v=two", MARIA)["value"] == "two"
    assert ask(node_env, WEB[0], "/mysql/get?k=a", MARIA)["value"] == "two"
    for member in WEB:
        assert ask(node_env, member, "/mysql/tls", MARIA)["version"].startswith("TLSv1.")
    # the row is on the services node; a member runs no MariaDB
    assert root(node_env, REPLICA, "mariadb --skip-ssl -N -B -e "
                                   "'SELECT v FROM sl_mariaapp.kv'").split() == ["two"]
    assert root(node_env, WEB[0], "test -e /usr/sbin/mariadbd && echo has || echo none"
                ).strip() == "none"
    # one account per member address and login, TLS required, limited as on one node
    found = accounts(node_env)
    for member in WEB:
        address = nodes_private(node_env, member)
        for user in ("sl_mariaapp", "slrun_mariaapp"):
            line = next(x for x in found if x.startswith(f"{user}@{address} "))
            assert line.split()[1] == "ANY" and line.split()[2] != "0", line


def test_a_plain_or_unverified_mariadb_connection_from_a_member_is_refused(node_env, nodes,
                                                                         maria_app):
    plain = my_connect(node_env, WEB[0])
    assert not plain["connected"] and "1045" in plain["error"], plain     # access denied
    other_ca = my_connect(node_env, WEB[0], ssl_ca="/etc/ssl/certs/ca-certificates.crt",
                          ssl_verify_cert=True)
    assert not other_ca["connected"] and "CERTIFICATE_VERIFY_FAILED" in other_ca["error"]
    verified = my_connect(node_env, WEB[0], tls=True)
    assert verified["connected"], verified


# Run as root on a member: connect to the services node's Redis with mariaapp's
# credentials and the redis-py options in argv[1] (JSON; "tls": verified against the
# app's CA, as CONFIG_REDIS_URL does), PING, print the outcome.
REDIS_CONNECT = r"""
import json, sys, redis
creds = dict(l.strip().split("=", 1) for l in open(%r) if "=" in l)
options = json.loads(sys.argv[1])
if options.pop("tls", False):
    options = {"ssl": True, "ssl_ca_certs": creds["ssl_ca"], "ssl_cert_reqs": "required",
               "ssl_check_hostname": True, **options}
try:
    redis.Redis(host=creds["host"], port=int(creds["port"]), username=creds["user"],
                password=creds["password"], socket_timeout=4, socket_connect_timeout=4,
                **options).ping()
    print(json.dumps({"connected": True}))
except Exception as exc:
    print(json.dumps({"connected": False, "error": repr(exc)}))
""" % REDIS_CREDENTIALS


# Run as root on a member, in the background: a verified connection to mariaapp's Redis
# held open until /tmp/go exists (at most 3 minutes), then used again; the outcome is
# printed (to /tmp/held.out).
HOLD_REDIS = r"""
import json, os, time, redis
creds = dict(l.strip().split("=", 1) for l in open(%r) if "=" in l)
r = redis.Redis(host=creds["host"], port=int(creds["port"]), username=creds["user"],
                password=creds["password"], ssl=True, ssl_ca_certs=creds["ssl_ca"],
                ssl_cert_reqs="required", socket_timeout=4, socket_connect_timeout=4)
r.ping()
open("/tmp/held", "w").close()
deadline = time.monotonic() + 180
while not os.path.exists("/tmp/go") and time.monotonic() < deadline:
    time.sleep(0.2)
try:
    r.ping()
    print(json.dumps({"connected": True}))
except Exception as exc:
    print(json.dumps({"connected": False, "error": repr(exc)}))
""" % REDIS_CREDENTIALS


def redis_connect(node_env, member: str, **options) -> dict:
    script = f"python3 -c {shlex.quote(REDIS_CONNECT)} {shlex.quote(json.dumps(options))}"
    return json.loads(root(node_env, member, script).strip().splitlines()[-1])


def redis_port(node_env) -> int:
    """mariaapp's Redis TLS port on the services node, from its instance's config."""
    return int(root(node_env, REPLICA, "sed -n 's/^tls-port //p' "
                                       "/etc/redis/redis-mariaapp.conf").strip())


def reaches(node_env, name: str, port: int) -> bool:
    """Whether ``name`` opens a TCP connection to the services node's ``port``."""
    return tcp_open(node_env, name, nodes_private(node_env, REPLICA), port)


def test_redis_both_members_write_and_read_the_same_key_over_verified_tls(node_env, nodes,
                                                                          maria_app):
    assert ask(node_env, WEB[0], "/redis/set?k=a&v=one", MARIA)["value"] == "one"
    assert ask(node_env, WEB[1], "/redis/get?k=a", MARIA)["value"] == "one"
    assert ask(node_env, WEB[1], "/redis/set?k=a&v=two", MARIA)["value"] == "two"
    assert ask(node_env, WEB[0], "/redis/get?k=a", MARIA)["value"] == "two"
    ca = "/var/lib/silverlining/data/mariaapp/services-ca.crt"
    for member in WEB:      # the app's own CONFIG_REDIS_URL: TLS, verified with the CA
        assert ask(node_env, member, "/redis/tls", MARIA) == {
            "class": "SSLConnection", "ssl_cert_reqs": "required", "ssl_ca_certs": ca,
            "ssl_check_hostname": "True"}
    # the key is in the app's own instance on the services node; a member runs no Redis
    admin = ("REDISCLI_AUTH=$(cat /etc/silverlining/redis-admin.secret) redis-cli --user "
             "silver-admin -s /run/silverlining/redis/mariaapp/redis.sock ")
    assert root(node_env, REPLICA, admin + "GET a").strip() == "two"
    assert root(node_env, WEB[0], "test -e /usr/bin/redis-server && echo has || echo none"
                ).strip() == "none"
    # the app's user still runs no admin command there
    assert "has no permissions" in ask(node_env, WEB[0], "/redis/config", MARIA)["error"]


def test_a_plain_unverified_or_non_member_redis_connection_is_refused(node_env, nodes,
                                                                      maria_app):
    plain = redis_connect(node_env, WEB[0])
    assert not plain["connected"] and "ConnectionError" in plain["error"], plain
    other_ca = redis_connect(node_env, WEB[0], ssl=True, ssl_cert_reqs="required",
                             ssl_ca_certs="/etc/ssl/certs/ca-certificates.crt")
    assert not other_ca["connected"] and "CERTIFICATE_VERIFY_FAILED" in other_ca["error"]
    verified = redis_connect(node_env, WEB[0], tls=True)
    assert verified["connected"], verified
    # below TLS 1.2 the server answers with an alert (the client offers TLS 1.1)
    target = f"{nodes_private(node_env, REPLICA)}:{redis_port(node_env)}"
    old = root(node_env, WEB[0], f"echo | openssl s_client -connect {target} -tls1_1 "
                                 "-cipher DEFAULT@SECLEVEL=0 2>&1; true")
    assert "alert protocol version" in old and "BEGIN CERTIFICATE" not in old, old
    # a node that is not a member (the balancer) does not even reach the port
    assert reaches(node_env, WEB[0], redis_port(node_env))
    assert not reaches(node_env, LB, redis_port(node_env))


def test_mariadb_and_redis_backup_clear_and_restore_run_on_the_services_node(
        node_env, nodes, maria_app, tmp_path):
    assert ask(node_env, WEB[0], "/redis/set?k=r&v=kept", MARIA)["value"] == "kept"
    dest = tmp_path / "maria.tar.gz"
    proc = node_env.silver("backup", MARIA, str(dest), check=True)
    assert "(mysql, redis;" in proc.stdout and f"[{REPLICA}] mysql: dumping" in proc.stderr
    assert f"[{REPLICA}] redis: dumping" in proc.stderr
    node_env.silver("-y", "clear", MARIA, check=True)
    assert ask(node_env, WEB[0], "/mysql/get?k=a", MARIA)["value"] is None
    assert ask(node_env, WEB[1], "/redis/get?k=r", MARIA)["value"] is None
    node_env.silver("restore", str(dest), MARIA, check=True)
    assert ask(node_env, WEB[1], "/mysql/get?k=a", MARIA)["value"] == "two"
    assert ask(node_env, WEB[0], "/redis/get?k=r", MARIA)["value"] == "kept"


def wait_for(node_env, name: str, command: str, seconds: float = 30) -> str:
    """``command``'s output on ``name`` once it is not empty."""
    deadline = time.monotonic() + seconds
    while not (out := root(node_env, name, command).strip()):
        assert time.monotonic() < deadline, f"nothing from {command!r} on {name}"
        time.sleep(0.5)
    return out


def test_a_node_taken_out_of_the_mariadb_location_is_refused(node_env, nodes, maria_app):
    assert my_connect(node_env, WEB[1], tls=True)["connected"]
    # a Redis connection sweb2 holds open across its removal, as a worker's would
    root(node_env, WEB[1], f"rm -f /tmp/held /tmp/go /tmp/held.out; setsid python3 -c "
                           f"{shlex.quote(HOLD_REDIS)} > /tmp/held.out 2>&1 < /dev/null &")
    wait_for(node_env, WEB[1], "ls /tmp/held 2>/dev/null || true")
    proc = node_env.silver("-y", "update", str(maria_app), MARIA, "--node", WEB[0],
                           "--remove-node", WEB[1], "--noetchosts", check=True)
    assert f"{WEB[1]}: removed from {MARIA}" in proc.stdout
    root(node_env, WEB[1], "touch /tmp/go")
    held = json.loads(wait_for(node_env, WEB[1], "cat /tmp/held.out").splitlines()[-1])
    assert not held["connected"], held          # ended by the services node
    refused = my_connect(node_env, WEB[1], tls=True)
    assert not refused["connected"] and ("timed out" in refused["error"]
                                         or "2003" in refused["error"]), refused
    assert not any(nodes_private(node_env, WEB[1]) in a for a in accounts(node_env))
    verified = my_connect(node_env, WEB[0], tls=True)
    assert verified["connected"], verified
    assert ask(node_env, WEB[0], "/mysql/get?k=a", MARIA)["value"] == "two"
    # its Redis port is closed to it too
    assert not reaches(node_env, WEB[1], redis_port(node_env))
    assert reaches(node_env, WEB[0], redis_port(node_env))


def test_deactivating_the_location_stops_the_services_node_admitting_its_node(node_env,
                                                                              nodes,
                                                                              maria_app):
    proc = node_env.silver("-y", "deactivate", MARIA, "--node", WEB[0], check=True)
    assert f"{REPLICA}: no longer admits {WEB[0]} to {MARIA}" in proc.stdout
    refused = my_connect(node_env, WEB[0], tls=True)
    assert not refused["connected"], refused
    assert all(a.split()[0].endswith(("@localhost", "@127.0.0.1")) for a in accounts(node_env))
    # the firewall too, for MariaDB and Redis (sweb1 still reaches tls.test's PostgreSQL)
    peers = root(node_env, REPLICA, "nft list set inet silverlining service_peers")
    assert f"{nodes_private(node_env, WEB[0])} . 3306" not in peers
    assert f"{nodes_private(node_env, WEB[0])} . {redis_port(node_env)}" not in peers
    assert not reaches(node_env, WEB[0], redis_port(node_env))


def test_an_app_on_one_node_moves_its_mariadb_and_redis_to_the_services_node(node_env, nodes,
                                                                             tmp_path):
    """mymove, on sweb2 with its MariaDB and Redis since db1 refused them, moves them to
    sdb2 (the primary now, without a replica)."""
    other = make_app(tmp_path, "mymove", ("mysql", "redis"), ("python3-pymysql",
                                                             "python3-redis"))
    proc = node_env.silver("-y", "update", str(other), MY_MOVED, "--node", WEB[1],
                           "--services-node", REPLICA, "--noetchosts", check=True)
    assert f"[{REPLICA}] restored mysql, redis of mymove from {WEB[1]}" in proc.stderr
    assert f"{WEB[1]}: mymove's old database is left on the node" in proc.stdout
    assert ask(node_env, WEB[1], "/mysql/get?k=a", MY_MOVED)["value"] == "kept"
    assert ask(node_env, WEB[1], "/redis/get?k=r", MY_MOVED)["value"] == "kept"
    assert ask(node_env, WEB[1], "/redis/tls", MY_MOVED)["class"] == "SSLConnection"
    assert ask(node_env, WEB[1], "/mysql/tls", MY_MOVED)["version"].startswith("TLSv1.")
    ask(node_env, WEB[1], "/mysql/set?k=a&v=moved", MY_MOVED)
    ask(node_env, WEB[1], "/redis/set?k=r&v=moved", MY_MOVED)
    # written on the services node; the old copies on sweb2 stay as they were, unused
    sql = "mariadb --skip-ssl -N -B -e 'SELECT v FROM sl_mymove.kv'"
    get = ("REDISCLI_AUTH=$(cat /etc/silverlining/redis-admin.secret) redis-cli --user "
           "silver-admin -s /run/silverlining/redis/mymove/redis.sock GET r")
    assert root(node_env, REPLICA, sql).split() == root(node_env, REPLICA, get).split() == [
        "moved"]
    assert root(node_env, WEB[1], sql).split() == root(node_env, WEB[1], get).split() == [
        "kept"]


# --- faults: the services node rebooted mid-request, a member rebooted --------------
# A location of its own (``fault.test``) on both members behind the balancer, its
# database on the services node: the tests above change tls.test's members and
# services node, these do not depend on what they left.

FAULT = "fault.test"


@pytest.fixture(scope="module")
def fault_app(nodes, node_env, tmp_path_factory) -> Path:
    """``faultapp`` at ``fault.test`` on both members behind the balancer, its
    database on the services node."""
    app = make_app(tmp_path_factory.mktemp("fault"), "faultapp", ("postgresql",),
                   ("python3-psycopg2",))
    node_env.silver("-y", "update", str(app), FAULT, "--node", WEB[0], "--node", WEB[1],
                    "--balancer", LB, "--services-node", DB, "--noetchosts", check=True)
    probe(nodes[LB], FAULT, "/pg/add?v=first")       # the table, before several writers
    return app


@dataclass
class Answer:
    path: str
    started: float          # wall clock: compared with the services node's own times
    ended: float
    status: int             # 0: no HTTP answer (refused, reset, timed out)
    body: dict


class Traffic:
    """Requests to ``FAULT`` through the balancer from a few threads until stopped:
    writers add rows on new connections (``hold``: one writer's transactions stay
    open that long), a reader lists them on its worker's kept connection."""

    TIMEOUT = 30.0

    def __init__(self, address: str, hold: float = 0.0) -> None:
        self.address, self.answers = address, []
        self.in_flight: dict[str, float] = {}
        self._stop = threading.Event()
        paths = ["/pg/add?v={}", "/pg/add?v={}", "/pg/list?kept=1"]
        if hold:
            paths.append(f"/pg/add?v={{}}&hold={hold}")
        self._threads = [threading.Thread(target=self._run, args=(f"t{i}-", p), daemon=True)
                         for i, p in enumerate(paths)]

    def __enter__(self) -> "Traffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.TIMEOUT + 5)

    def _run(self, prefix: str, template: str) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            path = template.format(f"{prefix}{n}")
            started = self.in_flight[prefix] = time.time()
            try:
                status, body, _ = http_get(self.address, FAULT, path, timeout=self.TIMEOUT)
                answer = json.loads(body) if status == 200 else {"error": body[:200].decode()}
            except (OSError, ValueError, http.client.HTTPException) as exc:
                status, answer = 0, {"error": repr(exc)}
            self.answers.append(Answer(path, started, time.time(), status, answer))
            del self.in_flight[prefix]
            time.sleep(0.02)

    def ok(self, path: str, since: float = 0.0) -> list[Answer]:
        return [a for a in self.answers if a.status == 200 and a.path.startswith(path)
                and a.started >= since]

    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    def wait(self, what, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, f"waited {timeout} s: {brief(self.failed())}"
            time.sleep(0.1)


def brief(answers: list[Answer], since: float = 0.0) -> list[tuple]:
    """The last few answers, for a message: when (from ``since``), status, path."""
    return [(round(a.started - since, 2), a.status, a.path, str(a.body)[:60])
            for a in answers[-5:]]


def assert_no_row_lost_or_made_up(traffic: Traffic, before: list[str],
                                  final: list[str]) -> None:
    """Every write answered 200 is in ``final``, and in every read that began after it;
    ``final`` is ``before`` and rows ``traffic`` tried to write, nothing else."""
    acked = [(a.ended, a.body["added"]) for a in traffic.ok("/pg/add")]
    assert {v for _, v in acked} <= set(final)
    tried = {a.path.split("v=")[1].split("&")[0] for a in traffic.answers
             if a.path.startswith("/pg/add")}
    assert final[:len(before)] == before and set(final[len(before):]) <= tried
    for read in traffic.ok("/pg/list"):
        seen = set(read.body["rows"])
        missing = [v for ended, v in acked if ended < read.started and v not in seen]
        assert not missing, f"a read at {read.started} missed rows acknowledged before: {missing}"


def test_the_services_node_rebooted_mid_request_fails_only_requests_in_flight(
        node_env, nodes, fault_app):
    """Requests in flight when db1 goes down may fail with a 5xx, within bounds; the
    app recovers by itself once db1 answers again; no acknowledged row is lost."""
    hba_before = root(node_env, DB, "grep sl_faultapp $(runuser -u postgres -- "
                                    "psql -At -c 'SHOW hba_file')")
    before = probe(nodes[LB], FAULT, "/pg/list")["rows"]
    with Traffic(nodes[LB], hold=4) as traffic:
        traffic.wait(lambda: len(traffic.ok("/pg/add?v=t3-")) >= 1
                     and time.time() - traffic.in_flight.get("t3-", time.time()) > 0.5)
        down = time.time()
        node_env.reboot(DB)
        traffic.wait(lambda: len(traffic.ok("/pg/add", since=time.time() - 1)) > 0)
        back = time.time()
        traffic.wait(lambda: len(traffic.ok("/pg/add?v=t3-", since=back)) >= 1)
    up = float(root(node_env, DB, "runuser -u postgres -- psql -At -c "
                                  "'SELECT extract(epoch FROM pg_postmaster_start_time())'"))
    failed = traffic.failed()
    last = max((a.started for a in failed), default=up)
    longest = max(a.ended - a.started for a in traffic.answers)
    print(f"\n{len(traffic.answers)} requests, {len(failed)} failed; PostgreSQL up "
          f"{up - down:.1f} s after the reboot began; the last failed request began "
          f"{last - up:+.1f} s from then; the longest took {longest:.1f} s")
    # a slow write was in flight when db1 went down, and it failed rather than lied
    assert any(a.started < down < a.ended and "hold" in a.path for a in failed), \
        brief(failed, down)
    # every failure is an HTTP 5xx, none hung
    assert all(500 <= a.status < 600 for a in failed), brief(failed, down)
    assert longest < 12
    # writes and reads work again within a few seconds of PostgreSQL answering
    assert all(a.started < up + 3 for a in failed), brief(failed[-3:], up)
    assert_no_row_lost_or_made_up(traffic, before, probe(nodes[LB], FAULT, "/pg/list")["rows"])
    # db1 admits the members and nobody else, as before the reboot
    assert root(node_env, DB, "grep sl_faultapp $(runuser -u postgres -- "
                              "psql -At -c 'SHOW hba_file')") == hba_before
    assert not tcp_open(node_env, LB, nodes_private(node_env, DB), 5432)
    assert tcp_open(node_env, WEB[0], nodes_private(node_env, DB), 5432)


def tcp_open(node_env, name: str, address: str, port: int) -> bool:
    """Whether node ``name`` opens a TCP connection to ``address:port`` within 3 s."""
    return root(node_env, name, f"timeout 3 bash -c '</dev/tcp/{address}/{port}' "
                                "&& echo open || echo closed").strip() == "open"


def live_on(node_env, member: str) -> str:
    """The version ``member`` serves for ``FAULT``, as the balancer reports it (and only
    when HAProxy has it up and taking traffic)."""
    out = node_env.silver("query", LB, check=True).stdout
    section = re.search(rf"^{re.escape(FAULT)} .*\n((?:[ \t]+.*\n?)*)", out, re.M)
    found = section and re.search(rf"^[ \t]+{member}\s+\S+\s+(v\d+)\s+UP\s+takes traffic",
                                  section.group(1), re.M)
    assert found, out
    return found.group(1)


def test_a_member_rebooted_under_traffic_comes_back_by_itself(node_env, nodes, fault_app):
    """Only requests in flight on web1 may fail; it comes back serving its live version,
    reaches db1 over verified TLS again, and the balancer puts it back."""
    version = live_on(node_env, WEB[0])
    before = probe(nodes[LB], FAULT, "/pg/list")["rows"]
    with Traffic(nodes[LB]) as traffic:
        traffic.wait(lambda: any(a.body.get("node") == WEB[0] for a in traffic.ok("/pg/")))
        down = time.time()
        node_env.reboot(WEB[0])
        started = time.time()       # its container again, booting
        traffic.wait(lambda: any(a.body.get("node") == WEB[0]
                                 for a in traffic.ok("/pg/", since=started)))
        time.sleep(1)
    failed = traffic.failed()
    back = min(a.started for a in traffic.ok("/pg/", since=started)
               if a.body.get("node") == WEB[0])
    print(f"\n{len(traffic.answers)} requests, {len(failed)} failed; {WEB[0]} answered "
          f"again {back - down:.1f} s after the reboot began")
    # nginx stops before the app, so web1 finishes what it was sent, and HAProxy sends
    # what nginx refuses to web2: no request fails
    assert failed == [], brief(failed, down)
    assert live_on(node_env, WEB[0]) == version
    tls = ask(node_env, WEB[0], "/pg/tls", FAULT)
    assert tls["ssl"] is True and tls["sslmode"] == "verify-full"
    assert_no_row_lost_or_made_up(traffic, before, probe(nodes[LB], FAULT, "/pg/list")["rows"])


def test_a_silent_services_node_fails_requests_within_the_connect_timeout(node_env, nodes,
                                                                        fault_app):
    """A cloud node that reboots drops packets instead of refusing them: an app that
    connects with ``CONFIG_PG_URL`` alone (no timeout of its own) gets its error within
    libpq's ``PGCONNECT_TIMEOUT``, not after the two minutes the OS takes."""
    drop = (f"nft add table inet flt_silent && nft add chain inet flt_silent out "
            f"'{{ type filter hook output priority 0; }}' && nft add rule inet flt_silent "
            f"out ip daddr {nodes_private(node_env, DB)} tcp dport 5432 drop")
    root(node_env, WEB[0], drop)
    try:
        out = root(node_env, WEB[0], f"curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}' "
                                     f"-m 60 -H 'Host: {FAULT}' http://127.0.0.1/pg/url || true")
    finally:
        root(node_env, WEB[0], "nft delete table inet flt_silent")
    status, seconds = out.split()
    print(f"\nwith db1 silent, /pg/url answered {status} after {float(seconds):.1f} s")
    assert status == "500" and float(seconds) < 15, out
    assert ask(node_env, WEB[0], "/pg/url", FAULT)["user"] == "sl_faultapp"


FAILED_MOVE = "failmove.test"
# before the real one in PATH, on the services node, installed or not yet
BROKEN_RESTORE = "printf '#!/bin/sh\\n%s\\n' {body} > /usr/local/bin/pg_restore; " \
                 "chmod 755 /usr/local/bin/pg_restore"
MENDED_RESTORE = "rm -f /usr/local/bin/pg_restore"


def test_a_move_whose_restore_fails_or_is_interrupted_leaves_the_node_serving(
        node_env, nodes, tmp_path):
    """A one-node app moved to sdb2 (fresh, or the primary after the replica's test):
    its pg_restore there fails, then hangs and silver is interrupted; each time the
    node serves its own rows again and nothing is recorded, so the update with the
    fault mended moves them."""
    other = make_app(tmp_path, "failmove", ("postgresql",), ("python3-psycopg2",))
    update = ("-y", "update", str(other), FAILED_MOVE, "--node", WEB[1], "--services-node",
              REPLICA, "--noetchosts")
    node_env.silver("-y", "update", str(other), FAILED_MOVE, "--node", WEB[1],
                    "--noetchosts", check=True)
    ask(node_env, WEB[1], "/pg/add?v=kept", FAILED_MOVE)
    fail = shlex.quote("echo 'pg_restore: error: could not write: No space left on device'"
                       " >&2; exit 1")
    root(node_env, REPLICA, BROKEN_RESTORE.format(body=fail))
    try:
        proc = node_env.silver(*update)
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("silver: error")]
        assert proc.returncode == 1 and len(errors) == 1, proc.stderr
        assert (f"{WEB[1]}: {FAILED_MOVE} serves from its own database again" in errors[0]
                and "No space left on device" in errors[0]
                and "left disabled" not in errors[0]), proc.stderr
        assert proc.stderr.count("from its own database") == 1, proc.stderr
        assert rows(node_env, WEB[1], FAILED_MOVE) == ["kept"]
        ask(node_env, WEB[1], "/pg/add?v=after", FAILED_MOVE)
        root(node_env, REPLICA, MENDED_RESTORE)
        hang = shlex.quote("echo $$ > /run/slow-restore.pid; exec sleep 300")
        root(node_env, REPLICA, "rm -f /run/slow-restore.pid; "
             + BROKEN_RESTORE.format(body=hang))
        with open(tmp_path / "err", "w+") as err:
            running = subprocess.Popen([sys.executable, "-m", "silverlining", *update],
                                       env={**os.environ, **node_env.env}, text=True,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=err)
            deadline = time.monotonic() + 300
            while not root(node_env, REPLICA, "cat /run/slow-restore.pid 2>/dev/null || true"):
                assert running.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
            running.send_signal(signal.SIGINT)
            assert running.wait(timeout=60) == 130
            err.seek(0)
            said = err.read()
        assert f"{WEB[1]}: {FAILED_MOVE} serves from its own database again" in said, said
        assert "Traceback" not in said, said
        assert rows(node_env, WEB[1], FAILED_MOVE) == ["kept", "after"]
    finally:
        root(node_env, REPLICA, "p=$(cat /run/slow-restore.pid 2>/dev/null) && kill $p; "
             "rm -f /run/slow-restore.pid; " + MENDED_RESTORE)
    proc = node_env.silver(*update, check=True)
    assert "old database is left on the node" in proc.stdout
    ask(node_env, WEB[1], "/pg/add?v=moved", FAILED_MOVE)
    assert table(node_env, REPLICA, "sl_failmove") == ["kept", "after", "moved"]
