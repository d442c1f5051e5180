"""A hostile app stays in its box, and no deploy leaves a location broken (issue 9).

Each test is an attack or a fault tried on a real local node, through the
real CLI; each checks that the previous version still answers afterwards.
The probe app's ``/read?path=`` reads a path as the app's user, and
``silver run`` runs code as that user: the attacker's two hands.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.fixtures_apps import (  # noqa: F401 (fixtures)
    PROBE, http_get, live_version, node, probe, probe_app, setup_node)

pytestmark = pytest.mark.node

VAR = "/var/lib/silverlining"


def as_app(node, location: str, code: str) -> subprocess.CompletedProcess:
    """Python run by the app's own user on the node, in its environment."""
    return node.silver("run", "--node", node.name, location, "python", "-c", code)


@pytest.fixture(scope="module")
def victim(node, tmp_path_factory) -> Path:
    """The probe app live at victim.test, with a deployment config."""
    app = tmp_path_factory.mktemp("victim") / "probe"
    shutil.copytree(PROBE, app)
    config = tmp_path_factory.mktemp("victim-config")
    (config / "settings.json").write_text('{"secret": "victim-secret"}')
    node.update(app, "victim.test", "--config", str(config))
    return app


def test_the_app_cannot_change_what_root_trusts(node, victim):
    seen = probe(node.address, "victim.test")
    version = seen["instance"].split(".")[1]
    env_dir = f"{VAR}/env/probe"
    listing = node.root(f"stat -c '%n %U:%G %a' {env_dir} {env_dir}/{version}.env "
                        f"{env_dir}/{version}.config {env_dir}/{version}.config/settings.json")
    assert listing.split("\n")[:4] == [
        f"{env_dir} root:sl-probe 750", f"{env_dir}/{version}.env root:sl-probe 640",
        f"{env_dir}/{version}.config root:sl-probe 750",
        f"{env_dir}/{version}.config/settings.json root:sl-probe 640"]
    attack = (
        "import os, json\n"
        f"d = {env_dir!r}\n"
        "out = {}\n"
        f"for name, act in [('env', lambda: open(d + '/{version}.env', 'a').write('LD_PRELOAD=/tmp/x.so\\n')),\n"
        f"                  ('tmp-link', lambda: os.symlink('/etc/shadow', d + '/.{version}.env.tmp')),\n"
        f"                  ('config-link', lambda: os.symlink('/etc', d + '/v99.config')),\n"
        f"                  ('config', lambda: open(d + '/{version}.config/settings.json', 'w'))]:\n"
        "    try:\n"
        "        act(); out[name] = 'done'\n"
        "    except OSError as exc:\n"
        "        out[name] = exc.strerror\n"
        "print(json.dumps(out))\n")
    proc = as_app(node, "victim.test", attack)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == dict.fromkeys(["env", "tmp-link", "config-link", "config"],
                                   "Permission denied")
    # the app still reads its own environment and config
    mine = as_app(node, "victim.test", "import os; print(open(os.environ['SILVER_APP_CONFIG'] "
                  "+ '/settings.json').read())")
    assert "victim-secret" in mine.stdout
    # and nothing of its unit runs as root
    unit = node.root(f"cat /etc/systemd/system/silver-probe-{version}.service")
    assert "ExecStartPre=+" not in unit and "User=sl-probe" in unit


def test_nginx_reads_static_files_but_no_app_code(node, victim):
    version = probe(node.address, "victim.test")["instance"].split(".")[1]
    inst = f"{VAR}/apps/probe/{version}"
    assert http_get(node.address, "victim.test", "/probe.txt")[0] == 200
    groups = node.root("id -Gn www-data").split()
    assert "sl-probe" not in groups
    out = node.root(f"for f in {inst}/main.py {inst}/app.ini {VAR}/env/probe/{version}.env "
                    f"/var/log/silverlining/apps/probe/{version}.log {inst}/static/probe.txt; do "
                    "runuser -u www-data -- cat $f >/dev/null 2>&1 && echo read || echo denied; "
                    "done").split()
    assert out == ["denied", "denied", "denied", "denied", "read"]


def test_symlinks_out_of_the_app_never_reach_the_node(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    (app / "static" / "shadow.txt").symlink_to("/etc/shadow")
    proc = node.update(app, "victim.test", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"silver: error: {app / 'static' / 'shadow.txt'} is a symlink to /etc/shadow, outside "
        "the app: links may only point inside the app directory (copy the file in, or list "
        "it in .silverignore)"]
    assert probe(node.address, "victim.test")["instance"] == before
    # a client that skips the check (or an older one): the node drops the link itself
    upload = json.loads(node.root("/usr/local/sbin/silver-node reserve probe --who attacker"
                                  ).strip().splitlines()[-1])
    version, dest = upload["version"], upload["upload_dir"]
    node.root(f"cp -a {VAR}/apps/probe/{before.split('.')[1]}/. {dest}/app/ && "
              f"ln -s /etc/shadow {dest}/app/static/shadow.txt && "
              f"ln -s ../main.py {dest}/app/static/code.py && chown -R silver: {dest}")
    node.root(f"/usr/local/sbin/silver-node deploy probe {version} --location victim.test")
    assert probe(node.address, "victim.test")["instance"] == f"probe.{version}"
    status, body, _ = http_get(node.address, "victim.test", "/shadow.txt")
    assert b"root:" not in body
    assert node.root(f"test -e {VAR}/apps/probe/{version}/static/shadow.txt && echo kept "
                     "|| echo dropped").strip() == "dropped"
    # a link from static/ into the code is dropped too (it leaves static/)
    status, body, _ = http_get(node.address, "victim.test", "/code.py")
    assert b"MARK" not in body


def test_a_planted_log_link_shows_nothing_of_root(node, victim):
    version = probe(node.address, "victim.test")["instance"].split(".")[1]
    log = f"/var/log/silverlining/apps/probe/{version}.log"
    proc = as_app(node, "victim.test", f"import os; os.rename({log!r}, {log!r} + '.old'); "
                  f"os.symlink('/etc/shadow', {log!r})")
    assert proc.returncode == 0, proc.stderr
    try:
        proc = node.silver("logs", "victim.test", "--node", node.name)
        assert "root:" not in proc.stdout
    finally:
        node.root(f"rm -f {log} && mv {log}.old {log}")


def test_each_version_has_its_own_temp(node, victim, tmp_path):
    first = probe(node.address, "victim.test")
    temp = first["env"]["TEMP"]
    assert temp == f"{VAR}/tmp/probe/{first['instance'].split('.')[1]}"
    as_app(node, "victim.test", f"open({temp!r} + '/work', 'w').write('in flight')")
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    node.update(app, "victim.test")
    second = probe(node.address, "victim.test")
    assert second["env"]["TEMP"] != temp
    assert node.root(f"cat {temp}/work") == "in flight"


def test_a_mistyped_health_check_never_goes_live(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    ini = app / "app.ini"
    ini.write_text(ini.read_text().replace("health_check = /health", "health_check = /helth"))
    main = app / "main.py"       # the probe answers every path: this one is "not found"
    main.write_text(main.read_text().replace(
        '    if path == "/health":',
        '    if path == "/helth":\n        start_response("404 Not Found", [])\n'
        '        return [b"not found"]\n    if path == "/health":'))
    proc = node.update(app, "victim.test", check=False)
    assert proc.returncode == 1
    assert "failed its health check: GET /helth answered 404" in proc.stderr
    assert probe(node.address, "victim.test")["instance"] == before


def test_interrupted_deploy_before_the_switch_leaves_the_old_version(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    main = app / "main.py"      # slow to become healthy: time to interrupt
    main.write_text("import time\ntime.sleep(6)\n" + main.read_text())
    proc = subprocess.Popen(
        [sys.executable, "-m", "silverlining", "-y", "update", str(app), "victim.test",
         "--node", node.name, "--noetchosts"], env={**os.environ, **node.env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "starting probe.v" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[1]
    assert proc.returncode != 0
    assert "Traceback" not in rest
    version = next(ln for ln in lines if "starting probe.v" in ln).split("probe.")[1].split()[0]
    deadline = time.monotonic() + 40
    while True:
        meta = json.loads(node.root(f"cat {VAR}/apps/probe/app.json"))["versions"][version]
        if meta["status"] != "reserved":
            break
        assert time.monotonic() < deadline, meta
        time.sleep(1)
    assert meta["status"] == "failed" and "client disconnected" in meta["error"]
    assert probe(node.address, "victim.test")["instance"] == before
    state = node.root(f"systemctl is-active silver-probe-{version}.service", check=False)
    assert state.strip() != "active"
    # the lock was released: the next deploy goes through
    node.update(victim, "victim.test")


def test_two_deploys_at_once_never_put_an_older_version_live(node, victim):
    procs = [subprocess.Popen(
        [sys.executable, "-m", "silverlining", "-y", "update", str(victim), "victim.test",
         "--node", node.name, "--noetchosts"], env={**os.environ, **node.env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(120), *p.communicate()) for p in procs]
    for status, out, err in results:
        assert status == 0 or "the newer version stays live" in err, err
        assert "Traceback" not in err
    state = json.loads(node.root(f"cat {VAR}/apps/probe/app.json"))["versions"]
    newest_ok = max((v for v, m in state.items() if m["status"] == "ok"),
                    key=lambda v: int(v[1:]))
    assert probe(node.address, "victim.test")["instance"] == f"probe.{newest_ok}"


def test_unit_names_of_two_apps_cannot_collide(node, victim, tmp_path):
    """App ``stop-x`` v1 and the stop timer of app ``x`` v1 once shared a unit name."""
    for name in ("stop-x", "x"):
        app = tmp_path / name
        shutil.copytree(victim, app)
        node.update(app, f"{name}.test", "--name", name)
    node.update(tmp_path / "x", "x.test", "--name", "x")       # retires x.v1: its stop timer
    assert probe(node.address, "x.test")["instance"] == "x.v2"
    assert probe(node.address, "stop-x.test")["instance"] == "stop-x.v1"
    assert node.root("systemctl is-active silver-stop-x-v1.service").strip() == "active"


def test_memory_limit_restarts_a_leaking_app(node, tmp_path):
    app = tmp_path / "leak"
    shutil.copytree(PROBE, app)
    ini = app / "app.ini"
    ini.write_text(ini.read_text().replace("app_name = probe", "app_name = leak")
                   + "memory_max = 96M\n")
    main = app / "main.py"
    main.write_text(main.read_text().replace(
        '    if path == "/health":',
        '    if path == "/leak":\n        hoard = []\n        while True:\n'
        '            hoard.append(bytearray(8 << 20))\n    if path == "/health":'))
    node.update(app, "leak.test")
    version = probe(node.address, "leak.test")["instance"].split(".")[1]
    unit = f"silver-leak-{version}.service"
    assert node.root(f"systemctl show -p MemoryMax --value {unit}").strip() == str(96 << 20)
    try:
        status = http_get(node.address, "leak.test", "/leak", timeout=60)[0]
    except OSError:
        status = None
    assert status != 200
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_get(node.address, "leak.test", "/health", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the app did not come back after its OOM kill"
        time.sleep(0.5)
    journal = node.root(f"journalctl -u {unit} --no-pager -o cat")
    assert "killed by the OOM killer" in journal
