"""``silver update`` and friends against real local nodes.

One node is created and set up for the whole module (a second one only for
the multi-node test); every test deploys real apps to it and checks them
through the node's nginx with a Host header, the way a browser would.
Apps: ``examples/hello`` and ``tests/data/probe`` (reports what it sees as
JSON), copied to temporary directories so tests can change them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import threading
import time

import pytest

from tests.integration.fixtures_apps import (  # noqa: F401 (fixtures)
    REPO, hello, http_get, live_version, node, probe, probe_app, setup_node)

pytestmark = pytest.mark.node


# --- tests -----------------------------------------------------------------------

def test_deploy_serves_app_static_files_and_environment(node, hello):
    proc = node.update(hello, "hello.test")
    version = live_version(proc.stdout)
    for step in ("uploading", "sent", "building", "service files: ready", "update_fetch: GET /update",
                 "health check: GET /health answered 200", "switching hello.test"):
        assert step in proc.stderr, proc.stderr
    status, body, _ = http_get(node.address, "hello.test")
    page = body.decode()
    assert status == 200 and "Hello from hello" in page
    assert f"<th>SILVER_INSTANCE_NAME</th><td>hello.{version}</td>" in page
    assert "<th>SILVER_CANONICAL_HOSTNAME</th><td>hello.test</td>" in page
    assert "<th>CONFIG_FILES</th><td>/var/lib/silverlining/data/hello/files</td>" in page
    assert "<th>SILVER_VERSION</th><td>silverlining/" in page
    status, css, headers = http_get(node.address, "hello.test", "/style.css")
    assert status == 200 and css == (hello / "static" / "style.css").read_bytes()
    assert headers["Content-Type"] == "text/css"                  # nginx, not the app
    status, _, headers = http_get(node.address, "www.hello.test", "/x?y=1")
    assert status == 301 and headers["Location"] == "http://hello.test/x?y=1"
    status, body, _ = http_get(node.address, "unknown.test")
    assert status == 404
    # the update marker cannot be faked from outside
    status, body, _ = http_get(node.address, "hello.test", "/update")
    assert status == 403
    audit = [json.loads(line) for line in node.root(
        "cat /var/log/silverlining/audit.log").splitlines()]
    assert {"action": "update", "app": "hello", "version": version, "location": "hello.test",
            "result": "ok", "login": "silver"}.items() <= audit[-1].items()
    query = node.silver("query", node.name, "hel*", check=True).stdout
    assert re.search(rf"^  {version} .* running +live at hello\.test$", query, re.M), query


def test_redeploy_sends_only_the_changed_file(node, hello):
    live = live_version(node.update(hello, "hello.test").stdout)
    same = node.silver("-y", "update", str(hello), "hello.test", "--node", node.name,
                       "--noetchosts", check=True)
    assert f"nothing changed, hello.{live} stays live at hello.test" in same.stdout, same.stdout
    assert "uploading" not in same.stderr and "--force" in same.stderr
    query = node.silver("query", node.name, "hello", check=True).stdout
    assert re.search(rf"^  {live} .* running +live at hello\.test$", query, re.M), query
    assert "reserved" not in query
    forced = node.silver("-v", "-y", "update", str(hello), "hello.test", "--node", node.name,
                         "--noetchosts", "--force", check=True)
    assert "(0 changed files)" in forced.stderr, forced.stderr
    assert live_version(forced.stdout) != live
    css = hello / "static" / "style.css"
    css.write_text(css.read_text() + "\n/* changed */\n" + "x" * 20000 + "\n")
    size = css.stat().st_size
    proc = node.silver("-v", "-y", "update", str(hello), "hello.test", "--node", node.name,
                       "--noetchosts", check=True)
    itemized = re.findall(rf"^\[{node.name}\] [<>ch.][fdL]\S* (.+)$", proc.stderr, re.M)
    assert [p for p in itemized if not p.endswith("/")] == ["static/style.css"], proc.stderr
    assert "(1 changed files)" in proc.stderr
    sent = re.search(r"sent ([\d.]+) (B|kB)", proc.stderr)
    sent_bytes = float(sent.group(1)) * (1000 if sent.group(2) == "kB" else 1)
    assert sent_bytes < size + 4000, proc.stderr
    status, body, _ = http_get(node.address, "hello.test", "/style.css")
    assert status == 200 and body == css.read_bytes()
    # the switch flipped the location's link: nginx, whose text names no version, was
    # not reloaded
    assert "switching hello.test" in proc.stderr and "reloading nginx" not in proc.stderr
    version = live_version(proc.stdout)
    # unchanged files of the new instance are hard links to the previous one
    links = node.root(f"stat -c %h /var/lib/silverlining/apps/hello/{version}/main.py")
    assert int(links) >= 2


def test_redeploy_under_load_loses_no_request(node, probe_app):
    node.update(probe_app, "load.test")
    seen: dict[str, int] = {}
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                status, body, _ = http_get(node.address, "load.test", timeout=10)
                if status != 200:
                    errors.append(f"status {status}")
                    continue
                name = json.loads(body)["instance"]
                seen[name] = seen.get(name, 0) + 1
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        main = probe_app / "main.py"
        main.write_text(main.read_text().replace("probe-marker-1", "probe-marker-2"))
        node.update(probe_app, "load.test")
        time.sleep(12)      # past the drain period: the old instance has stopped
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:10]
    assert len(seen) == 2, seen                   # both versions answered, nothing else
    assert sum(seen.values()) > 50, seen
    assert probe(node.address, "load.test")["mark"] == "probe-marker-2"


def test_failed_health_check_keeps_the_old_version(node, probe_app):
    good = live_version(node.update(probe_app, "gate.test").stdout)
    main = probe_app / "main.py"
    main.write_text(main.read_text().replace(
        '    if path == "/health":\n        body = {"ok": True}',
        '    if path == "/health":\n        import sys\n'
        '        print("health-broken-marker", file=sys.stderr, flush=True)\n'
        '        start_response("500 Internal Server Error", [])\n        return [b"sick"]'))
    proc = node.update(probe_app, "gate.test", check=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"silver: error: [{node.name}] probe.v") and \
        "failed its health check: GET /health answered 500; the old version keeps serving" in last
    assert "health-broken-marker" in proc.stderr          # the app's log tail is shown
    assert "Traceback" not in proc.stderr
    assert probe(node.address, "gate.test")["instance"] == f"probe.{good}"
    failed = re.search(r"probe\.(v\d+) failed", last).group(1)
    assert node.root(f"systemctl is-active silver-probe-{failed} || true").strip() != "active"
    assert "failed" in node.root("tail -n1 /var/log/silverlining/audit.log")


def test_crash_on_import_keeps_the_old_version(node, probe_app):
    good = live_version(node.update(probe_app, "gate.test").stdout)
    main = probe_app / "main.py"
    main.write_text(main.read_text() + "\nraise RuntimeError('boom-on-import')\n")
    proc = node.update(probe_app, "gate.test", check=False)
    assert proc.returncode == 1
    assert "boom-on-import" in proc.stderr, proc.stderr
    assert "the old version keeps serving" in proc.stderr.strip().splitlines()[-1]
    assert probe(node.address, "gate.test")["instance"] == f"probe.{good}"


def test_a_new_location_is_routed_while_its_first_version_starts(node, probe_app):
    """A first deploy gives nginx the new location's route beside the app's start, so
    the switch waits for no reload; a first deploy that fails takes that route back."""
    main = probe_app / "main.py"
    good = main.read_text()
    main.write_text(good + "\nraise RuntimeError('boom-first')\n")
    proc = node.update(probe_app, "ahead.test", check=False)
    assert proc.returncode == 1 and "boom-first" in proc.stderr, proc.stderr
    assert "routing ahead.test in nginx ahead of the switch" in proc.stderr
    assert http_get(node.address, "ahead.test")[0] == 404          # unknown again
    assert "ahead.test" not in node.root("cat /etc/nginx/silverlining/routes.conf")
    main.write_text(good)
    proc = node.update(probe_app, "ahead.test")
    lines = proc.stderr.splitlines()
    ahead = [i for i, line in enumerate(lines) if "routing ahead.test in nginx ahead" in line]
    switch = [i for i, line in enumerate(lines) if "switching ahead.test" in line]
    assert ahead and switch and ahead[0] < switch[0], proc.stderr
    assert not any("reloading nginx" in line for line in lines[switch[0]:]), proc.stderr
    live = f"probe.{live_version(proc.stdout)}"
    assert probe(node.address, "ahead.test")["instance"] == live
    # a new path of a served host would hide part of it meanwhile: routed at the switch
    proc = node.update(probe_app, "ahead.test/sub", "--name", "probe-sub")
    assert "ahead of the switch" not in proc.stderr and "reloading nginx" in proc.stderr
    assert probe(node.address, "ahead.test", "/x")["instance"] == live


def test_a_service_value_is_refused_before_anything_changes(node, probe_app):
    good = live_version(node.update(probe_app, "svc.test").stdout)
    ini = probe_app / "app.ini"
    ini.write_text(ini.read_text() + "service.postgresql = 15\n")
    proc = node.update(probe_app, "svc.test", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"silver: error: {ini}:") and "service.postgresql takes no value" in last
    assert probe(node.address, "svc.test")["instance"] == f"probe.{good}"


def test_activate_prev_rolls_back_without_upload(node, probe_app):
    first = live_version(node.update(probe_app, "roll.test").stdout)
    second = live_version(node.update(probe_app, "roll.test").stdout)
    time.sleep(11)                                    # the first instance has been stopped
    proc = node.silver("activate", "roll.test", "prev", "--node", node.name, check=True)
    assert f"roll.test now serves probe.{first} (was {second})" in proc.stdout
    assert "health check: GET /health answered 200" in proc.stderr
    assert probe(node.address, "roll.test")["instance"] == f"probe.{first}"
    proc = node.silver("activate", "roll.test", "prev", "--node", node.name, check=True)
    assert probe(node.address, "roll.test")["instance"] == f"probe.{second}"
    # the second instance was still draining: no start, and no nginx reload either
    assert "starting" not in proc.stderr and "reloading nginx" not in proc.stderr
    proc = node.silver("activate", "roll.test", "v999", "--node", node.name)
    assert proc.returncode == 1 and "has no version v999" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_draining_version_that_fails_its_gate_on_activate_is_still_stopped(node, probe_app):
    main = probe_app / "main.py"
    main.write_text(main.read_text().replace(
        '        body = {"ok": True}',
        '        if os.path.exists(os.path.join(os.path.dirname(__file__), "unhealthy")):\n'
        '            start_response("503 Unhealthy", [("Content-Type", "text/plain")])\n'
        '            return [b"unhealthy"]\n'
        '        body = {"ok": True}'))
    first = live_version(node.update(probe_app, "warmfail.test").stdout)
    second = live_version(node.update(probe_app, "warmfail.test").stdout)
    # the first version drains (its stop is scheduled); it fails its gate when asked back
    node.root(f"touch /var/lib/silverlining/apps/probe/{first}/unhealthy")
    proc = node.silver("activate", "warmfail.test", "prev", "--node", node.name)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert probe(node.address, "warmfail.test")["instance"] == f"probe.{second}"
    unit = f"silver-probe-{first}.service"
    deadline = time.monotonic() + 30          # the drain is 10 s; its stop comes after it
    while node.root(f"systemctl is-active {unit}", check=False).strip() == "active":
        assert time.monotonic() < deadline, f"{unit} kept running, serving nobody"
        time.sleep(1)


def test_a_change_of_the_same_size_within_the_same_second_is_deployed(node, probe_app):
    marker = probe_app / "static" / "probe.txt"
    marker.write_text("edit-A\n")
    second = int(time.time())
    os.utime(marker, ns=(second * 10**9 + 100_000_000,) * 2)
    node.update(probe_app, "samesec.test")
    assert http_get(node.address, "samesec.test", "/probe.txt")[1] == b"edit-A\n"
    marker.write_text("edit-B\n")       # a second save, as a script or a quick editor makes
    os.utime(marker, ns=(second * 10**9 + 600_000_000,) * 2)
    node.update(probe_app, "samesec.test")
    assert http_get(node.address, "samesec.test", "/probe.txt")[1] == b"edit-B\n"


def test_an_upload_that_never_arrived_is_not_the_next_ones_basis(node, probe_app):
    """A version reserved and left without files (an update stopped after its first
    call) must not be the basis rsync compares with: every file would be sent again."""
    node.update(probe_app, "basis.test")
    last = json.loads(node.root("cat /var/lib/silverlining/apps/probe/app.json"))["last"]
    node.root(f"install -d -o silver -g silver -m 0700 "
              f"/var/lib/silverlining/uploads/probe/v{last + 9}")
    (probe_app / "changed.txt").write_text("one new file\n")
    proc = node.silver("-v", "-y", "update", str(probe_app), "basis.test", "--node",
                       node.name, "--noetchosts", check=True)
    assert "(1 changed files)" in proc.stderr, proc.stderr
    assert "--link-dest arg does not exist" not in proc.stderr, proc.stderr


def test_an_unchanged_app_whose_instance_stopped_is_deployed_again(node, probe_app):
    """"Nothing changed" needs the live version to serve: stopped, it is deployed anew."""
    live = live_version(node.update(probe_app, "stopped.test").stdout)
    node.root(f"systemctl stop silver-probe-{live}.service")
    proc = node.silver("-y", "update", str(probe_app), "stopped.test", "--node", node.name,
                       "--noetchosts", check=True)
    assert "nothing changed" not in proc.stdout, proc.stdout
    assert live_version(proc.stdout) != live
    assert http_get(node.address, "stopped.test", "/")[0] == 200


def test_root_does_not_follow_a_link_the_app_put_for_its_socket(node, probe_app, hello):
    """The socket directory is the app's: a hostile app, its instance stopped, puts a
    link to another app's socket there. Root's look at the instance (here: whether an
    unchanged upload is still served) must not be answered through it."""
    other = live_version(node.update(hello, "other.test").stdout)
    live = live_version(node.update(probe_app, "linked.test").stdout)
    node.root(f"systemctl stop silver-probe-{live}.service")
    node.root(f"runuser -u sl-probe -- ln -sfn /run/silverlining/apps/hello/{other}.sock "
              f"/run/silverlining/apps/probe/{live}.sock")
    proc = node.silver("-y", "update", str(probe_app), "linked.test", "--node", node.name,
                       "--noetchosts", check=True)
    assert "nothing changed" not in proc.stdout, proc.stdout
    assert live_version(proc.stdout) != live
    served = json.loads(http_get(node.address, "linked.test", "/")[1])
    assert served["instance"] == f"probe.{live_version(proc.stdout)}", served


def test_two_apps_and_one_app_at_two_prefixes(node, probe_app, hello):
    node.update(hello, "hello.test")
    a = live_version(node.update(probe_app, "multi.test/a").stdout)
    b = live_version(node.update(probe_app, "multi.test/b/c").stdout)
    other = live_version(node.update(probe_app, "multi.test", "--name", "probe2").stdout)
    seen = probe(node.address, "multi.test", "/a/x")
    assert (seen["instance"], seen["script_name"], seen["path_info"]) == (f"probe.{a}", "/a", "/x")
    assert seen["env"]["SILVER_MATCH_PATH"] == "/a"
    seen = probe(node.address, "multi.test", "/b/c")
    assert (seen["instance"], seen["script_name"], seen["path_info"]) == (f"probe.{b}", "/b/c", "/")
    seen = probe(node.address, "multi.test", "/b/x")                 # not under /b/c
    assert (seen["instance"], seen["script_name"]) == (f"probe2.{other}", "")
    assert seen["user"] == "sl-probe2" and seen["env"]["SILVER_APP_NAME"] == "probe2"
    status, body, _ = http_get(node.address, "multi.test", "/a/probe.txt")
    assert status == 200 and body == (probe_app / "static" / "probe.txt").read_bytes()
    assert b"Hello from hello" in http_get(node.address, "hello.test")[1]
    query = node.silver("query", node.name, check=True).stdout
    assert "multi.test/a" in query and "multi.test/b/c" in query and "probe2" in query


def test_apps_cannot_read_each_others_files(node, probe_app, hello):
    hv = live_version(node.update(hello, "hello.test").stdout)
    pv = live_version(node.update(probe_app, "iso.test").stdout)
    own = [f"/var/lib/silverlining/apps/probe/{pv}/main.py",
           "/var/lib/silverlining/data/probe/files",
           f"/var/lib/silverlining/env/probe/{pv}.env"]
    theirs = [f"/var/lib/silverlining/apps/hello/{hv}/main.py",
              "/var/lib/silverlining/data/hello/files",
              f"/var/lib/silverlining/env/hello/{hv}.env",
              "/var/lib/silverlining/secret.txt",
              "/var/lib/silverlining/uploads/hello"]
    for path in own:
        assert probe(node.address, "iso.test", f"/read?path={path}")["readable"], path
    for path in theirs:
        result = probe(node.address, "iso.test", f"/read?path={path}")
        assert result == {"readable": False, "error": "Permission denied"}, (path, result)
    mode = node.root(f"stat -c '%a %U %G' /var/lib/silverlining/env/hello/{hv}.env").split()
    assert mode == ["640", "root", "sl-hello"]


def test_asgi_app_runs_under_uvicorn_and_etc_hosts_is_offered(node, tmp_path):
    app = tmp_path / "hello-asgi"
    shutil.copytree(REPO / "examples" / "hello-asgi", app)
    proc = node.silver("-y", "update", str(app), "asgi.test", "--node", node.name, check=True)
    assert "(asgi, uvicorn)" in proc.stderr
    # without --noetchosts, -y maps the host to the node (in the test's private hosts file)
    assert f"{node.address} asgi.test # silverlining" in node.env.etc_hosts.read_text()
    status, body, _ = http_get(node.address, "asgi.test")
    assert status == 200 and b"Hello from ASGI" in body
    assert f"hello-asgi.{live_version(proc.stdout)}".encode() in body
    status, body, _ = http_get(node.address, "asgi.test", "/style.css")
    assert status == 200 and body == (app / "static" / "style.css").read_bytes()


def test_config_update_fetch_script_and_writable_root(node, probe_app, tmp_path):
    ini = probe_app / "app.ini"
    ini.write_text(ini.read_text() + "service.writable_root =\npackages = tree\n"
                   "update_fetch =\n    script:setup.py first-arg\n")
    (probe_app / "setup.py").write_text(
        "import os, pwd, sys\n"
        "with open(os.path.join(os.environ['CONFIG_FILES'], 'setup.txt'), 'w') as fh:\n"
        "    fh.write(' '.join([pwd.getpwuid(os.getuid()).pw_name, *sys.argv[1:],\n"
        "                       os.environ['SILVER_APP_CONFIG']]))\n"
        "print('setup script ran')\n")
    config = tmp_path / "deploy-config"
    config.mkdir()
    (config / "settings.ini").write_text("[site]\ncolour = green\n")
    proc = node.update(probe_app, "wr.test", "--config", str(config), "--name", "probe3")
    version = live_version(proc.stdout)
    assert "installing packages: tree" in proc.stderr
    assert "update_fetch: script setup.py first-arg" in proc.stderr
    assert "setup script ran" in proc.stderr
    seen = probe(node.address, "wr.test")
    assert probe(node.address, "wr.test", "/read?path=/usr/bin/tree")["readable"]
    cfg = seen["env"]["SILVER_APP_CONFIG"]
    assert cfg == f"/var/lib/silverlining/env/probe3/{version}.config"
    assert probe(node.address, "wr.test", f"/read?path={cfg}/settings.ini")["content"] == \
        "[site]\ncolour = green\n"
    ran = probe(node.address, "wr.test",
                "/read?path=/var/lib/silverlining/data/probe3/files/setup.txt")
    assert ran["content"] == f"sl-probe3 first-arg {cfg}"
    # writable_root: written by the app, served by nginx, the host's own directory first
    probe(node.address, "wr.test", "/write?name=shared.txt")
    probe(node.address, "wr.test", "/write?name=wr.test/mine.txt")
    status, body, headers = http_get(node.address, "wr.test", "/shared.txt")
    assert (status, body, headers["Content-Type"]) == (200, b"written shared.txt\n", "text/plain")
    status, body, _ = http_get(node.address, "wr.test", "/mine.txt")
    assert (status, body) == (200, b"written wr.test/mine.txt\n")
    # --clear empties the service data before the new version starts
    wr = seen["env"]["CONFIG_WRITABLE_ROOT"]
    proc = node.update(probe_app, "wr.test", "--config", str(config), "--name", "probe3",
                       "--clear")
    assert "writable_root: emptying /var/lib/silverlining/data/probe3/writable_root" in proc.stderr
    gone = probe(node.address, "wr.test", f"/read?path={wr}/shared.txt")
    assert gone == {"readable": False, "error": "No such file or directory"}


def test_concurrent_updates_of_one_app_are_serialized(node, probe_app, hello):
    node.update(probe_app, "conc.test")
    results: list[subprocess.CompletedProcess] = []

    def deploy() -> None:
        results.append(node.update(probe_app, "conc.test", check=False))

    threads = [threading.Thread(target=deploy) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # both go live in turn, or the one reserved first finds the newer one live and
    # stops (an older version never replaces a newer one)
    for r in results:
        assert r.returncode == 0 or "the newer version stays live" in r.stderr, r.stderr
    versions = {live_version(r.stdout) for r in results if r.returncode == 0}
    newest = max(versions, key=lambda v: int(v[1:]))
    assert probe(node.address, "conc.test")["instance"] == f"probe.{newest}"
    # a held lock makes a deploy of the same app give up clearly; other apps go on
    holder = node.root("setsid flock /run/silverlining/locks/app-probe.lock sleep 30 "
                       "</dev/null >/dev/null 2>&1 & echo $!").strip()
    time.sleep(0.5)
    proc = node.update(probe_app, "conc.test", "--lock-wait", "2", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"silver: error: [{node.name}] app probe is busy (another deploy holds its lock); "
        "gave up after 2s")
    node.update(hello, "hello.test")
    node.root(f"kill {holder}")


def test_deactivate_and_clean_node(node, probe_app):
    first = live_version(node.update(probe_app, "gone.test").stdout)
    last = live_version(node.update(probe_app, "gone.test").stdout)
    proc = node.silver("deactivate", "gone.test", "--node", node.name, check=True)
    assert f"gone.test no longer served (was probe.{last})" in proc.stdout
    assert http_get(node.address, "gone.test")[0] == 404
    routes = json.loads(node.root("cat /var/lib/silverlining/routes.json"))
    kept = {f"{e['app']}.{e[k]}" for e in routes.values() for k in ("version", "prev") if e.get(k)}
    dry = node.silver("clean-node", node.name, "-n", "--keep", "1", check=True).stdout
    doomed = re.findall(r"^would delete (\S+)$", dry, re.M)
    assert not set(doomed) & kept
    assert f"probe.{first}" in doomed and f"probe.{last}" not in doomed   # newest one is kept
    proc = node.silver("clean-node", node.name, "--keep", "1", check=True)
    assert re.findall(r"^deleted (\S+)$", proc.stdout, re.M) == doomed
    for name in doomed:
        app, version = name.split(".")
        assert node.root(f"test -e /var/lib/silverlining/apps/{app}/{version} && echo yes "
                         "|| echo no").strip() == "no"
    # everything still routed keeps working
    assert b"Hello from hello" in http_get(node.address, "hello.test")[1]
    assert probe(node.address, "roll.test")["mark"] == "probe-marker-1"


def test_reboot_brings_live_apps_back(node, node_env):
    routed = json.loads(node.root("cat /var/lib/silverlining/routes.json"))
    live = {loc: e for loc, e in routed.items() if e.get("version")}
    assert len(live) >= 3
    node_env.reboot(node.name)
    node.address = node_env.address(node.name)
    deadline = time.monotonic() + 90
    pending = dict(live)
    while pending and time.monotonic() < deadline:
        for loc, entry in list(pending.items()):
            host, _, path = loc.partition("/")
            try:
                status, body, _ = http_get(node.address, host, "/" + path, timeout=3)
            except OSError:
                continue
            if status == 200:
                del pending[loc]
        time.sleep(0.5)
    assert not pending, pending
    running = set(node.root("systemctl list-units 'silver-*.service' --state=active "
                            "--plain --no-legend | cut -d' ' -f1").split())
    expected = {f"silver-{e['app']}-{e['version']}.service" for e in live.values()}
    assert running == expected


def test_deploy_to_two_nodes_in_parallel(node, node_env, make_module_node, probe_app):
    second = make_module_node(f"{node.name}-2")
    node_env.silver("-y", "setup-node", second.name, check=True)
    ini = probe_app / "app.ini"     # node-disk services are refused on several nodes
    ini.write_text(ini.read_text().replace("service.files =\n", ""))
    proc = node_env.silver("-y", "update", str(probe_app), "pair.test", "--node", node.name,
                           "--node", second.name, "--noetchosts", check=True)
    lines = [ln for ln in proc.stdout.splitlines() if " live at pair.test " in ln]
    assert sorted(ln.split(":")[0] for ln in lines) == sorted([node.name, second.name])
    assert f"[{second.name}] switching pair.test" in proc.stderr
    for address in (node.address, second.address):
        assert probe(address, "pair.test")["env"]["SILVER_APP_NAME"] == "probe"
