"""Node commands through the real CLI against libcloud's dummy driver and test drivers.

``FileDummyDriver`` is libcloud's DummyNodeDriver with its nodes kept in a JSON
file, so create-node, list-nodes and destroy-node in separate processes see
the same provider (the stock dummy forgets everything when the process ends).
Nothing here leaves the machine: the addresses are 127.0.0.2xx.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute.base import Node, NodeDriver
from libcloud.compute.drivers.dummy import DummyNodeDriver
from libcloud.compute.types import NodeState

from silverlining import nodes, transport
from silverlining.errors import SilverError, UsageError
from silverlining.state import NodeRegistry, known_hosts_path
from tests.conftest import REPO, run_silver

HERE = "tests.unit.test_providers_dummy"


class FileDummyDriver(DummyNodeDriver):
    """The dummy provider with persistent nodes and SSH-key support."""

    name = "File dummy"
    features = {"create_node": ["ssh_key"]}

    def __init__(self, creds: str, state_file: str) -> None:
        super().__init__(creds)
        self.state_file = Path(state_file)

    def _load(self) -> list[dict]:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return []

    def _save(self, data: list[dict]) -> None:
        self.state_file.write_text(json.dumps(data))

    def list_nodes(self) -> list[Node]:
        return [Node(d["id"], d["name"], NodeState.RUNNING, [d["ip"]], [], self,
                     extra=d) for d in self._load()]

    def create_node(self, name, size, image, auth=None):
        data = self._load()
        number = max([d["id"] for d in data], default=200) + 1
        data.append({"id": number, "name": name, "ip": f"127.0.0.{number}",
                     "image": image.id, "size": size.id,
                     "pubkey": getattr(auth, "pubkey", None)})
        self._save(data)
        return self.list_nodes()[-1]

    def destroy_node(self, node):
        self._save([d for d in self._load() if str(d["id"]) != node.id])
        return True


class RefusingDriver(NodeDriver):
    """A provider whose constructor checks the token (as some do) and refuses it."""

    name = "Refusing"

    def __init__(self, key: str) -> None:
        raise InvalidCredsError("token rejected")


class FailingApiDriver(DummyNodeDriver):
    """A provider that accepts the constructor but fails its API calls."""

    name = "Failing API"

    def list_nodes(self):
        raise InvalidCredsError("401 Unauthorized: bad token")

    def list_images(self, location=None):
        raise LibcloudError("rate limit exceeded", driver=self)

    def list_sizes(self, location=None):
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture
def env(tmp_path):
    """Extra env for run_silver: importable test drivers, a private /etc/hosts, a key."""
    key = tmp_path / "id_test.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVzdGtleWZvcnRlc3RzMTIzNDU2Nzg5"
                   "MDEy test\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    return {"PYTHONPATH": str(REPO), "SILVER_ETC_HOSTS": str(hosts),
            "HOME": str(tmp_path), "_key": str(key), "_state": str(tmp_path / "cloud.json")}


def write_config(text: str) -> None:
    Path(os.environ["SILVER_CONFIG"]).write_text(text)


def file_dummy(env: dict, extra: str = "size = ram 512\n") -> None:
    write_config(f"[provider:fake]\ndriver = {HERE}:FileDummyDriver\ncreds = 0\n"
                 f"state_file = {env['_state']}\nssh_public_key = {env['_key']}\n"
                 f"image = id 1\n{extra}")


def silver(env: dict, *args: str) -> subprocess.CompletedProcess:
    return run_silver(*args, env={k: v for k, v in env.items() if not k.startswith("_")})


def assert_one_line_error(proc, status: int, text: str) -> None:
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("silver: error: ")
    assert text in proc.stderr, proc.stderr


# --- configuration and credentials ------------------------------------------------

def test_no_provider_section(env):
    proc = silver(env, "list-nodes")
    assert_one_line_error(proc, 2, "no [provider:NAME] section")


def test_dummy_listings_mark_the_defaults(env):
    write_config("[provider:d]\ndriver = DUMMY\ncreds = 0\nimage = id 3\nsize = ram 512\n")
    images = silver(env, "list-images")
    assert images.returncode == 0, images.stderr
    lines = images.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME"]
    assert [line for line in lines if line.startswith("*")] == ["* 3  Slackware 4"]
    sizes = silver(env, "list-sizes")
    starred = [line.split() for line in sizes.stdout.splitlines() if line.startswith("*")]
    assert starred == [["*", "2", "Medium", "512", "16", "8"]]
    listed = silver(env, "list-nodes")
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows == [["NAME", "STATE", "ADDRESS", "PROVIDER"],
                    ["dummy-1", "running", "127.0.0.1", "d"],
                    ["dummy-2", "running", "127.0.0.1", "d"]]


@pytest.mark.parametrize("config, status, message", [
    ("driver = dummy\n", 2, "driver 'dummy' needs 'creds'"),
    ("driver = dummy\ncreds = 1\ntoken = x\n", 2, "takes no argument 'token' (it takes: creds)"),
    ("driver = digitalocen\ntoken = x\n", 2, "unknown libcloud provider 'digitalocen' "
                                             "(close: digitalocean"),
    ("driver = nosuchmodule:Driver\n", 2, "cannot import 'nosuchmodule'"),
    (f"driver = {HERE}:assert_one_line_error\n", 2, "is not a libcloud NodeDriver class"),
    (f"driver = {HERE}:RefusingDriver\nkey = bad\n", 2, "credentials refused by "
                                                       f"{HERE}:RefusingDriver: token rejected"),
])
def test_driver_setup_errors(env, config, status, message):
    write_config("[provider:p]\n" + config)
    assert_one_line_error(silver(env, "list-nodes"), status, message)


@pytest.mark.parametrize("command, message", [
    ("list-nodes", "Failing API: credentials refused while listing nodes: 401 Unauthorized"),
    ("list-images", "Failing API: listing images failed: rate limit exceeded"),
    ("list-sizes", "Failing API: cannot reach the provider while listing sizes: "
                   "Connection refused"),
])
def test_provider_api_errors(env, command, message):
    write_config(f"[provider:p]\ndriver = {HERE}:FailingApiDriver\ncreds = 0\n")
    assert_one_line_error(silver(env, command), 1, message)


def test_provider_choice_with_p(env):
    write_config("[provider:a]\ndriver = dummy\ncreds = 0\n[provider:b]\ndriver = dummy\n"
                 "creds = 3\n")
    assert_one_line_error(silver(env, "list-nodes"), 2, "choose one with -p (a, b)")
    proc = silver(env, "-p", "b", "list-nodes")
    assert "dummy-2" in proc.stdout and proc.stdout.count("127.0.0.") == 3


# --- create / list / destroy ----------------------------------------------------------

def test_create_list_destroy(env, tmp_path):
    file_dummy(env)
    proc = silver(env, "create-node", "web1", "--etc-hosts")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "web1 127.0.0.201"
    assert "[web1] creating node: image Ubuntu 9.10, size Medium" in proc.stderr
    cloud = json.loads(Path(env["_state"]).read_text())
    assert cloud == [{"id": 201, "name": "web1", "ip": "127.0.0.201", "image": "1",
                      "size": "2", "pubkey": Path(env["_key"]).read_text().strip()}]
    entry = NodeRegistry().get("web1")
    assert entry == {"address": "127.0.0.201", "provider": "fake", "node_id": "201",
                     "driver": f"{HERE}:FileDummyDriver"}
    assert "127.0.0.201 web1 # silverlining" in Path(env["SILVER_ETC_HOSTS"]).read_text()

    proc = silver(env, "create-node", "web2", "--image", "name Slack*", "--size", "ram 4G",
                  "--no-etc-hosts")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(Path(env["_state"]).read_text())[1]["image"] == "3"
    assert "web2" not in Path(env["SILVER_ETC_HOSTS"]).read_text()
    rows = [line.split() for line in silver(env, "list-nodes").stdout.splitlines()]
    assert rows[1:] == [["web1", "running", "127.0.0.201", "fake"],
                        ["web2", "running", "127.0.0.202", "fake"]]

    # Keys recorded for these addresses go with the node; others stay.
    known_hosts_path().write_text("127.0.0.201 ssh-ed25519 AAAA1\n"
                                  "127.0.0.9 ssh-ed25519 AAAA2\n")
    proc = silver(env, "destroy-node", "web1")
    assert_one_line_error(proc, 2, "pass -y/--yes")
    assert len(json.loads(Path(env["_state"]).read_text())) == 2
    proc = silver(env, "-y", "destroy-node", "web1", "web2")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(Path(env["_state"]).read_text()) == []
    assert NodeRegistry().all() == {}
    assert known_hosts_path().read_text() == "127.0.0.9 ssh-ed25519 AAAA2\n"
    assert Path(env["SILVER_ETC_HOSTS"]).read_text() == "127.0.0.1 localhost\n"


def test_create_existing_and_if_not_exists(env):
    file_dummy(env)
    assert silver(env, "create-node", "web1", "--no-etc-hosts").returncode == 0
    assert_one_line_error(silver(env, "create-node", "web1"), 2,
                          "node 'web1' already exists (running, 127.0.0.201)")
    proc = silver(env, "create-node", "web1", "--if-not-exists", "--no-etc-hosts")
    assert proc.returncode == 0, proc.stderr
    assert "exists (running); not creating it" in proc.stderr
    assert len(json.loads(Path(env["_state"]).read_text())) == 1


@pytest.mark.parametrize("args, extra, status, message", [
    (["Web_1"], "", 2, "bad hostname 'Web_1'"),
    (["web1", "--image", "name *"], "", 2, "3 images match 'name *'"),
    (["web1", "--size", "ram 3"], "", 2, "no size matches 'ram 3' (from --size); available:"),
    (["web1"], "size = Huge\n", 2, "no size matches 'Huge' (from [provider:fake] in"),
    (["web1"], "", 2, "choose a size with --size or 'size =' in the provider section"),
    (["web1", "--size", "id 1", "--location", "London*"], "", 2, "has no locations"),
    (["web1", "--size", "id 1"], "create.ex_color = red\n", 2,
     "[provider:fake] create.ex_color: driver"),
])
def test_create_errors(env, args, extra, status, message):
    file_dummy(env, extra)
    assert_one_line_error(silver(env, "create-node", *args), status, message)
    assert not Path(env["_state"]).exists()
    assert NodeRegistry().all() == {}


def test_create_without_public_key(env):
    write_config(f"[provider:fake]\ndriver = {HERE}:FileDummyDriver\ncreds = 0\n"
                 f"state_file = {env['_state']}\nimage = id 1\nsize = ram 512\n")
    assert_one_line_error(silver(env, "create-node", "web1"), 2, "no SSH public key")


def test_wait_times_out_and_leaves_a_destroyable_node(env):
    file_dummy(env)
    proc = silver({**env, "SILVER_WAIT_TIMEOUT": "2"}, "create-node", "web1", "--wait",
                  "--no-etc-hosts")
    assert_one_line_error(proc, 1, "[web1] SSH on 127.0.0.201 did not answer within 2s")
    assert NodeRegistry().get("web1")["address"] == "127.0.0.201"
    assert silver(env, "-y", "destroy-node", "web1").returncode == 0
    assert NodeRegistry().all() == {}


def test_destroy_unknown_and_gone_nodes(env):
    file_dummy(env)
    assert_one_line_error(silver(env, "-y", "destroy-node", "nope"), 2,
                          "unknown node 'nope': not created with silver create-node and "
                          "provider 'fake' has no node of that name")
    NodeRegistry().put("gone", address="127.0.0.250", provider="fake", node_id="250",
                       driver="x")
    proc = silver(env, "-y", "destroy-node", "gone")
    assert proc.returncode == 0, proc.stderr
    assert "the provider has no such node any more" in proc.stderr
    assert NodeRegistry().all() == {}


# --- resolving node names ---------------------------------------------------------------

def test_resolve_registry_ip_and_dns(monkeypatch):
    NodeRegistry().put("web1", address="10.213.9.2", provider="p", driver="dummy")
    assert nodes.resolve("web1") == nodes.NodeAddress("web1", "10.213.9.2")
    assert nodes.resolve("10.213.9.2") == nodes.NodeAddress("web1", "10.213.9.2")
    assert nodes.resolve("10.1.2.3") == nodes.NodeAddress("10.1.2.3", "10.1.2.3")
    assert nodes.resolve("localhost").address in ("127.0.0.1", "::1")
    with pytest.raises(UsageError, match="bad node name"):
        nodes.resolve("a;b")

    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(SilverError, match="unknown node 'other.example': not created"):
        nodes.resolve("other.example")


def test_registered_node_without_address():
    NodeRegistry().put("web1", provider="p", driver="dummy")
    with pytest.raises(SilverError, match="has no address yet"):
        nodes.resolve("web1")


# --- known_hosts handling (no server needed) --------------------------------------------

def test_forget_host_key_keeps_other_hosts():
    known_hosts_path().write_text("10.213.1.2 ssh-ed25519 AAAA1\n"
                                  "# 10.213.1.2 comment stays\n"
                                  "10.213.1.20,other ssh-ed25519 AAAA2\n")
    assert transport.has_host_key("10.213.1.2")
    assert transport.forget_host_key("10.213.1.2") is True
    assert not transport.has_host_key("10.213.1.2")
    assert transport.forget_host_key("10.213.1.2") is False
    assert known_hosts_path().read_text() == ("# 10.213.1.2 comment stays\n"
                                              "10.213.1.20,other ssh-ed25519 AAAA2\n")


def test_ssh_to_a_closed_port_is_one_line():
    with pytest.raises(SilverError) as info:
        transport.SSH("127.0.0.254", label="n", timeout=2)
    assert info.value.message == "[n] cannot connect to root@127.0.0.254: Connection refused"


def test_rsync_to_a_closed_port_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SilverError) as info:
        transport.rsync(f"{tmp_path}/", "127.0.0.254", "/tmp/x/", label="n")
    assert info.value.message == ("[n] cannot connect to root@127.0.0.254 (rsync): "
                                  "Connection refused")
