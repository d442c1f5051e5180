"""The smoke test of the local image the rest of the suite does not run on.

The suite's nodes run the default image (Debian 13) unless SILVER_TEST_IMAGE
names another; this module makes one node of the other supported release
(Debian 12) and runs the path every app takes on it: setup-node, a deploy
with PostgreSQL, Redis and a worker, then backup, clear and restore.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import other_image
from tests.integration.fixtures_apps import (CONSUMER, PUSH, Node, get, http_get, live_version,
                                             make_app, rows)

pytestmark = pytest.mark.node

OTHER = other_image()


@pytest.fixture(scope="module")
def node(node_env, make_module_node) -> Node:
    made = make_module_node("other-image-node", "--image", f"id {OTHER}", "--setup-node")
    return Node(node_env, made.name, made.address)


def test_setup_node_on_the_other_release(node):
    release = node.root(". /etc/os-release && echo $VERSION_ID").strip()
    assert f"debian-{release}" == OTHER
    again = node.silver("setup-node", node.name, check=True)
    assert "0 changes" in again.stdout, again.stdout + again.stderr
    status, _, _ = http_get(node.address, "nosuch.example")
    assert status == 404


def test_postgresql_redis_and_a_worker_then_backup_and_restore(node, tmp_path: Path):
    app = make_app(tmp_path, "smoke", ("postgresql", "redis"),
                   ("python3-psycopg2", "python3-redis"))
    (app / "app.ini").write_text((app / "app.ini").read_text()
                                 + "\n[process:consume]\ncommand = consume.py\n")
    (app / "consume.py").write_text(CONSUMER)
    version = live_version(node.update(app, "smoke.test").stdout)
    node.silver("run", "--node", node.name, "smoke.test", "python", "-c", PUSH, "a", check=True)
    deadline = time.monotonic() + 30
    while rows(node, "smoke.test") != [f"a@smoke.{version}"]:       # the worker's insert
        assert time.monotonic() < deadline, rows(node, "smoke.test")
        time.sleep(0.5)
    assert get(node, "smoke.test", "/redis/set", k="smoke:kept", v="k1")["value"] == "k1"
    before = (rows(node, "smoke.test"), get(node, "smoke.test", "/redis/get", k="smoke:kept"))

    dest = tmp_path / "smoke.tar.gz"
    node.silver("backup", "smoke.test", str(dest), "--node", node.name, check=True)
    node.silver("-y", "clear", "smoke.test", "--node", node.name, check=True)
    assert get(node, "smoke.test", "/redis/get", k="smoke:kept") == {"value": None}
    proc = node.silver("restore", str(dest), "smoke.test", "--node", node.name, check=True)
    assert "restored postgresql, redis" in proc.stdout
    assert (rows(node, "smoke.test"),
            get(node, "smoke.test", "/redis/get", k="smoke:kept")) == before
