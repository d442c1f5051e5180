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

import json
import os
import re
import shlex
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.fixtures_apps import make_app, probe

pytestmark = pytest.mark.node

TAG = os.environ.get("SILVER_TEST_NODE_TAG") or "svc"
DB = f"sdb-{TAG}"
LB = f"slb-{TAG}"
REPLICA = f"sdb2-{TAG}"
WEB = [f"sweb1-{TAG}", f"sweb2-{TAG}"]
HOST = "tls.test"
MOVED = "move.test"
CREDENTIALS = "/var/lib/silverlining/data/tlsapp/postgresql.credentials"
CA = "/var/lib/silverlining/data/tlsapp/services-ca.crt"      # installed for the app
MARIA = "maria.test"
MY_CREDENTIALS = "/var/lib/silverlining/data/mariaapp/mysql.credentials"
REDIS_CREDENTIALS = "/var/lib/silverlining/data/mariaapp/redis.credentials"
MOVED_MY = "movemy.test"

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
    with node_env.environ():
        from silverlining.providers import get_driver
        from silverlining.userconfig import UserConfig
        driver = get_driver(UserConfig.load().provider("local"))
        driver.reboot_node(driver.ex_get_node(DB))
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
    proc = node_env.silver("-y", "update", str(other), MOVED, "--node", WEB[1],
                           "--services-node", DB, "--noetchosts", check=True)
    assert "old database is left on the node" in proc.stdout
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
    target = f"/dev/tcp/{nodes_private(node_env, REPLICA)}/{port}"
    return root(node_env, name, f"timeout 3 bash -c ': < {target}' 2>/dev/null && echo open "
                                "|| echo closed").strip() == "open"


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
    """sweb2, out of maria.test now, serves another app with MariaDB and Redis of its own."""
    other = make_app(tmp_path, "movemy", ("mysql", "redis"), ("python3-pymysql",
                                                             "python3-redis"))
    node_env.silver("-y", "update", str(other), MOVED_MY, "--node", WEB[1], "--noetchosts",
                    check=True)
    ask(node_env, WEB[1], "/mysql/set?k=a&v=kept", MOVED_MY)
    ask(node_env, WEB[1], "/redis/set?k=r&v=kept", MOVED_MY)
    proc = node_env.silver("-y", "update", str(other), MOVED_MY, "--node", WEB[1],
                           "--services-node", REPLICA, "--noetchosts", check=True)
    assert f"[{REPLICA}] restored mysql, redis of movemy from {WEB[1]}" in proc.stderr
    assert f"{WEB[1]}: movemy's old database is left on the node" in proc.stdout
    assert ask(node_env, WEB[1], "/mysql/get?k=a", MOVED_MY)["value"] == "kept"
    assert ask(node_env, WEB[1], "/redis/get?k=r", MOVED_MY)["value"] == "kept"
    assert ask(node_env, WEB[1], "/redis/tls", MOVED_MY)["class"] == "SSLConnection"
    assert ask(node_env, WEB[1], "/mysql/tls", MOVED_MY)["version"].startswith("TLSv1.")
    ask(node_env, WEB[1], "/mysql/set?k=a&v=moved", MOVED_MY)
    ask(node_env, WEB[1], "/redis/set?k=r&v=moved", MOVED_MY)
    # written on the services node; the old copies on sweb2 stay as they were, unused
    sql = "mariadb --skip-ssl -N -B -e 'SELECT v FROM sl_movemy.kv'"
    get = ("REDISCLI_AUTH=$(cat /etc/silverlining/redis-admin.secret) redis-cli --user "
           "silver-admin -s /run/silverlining/redis/movemy/redis.sock GET r")
    assert root(node_env, REPLICA, sql).split() == root(node_env, REPLICA, get).split() == [
        "moved"]
    assert root(node_env, WEB[1], sql).split() == root(node_env, WEB[1], get).split() == [
        "kept"]
