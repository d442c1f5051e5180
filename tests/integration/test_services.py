"""Services on a real local node: PostgreSQL, PostGIS, MariaDB and Redis from the
OS packages, files; data kept across redeploys and rollbacks; backup, clear and
restore; one app cannot reach another's data.

One node for the module (installing the database servers takes a while; it
happens once). The app is ``tests/data/dbprobe``, copied and renamed per test.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tempfile
from pathlib import Path

import pytest

from silverlining.backups import verify, write_archive
from tests.conftest import run_silver
from tests.integration.fixtures_apps import (CONSUMER, PUSH, get, http_get, live_version,  # noqa: F401
                                             make_app, node, rows, setup_node)

pytestmark = pytest.mark.node

# Django, asgiref, sqlparse and psycopg2-binary wheels, downloaded by scripts/test
# (the tests themselves never reach PyPI)
WHEELS = Path(os.environ.get("SILVER_LOCAL_CACHE") or "/var/cache/silverlining-test") / "wheels"
SETTINGS = {
    r"SECRET_KEY = [^\n]*\n": '''try:
    from silverlining.secret import get_secret
    SECRET_KEY = get_secret()
except ImportError:     # bin/python on your machine (manage.py collectstatic...)
    SECRET_KEY = "local-management-commands-only"
''',
    r"DEBUG = True\n": 'DEBUG = os.environ.get("SILVER_VERSION", "").startswith("devel/")\n',
    r"ALLOWED_HOSTS = \[\]\n":
        'ALLOWED_HOSTS = [os.environ.get("SILVER_CANONICAL_HOSTNAME", "localhost"), "localhost",\n'
        '                 "127.0.0.1"]\n',
    r"DATABASES = \{.*?\n\}\n": '''DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("CONFIG_PG_DBNAME", ""),
        "USER": os.environ.get("CONFIG_PG_USER", ""),
        "PASSWORD": os.environ.get("CONFIG_PG_PASSWORD", ""),
        "HOST": os.environ.get("CONFIG_PG_HOST", ""),
        "PORT": os.environ.get("CONFIG_PG_PORT", ""),
    }
}
''',
    r"STATIC_URL = [^\n]*\n": 'STATIC_URL = "/static/"\n'
                          'STATIC_ROOT = BASE_DIR.parent.parent / "static" / "static"\n',
}
MANAGE_PY = '''#!/usr/bin/env python3
import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
execute_from_command_line(sys.argv)
'''


@pytest.fixture(scope="module")
def shop(node, tmp_path_factory) -> Path:  # noqa: F811
    """App ``shop`` (postgresql, files, redis) deployed at shop.test with two rows, a
    file and a Redis key."""
    app = make_app(tmp_path_factory.mktemp("shop"), "shop", ("postgresql", "files", "redis"),
                   ("python3-psycopg2", "python3-redis"))
    proc = node.update(app, "shop.test")
    assert "service postgresql: ready" in proc.stderr + proc.stdout
    get(node, "shop.test", "/pg/add", v="one")
    get(node, "shop.test", "/pg/add", v="two")
    get(node, "shop.test", "/files/write", name="a.txt", v="alpha")
    assert get(node, "shop.test", "/redis/set", k="shop:secret", v="s3")["value"] == "s3"
    return app


@pytest.fixture(scope="module")
def other(node, tmp_path_factory) -> Path:  # noqa: F811
    """App ``other`` (postgis, mysql, redis, files) deployed at other.test."""
    app = make_app(tmp_path_factory.mktemp("other"), "other",
                   ("postgis", "mysql", "redis", "files"),
                   ("python3-psycopg2", "python3-pymysql", "python3-redis"))
    node.update(app, "other.test")
    return app


def snapshot(node, host: str) -> tuple:  # noqa: F811
    """Everything of shop's data the tests compare: rows, files, a Redis key."""
    return (rows(node, host), get(node, host, "/files/list"),
            get(node, host, "/redis/get", k="shop:secret"))


def corrupt_copy(src: Path, dest: Path, member: str) -> None:
    """The same archive with one byte of ``member`` changed (manifest untouched)."""
    with tarfile.open(src, "r:gz") as tin, tarfile.open(dest, "w:gz") as tout:
        for info in tin.getmembers():
            data = tin.extractfile(info).read()
            if info.name == member:
                data = bytes([data[0] ^ 1]) + data[1:]
            tout.addfile(info, io.BytesIO(data))


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
    hba = node.root("grep -v '^#' /etc/postgresql/*/main/pg_hba.conf")
    assert "trust" not in hba and "scram-sha-256" in hba


def test_backup_clear_restore_returns_exactly_the_data(node, shop, tmp_path):  # noqa: F811
    before = snapshot(node, "shop.test")
    assert before[0] and before[1]["files"] and before[2] == {"value": "s3"}
    dest = tmp_path / "shop.tar.gz"
    proc = node.silver("backup", "shop.test", str(dest), "--node", node.name, check=True)
    assert f"backup written to {dest}" in proc.stdout
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(dest) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert names[0] == "manifest.json" and set(names[1:]) == set(manifest["parts"])
    assert manifest["app"] == "shop" and manifest["services"] == ["files", "postgresql", "redis"]
    assert all(len(p["sha256"]) == 64 for p in manifest["parts"].values())

    refused = node.silver("clear", "shop.test", "--node", node.name)    # no terminal, no -y
    assert refused.returncode == 2 and "pass -y" in refused.stderr
    assert snapshot(node, "shop.test") == before
    node.silver("-y", "clear", "shop.test", "--node", node.name, check=True)
    assert snapshot(node, "shop.test") == ([], {"files": {}}, {"value": None})

    proc = node.silver("restore", str(dest), "shop.test", "--node", node.name, check=True)
    assert "restored files, postgresql, redis" in proc.stdout
    assert snapshot(node, "shop.test") == before
    status, _, _ = http_get(node.address, "shop.test", "/health")
    assert status == 200                                               # enabled again


def test_corrupted_archive_is_refused_before_touching_data(node, shop, tmp_path):  # noqa: F811
    before = snapshot(node, "shop.test")
    good = tmp_path / "good.tar.gz"
    node.silver("backup", "shop.test", str(good), "--node", node.name, check=True)
    get(node, "shop.test", "/pg/add", v="after-backup")
    before = snapshot(node, "shop.test")
    bad = tmp_path / "bad.tar.gz"
    corrupt_copy(good, bad, "postgresql/database.dump")
    proc = node.silver("restore", str(bad), "shop.test", "--node", node.name)
    assert proc.returncode == 1 and "postgresql/database.dump is corrupted" in proc.stderr
    assert "Traceback" not in proc.stderr
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[:-200])
    proc = node.silver("restore", str(truncated), "shop.test", "--node", node.name)
    assert proc.returncode == 1 and "damaged archive" in proc.stderr

    # the node checks too: a remote backup damaged on the node
    node.silver("backup", "shop.test", "remote:damaged", "--node", node.name, check=True)
    node.root("cd /var/lib/silverlining/backups/shop && python3 -c \"import sys, tarfile, io; "
              "t = tarfile.open('damaged.tar.gz'); m = [(i, t.extractfile(i).read()) "
              "for i in t.getmembers()]; o = tarfile.open('damaged.tar.gz', 'w:gz'); "
              "[o.addfile(i, io.BytesIO(d if i.name != 'files/files.tar' else b'x' + d[1:])) "
              "for i, d in m]; o.close()\"")
    proc = node.silver("restore", "remote:damaged", "shop.test", "--node", node.name)
    assert proc.returncode == 1 and "files/files.tar is corrupted" in proc.stderr, proc.stderr
    assert snapshot(node, "shop.test") == before
    status, _, _ = http_get(node.address, "shop.test", "/health")
    assert status == 200                                             # never disabled


def test_a_restored_mariadb_dump_runs_no_client_command(node, tmp_path):  # noqa: F811
    """The restore's mariadb client runs as root: a line of the dump that is a client
    command (``\\!`` runs a shell) is refused, whatever made the dump."""
    app = make_app(tmp_path, "dumped", ("mysql",), ("python3-pymysql",))
    node.update(app, "dumped.test")
    get(node, "dumped.test", "/mysql/set", k="a", v="kept")
    good = tmp_path / "good.tar.gz"
    node.silver("backup", "dumped.test", str(good), "--node", node.name, check=True)
    parts = tmp_path / "parts"
    parts.mkdir()
    manifest = verify(good, extract_to=parts)
    dump = parts / "mysql" / "database.sql"
    dump.write_text("\\! touch /root/ran-from-a-dump\n" + dump.read_text())
    crafted = tmp_path / "crafted.tar.gz"
    write_archive(parts, crafted, manifest.app, manifest.version, manifest.services)
    proc = node.silver("restore", str(crafted), "dumped.test", "--node", node.name)
    assert "ran-from-a-dump" not in node.root("ls /root").split()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "dumped is left disabled" in proc.stderr, proc.stderr
    # the dump as mariadb-dump made it restores under the same client
    node.silver("restore", str(good), "dumped.test", "--node", node.name, check=True)
    node.silver("enable", "dumped.test", "--node", node.name, check=True)
    assert get(node, "dumped.test", "/mysql/get", k="a")["value"] == "kept"


def test_another_apps_backup_needs_force_app(node, shop, tmp_path):  # noqa: F811
    dest = tmp_path / "shop.tar.gz"
    node.silver("backup", "shop.test", str(dest), "--node", node.name, check=True)
    copy = make_app(tmp_path, "shopcopy", ("postgresql", "files", "redis"),
                    ("python3-psycopg2", "python3-redis"))
    node.update(copy, "shopcopy.test")
    proc = node.silver("restore", str(dest), "shopcopy.test", "--node", node.name)
    assert proc.returncode != 0 and "backup of shop, not of shopcopy" in proc.stderr
    assert rows(node, "shopcopy.test") == []
    node.silver("restore", str(dest), "shopcopy.test", "--force-app", "--node", node.name,
                check=True)
    assert rows(node, "shopcopy.test") == rows(node, "shop.test")
    assert get(node, "shopcopy.test", "/files/list") == get(node, "shop.test", "/files/list")
    # the Redis keys go into the new app's own instance, as they were
    assert get(node, "shopcopy.test", "/redis/get", k="shop:secret") == {"value": "s3"}


def test_second_app_cannot_reach_the_first_ones_data(node, shop, other):  # noqa: F811
    denied = get(node, "other.test", "/pg/other", dbname="sl_shop")
    assert not denied["connected"] and "CONNECT privilege" in denied["error"]
    assert not get(node, "other.test", "/pg/other", dbname="postgres")["connected"]
    # each app has its own Redis: shop's key is not in other's, shop's socket is shut
    assert get(node, "other.test", "/redis/get", k="shop:secret") == {"value": None}
    assert "shop:secret" not in get(node, "other.test", "/redis/scan")["keys"]
    tried = get(node, "other.test", "/redis/socket", sock="/run/silverlining/redis/shop/redis.sock")
    assert not tried["connected"] and "Permission denied" in tried["error"], tried
    env = get(node, "other.test", "/env")
    assert env["CONFIG_REDIS_USER"] == "sl-other" and env["CONFIG_REDIS_PREFIX"] == ""
    assert env["CONFIG_REDIS_SOCKET"] == "/run/silverlining/redis/other/redis.sock"
    assert env["CONFIG_REDIS_URL"].startswith("unix://sl-other:")
    # no admin commands for the app in its own instance
    assert "no permissions" in get(node, "other.test", "/redis/config")["error"].lower()
    for path in ("postgresql", "mysql", "redis"):
        listing = node.root(f"stat -c '%a %U %G' /var/lib/silverlining/data/other/{path}"
                            ".credentials")
        assert listing.split() == ["640", "root", "sl-other"], (path, listing)


def test_postgis_mysql_and_redis_round_trip(node, other):  # noqa: F811
    gis = get(node, "other.test", "/pg/postgis")
    assert gis["postgis"] and gis["point"] == "POINT(1 2)"
    assert get(node, "other.test", "/mysql/set", k="greeting", v="hello")["value"] == "hello"
    assert get(node, "other.test", "/mysql/get", k="greeting")["value"] == "hello"
    assert get(node, "other.test", "/redis/set", k="other:n", v="42")["value"] == "42"
    env = get(node, "other.test", "/env")
    assert env["CONFIG_MYSQL_SQLALCHEMY"] == (
        f"mysql://sl_other:{env['CONFIG_MYSQL_PASSWORD']}@127.0.0.1:3306/sl_other")
    proc = node.update(other, "other.test")                              # data kept
    assert get(node, "other.test", "/mysql/get", k="greeting")["value"] == "hello"
    assert get(node, "other.test", "/redis/get", k="other:n")["value"] == "42"
    for secret in (env["CONFIG_MYSQL_PASSWORD"], env["CONFIG_REDIS_PASSWORD"],
                   env["CONFIG_PG_PASSWORD"]):
        assert secret not in proc.stdout + proc.stderr
        assert secret not in node.root("ps -eo args")


def test_query_lists_services_without_secrets(node, shop, other):  # noqa: F811
    node.silver("backup", "shop.test", "remote:kept", "--node", node.name, check=True)
    out = node.silver("query", node.name, check=True).stdout
    assert re.search(r"^shop\n  services: files, postgresql, redis$", out, re.M), out
    assert re.search(r"^other\n  services: files, mysql, postgis, redis$", out, re.M), out
    assert re.search(r"^  backup remote:kept  ", out, re.M), out
    password = get(node, "shop.test", "/env")["CONFIG_PG_PASSWORD"]
    assert password not in out


def test_own_bin_scripts_upload_and_the_app_secret_is_stable(node, shop, other):  # noqa: F811
    venv_bin = shop / "bin"
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "activate").write_text("# virtualenv\n")
    (venv_bin / "pip").write_text(f"#!{venv_bin.resolve()}/python\n")
    node.update(shop, "shop.test")
    newest = "$(ls /var/lib/silverlining/apps/shop | grep '^v' | sort -V | tail -1)"
    listing = node.root(f"ls /var/lib/silverlining/apps/shop/{newest}/bin")
    assert listing.split() == ["report.py"]
    secret = get(node, "shop.test", "/secret")
    assert len(secret["default"]) == 64 and secret["default"] != secret["other"]
    proc = node.silver("run", "--node", node.name, "shop.test", "report.py", check=True)
    assert proc.stdout.splitlines() == ["db sl_shop", f"secret {secret['default']}"]
    node.update(shop, "shop.test")
    assert get(node, "shop.test", "/secret") == secret                  # same for every version
    assert get(node, "other.test", "/secret")["default"] != secret["default"]
    mode = node.root("stat -c '%a %U %G' /var/lib/silverlining/data/shop/secret")
    assert mode.split() == ["640", "root", "sl-shop"]


def test_update_backup_then_activate_prev_restore_data(node, tmp_path):  # noqa: F811
    app = make_app(tmp_path, "journal", ("postgresql",), ("python3-psycopg2",))
    first = live_version(node.update(app, "journal.test").stdout)
    get(node, "journal.test", "/pg/add", v="before")
    proc = node.update(app, "journal.test", "--backup")
    second = live_version(proc.stdout)
    assert f"backup: remote:before-{second} (the data of journal.{first})" in proc.stderr
    get(node, "journal.test", "/pg/add", v="after")
    assert rows(node, "journal.test") == ["before", "after"]
    proc = node.silver("activate", "journal.test", "prev", "--restore-data", "--node", node.name,
                       check=True)
    assert f"now serves journal.{first}" in proc.stdout
    assert f"data restored from remote:before-{second}" in proc.stdout
    assert rows(node, "journal.test") == ["before"]
    refused = node.silver("activate", "journal.test", second, "--restore-data",
                          "--node", node.name)
    assert refused.returncode == 1 and f"no backup holds the data of journal.{second}" \
        in refused.stderr
    assert rows(node, "journal.test") == ["before"]


def test_django_walkthrough(node, monkeypatch):  # noqa: F811
    """docs/django.md, step by step, with today's Django."""
    found = {p.name.split("-")[0].lower() for p in WHEELS.glob("*.whl")}
    assert {"asgiref", "django", "psycopg2_binary", "sqlparse"} <= found, \
        f"no Django wheels in {WHEELS}: scripts/test downloads them"
    # silver serve's development PostgreSQL runs as the app directory's owner (not
    # root), which must reach SILVER_HOME: a directory others may traverse
    home = Path(tempfile.mkdtemp(prefix="silver-django-"))
    try:
        home.chmod(0o711)
        local = {"SILVER_HOME": str(home), "SILVER_CONFIG": node.env.env["SILVER_CONFIG"]}
        site = home / "mysite"
        run_silver("init", str(site), env=local, check=True)                       # 1
        # (the test's wheels come from a local directory, named in requirements.txt)
        requirements = site / "requirements.txt"
        requirements.write_text(requirements.read_text() + f"--no-index\n--find-links {WHEELS}\n"
                                "Django>=5.1,<6\npsycopg2-binary\n")
        subprocess.run([str(site / "bin" / "pip"), "install", "-q", "-r", str(requirements)],
                       check=True, capture_output=True, env={**os.environ, **local})
        (site / "src").mkdir(exist_ok=True)                                        # 2
        subprocess.run([str(site / "bin" / "python"), "-m", "django", "startproject", "mysite"],
                       cwd=site / "src", check=True, capture_output=True)
        (site / "lib" / "python" / "mysite.pth").write_text("../../src/mysite\n")
        (site / "lib" / "python" / "silvercustomize.py").write_text(
            'import os\n\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n')
        settings = site / "src" / "mysite" / "mysite" / "settings.py"              # 3
        text = settings.read_text().replace("from pathlib import Path\n",
                                            "import os\nfrom pathlib import Path\n", 1)
        for pattern, replacement in SETTINGS.items():
            text, count = re.subn(pattern, lambda m, r=replacement: r, text, flags=re.S)
            assert count == 1, pattern
        settings.write_text(text)
        (site / "bin" / "manage.py").write_text(MANAGE_PY)                        # 4
        (site / "bin" / "manage.py").chmod(0o755)
        (site / "app.ini").write_text("[production]\napp_name = mysite\n"         # 5
                                      "runner = src/mysite/mysite/wsgi.py\n"
                                      "service.postgresql =\nhealth_check = /admin/login/\n")
        manage = [str(site / "bin" / "python"), str(site / "bin" / "manage.py")]
        subprocess.run(manage + ["collectstatic", "--noinput"], check=True,         # 6
                       capture_output=True, env={**os.environ, **local})
        subprocess.run(["chown", "-R", "nobody:nogroup", str(site)], check=True)
        from tests.test_serve import Served
        for key, value in local.items():
            monkeypatch.setenv(key, value)
        server = Served(site)
        try:
            migrated = subprocess.run(manage + ["migrate"], capture_output=True, text=True)
            assert migrated.returncode == 0, migrated.stderr[-2000:]
            status, _, page = server.request("/admin/login/")
            assert status == 200 and "/static/admin/css/base.css" in page, (page[-500:],
                                                                             server.err)
            status, _, css = server.request("/static/admin/css/base.css")
            assert status == 200 and "body" in css
        finally:
            server.stop()
        node.update(site, "django.test")                                          # 7
        node.silver("run", "--node", node.name, "django.test", "manage.py", "migrate",
                    check=True)
        status, page, _ = http_get(node.address, "django.test", "/admin/login/")
        assert status == 200 and b'href="/static/admin/css/base.css"' in page
        status, css, headers = http_get(node.address, "django.test", "/static/admin/css/base.css")
        assert status == 200 and headers["Content-Type"] == "text/css"
        users = node.silver("run", "--node", node.name, "django.test", "manage.py", "shell", "-c",
                            "from django.contrib.auth.models import User; "
                            "print(User.objects.count())", check=True)
        # Django 5.2's shell first says what it imported; the count is the last line
        assert users.stdout.strip().splitlines()[-1] == "0"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_fresh_django_project_deploys_without_a_health_check(node, tmp_path):  # noqa: F811
    """``django-admin startproject`` as it comes: no page at / (a 4xx), no health_check:
    it goes live, and the deploy says how to get a real check."""
    site = tmp_path / "fresh"
    run_silver("init", str(site), env=node.env.env, check=True)
    (site / "requirements.txt").write_text(f"--no-index\n--find-links {WHEELS}\nDjango\n")
    subprocess.run([str(site / "bin" / "pip"), "install", "-q", "-r",
                    str(site / "requirements.txt")], check=True, capture_output=True)
    (site / "src").mkdir(exist_ok=True)
    subprocess.run([str(site / "bin" / "python"), "-m", "django", "startproject", "fresh"],
                   cwd=site / "src", check=True, capture_output=True)
    (site / "lib" / "python" / "fresh.pth").write_text("../../src/fresh\n")
    (site / "lib" / "python" / "silvercustomize.py").write_text(
        'import os\n\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "fresh.settings")\n')
    (site / "app.ini").write_text("[production]\napp_name = fresh\n"
                                  "runner = src/fresh/fresh/wsgi.py\n")
    proc = node.update(site, "fresh.test")
    assert "set health_check = PATH in app.ini for a real check" in proc.stderr
    status, _, _ = http_get(node.address, "fresh.test", "/")
    assert 400 <= status < 500


def test_a_worker_consumes_redis_into_postgresql_across_deploys(node, shop, tmp_path):
    """Issue 11's worker: fed through the app's Redis, writing to its database; it is
    the new version's after a deploy of the web part, and comes back when killed."""
    app = make_app(tmp_path, "queue", ("postgresql", "redis"),
                   ("python3-psycopg2", "python3-redis"))
    (app / "app.ini").write_text((app / "app.ini").read_text()
                                 + "\n[process:consume]\ncommand = consume.py\n")
    (app / "consume.py").write_text(CONSUMER)

    def push_and_see(value: str, version: str) -> None:
        node.silver("run", "--node", node.name, "queue.test", "python", "-c", PUSH, value,
                    check=True)
        deadline = time.monotonic() + 30
        while f"{value}@queue.{version}" not in rows(node, "queue.test"):
            assert time.monotonic() < deadline, rows(node, "queue.test")
            time.sleep(0.5)

    first = live_version(node.update(app, "queue.test").stdout)
    push_and_see("a", first)
    main = app / "main.py"
    main.write_text(main.read_text() + "\n# a change of the web part\n")
    second = live_version(node.update(app, "queue.test").stdout)
    push_and_see("b", second)
    node.root(f"systemctl kill -s KILL silver-queue-{second}.process-consume@1.service")
    push_and_see("c", second)
    assert [r.split("@")[0] for r in rows(node, "queue.test")] == ["a", "b", "c"]
    # a restore restarts the worker, so it starts from the restored data
    worker = f"silver-queue-{second}.process-consume@1.service"
    node.silver("backup", "queue.test", "remote:before-d", "--node", node.name, check=True)
    push_and_see("d", second)
    pid = node.root(f"systemctl show -p MainPID --value {worker}").strip()
    proc = node.silver("restore", "remote:before-d", "queue.test", "--node", node.name,
                       check=True)
    assert f"restarting the workers of queue: {worker}" in proc.stderr, proc.stderr
    assert node.root(f"systemctl show -p MainPID --value {worker}").strip() not in (pid, "0")
    assert [r.split("@")[0] for r in rows(node, "queue.test")] == ["a", "b", "c"]
    push_and_see("e", second)


SHARED_REDIS = r"""
set -e
secret=$(cat /etc/silverlining/redis-admin.secret)
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
cat > /etc/redis/silverlining-users.acl <<ACL
user default off resetkeys resetchannels -@all
user silver-admin on #$(sha "$secret") ~* &* +@all
user sl-legacy on #$(sha oldpassword) resetkeys ~legacy:* resetchannels &legacy:* +@all -@admin -@dangerous -scan -randomkey
ACL
chown root:redis /etc/redis/silverlining-users.acl && chmod 640 /etc/redis/silverlining-users.acl
grep -q '^aclfile' /etc/redis/redis.conf || \
    printf '\naclfile /etc/redis/silverlining-users.acl\n' >> /etc/redis/redis.conf
systemctl enable --now --quiet redis-server && systemctl restart redis-server
cli() { REDISCLI_AUTH="$secret" redis-cli --user silver-admin "$@"; }
cli SET legacy:kept v1 >/dev/null
cli SET legacy:later v2 EX 5000 >/dev/null
cli SET zz:other x >/dev/null
"""


def test_an_app_of_the_shared_redis_gets_its_keys_in_its_own_on_the_next_deploy(node, tmp_path):  # noqa: F811
    """A node updated from when the apps shared one redis-server: the app's keys
    (``legacy:*``) and its kept versions move to its own instance."""
    app = make_app(tmp_path, "legacy", ("redis",), ("python3-redis",))
    old = live_version(node.update(app, "legacy.test").stdout)
    # what the shared server, the credentials and the old version's env were like
    node.root("systemctl disable --now --quiet redis-server@legacy && "
              "rm -r /etc/redis/redis-legacy.conf /var/lib/redis/legacy "
              "/etc/systemd/system/redis-server@legacy.service.d && systemctl daemon-reload")
    node.root(SHARED_REDIS)
    creds = ("host=127.0.0.1\nport=6379\ndb=0\nuser=sl-legacy\npassword=oldpassword\n"
             "prefix=legacy:\nrules=+@all -@admin -@dangerous -scan -randomkey\n")
    env = f"/var/lib/silverlining/env/legacy/{old}.env"
    node.root(f"printf '{creds}' > /var/lib/silverlining/data/legacy/redis.credentials && "
              f"sed -i '/^CONFIG_REDIS_/d' {env} && printf '%s\\n' "
              "CONFIG_REDIS_URL=redis://sl-legacy:oldpassword@127.0.0.1:6379/0 "
              "CONFIG_REDIS_PREFIX=legacy: >> " + env +
              f" && systemctl restart silver-legacy-{old}.service")
    deadline = time.monotonic() + 30
    while http_get(node.address, "legacy.test", "/health")[0] != 200:    # restarting
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert get(node, "legacy.test", "/redis/get", k="legacy:kept") == {"value": "v1"}

    main = app / "main.py"
    main.write_text(main.read_text() + "\n# a new version\n")
    proc = node.update(app, "legacy.test")
    assert "redis: 2 keys of legacy moved from the shared server" in proc.stderr, proc.stderr
    new = live_version(proc.stdout)
    assert get(node, "legacy.test", "/redis/get", k="kept") == {"value": "v1"}
    assert get(node, "legacy.test", "/env")["CONFIG_REDIS_PREFIX"] == ""
    ttl = node.root("REDISCLI_AUTH=$(cat /etc/silverlining/redis-admin.secret) redis-cli "
                    "--user silver-admin -s /run/silverlining/redis/legacy/redis.sock TTL later")
    assert 4000 < int(ttl) <= 5000, ttl
    # the shared server keeps no user or key of the app, and stops with no app left in it
    assert "sl-legacy" not in node.root("cat /etc/redis/silverlining-users.acl")
    assert node.root("systemctl is-active redis-server", check=False).strip() == "inactive"
    # the kept version was pointed at the new instance: a rollback finds the keys
    assert "CONFIG_REDIS_SOCKET=" in node.root(f"cat {env}")
    node.silver("activate", "--node", node.name, "legacy.test", old, check=True)
    assert get(node, "legacy.test", "/redis/get", k="kept") == {"value": "v1"}
    node.silver("activate", "--node", node.name, "legacy.test", new, check=True)
