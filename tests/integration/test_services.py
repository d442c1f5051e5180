"""Services on a real local node: PostgreSQL, PostGIS, MariaDB and Redis from the
OS packages, files; data kept across redeploys and rollbacks; backup, clear and
restore; one app cannot reach another's data.

One node for the module (installing the database servers takes a while; it
happens once). The app is ``tests/data/dbprobe``, copied and renamed per test.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.fixtures_apps import http_get, live_version, node, setup_node  # noqa: F401

DBPROBE = Path(__file__).resolve().parents[1] / "data" / "dbprobe"


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


@pytest.fixture(scope="module")
def shop(node, tmp_path_factory) -> Path:  # noqa: F811
    """App ``shop`` (postgresql + files) deployed at shop.test with two rows and a file."""
    app = make_app(tmp_path_factory.mktemp("shop"), "shop", ("postgresql", "files"),
                   ("python3-psycopg2",))
    proc = node.update(app, "shop.test")
    assert "service postgresql: ready" in proc.stderr + proc.stdout
    get(node, "shop.test", "/pg/add", v="one")
    get(node, "shop.test", "/pg/add", v="two")
    get(node, "shop.test", "/files/write", name="a.txt", v="alpha")
    return app


def test_postgresql_and_files_survive_redeploy_and_rollback(node, shop):  # noqa: F811
    env = get(node, "shop.test", "/env")
    assert env["CONFIG_PG_DBNAME"] == "sl_shop" and env["CONFIG_PG_USER"] == "sl_shop"
    assert env["CONFIG_PG_HOST"] == "127.0.0.1" and env["CONFIG_PG_PORT"] == "5432"
    password = env["CONFIG_PG_PASSWORD"]
    assert len(password) >= 32
    assert env["CONFIG_PG_URL"] == f"postgresql://sl_shop:{password}@127.0.0.1:5432/sl_shop"
    assert env["CONFIG_PG_SQLALCHEMY"] == env["CONFIG_PG_URL"]
    assert get(node, "shop.test", "/pg/url") == {"user": "sl_shop"}
    first = get(node, "shop.test", "/files/list")
    assert rows(node, "shop.test") == ["one", "two"]

    proc = node.update(shop, "shop.test")
    assert password not in proc.stdout + proc.stderr
    assert rows(node, "shop.test") == ["one", "two"]
    get(node, "shop.test", "/pg/add", v="three")
    assert get(node, "shop.test", "/env")["CONFIG_PG_PASSWORD"] == password
    node.silver("activate", "shop.test", "prev", "--node", node.name, check=True)
    assert rows(node, "shop.test") == ["one", "two", "three"]
    assert get(node, "shop.test", "/files/list") == first == {"files": {"a.txt": "alpha"}}

    mode = node.root("stat -c '%a %U %G' /var/lib/silverlining/data/shop/postgresql.credentials")
    assert mode.split() == ["640", "root", "sl-shop"]
    hba = node.root("cat /etc/postgresql/*/main/pg_hba.conf")
    assert "trust" not in hba and "scram-sha-256" in hba
