"""``silver doctor`` on this machine (config, registry, keys, providers) and on nodes
that cannot be reached, through the real CLI. Checks of a live node are in
tests/integration/test_doctor.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from silverlining.cli import silver as silver_cli
from silverlining.providers import local_host
from silverlining.state import NodeRegistry
from tests.unit.test_providers_dummy import HERE, env, file_dummy, silver, write_config  # noqa: F401


def doctor(env: dict, *args: str, **extra: str):
    return silver({**env, "SSH_AUTH_SOCK": "", **extra}, "doctor", *args)


def lines_of(stdout: str) -> list[str]:
    return [" ".join(line.split()) for line in stdout.splitlines()]


def with_private_key(env: dict) -> dict:
    key = Path(env["HOME"]) / ".ssh" / "id_ed25519"
    key.parent.mkdir(exist_ok=True)
    key.write_text("not read by doctor, only found\n")
    return env


def test_a_bare_machine_needs_a_key_and_a_config(env):
    proc = doctor(env)
    assert proc.returncode == 1, proc.stderr
    out = lines_of(proc.stdout)
    config = os.environ["SILVER_CONFIG"]
    assert f"warning config {config} does not exist: silver serve works, but there is no " \
           "provider to create nodes with" in out
    assert "PROBLEM ssh key no SSH private key: no SILVER_SSH_KEY, no agent key, nothing in " \
           "~/.ssh" in out
    assert out[out.index("PROBLEM ssh key no SSH private key: no SILVER_SSH_KEY, no agent key, "
                         "nothing in ~/.ssh") + 1] == "fix: ssh-keygen -t ed25519"
    assert out[-1] == "1 problem, 1 warning: each 'fix:' line says what to run"


def test_a_working_provider_and_key_is_all_right(env):
    file_dummy(with_private_key(env))
    proc = doctor(env)
    assert proc.returncode == 0, proc.stdout
    out = lines_of(proc.stdout)
    assert f"ok ssh key logins use {env['HOME']}/.ssh/id_ed25519 (default key)" in out
    assert f"ok provider fake new nodes get {env['_key']}" in out
    assert f"ok provider fake {HERE}:FileDummyDriver: credentials accepted, 0 nodes" in out
    assert out[-1] == "everything looks right"


def test_refused_credentials_and_a_broken_config_line(env):
    with_private_key(env)
    write_config(f"[provider:p]\ndriver = {HERE}:FailingApiDriver\ncreds = 0\n"
                 f"ssh_public_key = {env['_key']}\n")
    out = lines_of(doctor(env).stdout)
    config = os.environ["SILVER_CONFIG"]
    assert "PROBLEM provider p Failing API: credentials refused while listing nodes: " \
           "401 Unauthorized: bad token" in out
    assert f"fix: check the settings of [provider:p] in {config}" in out
    write_config("[provider:p]\ndriver = dummy\nimage = id 1\n[devel]\n[nonsense]\n")
    proc = doctor(env)
    assert proc.returncode == 1
    out = lines_of(proc.stdout)
    assert any(line.startswith(f"PROBLEM config {config}:5: unknown section [nonsense]")
               for line in out), out
    assert f"fix: edit {config}:5" in out


def test_a_node_that_does_not_answer(env):
    with_private_key(env)
    NodeRegistry().put("web1", address="127.0.0.9", provider="other")
    proc = doctor(env)
    assert proc.returncode == 1
    out = lines_of(proc.stdout)
    section = out[out.index("web1 (127.0.0.9)"):]
    assert section[1].startswith("PROBLEM reachable [web1] SSH on 127.0.0.9 did not answer")
    assert section[2] == "fix: silver list-nodes (is web1 running?)"
    # a node given by its registered address is the registered node
    proc = doctor(env, "127.0.0.9")
    assert "web1 (127.0.0.9)" in proc.stdout


@pytest.mark.parametrize("euid, gone, message, fix", [
    (1000, set(), "local nodes need root", "run silver as root (sudo)"),
    (0, {"mmdebstrap"}, "local nodes need mmdebstrap: run scripts/host-setup.sh or apt-get "
                        "install mmdebstrap", "sudo scripts/host-setup.sh"),
])
def test_local_provider_host_problems(env, monkeypatch, euid, gone, message, fix):
    """In-process (the checks read this process's uid and PATH)."""
    with_private_key(env)
    write_config(f"[provider:local]\ndriver = local\nssh_public_key = {env['_key']}\n")
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setattr(local_host.os, "geteuid", lambda: euid)
    monkeypatch.setattr(local_host, "find_tool",
                        lambda name: None if name in gone else f"/usr/bin/{name}")
    result = CliRunner().invoke(silver_cli, ["doctor"])
    assert result.exit_code == 1, result.output
    out = lines_of(result.output)
    index = next(i for i, line in enumerate(out) if line.startswith("PROBLEM provider local"))
    assert message in out[index]
    assert out[index + 1] == f"fix: {fix}"
