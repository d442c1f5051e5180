"""Apps deployed on a set-up local node, for the tests of update and the commands after it.

Import the fixtures into a test module (pytest finds fixtures imported there)::

    from tests.integration.fixtures_apps import hello, node, probe_app, setup_node  # noqa: F401

``node`` (module scope) is a ``Node``: the module's set-up node and the CLI
aimed at it. ``hello`` and ``probe_app`` are copies of ``examples/hello``
and ``tests/data/probe`` (reports what it sees as JSON) in a temporary
directory, so a test can change them. ``make_app`` copies
``tests/data/dbprobe`` (reports on its services as JSON; ``get``/``rows`` ask
it), and ``CONSUMER``/``PUSH`` make it a worker fed through Redis.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.fixtures_setup import setup_node  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
PROBE = REPO / "tests" / "data" / "probe"
DBPROBE = REPO / "tests" / "data" / "dbprobe"


# --- helpers ---------------------------------------------------------------------

def http_get(address: str, host: str, path: str = "/", timeout: float = 10) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def probe(address: str, host: str, path: str = "/") -> dict:
    status, body, _ = http_get(address, host, path)
    assert status == 200, (status, body[:500])
    return json.loads(body)


class Node:
    """The module's node: its name, address, and the CLI aimed at it."""

    def __init__(self, env, name: str, address: str) -> None:
        self.env, self.name, self.address = env, name, address

    def silver(self, *args: str, check: bool = False, **kw) -> subprocess.CompletedProcess:
        return self.env.silver(*args, check=check, **kw)

    def update(self, app_dir: Path, location: str, *extra: str,
               check: bool = True) -> subprocess.CompletedProcess:
        """A new version every time (``--force``: tests deploy identical copies)."""
        return self.silver("-y", "update", str(app_dir), location, "--node", self.name,
                           "--noetchosts", "--force", *extra, check=check)

    def root(self, command: str, check: bool = True) -> str:
        with self.env.ssh(self.name) as ssh:
            result = ssh.run(["sh", "-c", command], check=check)
        return result.stdout


@pytest.fixture(scope="module")
def node(node_env, setup_node) -> Node:  # noqa: F811 (the fixture imported above)
    return Node(node_env, setup_node.name, setup_node.address)


@pytest.fixture
def hello(tmp_path) -> Path:
    dest = tmp_path / "hello"
    shutil.copytree(HELLO, dest)
    return dest


@pytest.fixture
def probe_app(tmp_path) -> Path:
    dest = tmp_path / "probe"
    shutil.copytree(PROBE, dest)
    return dest


def live_version(out: str) -> str:
    m = re.search(r"\.(v\d+) live at ", out)
    assert m, out
    return m.group(1)


# --- tests/data/dbprobe: an app that reports on its services as JSON ---------------

def make_app(tmp_path: Path, name: str, services: tuple[str, ...],
             packages: tuple[str, ...]) -> Path:
    """A copy of dbprobe named ``name`` asking for ``services`` and ``packages``."""
    dest = tmp_path / name
    shutil.copytree(DBPROBE, dest)
    lines = ["[production]", f"app_name = {name}", "runner = main.py", "health_check = /health",
             f"packages = {' '.join(packages)}"]
    lines += [f"service.{s} =" for s in services]
    (dest / "app.ini").write_text("\n".join(lines) + "\n")
    return dest


def get(node, host: str, path: str, **query: str) -> dict:  # noqa: F811
    status, body, _ = http_get(node.address, host, path + ("?" + urlencode(query) if query else ""))
    assert status == 200, (status, body[:500])
    return json.loads(body)


def rows(node, host: str) -> list[str]:  # noqa: F811
    return get(node, host, "/pg/list")["rows"]


CONSUMER = """import os, time
import psycopg2, redis
queue = redis.from_url(os.environ["CONFIG_REDIS_URL"])
db = psycopg2.connect(os.environ["CONFIG_PG_URL"])
db.autocommit = True
with db.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, v text)")
while True:
    item = queue.blpop(os.environ["CONFIG_REDIS_PREFIX"] + "in", timeout=1)
    if item:
        with db.cursor() as cur:
            cur.execute("INSERT INTO items (v) VALUES (%s)",
                        (item[1].decode() + "@" + os.environ["SILVER_INSTANCE_NAME"],))
"""
PUSH = ("import os, sys, redis; redis.from_url(os.environ['CONFIG_REDIS_URL']).rpush("
        "os.environ['CONFIG_REDIS_PREFIX'] + 'in', sys.argv[1])")
