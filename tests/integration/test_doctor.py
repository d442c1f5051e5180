"""``silver doctor`` against a real local node: all right once set up; then each
fault made on purpose (stale server files, nginx stopped, a broken nginx file, a
failed unit, a forgotten or changed host key) is reported with a fix, and running that fix
makes doctor pass again."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from silverlining import serverfiles, transport
from silverlining.node import paths
from silverlining.state import known_hosts_path
from tests.integration.fixtures_setup import setup_node  # noqa: F401

pytestmark = pytest.mark.node


def doctor(node_env, name: str) -> tuple[int, list[str]]:
    """doctor's exit status and the lines of the node's section (spaces squeezed)."""
    proc = node_env.silver("doctor", name)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name} ("))
    return proc.returncode, lines[start:]


def fix_after(lines: list[str], finding: str) -> str:
    """The fix: line right after the finding that starts with ``finding``."""
    index = next(i for i, line in enumerate(lines) if line.startswith(finding))
    assert lines[index + 1].startswith("fix: "), lines
    return lines[index + 1][len("fix: "):]


def assert_healthy(node_env, name: str) -> list[str]:
    status, lines = doctor(node_env, name)
    assert status == 0, "\n".join(lines)
    assert not any(line.startswith(("PROBLEM", "fix:")) for line in lines), lines
    return lines


def test_a_set_up_node_is_all_right(node_env, setup_node):
    lines = assert_healthy(node_env, setup_node.name)
    assert lines[0] == f"{setup_node.name} ({setup_node.address})"
    assert f"ok reachable SSH answers on {setup_node.address}" in lines
    assert "ok host key recorded, and the node presents it" in lines
    assert any(line.startswith(f"ok server files current ({serverfiles.version()}, set up ")
               for line in lines), lines
    assert any(line.startswith("ok disk / is ") for line in lines)
    assert any(line.startswith("ok memory ") and " MB available" in line for line in lines)
    assert "ok nginx config nginx -t passes" in lines
    assert "ok nginx running" in lines
    assert "ok systemd units none failed" in lines
    assert lines[-1] == "everything looks right"


def test_stale_server_files_and_a_stopped_nginx_are_found_and_fixed(node_env, setup_node):
    name, tree = setup_node.name, paths.SERVER_FILES
    with node_env.ssh(name) as ssh:
        # an older tree: one file edited, one missing, one left over; an older version
        ssh.run(["sh", "-c", f"echo '# older' >> {tree}/update-server-script.sh"])
        ssh.run(["rm", f"{tree}/lib/silverlining/errors.py"])
        ssh.run(["touch", f"{tree}/serverroot/left-over"])
        ssh.run(["sh", "-c", f"echo 0123456789abcdef > {paths.SERVER_VERSION}"])
        ssh.run(["systemctl", "stop", "nginx"])
    status, lines = doctor(node_env, name)
    assert status == 1
    stale = next(line for line in lines if line.startswith("PROBLEM server files"))
    assert stale.startswith("PROBLEM server files stale: set up ")
    assert stale.endswith(f" ago with 0123456789abcdef, this silver has "
                          f"{serverfiles.version()}; 1 file differ, 1 missing on the node, "
                          "1 only on the node"), stale
    assert fix_after(lines, "PROBLEM server files") == f"silver setup-node {name}"
    assert "PROBLEM nginx not running (inactive): no app answers" in lines
    assert fix_after(lines, "PROBLEM nginx not running") == f"silver setup-node {name}"
    # the fix doctor names is the one that works
    node_env.silver("setup-node", name, check=True)
    assert_healthy(node_env, name)


def test_a_broken_nginx_file_and_a_failed_unit(node_env, setup_node):
    name = setup_node.name
    with node_env.ssh(name) as ssh:
        ssh.put_file("/etc/nginx/conf.d/zz-doctor.conf", b"not_a_directive on;\n", 0o644)
        ssh.run(["systemd-run", "--unit", "doctor-probe", "--wait", "false"], check=False)
    status, lines = doctor(node_env, name)
    assert status == 1
    broken = next(line for line in lines if line.startswith("PROBLEM nginx config"))
    assert 'unknown directive "not_a_directive" in /etc/nginx/conf.d/zz-doctor.conf:1' in broken
    assert fix_after(lines, "PROBLEM nginx config") == \
        f"correct the file nginx names, then silver setup-node {name}"
    assert "ok nginx running" in lines        # the running nginx keeps its old config
    assert "PROBLEM systemd units failed: doctor-probe.service" in lines
    assert fix_after(lines, "PROBLEM systemd units") == (
        f"ssh root@{setup_node.address} journalctl -u doctor-probe.service (why), then "
        f"ssh root@{setup_node.address} systemctl reset-failed")
    with node_env.ssh(name) as ssh:
        ssh.run(["rm", "/etc/nginx/conf.d/zz-doctor.conf"])
        ssh.run(["systemctl", "reset-failed"])
    assert_healthy(node_env, name)


def test_a_forgotten_host_key_is_found_and_fixed(node_env, setup_node):
    name = setup_node.name
    with node_env.environ():
        assert transport.forget_host_key(setup_node.address)
    status, lines = doctor(node_env, name)
    assert status == 1
    assert f"PROBLEM host key no key recorded for {setup_node.address}" in lines
    fix = fix_after(lines, "PROBLEM host key")
    assert fix == f"silver create-node {name} --if-not-exists --wait"
    node_env.silver(*shlex.split(fix)[1:], check=True)
    assert_healthy(node_env, name)


def test_a_changed_host_key_is_found_and_fixed(node_env, setup_node, tmp_path):
    name, address = setup_node.name, setup_node.address
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    with node_env.environ():
        assert transport.forget_host_key(address)
        with known_hosts_path().open("a") as fh:
            fh.write(f"{address} {kind} {blob}\n")
    status, lines = doctor(node_env, name)
    assert status == 1
    assert any(line.startswith(f"PROBLEM host key [{name}] host key of {address} CHANGED")
               for line in lines), lines
    fix = fix_after(lines, "PROBLEM host key")
    assert fix == (f"only if you know {name} was re-installed: silver forget-host {name}, "
                   f"then silver create-node {name} --if-not-exists --wait")
    for command in fix.split(": ", 1)[1].split(", then "):
        node_env.silver(*shlex.split(command)[1:], check=True)
    assert_healthy(node_env, name)


def test_a_node_that_cannot_answer_a_check_is_one_problem(node_env, setup_node):
    name = setup_node.name
    with node_env.ssh(name) as ssh:
        ssh.run(["chmod", "a-x", "/usr/bin/df"])
    try:
        status, lines = doctor(node_env, name)
    finally:
        with node_env.ssh(name) as ssh:
            ssh.run(["chmod", "a+x", "/usr/bin/df"])
    assert status == 1
    assert any(line.startswith(f"PROBLEM checks stopped: [{name}] df exited with status 126")
               for line in lines), lines
    assert fix_after(lines, "PROBLEM checks") == (
        f"silver setup-node {name} (if it fails too, the node needs a look: "
        f"ssh root@{setup_node.address})")
    assert_healthy(node_env, name)
