"""The local provider's driver against real systemd-nspawn nodes.

Driver-level: nodes are created, reached over SSH with plain ``ssh``,
rebooted, killed and destroyed, and every host-side trace (mount, network
namespace, veth links, files, processes) is checked after destroy. The base
image is built once per machine into SILVER_LOCAL_CACHE (default
/var/cache/silverlining-test/images).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from libcloud.compute.base import NodeAuthSSHKey
from libcloud.compute.types import NodeState

from silverlining.errors import SilverError
from silverlining.providers import local_apt, local_image, local_net
from silverlining.providers.local import LocalNodeDriver
from silverlining.providers.local_host import host_lock, is_mounted, pid_alive
from tests.integration.conftest import suite_image

pytestmark = pytest.mark.node

CACHE = os.environ.get("SILVER_LOCAL_CACHE") or "/var/cache/silverlining-test/images"
IMAGE = suite_image() or local_image.DEFAULT_IMAGE


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> LocalNodeDriver:
    drv = LocalNodeDriver(state_dir=str(tmp_path_factory.mktemp("local-state")),
                          cache_dir=CACHE)
    drv.ex_build_image(IMAGE)
    yield drv
    for node in drv.list_nodes():
        drv.destroy_node(node)


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sshkey") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path


@pytest.fixture
def make_node(driver, key):
    """Create nodes; destroyed at the end of the test even when it fails."""
    made: list[str] = []

    def make(name: str, **kwargs):
        made.append(name)
        kwargs.setdefault("image", IMAGE)
        return driver.create_node(name, auth=NodeAuthSSHKey(key.with_suffix(".pub")
                                                            .read_text()), **kwargs)
    yield make
    for name in made:
        driver.destroy_node(name)


def wait_port(addr: str, port: int = 22, timeout: float = 30) -> float:
    started = time.monotonic()
    while True:
        try:
            with socket.create_connection((addr, port), timeout=1):
                return time.monotonic() - started
        except OSError:
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{addr}:{port} not reachable in {timeout} s")
            time.sleep(0.1)


def ssh(key: Path, addr: str, *argv: str, timeout: float = 120) -> str:
    """Run a shell command line on the node as root (ssh joins argv with spaces);
    sshd may need a moment after its port opens."""
    cmd = ["ssh", "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
           "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           "-i", str(key), f"root@{addr}", *argv]
    for attempt in range(20):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 255 or attempt == 19:
            break
        time.sleep(0.5)
    assert proc.returncode == 0, f"ssh {argv} -> {proc.returncode}: {proc.stderr}"
    return proc.stdout


def container_init(nspawn_pid: int) -> int:
    """The container's systemd: the child of nspawn (it outlives a killed nspawn)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == nspawn_pid:
            return int(stat.parent.name)
    raise AssertionError(f"nspawn {nspawn_pid} has no child")


def assert_no_trace(driver: LocalNodeDriver, name: str, extra: dict,
                    nspawn_lock: str | None = None) -> None:
    number = extra["number"]
    assert not Path("/run/systemd/nspawn/propagate", name).exists()
    if nspawn_lock:
        assert not Path("/run/systemd/nspawn/locks", nspawn_lock).exists()
    assert not (driver.state_dir / "nodes" / name).exists()
    assert not is_mounted(Path(extra["rootfs"]))
    assert extra["rootfs"] not in Path("/proc/mounts").read_text()
    assert not local_net.netns_path(number).exists()
    assert not local_net.link_exists(local_net.link_name(number))
    assert not local_net.link_exists(local_net.lan_link_name(number))
    assert local_net.claim_owner(number) != Path(extra["root_dir"])
    assert not pid_alive(extra["pid"], "systemd-nspawn", extra["rootfs"])
    assert driver.ex_get_node(name) is None
    assert name not in [n.name for n in driver.list_nodes()]


def test_catalogue(driver):
    images = {i.id: i for i in driver.list_images()}
    assert images["debian-13"].name == "Debian 13 (trixie)"
    assert images["debian-13"].extra["default"] is True
    assert images["debian-12"].name == "Debian 12 (bookworm)"
    assert images["debian-12"].extra["default"] is False
    assert images[IMAGE].extra["cached"] is True
    assert {s.id for s in driver.list_sizes()} == {"small", "medium", "large"}
    assert [loc.id for loc in driver.list_locations()] == ["local"]


def test_lifecycle_ssh_reboot_destroy(driver, key, make_node):
    started = time.monotonic()
    node = make_node("lt-life")
    addr = node.public_ips[0]
    assert node.state == NodeState.RUNNING
    assert addr == f"10.213.{node.extra['number']}.2"
    wait_port(addr)
    create_to_ssh = time.monotonic() - started
    assert ssh(key, addr, "hostname").strip() == "lt-life"
    print(f"create to ssh: {create_to_ssh:.1f} s")

    listed = {n.name: n for n in driver.list_nodes()}
    assert listed["lt-life"].state == NodeState.RUNNING
    assert listed["lt-life"].public_ips == [addr]

    # degraded (a unit of the image failed at boot) answers with exit status 1
    out = ssh(key, addr, "systemctl is-system-running --wait || systemctl --failed")
    assert out.split()[0] in ("running", "degraded"), out
    ssh(key, addr, "echo kept > /root/marker")
    machine_id = ssh(key, addr, "cat", "/etc/machine-id").strip()
    assert len(machine_id) == 32

    assert driver.reboot_node(listed["lt-life"]) is True
    rebooted = driver.ex_get_node("lt-life")
    assert rebooted.state == NodeState.RUNNING
    assert rebooted.extra["pid"] != node.extra["pid"]
    wait_port(addr)
    assert ssh(key, addr, "cat", "/root/marker").strip() == "kept"
    assert ssh(key, addr, "cat", "/etc/machine-id").strip() == machine_id

    init = container_init(rebooted.extra["pid"])
    lock = driver._read("lt-life")["nspawn_lock"]
    t0 = time.monotonic()
    assert driver.destroy_node(rebooted) is True
    assert not pid_alive(init)
    print(f"destroy: {time.monotonic() - t0:.1f} s")
    assert_no_trace(driver, "lt-life", rebooted.extra, lock)


def test_node_outlives_its_creator_and_apt_works_through_host_proxy(driver, key):
    script = ("import sys; from silverlining.providers.local import LocalNodeDriver; "
              "d = LocalNodeDriver(state_dir=sys.argv[1], cache_dir=sys.argv[2]); "
              "d.create_node('lt-apt', ex_pubkey=open(sys.argv[3]).read(), ex_wait='true')")
    try:
        subprocess.run([sys.executable, "-c", script, str(driver.state_dir), CACHE,
                        str(key.with_suffix(".pub"))], check=True, timeout=120)
        node = driver.ex_get_node("lt-apt")
        assert node.state == NodeState.RUNNING
        addr = node.public_ips[0]
        assert wait_port(addr, timeout=0.5) < 0.5      # ex_wait returned once sshd listened
        _check_apt(key, node, addr)
    finally:
        driver.destroy_node("lt-apt")


def _check_apt(key: Path, node, addr: str) -> None:
    routes = ssh(key, addr, "ip", "-4", "route")
    assert f"default via {node.extra['host_address']}" in routes
    conf = ssh(key, addr, "cat", "/etc/apt/apt.conf.d/01silverlining-proxy")
    assert f"http://{node.extra['host_address']}:3142" in conf
    out = ssh(key, addr, "apt-get", "update", timeout=300)
    assert "Reading package lists" in out
    policy = ssh(key, addr, "apt-cache", "policy", "nginx-light")
    assert "Candidate: (none)" not in policy


def test_two_nodes_at_once(driver, key, make_node):
    nodes, errors = {}, []

    def create(name: str) -> None:
        try:
            nodes[name] = make_node(name)
        except Exception as exc:          # reported below, with the other node's result
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in ("lt-a", "lt-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    a, b = nodes["lt-a"], nodes["lt-b"]
    assert a.extra["number"] != b.extra["number"]
    ids, host_keys = set(), set()
    for node in (a, b):
        wait_port(node.public_ips[0])
        assert ssh(key, node.public_ips[0], "hostname").strip() == node.name
        ids.add(ssh(key, node.public_ips[0], "cat", "/etc/machine-id").strip())
        host_keys.add(ssh(key, node.public_ips[0], "cat",
                          "/etc/ssh/ssh_host_ed25519_key.pub").split()[1])
    assert len(ids) == 2 and len(host_keys) == 2

    # Its nspawn is killed: it shows as stopped and comes back on demand, and the
    # container left running without nspawn is halted first (not run twice).
    old_init = container_init(a.extra["pid"])
    os.kill(a.extra["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while driver.ex_get_node("lt-a").state != NodeState.STOPPED:
        assert time.monotonic() < deadline, "killed node not reported stopped"
        time.sleep(0.1)
    assert driver.ex_get_node("lt-b").state == NodeState.RUNNING

    again = driver.ex_ensure_running("lt-a")
    assert again.state == NodeState.RUNNING
    assert again.public_ips == a.public_ips
    wait_port(a.public_ips[0])
    assert ssh(key, a.public_ips[0], "hostname").strip() == "lt-a"
    assert not pid_alive(old_init)
    assert container_init(again.extra["pid"]) != old_init
    assert driver.ex_ensure_running("lt-a").extra["pid"] == again.extra["pid"]

    # Its supervisor (the apt proxy forwarder) is killed: the start-up check restarts it.
    wait_port(b.extra["host_address"], 3142, timeout=1)
    supervisor = driver._read("lt-b")["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(supervisor):      # SIGKILL is delivered asynchronously
        assert time.monotonic() < deadline, "killed supervisor still alive"
        time.sleep(0.05)
    restarted = driver.ex_ensure_running("lt-b")
    assert restarted.extra["pid"] != b.extra["pid"]
    wait_port(b.extra["host_address"], 3142, timeout=5)
    wait_port(b.public_ips[0])


def test_existing_name_is_refused_and_stale_remains_are_replaced(driver, key, make_node):
    node = make_node("lt-dup")
    with pytest.raises(SilverError, match="node lt-dup exists"):
        make_node("lt-dup")
    # Kill nspawn and its supervisor like a crashed process would: mount, netns,
    # link and files stay behind; creating the same name again cleans them up first.
    supervisor = driver._read("lt-dup")["supervisor_pid"]
    old_lock = driver._read("lt-dup")["nspawn_lock"]
    old_init = container_init(node.extra["pid"])
    for pid in (supervisor, node.extra["pid"]):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while driver.ex_get_node("lt-dup").state != NodeState.STOPPED:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert is_mounted(Path(node.extra["rootfs"]))
    assert pid_alive(old_init)
    fresh = make_node("lt-dup")
    assert not pid_alive(old_init)
    if driver._read("lt-dup")["nspawn_lock"] != old_lock:
        assert not Path("/run/systemd/nspawn/locks", old_lock).exists()
    assert fresh.state == NodeState.RUNNING
    wait_port(fresh.public_ips[0])
    assert ssh(key, fresh.public_ips[0], "test", "!", "-e", "/root/marker") == ""


def test_destroy_half_made_node(driver):
    """A create killed after the namespace and mount were made: destroy removes it all."""
    name = "lt-half"
    node_dir = driver.state_dir / "nodes" / name
    node_dir.mkdir(parents=True)
    image = next(i for i in driver.list_images() if i.id == IMAGE)
    rec = {"name": name, "image": IMAGE, "size": "small", "pid": None,
           "image_root": image.extra["path"], "number": None}
    driver._write(rec)
    with host_lock():
        rec["number"] = local_net.allocate(node_dir, driver._live_claim)
        driver._write(rec)
        local_net.setup(rec["number"])
    driver._mount(rec)
    half = driver.ex_get_node(name)
    assert half.state == NodeState.PENDING
    assert is_mounted(Path(half.extra["rootfs"]))
    assert local_net.netns_path(rec["number"]).exists()
    assert driver.destroy_node(name) is True
    assert_no_trace(driver, name, {**half.extra, "pid": None})
    assert driver.destroy_node(name) is False


def test_bad_arguments_are_one_line_errors(driver, key):
    pub = key.with_suffix(".pub").read_text()
    with pytest.raises(SilverError, match="bad local node name"):
        driver.create_node("Bad_Name", ex_pubkey=pub)
    with pytest.raises(SilverError, match="unknown local size"):
        driver.create_node("lt-x", size="huge", ex_pubkey=pub)
    with pytest.raises(SilverError, match="needs an SSH public key"):
        driver.create_node("lt-x")
    with pytest.raises(TypeError, match="ex_flavour"):
        driver.create_node("lt-x", ex_pubkey=pub, ex_flavour="big")
    with pytest.raises(SilverError, match="unknown local image"):
        driver.create_node("lt-x", image="debian-99", ex_pubkey=pub)
    with pytest.raises(SilverError, match="unknown setting"):
        LocalNodeDriver(region="eu")
    assert driver.ex_get_node("lt-x") is None


def test_sources_come_from_the_host_apt_config(tmp_path, monkeypatch):
    (tmp_path / "sources.list").write_text(
        "# comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n"
        "deb-src http://m.example/debian bookworm main\n")
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://m.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://off.example/debian\n"
        "Suites: bookworm\nComponents: main\nEnabled: no\n")
    (d / "other.sources").write_text("Types: deb\nURIs: https://tls.example/x\n"
                                     "Suites: bookworm\nComponents: main\n")
    monkeypatch.setattr(local_apt, "APT_SOURCES", tmp_path / "sources.list")
    monkeypatch.setattr(local_apt, "APT_SOURCES_DIR", d)
    lines = [s.line() for s in local_apt.sources_for("bookworm")]
    assert lines == ["deb http://m.example/debian bookworm main contrib",
                     "deb http://m.example/debian-security bookworm-security main"]
    mirrored = [s.line() for s in local_apt.sources_for("bookworm", "http://mine.example/d/")]
    assert mirrored == ["deb http://mine.example/d bookworm main contrib",
                        "deb http://m.example/debian-security bookworm-security main"]
    # another Debian release: the same archives with the suites renamed
    assert [s.line() for s in local_apt.sources_for("trixie")] == [
        "deb http://m.example/debian trixie main contrib",
        "deb http://m.example/debian-security trixie-security main"]
    with pytest.raises(SilverError, match="set mirror"):
        local_apt.sources_for("noble")
