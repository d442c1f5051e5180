"""create-node / list-nodes / destroy-node and the SSH transport on real local nodes."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time

import pytest

from silverlining import nodes, transport
from silverlining.errors import SilverError
from silverlining.state import known_hosts_path
from tests.conftest import REPO

pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def nc1(make_module_node):
    return make_module_node("nc1")


def rows(proc) -> dict[str, list[str]]:
    assert proc.returncode == 0, proc.stderr
    return {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}


def boot_id(env, name: str) -> str:
    with env.ssh(name) as ssh:
        return ssh.run(["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()


def test_created_node_is_recorded_everywhere(node_env, nc1):
    assert re.fullmatch(r"10\.213\.\d+\.2", nc1.address)
    entry = node_env.registry()["nc1"]
    assert re.fullmatch(r"10\.213\.0\.\d+", entry.pop("private_address"))   # the bridge
    assert entry == {"address": nc1.address, "provider": "local", "driver": "local",
                     "node_id": "nc1"}
    assert f"{nc1.address} nc1 # silverlining" in node_env.etc_hosts.read_text()
    known = [line.split() for line in (node_env.home / "known_hosts").read_text().splitlines()]
    assert {k[0] for k in known} == {nc1.address} and "ssh-ed25519" in {k[1] for k in known}
    # read off the node's disk, not taken on trust over the network
    with node_env.ssh("nc1") as ssh:
        on_node = ssh.run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).stdout
    assert {(k[1], k[2]) for k in known} == {tuple(ln.split()[:2]) for ln in on_node.splitlines()}
    assert rows(node_env.silver("list-nodes"))["nc1"] == ["nc1", "running", nc1.address,
                                                         "local"]


def test_ssh_run_streams_quotes_and_reports(node_env, nc1):
    seen: list[tuple[str, str]] = []
    with node_env.ssh("nc1") as ssh:
        result = ssh.run(["sh", "-c", 'hostname; echo "$1" >&2; echo two', "sh", "a b;$HOME"],
                         stream=lambda name, line: seen.append((name, line)))
        assert result.stdout == "nc1\ntwo\n" and result.stderr == "a b;$HOME\n"
        assert ("stdout", "nc1") in seen and ("stderr", "a b;$HOME") in seen
        assert ssh.run(["cat"], input="x" * 3_000_000).stdout == "x" * 3_000_000
        with pytest.raises(transport.RemoteCommandError) as info:
            ssh.run(["sh", "-c", "echo first >&2; echo last words >&2; exit 7"])
        assert info.value.message == ("[nc1] sh exited with status 7: first | last words")
        assert ssh.run(["false"], check=False).status == 1
        with pytest.raises(SilverError, match=r"\[nc1\] sleep timed out after 1s"):
            ssh.run(["sleep", "20"], timeout=1)
        assert ssh.run_json(["python3", "-c", "import json; print('progress');"
                             "print(json.dumps({'ok': True}))"]) == {"ok": True}
        with pytest.raises(SilverError) as info:
            ssh.run_json(["python3", "-c", "import json,sys; print(json.dumps("
                          "{'error': 'no app named x'})); sys.exit(1)"])
        assert info.value.message == "[nc1] no app named x"
        ssh.put_file("/root/secret.txt", b"s3cret\n", 0o600)
        assert ssh.run(["stat", "-c", "%a %U", "/root/secret.txt"]).stdout == "600 root\n"
        assert ssh.run(["cat", "/root/secret.txt"]).stdout == "s3cret\n"
        with pytest.raises(SilverError, match=r"^\[nc1\] cannot write /no/such/dir/x: "):
            ssh.put_file("/no/such/dir/x", b"x", 0o600)


INTERACTIVE = """
import sys
from silverlining import transport
with transport.SSH(sys.argv[1], label="nc1") as ssh:
    status = ssh.interactive(["sh", "-c", "tty; read x; echo got $x; exit 3"])
print("status", status)
"""


def test_interactive_uses_a_pty_and_forwards_input(node_env, nc1):
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(node_env.env)
        os.execv(sys.executable, [sys.executable, "-c", INTERACTIVE, nc1.address])
    output = b""
    deadline = time.monotonic() + 30
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not sent and b"/dev/pts/" in output:
            os.write(fd, b"hello\r")
            sent = True
    _, wait_status = os.waitpid(pid, 0)
    text = output.decode()
    assert os.waitstatus_to_exitcode(wait_status) == 0, text
    assert "/dev/pts/" in text and "got hello" in text and "status 3" in text


def test_rsync_sends_differences_only(node_env, nc1, tmp_path):
    src = tmp_path / "app"
    (src / "pkg").mkdir(parents=True)
    (src / "app.ini").write_text("[production]\n")
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "pkg" / "mod.pyc").write_bytes(b"junk")
    with node_env.environ():
        first = transport.rsync(f"{src}/", nc1.address, "/srv/one/", excludes=["*.pyc"],
                                label="nc1")
        assert first.files_transferred == 2 and "pkg/mod.py" in first.changed
        (src / "app.ini").write_text("[production]\napp_name = x\n")
        second = transport.rsync(f"{src}/", nc1.address, "/srv/two/", excludes=["*.pyc"],
                                 link_dest="/srv/one/", label="nc1")
        assert second.changed == ["app.ini"] and second.files_transferred == 1
    with node_env.ssh("nc1") as ssh:
        listing = ssh.run(["find", "/srv/two", "-type", "f"]).stdout.split()
        assert sorted(listing) == ["/srv/two/app.ini", "/srv/two/pkg/mod.py"]
        links = ssh.run(["stat", "-c", "%h", "/srv/two/pkg/mod.py"]).stdout.strip()
        assert links == "2"     # hard-linked from /srv/one, not sent again


def test_reboot_keeps_identity(node_env, nc1, node_environ):
    before = boot_id(node_env, "nc1")
    with node_env.ssh("nc1") as ssh:
        ssh.run(["systemctl", "reboot"], check=False)
    deadline = time.monotonic() + 60
    while _ssh_port_open(nc1.address):
        assert time.monotonic() < deadline, "node did not go down"
        time.sleep(0.5)
    # Going down or down: resolve() starts a stopped local node and waits for SSH.
    assert nodes.resolve("nc1").address == nc1.address
    assert boot_id(node_env, "nc1") != before
    assert rows(node_env.silver("list-nodes"))["nc1"][1] == "running"


def _ssh_port_open(address: str) -> bool:
    try:
        socket.create_connection((address, 22), timeout=2).close()
    except OSError:
        return False
    return True


def test_unknown_key_refused_until_create_node_wait(node_env, nc1, node_environ):
    transport.forget_host_key(nc1.address)
    with pytest.raises(transport.HostKeyError) as info:
        transport.SSH(nc1.address, label="nc1")
    assert "host key of " + nc1.address + " unknown" in info.value.message
    assert "silver create-node --wait" in info.value.message
    proc = node_env.silver("create-node", "nc1", "--if-not-exists", "--wait")
    assert proc.returncode == 0, proc.stderr
    assert "exists (running); not creating it" in proc.stderr
    assert "host keys read from the node's own disk and recorded" in proc.stderr
    assert boot_id(node_env, "nc1")


def test_wrong_login_key_is_one_line(node_env, nc1, node_environ, tmp_path, monkeypatch):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    monkeypatch.setenv("SILVER_SSH_KEY", str(other))
    monkeypatch.setenv("HOME", str(tmp_path))           # no default ~/.ssh keys
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # no agent keys
    with pytest.raises(SilverError) as info:
        transport.SSH(nc1.address, label="nc1")
    assert info.value.message.startswith(f"[nc1] SSH login as root@{nc1.address} refused")
    with pytest.raises(SilverError) as info:
        transport.rsync(str(REPO / "pyproject.toml"), nc1.address, "/tmp/", label="nc1")
    assert info.value.message.startswith(f"[nc1] SSH login as root@{nc1.address} refused "
                                         "(rsync)")


def _create_in_parallel(node_env, names: list[str]) -> None:
    procs = [subprocess.Popen([sys.executable, "-m", "silverlining", "create-node", name,
                               "--wait", "--etc-hosts"], cwd=REPO, text=True,
                              env={**os.environ, **node_env.env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in names]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err


def test_parallel_nodes_changed_key_and_complete_destroy(node_env, make_node):
    names = ["nc2", "nc3"]
    make_node.track(*names)          # destroyed by the fixture if anything fails
    _create_in_parallel(node_env, names)
    addresses = {name: node_env.address(name) for name in names}
    assert len(set(addresses.values())) == 2
    listed = rows(node_env.silver("list-nodes"))
    for name in names:
        assert listed[name][1:] == ["running", addresses[name], "local"]
        with node_env.ssh(name) as ssh:
            assert ssh.run(["hostname"]).stdout.strip() == name

    proc = node_env.silver("create-node", "nc2")
    assert proc.returncode == 2 and "node 'nc2' already exists" in proc.stderr
    key_before = (node_env.home / "known_hosts").read_text()
    proc = node_env.silver("create-node", "nc2", "--if-not-exists", "--wait")
    assert proc.returncode == 0, proc.stderr
    assert (node_env.home / "known_hosts").read_text() == key_before

    # An impostor at nc2's address (new host keys) is refused by SSH and rsync.
    with node_env.ssh("nc2") as ssh:
        ssh.run(["sh", "-c", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A -q && "
                 "systemctl restart ssh"])
    with node_env.environ():
        # the connection made before stays the genuine node's: new logins meet the impostor
        transport.disconnect(addresses["nc2"])
        with pytest.raises(transport.HostKeyError) as info:
            transport.SSH(addresses["nc2"], label="nc2")
        kh = known_hosts_path()
        assert f"host key of {addresses['nc2']} CHANGED" in info.value.message
        assert f"'silver forget-host nc2' (it is in {kh})" in info.value.message
        with pytest.raises(transport.HostKeyError, match="CHANGED"):
            transport.rsync(str(REPO / "pyproject.toml"), addresses["nc2"], "/tmp/",
                            label="nc2")
    proc = node_env.silver("create-node", "nc2", "--if-not-exists", "--wait")
    assert proc.returncode == 1 and "CHANGED" in proc.stderr and "Traceback" not in proc.stderr
    # forgetting is explicit; then the local provider reads the new key off the node's disk
    proc = node_env.silver("forget-host", "nc2", check=True)
    assert proc.stdout == f"nc2: forgot the host key of {addresses['nc2']}\n"
    proc = node_env.silver("create-node", "nc2", "--if-not-exists", "--wait", check=True)
    assert "host keys read from the node's own disk" in proc.stderr
    with node_env.ssh("nc2") as ssh:
        assert ssh.run(["hostname"]).stdout.strip() == "nc2"

    proc = node_env.silver("-y", "destroy-node", "nc2", "nc3")
    assert proc.returncode == 0, proc.stderr
    listed = rows(node_env.silver("list-nodes"))
    known = (node_env.home / "known_hosts").read_text()
    hosts = node_env.etc_hosts.read_text()
    for name, address in addresses.items():
        assert name not in listed and name not in node_env.registry()
        assert address not in known and f" {name} " not in hosts
        assert not (node_env.home / "local" / "nodes" / name).exists()
        with pytest.raises(SilverError):
            transport.wait_for_ssh(address, timeout=2)
    proc = node_env.silver("-y", "destroy-node", "nc2")
    assert proc.returncode == 2 and "unknown node 'nc2'" in proc.stderr
    assert json.loads((node_env.home / "nodes.json").read_text()).keys() <= {"nc1"}
