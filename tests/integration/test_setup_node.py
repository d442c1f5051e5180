"""``silver setup-node`` against real local nodes.

Three nodes are made once for the module and set up together (the parallel
case); the other tests reuse them, so the module costs one apt install round.
sn-a stays pristine, sn-b is rebooted and stopped, sn-c has its version file
and OS tampered with (and is set up again afterwards).
"""

from __future__ import annotations

import socket
import subprocess
import time
from types import SimpleNamespace

import pytest

from silverlining import serverfiles
from silverlining.commands.setup_node import script_on_stdin
from silverlining.errors import SilverError
from silverlining.node import paths
from silverlining.providers import get_driver
from silverlining.userconfig import UserConfig
from tests.integration.fixtures_setup import http_get, setup_node  # noqa: F401

pytestmark = pytest.mark.node

NAMES = ("sn-a", "sn-b", "sn-c")


@pytest.fixture(scope="module")
def nodes(node_env, make_module_node) -> SimpleNamespace:
    made = {name: make_module_node(name) for name in NAMES}
    start = time.monotonic()
    proc = node_env.silver("setup-node", *NAMES)
    return SimpleNamespace(by_name=made, proc=proc, seconds=time.monotonic() - start)


def _addr(node_env, name: str) -> str:
    """From the registry: a restarted local node may get a new address."""
    return node_env.address(name)


def _driver(node_env):
    with node_env.environ():
        return get_driver(UserConfig.load().provider("local"))


def _assert_one_line_error(proc) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("silver: error: ")


def test_three_nodes_set_up_in_parallel(nodes):
    proc = nodes.proc
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "setup-node: 3 ok, 0 failed" in proc.stdout
    for name in NAMES:
        line = next(line for line in proc.stdout.splitlines() if line.split()[:1] == [name])
        assert line.split()[1] == "ok"
        assert int(line.split()[3]) > 0, line        # "N changes": a first run changes things
        assert f"[{name}] changed: packages installed:" in proc.stderr
        assert f"[{name}] changed: user silver created" in proc.stderr


def test_unknown_host_gets_the_not_found_page(nodes, node_env):
    page = (serverfiles.server_files_dir() / "serverroot" / str(paths.PAGES).lstrip("/")
            / "not-found.html").read_text()
    for name in NAMES:
        status, body = http_get(_addr(node_env, name), "nosuch.example")
        assert status == 404
        assert body == page


def test_disabled_page_is_installed(nodes, node_env):
    local = (serverfiles.server_files_dir() / "serverroot" / str(paths.PAGES).lstrip("/")
             / "disabled.html").read_text()
    with node_env.ssh("sn-a") as ssh:
        assert ssh.run(["cat", str(paths.PAGES / "disabled.html")]).stdout == local


def test_deploy_user_logs_in_with_the_users_key(nodes, node_env):
    with node_env.ssh("sn-a", user=paths.DEPLOY_USER) as ssh:
        assert ssh.run(["id", "-un"]).stdout.strip() == paths.DEPLOY_USER
        info = ssh.run_json(["sudo", "-n", str(paths.ENTRY), "server-version"])
        assert info["version"] == serverfiles.version()
        # sudo for the node entry point only
        assert ssh.run(["sudo", "-n", "true"], check=False).status != 0
        owner = ssh.run(["stat", "-c", "%U", str(paths.UPLOADS)]).stdout.strip()
        assert owner == paths.DEPLOY_USER
        serverfiles.check_node_version(ssh, "sn-a")


def test_secret_is_root_only(nodes, node_env):
    with node_env.ssh("sn-a") as ssh:
        assert ssh.run(["stat", "-c", "%a %U %G", str(paths.SECRET)]).stdout.split() == \
            ["600", "root", "root"]
        assert int(ssh.run(["stat", "-c", "%s", str(paths.SECRET)]).stdout) >= 32
    with node_env.ssh("sn-a", user=paths.DEPLOY_USER) as ssh:
        assert ssh.run(["cat", str(paths.SECRET)], check=False).status != 0


def test_second_run_changes_nothing_and_is_quick(nodes, node_env):
    with node_env.ssh("sn-a") as ssh:
        before = ssh.run(["sha256sum", str(paths.SECRET)]).stdout
    start = time.monotonic()
    proc = node_env.silver("setup-node", "sn-a")
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[sn-a] 0 changes" in proc.stderr
    assert "changed:" not in proc.stderr
    assert "pushed server files" not in proc.stderr       # one round trip, no rsync
    assert "0 changes" in proc.stdout
    assert seconds < 10, f"second run took {seconds:.1f}s"
    with node_env.ssh("sn-a") as ssh:
        assert ssh.run(["sha256sum", str(paths.SECRET)]).stdout == before
        last = ssh.run(["tail", "-n", "1", str(paths.SETUP_LOG)]).stdout
    assert f"version={serverfiles.version()}" in last
    assert "changes=0 status=ok" in last
    assert " by=" in last and "@" in last.split(" by=")[1]


def test_firewall_lets_only_ssh_and_http_in(nodes, node_env):
    address = _addr(node_env, "sn-b")
    with node_env.ssh("sn-b") as ssh:
        ssh.run(["systemd-run", "--unit=fwtest", "--", "python3", "-m", "http.server",
                 "--bind", "0.0.0.0", "8080"])
        try:
            # it listens (seen from inside the node) ...
            probe = ("import socket,time\nfor i in range(50):\n try:\n"
                     "  socket.create_connection(('127.0.0.1', 8080), 1).close(); break\n"
                     " except OSError: time.sleep(0.1)\nelse: raise SystemExit(1)\n")
            ssh.run(["python3", "-c", probe])
            # ... but not from outside
            with pytest.raises(OSError):
                socket.create_connection((address, 8080), timeout=3).close()
            socket.create_connection((address, 22), timeout=3).close()
            socket.create_connection((address, 80), timeout=3).close()
        finally:
            ssh.run(["systemctl", "stop", "fwtest"], check=False)


def test_check_node_version_catches_other_and_missing_versions(nodes, node_env):
    with node_env.ssh("sn-c") as ssh:
        serverfiles.check_node_version(ssh, "sn-c")
        ssh.run(["sh", "-c", f"echo 0123456789abcdef > {paths.SERVER_VERSION}"])
        with pytest.raises(SilverError, match="^sn-c was set up with other server files: "
                                              "run silver setup-node sn-c$"):
            serverfiles.check_node_version(ssh, "sn-c")
        # commands that check in their first node call (--expect-version) say the same
        for args in (["query", "sn-c"], ["activate", "x.test", "prev", "--node", "sn-c"]):
            proc = node_env.silver(*args)
            assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == \
                "silver: error: sn-c was set up with other server files: run silver " \
                "setup-node sn-c", proc.stderr
        ssh.run(["rm", str(paths.SERVER_VERSION)])
        with pytest.raises(SilverError, match="^sn-c is not set up: run silver setup-node sn-c$"):
            serverfiles.check_node_version(ssh, "sn-c")
        proc = node_env.silver("query", "sn-c")
        assert proc.stderr.strip().splitlines()[-1] == \
            "silver: error: sn-c is not set up: run silver setup-node sn-c", proc.stderr
    proc = node_env.silver("setup-node", "sn-c")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"changed: file {paths.SERVER_VERSION}" in proc.stderr
    with node_env.ssh("sn-c") as ssh:
        serverfiles.check_node_version(ssh, "sn-c")


def test_unsupported_os_is_refused(nodes, node_env):
    with node_env.ssh("sn-c") as ssh:
        ssh.run(["sh", "-c", "cp -P /etc/os-release /root/os-release.saved && rm /etc/os-release"
                 " && printf 'ID=centos\\nVERSION_ID=9\\nPRETTY_NAME=\"CentOS Stream 9\"\\n'"
                 " > /etc/os-release"])
        try:
            proc = node_env.silver("setup-node", "sn-c")
        finally:
            ssh.run(["sh", "-c", "rm /etc/os-release && mv -T /root/os-release.saved "
                     "/etc/os-release"])
    _assert_one_line_error(proc)
    assert "unsupported OS: CentOS Stream 9 (ID=centos VERSION_ID=9)" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == \
        "silver: error: setup-node failed on 1 of 1 node: sn-c"


def test_changed_copies_on_the_node_are_pushed_and_put_back(nodes, node_env):
    tree, lib = paths.SERVER_FILES, paths.LIB / "silverlining"
    conf = "/etc/nginx/conf.d/silverlining.conf"
    with node_env.ssh("sn-c") as ssh:
        expected = ssh.run(["sha256sum", f"{lib}/errors.py", f"{lib}/locations.py", conf]).stdout
        # the pushed copy: an empty directory left over (nothing else differs)
        ssh.run(["mkdir", f"{tree}/lib/left-over"])
        # the node's code: one file edited, one with another mode, one left over
        ssh.run(["sh", "-c", f"echo '# edited' >> {lib}/errors.py && chmod 600 "
                             f"{lib}/locations.py && touch {lib}/left-over.py"])
        # an installed server file, edited
        ssh.run(["sh", "-c", f"echo '# edited' >> {conf}"])
    proc = node_env.silver("-v", "setup-node", "sn-c")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[sn-c] pushed server files" in proc.stderr
    assert f"[sn-c] changed: node code in {paths.LIB}: 3 paths updated" in proc.stderr
    assert f"[sn-c] changed: file {conf}" in proc.stderr
    with node_env.ssh("sn-c") as ssh:
        assert ssh.run(["sha256sum", f"{lib}/errors.py", f"{lib}/locations.py", conf]).stdout \
            == expected
        assert ssh.run(["stat", "-c", "%a", f"{lib}/locations.py"]).stdout.strip() == "644"
        assert ssh.run(["test", "-e", f"{lib}/left-over.py"], check=False).status == 1
        assert ssh.run(["test", "-e", f"{tree}/lib/left-over"], check=False).status == 1
    again = node_env.silver("setup-node", "sn-c")
    assert again.returncode == 0 and "[sn-c] 0 changes" in again.stderr, again.stderr
    assert "pushed server files" not in again.stderr


def test_script_refuses_to_run_as_non_root(nodes, node_env):
    with node_env.ssh("sn-a", user=paths.DEPLOY_USER) as ssh:
        result = ssh.run(script_on_stdin("--version", serverfiles.version(), "--by", "test@here",
                                         "--pushed", serverfiles.pushed_digest()),
                         input=serverfiles.script_text(), check=False)
    assert result.status == 1
    assert "error: setup must run as root (running as silver)" in result.stderr


def test_refused_ssh_login_is_one_line(nodes, node_env, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    proc = node_env.silver("setup-node", "sn-a", env={"SILVER_SSH_KEY": str(other)})
    _assert_one_line_error(proc)
    assert "SSH login as root@" in proc.stdout and "refused" in proc.stdout


def test_unreachable_host_fails_alone(nodes, node_env):
    # a free address in sn-a's own test network (no DNS: tests talk to 10.213.N.x only)
    free = _addr(node_env, "sn-a").rsplit(".", 1)[0] + ".3"
    proc = node_env.silver("setup-node", "sn-a", free)
    _assert_one_line_error(proc)
    assert "setup-node: 1 ok, 1 failed" in proc.stdout
    failed = next(line for line in proc.stdout.splitlines() if line.split()[:1] == [free])
    assert failed.split()[1] == "FAILED" and "No route to host" in failed
    assert proc.stderr.strip().splitlines()[-1] == \
        f"silver: error: setup-node failed on 1 of 2 nodes: {free}"


def test_rebooted_node_comes_back_serving(nodes, node_env):
    driver = _driver(node_env)
    with node_env.environ():
        driver.reboot_node(driver.ex_get_node("sn-b"))
    status, body = http_get(_addr(node_env, "sn-b"), "nosuch.example", wait=60)
    assert status == 404 and "Not Found" in body
    with node_env.ssh("sn-b") as ssh:
        assert ssh.run(["systemctl", "is-active", "nginx", "silverlining-firewall"]).stdout.split() \
            == ["active", "active"]
        ssh.run(["test", "-d", str(paths.LOCKS)])


def test_stopped_local_node_is_started_on_demand(nodes, node_env):
    driver = _driver(node_env)
    with node_env.environ():
        driver.stop_node(driver.ex_get_node("sn-b"))
    proc = node_env.silver("setup-node", "sn-b")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 changes" in proc.stdout
    status, _ = http_get(_addr(node_env, "sn-b"), "nosuch.example", wait=30)
    assert status == 404


def test_setup_node_fixture(setup_node, node_env):  # noqa: F811
    status, _ = http_get(setup_node.address, "nosuch.example")
    assert status == 404
    with node_env.ssh(setup_node.name) as ssh:
        serverfiles.check_node_version(ssh, setup_node.name)
