"""A location's PostgreSQL on a services node, shared by two members over verified TLS.

Real local nodes on the nodes' private network: ``sdb-TAG`` holds the database,
``sweb1-TAG`` and ``sweb2-TAG`` serve ``tls.test`` behind the balancer
``slb-TAG`` (each member is asked on itself, so each one's reads and writes are
known), ``sdb2-TAG`` becomes its streaming replica and then the primary. The
attacks come first: a plain connection, a client trusting other CAs, a node that
is no longer a member, and the same after the services node rebooted; then the
data commands on the services node, moving a one-node app's database there, and
the replica."""

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
