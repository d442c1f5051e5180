"""Apps cannot starve each other (issue 24): attacks by one app's code on what the
node's apps share, each stopped, with the other app still served.

One node for the module, two copies of ``tests/data/dbprobe``: ``hog`` (small
``limits.*``, the attacker) and ``calm`` (the defaults, the bystander), both
with PostgreSQL, MariaDB, Redis and files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.fixtures_apps import http_get, node, setup_node  # noqa: F401

pytestmark = pytest.mark.node

DBPROBE = Path(__file__).resolve().parents[1] / "data" / "dbprobe"
VAR = "/var/lib/silverlining"
HOG_LIMITS = {"limits.postgresql_connections": 6, "limits.mysql_connections": 6,
              "limits.tasks": 64, "limits.redis_memory": "16M", "limits.redis_connections": 8}


def make_app(root: Path, name: str, limits: dict[str, int | str]) -> Path:
    dest = root / name
    shutil.copytree(DBPROBE, dest)
    lines = ["[production]", f"app_name = {name}", "runner = main.py", "health_check = /health",
             "packages = python3-psycopg2 python3-pymysql python3-redis",
             "service.postgresql =", "service.mysql =", "service.redis =", "service.files ="]
    lines += [f"{key} = {value}" for key, value in limits.items()]
    if name == "calm":              # a worker, for the rollback to a version of old
        (dest / "idle.py").write_text("import time\nwhile True:\n    time.sleep(60)\n")
        lines += ["", "[process:idle]", "command = idle.py"]
    (dest / "app.ini").write_text("\n".join(lines) + "\n")
    return dest


def get(node, host: str, path: str, **query: str) -> dict:  # noqa: F811
    status, body, _ = http_get(node.address, host, path + ("?" + urlencode(query) if query
                                                          else ""), timeout=60)
    assert status == 200, (status, body[:500])
    return json.loads(body)


@pytest.fixture(scope="module")
def apps(node, tmp_path_factory) -> dict[str, Path]:  # noqa: F811
    root = tmp_path_factory.mktemp("apps")
    found = {"hog": make_app(root, "hog", HOG_LIMITS), "calm": make_app(root, "calm", {})}
    for name, app in found.items():
        node.update(app, f"{name}.test")
        get(node, f"{name}.test", "/pg/add", v=f"{name}-row")
        get(node, f"{name}.test", "/mysql/set", k="greeting", v=f"hello {name}")
        get(node, f"{name}.test", "/files/write", name="keep.txt", v=f"{name} data")
        get(node, f"{name}.test", "/redis/set", k="greeting", v=f"hi {name}")
    return found


def run_as_app(node, location: str, code: str, check: bool = True):  # noqa: F811
    return node.silver("run", "--node", node.name, location, "python", "-c", code, check=check)


def popen_run(node, location: str, code: str) -> subprocess.Popen:  # noqa: F811
    return subprocess.Popen(
        [sys.executable, "-m", "silverlining", "run", "--node", node.name, location, "python",
         "-c", code], env={**os.environ, **node.env.env}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


@contextlib.contextmanager
def steady_traffic(node) -> Iterator[list[int]]:  # noqa: F811
    """Requests to calm every 0.2 s while the block runs; each must answer 200 (the
    list of answers is yielded; the block's end checks them). A short block on a loaded
    machine may end before three answers came: the polling then goes on until they
    have, so the count says the poller ran, not how long the block took."""
    answers: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                status = http_get(node.address, "calm.test", "/health", timeout=10)[0]
            except OSError as exc:
                failures.append(str(exc))
            else:
                answers.append(status)
                if status != 200:
                    failures.append(f"answered {status}")
            stop.wait(0.2)
    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        until = time.monotonic() + 30
        while len(answers) < 3 and not failures and time.monotonic() < until:
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=30)
    assert not failures and len(answers) >= 3, (failures, len(answers))


def calm_is_served(node) -> None:  # noqa: F811
    """The bystander answers, and its database queries too."""
    assert get(node, "calm.test", "/health") == {"ok": True}
    assert "calm-row" in get(node, "calm.test", "/pg/list")["rows"]
    assert get(node, "calm.test", "/mysql/get", k="greeting")["value"] == "hello calm"
    assert get(node, "calm.test", "/redis/get", k="greeting")["value"] == "hi calm"
    assert get(node, "calm.test", "/redis/set", k="n", v="1")["value"] == "1"


MIGRATION = """
import json, os, psycopg2, pymysql
pg = psycopg2.connect(os.environ["CONFIG_PG_URL"], connect_timeout=5)
with pg, pg.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS migrated (id int)")
    cur.execute("SELECT current_user, session_user, "
                "(SELECT tableowner FROM pg_tables WHERE tablename = 'migrated')")
    who = cur.fetchone()
my = pymysql.connect(host=os.environ["CONFIG_MYSQL_HOST"],
                     port=int(os.environ["CONFIG_MYSQL_PORT"]),
                     user=os.environ["CONFIG_MYSQL_USER"],
                     password=os.environ["CONFIG_MYSQL_PASSWORD"],
                     database=os.environ["CONFIG_MYSQL_DBNAME"], connect_timeout=5)
with my.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS migrated (id INT)")
    cur.execute("SELECT COUNT(*) FROM kv")
    kv = cur.fetchone()[0]
print(json.dumps({"pg": who, "mysql_rows": kv}))
"""


def test_a_connection_hog_leaves_the_other_apps_their_databases(node, apps):  # noqa: F811
    with steady_traffic(node):
        hog_connections(node)


def hog_connections(node) -> None:  # noqa: F811
    pg = get(node, "hog.test", "/hog/pg", hold="150")
    assert pg["held"] == 6 and "too many connections for role" in pg["error"], pg
    my = get(node, "hog.test", "/hog/mysql", hold="150")
    assert my["held"] == 6 and "max_user_connections" in my["error"], my
    refused = get(node, "hog.test", "/pg/other", dbname="sl_hog")
    assert not refused["connected"] and "too many connections" in refused["error"]
    calm_is_served(node)
    get(node, "calm.test", "/pg/add", v="while-hogged")
    # silver's own work on the hog still gets through: a migration, a backup
    out = run_as_app(node, "hog.test", MIGRATION).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["pg"] == ["sl_hog", "slrun_hog", "sl_hog"], result
    assert result["mysql_rows"] == 1
    node.silver("backup", "hog.test", "remote:while-hogged", "--node", node.name, check=True)
    calm_is_served(node)
    assert "while-hogged" in get(node, "calm.test", "/pg/list")["rows"]
    # the maintenance logins are root's alone
    for service in ("postgresql", "mysql"):
        listing = node.root(f"stat -c '%a %U %G' {VAR}/data/hog/{service}.run-credentials")
        assert listing.split() == ["600", "root", "root"], (service, listing)
    assert "slrun" not in json.dumps(get(node, "hog.test", "/env"))


BOMB = """
import os, sys, time
children, error = 0, None
while children < 10000:
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.strerror
        break
    if pid == 0:
        time.sleep(25)
        os._exit(0)
    children += 1
print("held", children, error, flush=True)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def test_a_fork_bomb_stops_at_the_apps_task_limit(node, apps):  # noqa: F811
    unit = node.root("systemctl list-units --plain --no-legend 'silver-hog-v*.service'")
    assert unit.split(), unit
    assert node.root(f"systemctl show -p Slice --value {unit.split()[0]}").strip() == \
        "silver-hog.slice"
    with steady_traffic(node):
        fork_bomb(node)
    calm_is_served(node)


def fork_bomb(node) -> None:  # noqa: F811
    proc = popen_run(node, "hog.test", BOMB)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split(maxsplit=2)
        assert line[:1] == ["held"], (line, proc.stderr.read() if proc.poll() is not None
                                      else "")
        assert 0 < int(line[1]) < 64 and "Resource temporarily unavailable" in line[2]
        for _ in range(5):          # while the hog's processes are all still there
            calm_is_served(node)
        query = node.silver("query", node.name, "hog", check=True).stdout
        tasks = [ln for ln in query.splitlines() if ln.strip().startswith("limits:")]
        assert tasks and "of 64" in tasks[0], query
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


FILLER = """
import json, os
written, error = 0, None
fd = os.open(os.path.join(os.environ["CONFIG_FILES"], "big.bin"), os.O_WRONLY | os.O_CREAT)
chunk = b"x" * (4 << 20)
while True:
    try:
        written += os.write(fd, chunk)
    except OSError as exc:
        error = exc.strerror
        break
os.close(fd)
print(json.dumps([written, error]))
"""


def test_a_disk_filler_gets_the_next_deploy_refused_and_no_data_lost(node, apps):  # noqa: F811
    before = get(node, "calm.test", "/.silver/info")["version"]
    versions = node.root(f"ls {VAR}/apps/calm")
    # the filesystem the uploads and the hog's files share: small, so it can be filled
    node.root("mkdir -p /srv/small && mount -t tmpfs -o size=300M tmpfs /srv/small && "
              "mkdir /srv/small/uploads /srv/small/files && "
              f"chown --reference={VAR}/uploads /srv/small/uploads && "
              f"chmod --reference={VAR}/uploads /srv/small/uploads && "
              f"chown --reference={VAR}/data/hog/files /srv/small/files && "
              f"chmod --reference={VAR}/data/hog/files /srv/small/files && "
              f"cp -a {VAR}/data/hog/files/. /srv/small/files/ && "
              f"mount --bind /srv/small/uploads {VAR}/uploads && "
              f"mount --bind /srv/small/files {VAR}/data/hog/files")
    try:
        with steady_traffic(node):
            fill_and_deploy(node, apps, before, versions)
    finally:
        node.root(f"umount {VAR}/uploads; umount {VAR}/data/hog/files; umount /srv/small; "
                  "rmdir /srv/small", check=False)
    node.update(apps["calm"], "calm.test")
    assert get(node, "calm.test", "/.silver/info")["version"] != before
    calm_is_served(node)


def fill_and_deploy(node, apps, before: str, versions: str) -> None:  # noqa: F811
    written, error = json.loads(run_as_app(node, "hog.test", FILLER).stdout.splitlines()[-1])
    assert written > 200 << 20 and error == "No space left on device", (written, error)
    proc = node.update(apps["calm"], "calm.test", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("silver: error: ") and \
        "not enough disk space to deploy calm" in lines[-1], proc.stderr
    assert get(node, "calm.test", "/.silver/info")["version"] == before
    assert node.root(f"ls {VAR}/apps/calm") == versions          # nothing reserved
    calm_is_served(node)
    assert get(node, "calm.test", "/files/list")["files"] == {"keep.txt": "calm data"}
    assert get(node, "hog.test", "/files/list")["files"]["keep.txt"] == "hog data"


def test_query_shows_limits_and_sizes(node, apps):  # noqa: F811
    lines = node.silver("query", node.name, "hog", check=True).stdout.splitlines()
    assert lines[0] == "hog"
    limits = next(ln for ln in lines if ln.startswith("  limits: "))
    assert "of 64" in limits and "cpu weight 100" in limits, limits
    cgroup = node.root("test -e /sys/fs/cgroup/silver.slice/silver-hog.slice/memory.max "
                       "&& echo yes || echo no").strip()
    assert ("not enforced on this node" in limits) == (cgroup == "no"), limits
    disk = next(ln for ln in lines if ln.startswith("  disk: "))
    assert disk.startswith("  disk: data ") and " MB; versions v1 " in disk, disk


def test_a_redis_memory_hog_is_stopped_at_its_maxmemory(node, apps):  # noqa: F811
    with steady_traffic(node):
        try:
            filled = get(node, "hog.test", "/redis/fill")
            # the server's "-OOM command not allowed when used memory > 'maxmemory'."
            oom = "OutOfMemoryError: command not allowed when used memory > 'maxmemory'"
            assert (filled["error"] or "").startswith(oom), filled
            assert 4 <= filled["megabytes"] <= 16, filled
            for _ in range(5):          # while the hog's instance is full
                calm_is_served(node)
            # calm's own budget (64M by default) is not the hog's: it stores more
            try:
                assert get(node, "calm.test", "/redis/fill", max="20") == \
                    {"megabytes": 20, "error": None}
            finally:
                get(node, "calm.test", "/redis/unfill")
            assert get(node, "hog.test", "/redis/get", k="greeting")["value"] == "hi hog"
        finally:
            get(node, "hog.test", "/redis/unfill")
    assert get(node, "hog.test", "/redis/set", k="after", v="1")["value"] == "1"
    conf = node.root("cat /etc/redis/redis-hog.conf")
    assert f"maxmemory {16 << 20}" in conf and "maxmemory-policy noeviction" in conf, conf


def hog_redis(node) -> None:  # noqa: F811
    held = get(node, "hog.test", "/hog/redis", hold="300")
    # refused with "max number of clients reached", or closed before redis-py read that
    refused = ("max number of clients", "Broken pipe", "Connection reset")
    assert 0 < held["held"] <= 8 and any(r in held["error"] for r in refused), held
    calm_is_served(node)


def test_a_redis_connection_hog_leaves_silvers_backup_restore_and_clear(node, apps):  # noqa: F811
    get(node, "hog.test", "/redis/set", k="kept", v="before")
    with steady_traffic(node):
        hog_redis(node)
        node.silver("backup", "hog.test", "remote:redis-hogged", "--node", node.name,
                    check=True)
        assert get(node, "hog.test", "/redis/set", k="kept", v="after the backup") == \
            {"value": "after the backup"}
        hog_redis(node)
        node.silver("-y", "clear", "hog.test", "--node", node.name, check=True)
        assert get(node, "hog.test", "/redis/get", k="kept") == {"value": None}
        hog_redis(node)
        node.silver("restore", "remote:redis-hogged", "hog.test", "--node", node.name,
                    check=True)
    assert get(node, "hog.test", "/redis/get", k="kept") == {"value": "before"}
    assert get(node, "hog.test", "/redis/get", k="greeting") == {"value": "hi hog"}
    assert get(node, "hog.test", "/files/list")["files"]["keep.txt"] == "hog data"
    # read as root: hog's own logins may still be held by the database hog test
    assert node.root("mariadb -N -e \"SELECT v FROM sl_hog.kv WHERE k = 'greeting'\"")\
        .strip() == "hello hog"
    assert "hog-row" in node.root("runuser -u postgres -- psql -At -d sl_hog "
                                  "-c 'SELECT v FROM items'").split()
    calm_is_served(node)


def test_an_app_cannot_open_another_apps_redis(node, apps):  # noqa: F811
    sockets = {name: get(node, f"{name}.test", "/env")["CONFIG_REDIS_SOCKET"]
               for name in ("hog", "calm")}
    assert sockets["calm"] == "/run/silverlining/redis/calm/redis.sock"
    tried = get(node, "hog.test", "/redis/socket", sock=sockets["calm"])
    assert not tried["connected"] and "Permission denied" in tried["error"], tried
    own = get(node, "hog.test", "/redis/socket", sock=sockets["hog"])
    assert own["connected"] and ("NOAUTH" in own["answer"]                # no login, no keys
                                 or "max number of clients" in own["answer"]), own
    for name in ("hog", "calm"):
        listing = node.root(f"stat -c '%a %U %G' /run/silverlining/redis/{name}").split()
        assert listing == ["2750", "redis", f"sl-{name}"], listing
        assert node.root(f"systemctl show -p Slice --value redis-server@{name}").strip() == \
            f"silver-{name}.slice"
    # no TCP port, and the package's own server (open to every local user) is stopped
    assert "6379" not in node.root("ss -ltnH")
    assert node.root("systemctl is-active redis-server", check=False).strip() == "inactive"


def test_a_version_kept_from_before_the_slices_runs_in_the_slice_on_rollback(node, apps):  # noqa: F811
    old = get(node, "calm.test", "/.silver/info")["version"]
    node.update(apps["calm"], "calm.test")
    new = get(node, "calm.test", "/.silver/info")["version"]
    assert new != old
    # what a node updated from before the slices keeps of an old version
    units = f"silver-calm-{old}.service silver-calm-{old}.process-idle@.service"
    node.root(f"cd /etc/systemd/system && sed -i '/^Slice=/d; /^LimitNPROC=/d' {units} && "
              "systemctl daemon-reload")
    try:
        node.silver("activate", "--node", node.name, "calm.test", old, check=True)
        assert get(node, "calm.test", "/.silver/info")["version"] == old
        for unit in (f"silver-calm-{old}.service", f"silver-calm-{old}.process-idle@1.service"):
            assert node.root(f"systemctl show -p Slice --value {unit}").strip() == \
                "silver-calm.slice", unit
            assert node.root(f"systemctl is-active {unit}").strip() == "active", unit
        text = node.root(f"cat /etc/systemd/system/silver-calm-{old}.process-idle@.service")
        assert "Slice=silver-calm.slice" in text and "LimitNPROC=512" in text, text
        calm_is_served(node)
    finally:
        node.silver("activate", "--node", node.name, "calm.test", new, check=True)
    calm_is_served(node)
