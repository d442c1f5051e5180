"""The shared SSH connection on real local nodes: the user's ssh config is honoured,
commands and rsync reuse one login, and a node that dies mid-command ends it in one
line within a bounded time."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from silverlining import transport
from silverlining.errors import SilverError
from silverlining.node import connect
from silverlining.state import known_hosts_path
from tests.conftest import REPO
from tests.integration.fixtures_setup import setup_node  # noqa: F401

pytestmark = pytest.mark.node

RUN = """
import sys
from silverlining import transport
print(transport.SSH(sys.argv[1], label="t").run(["true"]).status)
"""


def logins(address: str) -> int:
    """sshd's accepted logins so far on the node (its journal)."""
    with transport.SSH(address, label="t") as ssh:
        out = ssh.run(["journalctl", "-q", "--no-pager", "-o", "cat", "-u", "ssh"]).stdout
    return out.count("Accepted publickey")


def test_commands_and_rsync_share_one_login(node_env, setup_node, node_environ, tmp_path):
    address = setup_node.address
    transport.disconnect(address)
    before = logins(address)               # the root master is up from here on
    for _ in range(3):                     # separate processes, as silver commands are
        subprocess.run([sys.executable, "-c", RUN, address], env=os.environ, cwd=REPO,
                       check=True, capture_output=True)
    for _ in range(2):
        proc = node_env.silver("query", setup_node.name)
        assert proc.returncode == 0, proc.stderr
    (tmp_path / "f").write_text("x")
    transport.rsync(f"{tmp_path}/", address, "/tmp/reuse/", label="t")
    # query logs in as the deploy user: one more master, and only one
    assert logins(address) - before == 1
    folder = transport.control_dir()
    assert folder == node_env.home / "ssh"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    sockets = [p for p in folder.iterdir() if stat.S_ISSOCK(p.stat().st_mode)]
    assert len(sockets) >= 2
    # forgetting the node's key closes its connections: the next command logs in again
    transport.disconnect(address)
    assert not [p for p in folder.iterdir() if stat.S_ISSOCK(p.stat().st_mode)]
    assert logins(address) - before == 2


def test_ssh_config_is_honoured(node_env, setup_node, node_environ, tmp_path, monkeypatch):
    address = setup_node.address
    with transport.SSH(address, label="t") as ssh:
        ssh.run(["sh", "-c", "printf 'Port 22\\nPort 2222\\n' > "
                 "/etc/ssh/sshd_config.d/test-port.conf && systemctl restart ssh && "
                 "nft insert rule inet silverlining input tcp dport 2222 accept"])
    try:
        config = tmp_path / "ssh_config"
        config.write_text(f"Host {address}\n    Port 2222\n")
        monkeypatch.setenv("SILVER_SSH_CONFIG", str(config))
        assert transport.endpoint(address) == (address, 2222)
        assert transport.wait_for_ssh(address, timeout=10) >= 0
        with transport.SSH(address, label="t") as ssh:
            # the host key is still checked against our known_hosts, under the address
            assert ssh.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[3] == "2222"
        (tmp_path / "up").mkdir()
        (tmp_path / "up" / "f").write_text("x")
        stats = transport.rsync(f"{tmp_path}/up/", address, "/tmp/port/", label="t")
        assert "f" in stats.changed
        proc = node_env.silver("query", setup_node.name, env={"SILVER_SSH_CONFIG": str(config)})
        assert proc.returncode == 0, proc.stderr
    finally:
        monkeypatch.delenv("SILVER_SSH_CONFIG")
        with transport.SSH(address, label="t") as ssh:
            ssh.run(["sh", "-c", "rm -f /etc/ssh/sshd_config.d/test-port.conf && "
                     "systemctl restart ssh && nft -f /etc/silverlining/nftables.conf"])


def test_trust_on_first_use_records_what_the_node_presents(setup_node, node_environ):
    address = setup_node.address
    transport.forget_host_key(address)
    fingerprint = transport.trust_host_key(address)
    with transport.SSH(address, label="t") as ssh:
        on_node = ssh.run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).stdout
        listed = ssh.run(["ssh-keygen", "-l", "-f", "/etc/ssh/ssh_host_ed25519_key.pub"]).stdout
    recorded = {tuple(line.split()[1:3]) for line in known_hosts_path().read_text().splitlines()
                if line.split()[:1] == [address]}
    assert recorded == {tuple(line.split()[:2]) for line in on_node.splitlines()}
    assert fingerprint == listed.split()[1]


def test_a_dead_node_ends_a_command_in_one_line(node_env, make_node, node_environ):
    node = make_node("tr-dead")
    failures: list[BaseException] = []
    with transport.SSH(node.address, label=node.name) as ssh:
        ssh.run(["true"])

        def sleep() -> None:
            try:
                ssh.run(["sleep", "300"])
            except SilverError as exc:
                failures.append(exc)

        worker = threading.Thread(target=sleep)
        worker.start()
        time.sleep(1)
        # the node falls silent mid-command: no FIN, no answer (a blackhole route)
        route = ["blackhole", f"{node.address}/32"]
        subprocess.run(["ip", "route", "add", *route], check=True)
        try:
            start = time.monotonic()
            worker.join(60)
            waited = time.monotonic() - start
            assert not worker.is_alive(), "the command hangs on a dead node"
            assert waited < transport.ALIVE_INTERVAL * (transport.ALIVE_COUNT + 2)
            message = failures[0].message
            assert message.startswith(f"[{node.name}] SSH connection to {node.address} lost")
            assert "\n" not in message
            # the next command logs in again, and fails in one line (the blackhole route
            # refuses at once; silence would be cut by the connect timeout)
            start = time.monotonic()
            with pytest.raises(SilverError) as info:
                transport.SSH(node.address, label=node.name, timeout=3)
            assert time.monotonic() - start < 10
            assert info.value.message.startswith(f"[{node.name}] cannot connect to "
                                                 f"root@{node.address}: ")
            assert "\n" not in info.value.message
        finally:
            subprocess.run(["ip", "route", "del", *route], check=True)


SUDO_CALLS = ["sh", "-c", "journalctl -q --no-pager -o cat _COMM=sudo | "
              "grep -c 'COMMAND=/usr/local/sbin/silver-node' || true"]
CONNECT_AS = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("/run/silverlining/node.sock")
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_node_commands_run_in_the_command_server(node_env, setup_node, node_environ):
    """The deploy user's calls go to silverlining-node.service, without sudo; a server
    whose code is older than the node's server files hands calls back to sudo and
    ends; nobody else can reach it; a broken request leaves it serving."""
    address = setup_node.address
    root = transport.SSH(address, label="t")
    deploy = transport.SSH(address, user="silver", label="t")
    entry = "/usr/local/sbin/silver-node"
    deploy.run_json([entry, "query"])                  # the server is up after this one
    server = root.run(["systemctl", "show", "-P", "MainPID", "silverlining-node.service"])
    before = int(root.run(SUDO_CALLS).stdout)
    for _ in range(3):
        assert deploy.run_json([entry, "query"])["node"]
    # secrets on stdin reach the command; its errors come back as ever
    failed = deploy.run([entry, "deploy", '{"app": "nope", "version": "v1", '
                         '"location": "nope.test", "params_stdin": true}'],
                        input="not json", check=False)
    assert failed.status == 1 and "error" in failed.stdout
    assert int(root.run(SUDO_CALLS).stdout) == before
    assert root.run(["systemctl", "show", "-P", "MainPID",
                     "silverlining-node.service"]).stdout == server.stdout
    # a request that is not one (bad JSON, no "go") is dropped, the server stays
    deploy.run(["python3", "-c", "import socket; s = socket.socket(socket.AF_UNIX); "
                "s.connect('/run/silverlining/node.sock'); s.sendall(b'\\0\\0\\0\\2{}'); "
                "s.recv(10)"])
    assert deploy.run_json([entry, "query"])["node"]
    # only the deploy user (and root) reach the socket
    assert root.run(["runuser", "-u", "www-data", "--", "python3", "-c", CONNECT_AS]
                    ).stdout.strip() == "PermissionError"
    assert deploy.run(["python3", "-c", CONNECT_AS]).stdout.strip() == "connected"
    # other server files (a setup-node since the server started): back to sudo, and
    # the server ends; the next call starts a new one on the new files
    version = root.run(["cat", "/etc/silverlining/server-version"]).stdout.strip()
    root.run(["sh", "-c", "echo 0000 > /etc/silverlining/server-version"])
    try:
        assert deploy.run_json([entry, "query"])["node"]
        assert int(root.run(SUDO_CALLS).stdout) == before + 1
    finally:
        root.run(["sh", "-c", f"echo {version} > /etc/silverlining/server-version"])
    deadline = time.monotonic() + 10
    while root.run(["systemctl", "is-active", "silverlining-node.service"],
                   check=False).stdout.strip() == "active":
        assert time.monotonic() < deadline, "the stale server did not end"
        time.sleep(0.2)
    assert deploy.run_json([entry, "query"])["node"]
    assert int(root.run(SUDO_CALLS).stdout) == before + 1
    assert root.run(["systemctl", "show", "-P", "MainPID", "silverlining-node.service"]
                    ).stdout not in (server.stdout, "0\n")


def test_a_wedged_command_server_neither_hangs_a_call_nor_runs_it_twice(
        node_env, setup_node, node_environ):
    """A server that takes connections and never answers (stopped): the call falls
    back to sudo within a bounded time and runs once; the server, resumed, drops the
    call it had queued rather than run it a second time (``reserve`` numbers each run)."""
    address = setup_node.address
    root = transport.SSH(address, label="t")
    deploy = transport.SSH(address, user="silver", label="t")
    entry = "/usr/local/sbin/silver-node"
    reserve = [entry, "reserve", '{"app": "wedged"}']
    assert deploy.run_json(reserve)["version"] == "v1"     # the server is up after this
    server = root.run(["systemctl", "show", "-P", "MainPID",
                       "silverlining-node.service"]).stdout.strip()
    before = int(root.run(SUDO_CALLS).stdout)
    root.run(["kill", "-STOP", server])
    try:
        start = time.monotonic()
        assert deploy.run_json(reserve, timeout=60)["version"] == "v2"
        waited = time.monotonic() - start
    finally:
        root.run(["kill", "-CONT", server])
    assert connect.READY_TIMEOUT <= waited < connect.READY_TIMEOUT + 10
    assert int(root.run(SUDO_CALLS).stdout) == before + 1
    # the resumed server takes the queued call first and drops it; the next one it runs
    assert deploy.run_json(reserve)["version"] == "v3"
    assert int(root.run(SUDO_CALLS).stdout) == before + 1
    deadline = time.monotonic() + 10
    while root.run(["pgrep", "-P", server], check=False).stdout.strip():
        assert time.monotonic() < deadline, "the server's forks did not end"
        time.sleep(0.2)
    assert deploy.run_json(reserve)["version"] == "v4"
    assert root.run(["systemctl", "show", "-P", "MainPID",
                     "silverlining-node.service"]).stdout.strip() == server
