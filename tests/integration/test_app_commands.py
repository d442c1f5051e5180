"""The commands that work on a deployed app: ``run``, ``logs``, ``diff``, ``disable``/``enable``.

Real CLI, real local node set up by ``silver setup-node``, apps deployed with
``silver update``; results checked through the node's nginx or on the node.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.integration.fixtures_apps import (  # noqa: F401 (fixtures)
    PROBE, hello, http_get, live_version, node, probe, probe_app, setup_node)

pytestmark = pytest.mark.node

SCRIPT = '''\
import json, os, pwd, sys
if sys.argv[1] == "fail":
    print("failing on purpose", file=sys.stderr)
    sys.exit(3)
path = sys.argv[1]
opt = [a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--dir=")]
print(json.dumps({
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "app": os.environ.get("SILVER_APP_NAME"),
    "files": os.environ.get("CONFIG_FILES"),
    "path": path,
    "content": open(path).read(),
    "listing": sorted(os.listdir(opt[0])) if opt else None,
    "args": sys.argv[2:],
}))
'''


@pytest.fixture(scope="module")
def deployed(node, tmp_path_factory):
    """The probe app with a script, live at run.test."""
    app = tmp_path_factory.mktemp("run") / "probe"
    shutil.copytree(PROBE, app)
    (app / "tools").mkdir()
    (app / "tools" / "report.py").write_text(SCRIPT)
    (app / "tools" / "hello.sh").write_text("#!/bin/sh\necho \"sh says $SILVER_APP_NAME $1\"\n")
    (app / "tools" / "hello.sh").chmod(0o755)
    node.update(app, "run.test")
    return app


def test_run_uploads_local_files_and_streams_output(node, deployed, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("one\ntwo\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("x")
    proc = node.silver("run", "--node", node.name, "run.test", "tools/report.py", str(data),
                       f"--dir={folder}", "--flag", "two words", "--node", "x", check=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["user"] == "sl-probe" and seen["app"] == "probe"
    assert seen["files"] == "/var/lib/silverlining/data/probe/files"
    assert seen["content"] == "one\ntwo\n"
    assert seen["path"].startswith("/var/lib/silverlining/tmp/probe/silver-run-")
    assert seen["path"].endswith("/0/data.txt")
    assert seen["listing"] == ["a.csv"]
    # options of the script after SCRIPT are the script's, even --node
    assert seen["args"][1:] == ["--flag", "two words", "--node", "x"]
    # the uploaded files are gone once the script ended
    assert node.root("ls /var/lib/silverlining/tmp/probe/ | grep silver-run- || true").strip() == ""
    assert node.root("ls /var/lib/silverlining/uploads/probe/ | grep run- || true").strip() == ""


def test_run_exit_status_root_shell_scripts_and_python(node, deployed, tmp_path):
    proc = node.silver("run", "--node", node.name, "run.test", "tools/report.py", "fail")
    assert proc.returncode == 3
    assert "failing on purpose" in proc.stderr and "silver: error" not in proc.stderr
    data = tmp_path / "x.txt"
    data.write_text("root")
    proc = node.silver("run", "--user", "root", "--node", node.name, "run.test",
                       "tools/report.py", str(data), check=True)
    assert json.loads(proc.stdout)["user"] == "root"
    proc = node.silver("run", "--node", node.name, "run.test", "tools/hello.sh", "a b",
                       check=True)
    assert proc.stdout == "sh says probe a b\n"
    proc = node.silver("run", "--node", node.name, "run.test", "python", "-c",
                       "import main, os; print(main.MARK, os.environ['SILVER_INSTANCE_NAME'])",
                       check=True)
    assert proc.stdout.startswith("probe-marker-1 probe.v")
    # interactive python reads the app's path too (stdin is not a terminal here)
    proc = node.silver("run", "--node", node.name, "run.test", "python",
                       input="import main\nprint('mark', main.MARK)\n", check=True)
    assert "mark probe-marker-1" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("nothing.test", "tools/report.py"), "nothing is served at nothing.test"),
    (("run.test", "tools/missing.py"), "no script 'tools/missing.py'"),
    (("run.test", "../../../../etc/passwd"), "no script '../../../../etc/passwd'"),
    (("bad;host", "x.py"), "bad location"),
    (("run.test", "python", "-c"), "python -c: argument expected"),
    (("run.test", "python", "-m", "nosuchmodule"), "no module named 'nosuchmodule'"),
    (("run.test", "python", "missing.py"), "python missing.py: no such file"),
])
def test_run_errors_are_one_line(node, deployed, args, message):
    proc = node.silver("run", "--node", node.name, *args)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_status_pages_and_a_graceful_restart(node, deployed):
    status, body, _ = http_get(node.address, "run.test", "/.silver/health")
    assert status == 200 and json.loads(body)["ok"] is True
    before = json.loads(http_get(node.address, "run.test", "/.silver/info")[1])
    assert before["app"] == "probe" and before["deployed_by"]
    # the app itself never sees these paths, whatever a client sends
    status, body, _ = http_get(node.address, "run.test", "/.silver/other")
    assert b"probe-marker-1" in body        # not a status page: the app answers
    proc = node.silver("restart", "run.test", "--node", node.name, check=True)
    after = json.loads(http_get(node.address, "run.test", "/.silver/info")[1])
    assert int(after["version"][1:]) > int(before["version"][1:])
    assert f"probe.{after['version']} live at run.test (restarted from {before['version']})" \
        in proc.stdout
    journal = node.silver("logs", "run.test", "--journal", "--version", before["version"],
                          "--node", node.name, check=True).stdout
    assert f"silver-probe-{before['version']}.service" in journal


def test_logs_show_and_follow_the_live_version(node, deployed):
    probe(node.address, "run.test")
    proc = node.silver("logs", "run.test", "-n", "200", "--node", node.name, check=True)
    assert "Listening at: unix:/run/silverlining/apps/probe/" in proc.stdout
    assert "log of probe.v" in proc.stderr
    proc = node.silver("logs", "run.test", "-n", "2", "--node", node.name, check=True)
    assert len(proc.stdout.splitlines()) == 2
    # -f: a line the app writes now shows up while following
    follower = subprocess.Popen(
        [sys.executable, "-m", "silverlining", "logs", "-f", "-n", "0", "run.test",
         "--node", node.name], env={**os.environ, **node.env.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        time.sleep(2)
        node.silver("run", "--node", node.name, "run.test", "python", "-c",
                    "import os; open(os.environ['SILVER_LOGS'] + '/' + "
                    "os.environ['SILVER_INSTANCE_NAME'].split('.')[1] + '.log', 'a')"
                    ".write('follow-marker\\n')", check=True)
        deadline = time.monotonic() + 20
        line = ""
        while "follow-marker" not in line:
            assert time.monotonic() < deadline, "followed log never showed the new line"
            line = follower.stdout.readline()
    finally:
        follower.terminate()
        follower.wait(10)
    # the remote tail ends with the connection (it had a terminal)
    deadline = time.monotonic() + 10
    while node.root("pgrep -x tail || true").strip():
        assert time.monotonic() < deadline, "remote tail outlived silver logs -f"
        time.sleep(0.5)


def test_diff_shows_what_an_update_would_change(node, probe_app):
    node.update(probe_app, "diff.test")
    proc = node.silver("diff", str(probe_app), "diff.test", "--node", node.name, check=True)
    assert proc.stdout == "" and "no differences" in proc.stderr
    main = probe_app / "main.py"
    main.write_text(main.read_text().replace('MARK = "probe-marker-1"', 'MARK = "probe-marker-2"'))
    (probe_app / "static" / "new.txt").write_text("new file\n")
    (probe_app / "static" / "probe.txt").unlink()
    (probe_app / "static" / "blob.bin").write_bytes(b"\0\1\2")
    proc = node.silver("diff", str(probe_app), "diff.test", "--node", node.name)
    assert proc.returncode == 1, proc.stderr     # differences, like diff(1)
    out = proc.stdout
    assert "--- probe.v" in out and "/main.py\n+++ local/main.py" in out
    assert '-MARK = "probe-marker-1"\n+MARK = "probe-marker-2"' in out
    assert "--- /dev/null\n+++ local/static/new.txt\n" in out and "+new file" in out
    assert "/static/probe.txt\n+++ /dev/null\n" in out
    assert "Binary files /dev/null and local/static/blob.bin differ" in out
    assert "1 changed, 2 only here, 1 only on" in proc.stderr
    # the node's files are untouched: a diff is read-only
    assert probe(node.address, "diff.test")["mark"] == "probe-marker-1"


def test_disable_answers_503_except_on_the_node_and_enable_restores(node, hello):
    node.update(hello, "off.test")
    node.update(hello, "off.test/sub", "--name", "hello2")
    assert http_get(node.address, "off.test")[0] == 200
    proc = node.silver("disable", "off.test", "--node", node.name, check=True)
    assert "hello on " in proc.stdout and "disabled" in proc.stdout
    status, body, _ = http_get(node.address, "off.test")
    assert status == 503 and b"Hello from" not in body
    assert http_get(node.address, "off.test", "/style.css")[0] == 503
    assert http_get(node.address, "off.test", "/sub/")[0] == 200       # another app
    # the node itself still reaches the app (to check it before enabling it)
    local = node.root("curl -s -o /dev/null -w '%{http_code}' -H 'Host: off.test' "
                      "http://127.0.0.1/")
    assert local == "200"
    assert "hello  (disabled)" in node.silver("query", node.name, check=True).stdout
    again = node.silver("disable", "--app", "hello", "--node", node.name, check=True)
    assert "already disabled" in again.stdout
    node.silver("enable", "--app", "hello", "--node", node.name, check=True)
    assert http_get(node.address, "off.test")[0] == 200
    audit = [json.loads(line) for line in node.root(
        "grep -h '\"disable\"\\|\"enable\"' /var/log/silverlining/audit.log").splitlines()]
    assert [e["action"] for e in audit][-2:] == ["disable", "enable"]
    proc = node.silver("disable", "--app", "hello")
    assert proc.returncode == 2 and "give --node too" in proc.stderr


# --- parameters (issue 12): declared in app.ini, kept on the node, secrets never shown ---

SECRET = "s3cr3t-Zq9-never-shown"
PARAMS_INI = """
[parameter:api_token]
description = token for the upstream API
hidden = true
pattern = s3cr3t-.*

[parameter:greeting]
default = hello
"""
# compares a hash: the secret itself must not be on the check's own command line
CHECK = ("import hashlib; from silverlining.params import get_param; "
         "print(hashlib.sha256(get_param('api_token').encode()).hexdigest() == {digest!r}, "
         "get_param('greeting'))")


@pytest.fixture(scope="module")
def params_app(node, tmp_path_factory):
    app = tmp_path_factory.mktemp("params") / "probe"
    shutil.copytree(PROBE, app)
    ini = app / "app.ini"
    ini.write_text(ini.read_text().replace("app_name = probe", "app_name = paramapp")
                   + PARAMS_INI)
    return app


def test_a_missing_parameter_fails_before_any_upload(node, params_app):
    proc = node.update(params_app, "params.test", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"silver: error: parameter api_token has no value on {node.name}: give --param "
        "api_token=VALUE (or --param-file)")
    assert node.root("test -e /var/lib/silverlining/apps/paramapp && echo made || echo none"
                     ).strip() == "none"
    bad = node.update(params_app, "params.test", "--param", "api_token=nope", check=False)
    assert "parameter api_token: the value does not match 's3cr3t-.*'" in bad.stderr
    assert "nope" not in bad.stderr


def test_hidden_parameter_reaches_the_app_and_is_never_shown(node, params_app, tmp_path):
    secret_file = tmp_path / "token"
    secret_file.write_text(SECRET + "\n")
    outputs = [node.update(params_app, "params.test", "--param-file",
                           f"api_token={secret_file}")]
    check = CHECK.format(digest=hashlib.sha256(SECRET.encode()).hexdigest())
    seen = node.silver("run", "--node", node.name, "params.test", "python", "-c", check,
                       check=True)
    assert seen.stdout.strip() == "True hello"
    # kept across a redeploy without --param
    outputs.append(node.update(params_app, "params.test"))
    listing = node.silver("params", "params.test", "--node", node.name, check=True)
    assert "api_token" in listing.stdout and "set (hidden)" in listing.stdout
    assert "greeting             GREETING             'hello' (default)" in listing.stdout
    # a change goes through the gate as a new version, and is recorded by name
    changed = node.silver("params", "params.test", "--set", "greeting=bonjour",
                          "--node", node.name, check=True)
    assert "with the new parameters" in changed.stdout
    seen = node.silver("run", "--node", node.name, "params.test", "python", "-c", check,
                       check=True)
    assert seen.stdout.strip() == "True bonjour"
    once = node.silver("run", "--node", node.name, "--param", "greeting=just-once",
                       "params.test", "python", "-c", check, check=True)
    assert once.stdout.strip() == "True just-once"
    again = node.silver("run", "--node", node.name, "params.test", "python", "-c", check,
                        check=True)
    assert again.stdout.strip() == "True bonjour"
    query = node.silver("query", node.name, "paramapp", check=True)
    assert "parameters changed: api_token" in query.stdout
    assert "parameters changed: greeting" in query.stdout
    outputs += [listing, changed, query]
    for proc in outputs:
        assert SECRET not in proc.stdout + proc.stderr
    # nowhere on the node but the app's own files: logs, journal, audit, records, ps
    # (the pattern's '[n]' matches 'n' but not itself, so this shell is not counted)
    pattern = SECRET[:-1] + f"[{SECRET[-1]}]"
    found = node.root(
        f"grep -rl -- '{pattern}' /var/log /var/lib/silverlining/apps /var/lib/silverlining/"
        f"routes.json /var/lib/silverlining/uploads /tmp 2>/dev/null; "
        f"journalctl --no-pager | grep -c -- '{pattern}'; "
        f"cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c -- '{pattern}'",
        check=False)
    assert found.split() == ["0", "0"], found
    mode = node.root("stat -c '%U:%G %a' /var/lib/silverlining/env/paramapp/params.json")
    assert mode.strip() == "root:sl-paramapp 640"


# --- workers and scheduled jobs (issue 11): they follow the live version -----------------

JOBS_INI = """
[process:beat]
command = tools/beat.py
instances = 2

[process:crash]
command = tools/crash.py

[process:once]
command = tools/once.py

[cron:tick]
schedule = *:*:0/2
command = tools/tick.py
"""
BEAT = """import os, sys, time
path = os.path.join(os.environ["CONFIG_FILES"], "beat-" + os.environ["SILVER_JOB_INSTANCE"])
while True:
    with open(path + ".tmp", "w") as fh:
        fh.write(f"{os.getpid()} {os.environ['SILVER_INSTANCE_NAME']}")
    os.replace(path + ".tmp", path)
    print("beat", flush=True)
    time.sleep(0.3)
"""
API = """import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(STATUS if self.path == "/ok" else 404)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
ONCE = """import os, time
files = os.environ["CONFIG_FILES"]
with open(os.path.join(files, "once"), "a") as fh:
    fh.write("ran\\n")
while not os.path.exists(os.path.join(files, "stop-once")):
    time.sleep(0.1)
os.remove(os.path.join(files, "stop-once"))
"""
TICK = """import os, time
with open(os.path.join(os.environ["CONFIG_FILES"], "ticks"), "a") as fh:
    fh.write(f"start {time.time()}\\n"); fh.flush()
    time.sleep(3)
    fh.write(f"end {time.time()}\\n")
"""


def _wait_for(check, what: str, timeout: float = 40):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _beats(node, app: str = "jobs") -> dict[str, tuple[str, str]]:
    out = node.root(f"cd /var/lib/silverlining/data/{app}/files && for f in beat-*; do "
                    "[ -e \"$f\" ] && echo \"$f $(cat $f)\"; done", check=False)
    return {line.split()[0]: tuple(line.split()[1:3]) for line in out.splitlines()
            if len(line.split()) == 3}


def test_workers_and_crons_follow_the_live_version(node, tmp_path):
    app = tmp_path / "jobs"
    shutil.copytree(PROBE, app)
    ini = app / "app.ini"
    ini.write_text(ini.read_text().replace("app_name = probe", "app_name = jobs") + JOBS_INI)
    (app / "tools").mkdir()
    (app / "tools" / "beat.py").write_text(BEAT)
    (app / "tools" / "crash.py").write_text("import sys\nprint('crashing')\nsys.exit(3)\n")
    (app / "tools" / "tick.py").write_text(TICK)
    (app / "tools" / "once.py").write_text(ONCE)
    git = ["git", "-C", str(app), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "jobs"], check=True)
    revision = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    first = live_version(node.update(app, "jobs.test").stdout)
    info = json.loads(http_get(node.address, "jobs.test", "/.silver/info")[1])
    assert (info["app"], info["version"], info["dirty"]) == ("jobs", first, False)
    assert info["revision"].startswith(revision) and info["source"].endswith(str(app))
    beats = _wait_for(lambda: (b := _beats(node)) and len(b) == 2 and all(
        v[1] == f"jobs.{first}" for v in b.values()) and b, "two workers of the first version")
    # a worker comes back within 5 s however it ended: killed, stopped by SIGTERM, exit 0
    for signal in ("KILL", "TERM"):
        pid = _beats(node)["beat-1"][0]
        node.root(f"systemctl kill -s {signal} silver-jobs-{first}.process-beat@1.service")
        _wait_for(lambda: _beats(node)["beat-1"][0] != pid, f"the restart after {signal}", 5)
    runs = lambda: node.root("cat /var/lib/silverlining/data/jobs/files/once",  # noqa: E731
                             check=False).count("ran")
    _wait_for(lambda: runs() >= 1, "the first run of a worker that exits 0")
    count = runs()
    node.root("touch /var/lib/silverlining/data/jobs/files/stop-once")
    _wait_for(lambda: runs() > count, "a worker that exited 0 running again", 5)
    # a crash loop is reported, not hidden
    query = _wait_for(lambda: (q := node.silver("query", node.name, "jobs", check=True).stdout)
                      and "CRASH LOOP" in q and q, "the crash loop in silver query", 60)
    assert "process beat: 2/2 running" in query
    assert "process crash: 0/1 running, CRASH LOOP" in query
    # silver doctor names the unhealthy app and the command that shows why
    doctor = node.silver("doctor", node.name)
    assert doctor.returncode != 0
    assert "jobs.test: process crash: 0 of 1 running" in doctor.stdout
    assert f"silver logs jobs.test --process crash --node {node.name}" in doctor.stdout
    # /.silver/health says what is wrong; a stopped worker shows, and comes back on restart
    status, body, _ = http_get(node.address, "jobs.test", "/.silver/health")
    assert status == 503 and json.loads(body)["problems"] == ["process crash: 0 of 1 running"]
    node.root(f"systemctl stop silver-jobs-{first}.process-beat@2.service")
    problems = json.loads(http_get(node.address, "jobs.test", "/.silver/health")[1])["problems"]
    assert "process beat: 1 of 2 running" in problems
    node.silver("restart", "jobs.test", "--process", "beat", "--node", node.name, check=True)
    problems = json.loads(http_get(node.address, "jobs.test", "/.silver/health")[1])["problems"]
    assert problems == ["process crash: 0 of 1 running"]
    # a deploy moves the workers to the new version; a rollback brings the old ones back
    main = app / "main.py"
    main.write_text(main.read_text().replace("probe-marker-1", "probe-marker-2"))
    second = live_version(node.update(app, "jobs.test").stdout)
    _wait_for(lambda: all(v[1] == f"jobs.{second}" for v in _beats(node).values()),
              "the workers of the new version")
    assert node.root(f"systemctl is-active silver-jobs-{first}.process-beat@1.service",
                     check=False).strip() != "active"
    node.silver("activate", "--node", node.name, "jobs.test", "prev", check=True)
    _wait_for(lambda: all(v[1] == f"jobs.{first}" for v in _beats(node).values()),
              "the workers of the version rolled back to")
    logs = node.silver("logs", "jobs.test", "--process", "beat", "--node", node.name,
                       check=True).stdout
    assert f"process beat of jobs.{first}" in logs and "beat" in logs.splitlines()[-1]
    # the cron ran, never two runs at once although each outlasts its period
    ticks = _wait_for(lambda: (t := node.root("cat /var/lib/silverlining/data/jobs/files/"
                                              "ticks", check=False)).count("end") >= 2 and t,
                      "two finished cron runs", 60)
    events = [(kind, float(when)) for kind, when in (ln.split() for ln in ticks.splitlines())]
    kinds = [kind for kind, _ in events]
    assert kinds[:4] == ["start", "end", "start", "end"], events
    assert all(a[1] <= b[1] for a, b in zip(events, events[1:]))
    # the live version's own cron unit started again at the rollback: until its first run
    # it says "not run yet", then "running now" or its last result
    query = _wait_for(lambda: (q := node.silver("query", node.name, "jobs", check=True).stdout)
                      and ("exit 0 (success)" in q or "running now" in q) and q,
                      "a cron run of the version rolled back to, in silver query", 30)
    assert "cron tick [*:*:0/2]:" in query


def test_detached_runs_outlive_the_command(node, deployed):
    code = ("import time; print('detached-start', flush=True); time.sleep(10); "
            "print('detached-end'); raise SystemExit(4)")
    started = time.monotonic()
    proc = node.silver("run", "--detach", "--node", node.name, "run.test", "python", "-c", code,
                       check=True)
    assert time.monotonic() - started < 10
    job = proc.stdout.strip()
    listed = node.silver("jobs", "run.test", "--node", node.name, check=True).stdout
    assert f"{job}  running" in listed and "python -c" in listed
    attached = node.silver("run", "--attach", job, "--node", node.name, "run.test")
    assert attached.returncode == 4, attached.stderr
    assert "detached-start" in attached.stdout and "detached-end" in attached.stdout
    assert f"{job}  exit 4" in node.silver("jobs", "run.test", "--node", node.name,
                                           check=True).stdout
    logs = node.silver("logs", "run.test", "--job", job, "--node", node.name, check=True)
    assert "detached-end" in logs.stdout
    # a long one is stopped on request
    long_job = node.silver("run", "--detach", "--node", node.name, "run.test", "python", "-c",
                           "import time; time.sleep(120)", check=True).stdout.strip()
    node.silver("jobs", "run.test", "--stop", long_job, "--node", node.name, check=True)
    listed = node.silver("jobs", "run.test", "--node", node.name, check=True).stdout
    assert f"{long_job}  running" not in listed
    bad = node.silver("jobs", "run.test", "--stop", "../../x", "--node", node.name)
    assert bad.returncode != 0 and "bad job id" in bad.stderr


def test_an_app_without_runner_runs_its_workers_as_at_app(node, tmp_path):
    app = tmp_path / "batch"
    app.mkdir()
    (app / "app.ini").write_text("[production]\napp_name = batch\nservice.files =\n"
                                 "start_timeout = 10\n\n"
                                 "[process:beat]\ncommand = beat.py\n\n[process:api]\n"
                                 "command = api.py\ninstances = 2\nhealth_check = /ok\n")
    (app / "beat.py").write_text(BEAT)
    (app / "api.py").write_text(API.replace("STATUS", "200"))
    wrong = node.update(app, "batch.test", check=False)
    assert wrong.returncode != 0 and "deploy it with --node NODE and no LOCATION" in wrong.stderr
    proc = node.silver("-y", "update", str(app), "--node", node.name, "--noetchosts",
                       check=True)
    first = live_version(proc.stdout)
    assert f"batch.{first} live at @batch" in proc.stdout
    _wait_for(lambda: _beats(node, "batch").get("beat-1", ("", ""))[1] == f"batch.{first}",
              "the worker of an app without runner")
    assert http_get(node.address, "batch")[0] == 404            # no web part at all
    seen = node.silver("run", "--node", node.name, "@batch", "python", "-c",
                       "import os; print(os.environ['SILVER_APP_NAME'])", check=True)
    assert seen.stdout.strip() == "batch"
    second = live_version(node.silver("-y", "update", str(app), "--node", node.name,
                                      "--noetchosts", check=True).stdout)
    _wait_for(lambda: _beats(node, "batch")["beat-1"][1] == f"batch.{second}",
              "the worker of the second version")
    node.silver("activate", "--node", node.name, "@batch", "prev", check=True)
    _wait_for(lambda: _beats(node, "batch")["beat-1"][1] == f"batch.{first}",
              "the worker of the version rolled back to")
    query = node.silver("query", node.name, "batch", "--health", check=True).stdout
    assert "live at @batch" in query and "process beat: 1/1 running" in query
    assert "process api: 2/2 running" in query and "health of @batch: ok" in query
    # a worker that fails its health check keeps the new version from going live
    (app / "api.py").write_text(API.replace("STATUS", "500"))
    failed = node.silver("-y", "update", str(app), "--node", node.name, "--noetchosts")
    assert failed.returncode == 1
    assert "failed its health check: GET /ok answered 500; the old version keeps serving" \
        in failed.stderr.strip().splitlines()[-1]
    _wait_for(lambda: _beats(node, "batch")["beat-1"][1] == f"batch.{first}",
              "the old version's worker alone again")
    assert "health of @batch: ok" in node.silver("query", node.name, "batch", "--health",
                                                 check=True).stdout
