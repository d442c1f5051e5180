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
    PROBE, http_get, node, probe, setup_node)

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
    upload = json.loads(node.root("/usr/local/sbin/silver-node reserve "
                                  "'{\"app\": \"probe\", \"who\": \"attacker\"}'"
                                  ).strip().splitlines()[-1])
    version, dest = upload["version"], upload["upload_dir"]
    node.root(f"cp -a {VAR}/apps/probe/{before.split('.')[1]}/. {dest}/app/ && "
              f"ln -s /etc/shadow {dest}/app/static/shadow.txt && "
              f"ln -s ../main.py {dest}/app/static/code.py && chown -R silver: {dest}")
    deploy = json.dumps({"app": "probe", "version": version, "location": "victim.test"})
    node.root(f"/usr/local/sbin/silver-node deploy '{deploy}'")
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


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_deploy_before_the_switch_leaves_the_old_version(node, victim, tmp_path,
                                                                     how):
    """Ctrl-C, or the CLI killed outright: its ssh ends, so does the deploy's stdin,
    and the node stops before the switch."""
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
    proc.send_signal(how)
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
    log = node.silver("logs", "leak.test", "-n", "100", "--node", node.name, check=True).stdout
    assert "over memory_max (96 MB): killed, a new one starts" in log


def test_an_app_that_hangs_at_start_times_out_and_the_old_one_stays(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    ini = app / "app.ini"
    ini.write_text(ini.read_text() + "start_timeout = 5\n")
    main = app / "main.py"
    main.write_text("import time\ntime.sleep(3600)\n" + main.read_text())
    started = time.monotonic()
    proc = node.update(app, "victim.test", check=False)
    assert proc.returncode == 1 and time.monotonic() - started < 60
    assert "did not answer on its socket within 5s" in proc.stderr
    assert probe(node.address, "victim.test")["instance"] == before
    version = proc.stderr.split("starting probe.")[1].split()[0]
    state = node.root(f"systemctl is-active silver-probe-{version}.service", check=False)
    assert state.strip() != "active"


# --- bad input: each case is one clear line, a non-zero exit, and no change on the node ---

def _ini(replace: str, by: str):
    def edit(app: Path) -> None:
        ini = app / "app.ini"
        ini.write_text(ini.read_text().replace(replace, by))
    return edit


BAD_NAMES = ["a;b", "a b", "\u00fc", "..", "x" * 40, "$(id)", "-x", "A"]
BAD_LOCATIONS = ["bad;host", "a b.test", "\u00fc.test", "x.test/..", "x.test/a b",
                 "x.test/$(id)", "a" * 64 + ".test", "x.test/" + "a" * 300]
BAD_INI = {
    "missing runner": (_ini("runner = main.py", "runner = nosuch.py"), "nosuch.py"),
    "package removal": (_ini("[production]", "[production]\npackages = curl-"), "curl-"),
    "unknown service": (_ini("service.files =", "service.nosuch ="), "nosuch"),
    "unknown key": (_ini("[production]", "[production]\nfrobnicate = yes"), "frobnicate"),
    "no production section": (_ini("[production]", "[other]"), "[production]"),
    "bad interface": (_ini("[production]", "[production]\ninterface = cgi"), "cgi"),
}


def _node_state(node) -> str:
    return node.root(f"cat {VAR}/apps/probe/app.json {VAR}/routes.json")


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("silver: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_app_names_are_refused(node, victim, name):
    before = _node_state(node)
    proc = node.update(victim, "victim.test", f"--name={name}", check=False)
    assert "bad --name" in _one_line_error(proc)
    assert _node_state(node) == before


@pytest.mark.parametrize("location", BAD_LOCATIONS, ids=lambda s: s[:20])
def test_bad_locations_are_refused(node, victim, location):
    before = _node_state(node)
    proc = node.update(victim, location, check=False)
    assert "bad location" in _one_line_error(proc)
    for command in (["run", "--node", node.name, location, "python", "-c", "1"],
                    ["logs", "--node", node.name, location],
                    ["activate", "--node", node.name, location, "prev"]):
        assert "bad location" in _one_line_error(node.silver(*command))
    assert _node_state(node) == before


@pytest.mark.parametrize("case", sorted(BAD_INI))
def test_bad_app_ini_is_refused_before_any_upload(node, victim, tmp_path, case):
    edit, fragment = BAD_INI[case]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    edit(app)
    before = _node_state(node)
    line = _one_line_error(node.update(app, "victim.test", check=False))
    assert str(app / "app.ini") in line and fragment in line
    assert _node_state(node) == before


def test_run_arguments_reach_the_script_exactly(node, victim):
    args = ["a;b", "$(id)", "`id`", "two words", "\u00fc", "--node", "'quoted'", "-", ""]
    proc = node.silver("run", "--node", node.name, "victim.test", "python", "-c",
                       "import sys, json; print(json.dumps(sys.argv[1:]))", *args, check=True)
    assert json.loads(proc.stdout) == args


# --- faults: a killed upload, a full disk, a killed node process, a reboot mid-deploy ---

def _popen_update(node, app: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "silverlining", "-y", "update", str(app), "victim.test",
         "--node", node.name, "--noetchosts"], env={**os.environ, **node.env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _wait_for_line(proc: subprocess.Popen, needle: str) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} never appeared")


def test_killed_upload_then_retry(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    (app / "static" / "big.bin").write_bytes(os.urandom(60 << 20))
    proc = _popen_update(node, app)
    _wait_for_line(proc, "uploading")
    time.sleep(0.3)
    proc.kill()                        # the CLI and its rsync: as if the laptop died
    proc.wait(10)
    subprocess.run(["pkill", "-f", f"rsync.*{node.address}"], check=False)
    assert probe(node.address, "victim.test")["instance"] == before
    node.update(app, "victim.test")
    assert probe(node.address, "victim.test")["instance"] != before
    status, body, _ = http_get(node.address, "victim.test", "/big.bin", timeout=60)
    assert status == 200 and body == (app / "static" / "big.bin").read_bytes()


def test_full_disk_during_upload_fails_clearly(node, victim, tmp_path):
    before = probe(node.address, "victim.test")["instance"]
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    (app / "static" / "huge.bin").write_bytes(os.urandom(12 << 20))
    uploads = f"{VAR}/uploads/probe"
    node.root(f"mount -t tmpfs -o size=4M,mode=0700,uid=$(id -u silver),gid=$(id -g silver) "
              f"tmpfs {uploads}")
    try:
        proc = node.update(app, "victim.test", check=False)
    finally:
        node.root(f"umount {uploads}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "No space left on device" in proc.stderr.strip().splitlines()[-1]
    assert probe(node.address, "victim.test")["instance"] == before
    node.update(app, "victim.test")
    assert probe(node.address, "victim.test")["instance"] != before


def test_killed_node_process_and_reboot_mid_deploy_keep_the_last_good_version(
        node, node_env, victim, tmp_path):
    app = tmp_path / "probe"
    shutil.copytree(victim, app)
    main = app / "main.py"
    main.write_text("import time\ntime.sleep(8)\n" + main.read_text())
    for fault in ("kill", "reboot"):
        before = probe(node.address, "victim.test")["instance"]
        proc = _popen_update(node, app)
        _wait_for_line(proc, "starting probe.v")
        if fault == "kill":
            # the node-side Pythons: the command server, its fork running the
            # deploy and the deploy user's silver-node that handed it over; '[s]'
            # keeps the pattern from matching this shell's own command line
            node.root("pkill -KILL -f '[s]ilverlining.node.(server|__main__)'")
        else:
            node_env.reboot(node.name)
            node.address = node_env.address(node.name)
        proc.communicate(timeout=120)
        assert proc.returncode != 0
        deadline = time.monotonic() + 90
        while True:
            try:
                if probe(node.address, "victim.test")["instance"] == before:
                    break
            except (OSError, AssertionError):
                pass
            assert time.monotonic() < deadline, f"{before} not serving after the {fault}"
            time.sleep(1)
        routes = json.loads(node.root(f"cat {VAR}/routes.json"))
        assert routes["victim.test"]["version"] == before.split(".")[1]
    # and the app deploys normally afterwards (no lock left behind)
    node.update(victim, "victim.test")


def test_two_apps_installing_packages_at_once_with_stale_lists(node, victim, tmp_path):
    """apt's lists are gone (as on a fresh image) and two apps ask for packages at the
    same moment: the node refreshes the lists and installs one app's packages at a time."""
    node.root("apt-get -y -q remove tree >/dev/null 2>&1; rm -rf /var/lib/apt/lists/*")
    procs = []
    for name in ("pkg-a", "pkg-b"):
        app = tmp_path / name
        shutil.copytree(victim, app)
        ini = app / "app.ini"
        ini.write_text(ini.read_text().replace("[production]", "[production]\npackages = tree"))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "silverlining", "-y", "update", str(app), f"{name}.test",
             "--node", node.name, "--noetchosts", "--name", name],
            env={**os.environ, **node.env.env}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert any("refreshing the package lists" in err for _, err in outputs)
    assert node.root("tree --version").startswith("tree v")
    for name in ("pkg-a", "pkg-b"):
        assert probe(node.address, f"{name}.test")["instance"] == f"{name}.v1"


def test_versions_kept_from_before_the_hardening_are_upgraded(node, victim):
    """A node set up by an older silverlining keeps app-owned env files and units with
    root pre-commands for its old versions; the next deploy makes them safe to roll
    back to."""
    old = probe(node.address, "victim.test")["instance"].split(".")[1]
    env = f"{VAR}/env/probe/{old}.env"
    unit = f"/etc/systemd/system/silver-probe-{old}.service"
    node.root(f"chown sl-probe {env} && chmod 600 {env} && "
              f"sed -i 's|^ExecStart=|ExecStartPre=+/bin/true\\nExecStart=|' {unit}")
    node.update(victim, "victim.test")
    assert node.root(f"stat -c '%U:%G %a' {env}").strip() == "root:sl-probe 640"
    assert "ExecStartPre=+" not in node.root(f"cat {unit}")
    node.silver("activate", "--node", node.name, "victim.test", old, check=True)
    assert probe(node.address, "victim.test")["instance"] == f"probe.{old}"


def test_a_process_titled_like_an_nginx_worker_stalls_no_reload(node, victim):
    """An app's process may call itself anything. One titled "nginx: worker process"
    was counted among nginx's workers: every reload waited for it to end, 10 s, and
    then failed, so no other app could go live at a new location meanwhile."""
    fake = "exec -a 'nginx: worker process' python3"          # reads a script: never ends
    node.root("setsid setpriv --reuid=sl-probe --regid=sl-probe --clear-groups "
              f"bash -c \"tail -f /dev/null | {fake}\" </dev/null >/dev/null 2>&1 &")
    try:
        assert node.root("pgrep -u sl-probe -x -f 'nginx: worker process'").strip()
        started = time.monotonic()
        proc = node.update(victim, "victim-second.test", check=False)
        assert proc.returncode == 0, proc.stderr
        assert "reloading nginx" in proc.stderr and time.monotonic() - started < 8, proc.stderr
    finally:
        node.root("pkill -u sl-probe -x -f 'nginx: worker process'", check=False)
        node.silver("deactivate", "--node", node.name, "victim-second.test")
