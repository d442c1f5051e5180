"""A node that refuses our key: ``create-node --setup-node`` fails in one line, at once.

A local node has the key written into its disk before it boots, so a refused
login there is final (a cloud node is given a few minutes to install its key).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

pytestmark = pytest.mark.node


def test_a_refused_login_on_a_local_node_fails_at_once(node_env, make_node, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    name = "login-refused" + (f"-{os.environ['SILVER_TEST_NODE_TAG']}"
                              if os.environ.get("SILVER_TEST_NODE_TAG") else "")
    make_node.track(name)
    start = time.monotonic()
    proc = node_env.silver("create-node", name, "--setup-node", timeout=300,
                           env={"SILVER_SSH_KEY": str(other), "SSH_AUTH_SOCK": ""})
    took = time.monotonic() - start
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "SSH login as root@" in last and "refused" in last, proc.stderr
    assert took < 60, f"took {took:.0f}s"


def test_a_quick_run_of_ssh_banner_probes_is_not_penalized(node_env, make_node):
    """Each command to a local node first waits for its SSH banner: a connection that
    does not log in, which OpenSSH 9.8+ (Debian 13) penalizes per source address; about
    17 in a row got the host refused for a while, failing the next commands."""
    name = "login-probes" + (f"-{os.environ['SILVER_TEST_NODE_TAG']}"
                             if os.environ.get("SILVER_TEST_NODE_TAG") else "")
    node = make_node(name)
    banners = []
    for _ in range(40):
        with socket.create_connection((node.address, 22), timeout=5) as sock:
            sock.settimeout(5)
            banners.append(sock.recv(64))
    assert all(b.startswith(b"SSH-2.0-") for b in banners), banners
