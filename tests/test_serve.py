"""``silver serve``: real HTTP on a free port, WSGI and ASGI, static files,
reloading, load errors, update_fetch and the development environment."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_silver

ENV_APP = '''
import json, os

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/env":
        data = {k: v for k, v in os.environ.items()
                if k.startswith(("SILVER_", "CONFIG_")) or k == "TEMP"}
        data["update"] = bool(environ.get("silverlining.update"))
        body = json.dumps(data).encode()
    else:
        body = ("app:" + environ["REQUEST_METHOD"] + ":" + path).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
'''


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Served:
    """A real ``silver serve`` on a free port (``--port 0``), stopped by PID."""

    def __init__(self, app_dir: Path, *args: str, env: dict | None = None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "silverlining", "serve", str(app_dir), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()
        deadline = time.monotonic() + 30
        self.url = ""
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if " on http://" in line:
                self.url = line.split(" on ", 1)[1].split()[0]
                break
        if not self.url:
            self.stop()
            raise AssertionError(f"silver serve did not start:\n{self.err}")

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    def request(self, path: str, method: str = "GET", headers: dict | None = None,
                data: bytes | None = None) -> tuple[int, dict, str]:
        req = urllib.request.Request(self.url.rstrip("/") + path, method=method,
                                     headers=headers or {}, data=data)
        opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=20) as resp:
                return resp.status, dict(resp.headers), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def get(self, path: str) -> str:
        status, _, body = self.request(path)
        assert status == 200, (status, body, self.err)
        return body

    def wait_for(self, path: str, predicate, timeout: float = 20) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, _, body = self.request(path)
                if predicate(status, body):
                    return status, body
            except OSError:
                status, body = -1, ""
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out: last {status} {body[:500]}\n{self.err}")
            time.sleep(0.2)

    def stop(self) -> None:
        children = _children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(c) for c in children), "app process outlived silver serve"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture
def served():
    started: list[Served] = []

    def start(app_dir: Path, *args: str, env: dict | None = None) -> Served:
        server = Served(app_dir, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def make_app(root: Path, ini_extra: str = "", main: str = ENV_APP, runner: str = "main.py",
             name: str = "demo") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.ini").write_text(f"[production]\napp_name = {name}\nrunner = {runner}\n"
                                  + ini_extra)
    (root / "main.py").write_text(main)
    (root / "static").mkdir(exist_ok=True)
    return root


def test_wsgi_env_static_precedence_and_fallthrough(tmp_path, served):
    app = make_app(tmp_path / "demo", "service.files =\nservice.writable_root =\n")
    (app / "static" / "hello.txt").write_text("static hello\n")
    (app / "static" / "docs").mkdir()
    (app / "static" / "docs" / "index.html").write_text("<p>docs index</p>")
    (app / "static" / "empty").mkdir()
    server = served(app)
    assert server.url.startswith("http://127.0.0.1:")

    env = json.loads(server.get("/env"))
    assert env["SILVER_VERSION"].startswith("devel/")
    assert env["SILVER_APP_NAME"] == "demo"
    assert env["SILVER_INSTANCE_NAME"] == "localhost"
    assert env["SILVER_CANONICAL_HOSTNAME"] == "localhost"
    assert env["SILVER_MATCH_PATH"] == ""
    assert env["SILVER_LOGS"] == str(app / "silver-logs")
    assert Path(env["SILVER_LOGS"]).is_dir() and Path(env["TEMP"]).is_dir()
    assert Path(env["CONFIG_FILES"]).is_dir()
    assert "SILVER_APP_CONFIG" not in env and env["update"] is False

    # static/ first, at the URL root, without any prefix
    status, headers, body = server.request("/hello.txt")
    assert (status, body) == (200, "static hello\n")
    assert headers["Content-Type"].startswith("text/plain")
    status, headers, _ = server.request("/hello.txt",
                                        headers={"If-Modified-Since": headers["Last-Modified"]})
    assert status == 304
    status, headers, _ = server.request("/docs")
    assert status == 301 and headers["Location"] == "/docs/"
    assert server.get("/docs/") == "<p>docs index</p>"
    # a directory without index.html, other methods and unknown paths go to the app
    assert server.get("/empty") == "app:GET:/empty"
    assert server.request("/hello.txt", method="POST", data=b"x")[2] == "app:POST:/hello.txt"
    assert server.get("/nothing") == "app:GET:/nothing"
    assert server.request("/../app.ini")[2] != (app / "app.ini").read_text()
    (app / "static" / "café.txt").write_text("accent")
    assert server.get("/caf%C3%A9.txt") == "accent"

    # then writable_root (host subdirectory first), still before the app
    root = Path(env["CONFIG_WRITABLE_ROOT"])
    (root / "upload.txt").write_text("written")
    (root / "127.0.0.1").mkdir()
    (root / "127.0.0.1" / "per-host.txt").write_text("for this host")
    (app / "static" / "both.txt").write_text("static wins")
    (root / "both.txt").write_text("writable loses")
    assert server.get("/upload.txt") == "written"
    assert server.get("/per-host.txt") == "for this host"
    assert server.get("/both.txt") == "static wins"


def test_asgi_app_served_with_static(tmp_path, served):
    main = '''
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = (os.environ["SILVER_APP_NAME"] + ":" + scope["path"] + ":"
            + str(scope.get("silverlining.update"))).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''
    app = make_app(tmp_path / "asgi", "interface = asgi\nupdate_fetch = /setup\n", main=main,
                   runner="main.py#app", name="asgi-demo")
    (app / "static" / "style.css").write_text("body{}")
    server = served(app)
    assert server.get("/x") == "asgi-demo:/x:None"
    deadline = time.monotonic() + 20
    while "asgi-demo:/setup:True" not in server.err:
        assert time.monotonic() < deadline, server.err
        time.sleep(0.1)
    status, _, body = server.request("/setup", headers={"X-Silverlining-Update": "guess"})
    assert body == "asgi-demo:/setup:None"
    status, headers, body = server.request("/style.css")
    assert (status, body) == (200, "body{}")
    assert headers["content-type"].startswith("text/css")


def test_reload_after_edit_and_load_error_page(tmp_path, served):
    app = make_app(tmp_path / "rel", main=ENV_APP)
    server = served(app)
    assert server.get("/a") == "app:GET:/a"

    (app / "main.py").write_text(ENV_APP.replace('"app:"', '"edited:"'))
    server.wait_for("/a", lambda s, b: b == "edited:GET:/a")

    (app / "helper.py").write_text("raise RuntimeError('broken on purpose')\n")
    (app / "main.py").write_text("import helper\n" + ENV_APP)
    status, body = server.wait_for("/a", lambda s, b: s == 500)
    assert "RuntimeError" in body and "broken on purpose" in body and "helper.py" in body
    assert server.proc.poll() is None

    (app / "helper.py").write_text("VALUE = 1\n")
    server.wait_for("/a", lambda s, b: b == "app:GET:/a")

    # a broken app.ini is a page too, and fixing it reloads
    ini = (app / "app.ini").read_text()
    (app / "app.ini").write_text(ini + "colour = blue\n")
    status, body = server.wait_for("/a", lambda s, b: s == 500)
    assert "unknown key" in body and "colour" in body
    (app / "app.ini").write_text(ini)
    server.wait_for("/a", lambda s, b: s == 200)


def test_update_fetch_url_and_script(tmp_path, served):
    script = '''
import os, sys
with open(os.path.join(os.environ["CONFIG_FILES"], "script-ran"), "w") as fh:
    fh.write(" ".join(sys.argv[1:]) + ":" + os.environ["SILVER_APP_NAME"])
print("script says hi")
'''
    main = ENV_APP.replace('body = ("app:"', 'body = ("app:" + str(environ.get("silverlining.update")) + ":"')
    app = make_app(tmp_path / "upd", "service.files =\nupdate_fetch =\n    /setup\n"
                   "    script:bin2/setup.py one two\n", main=main)
    (app / "bin2").mkdir()
    (app / "bin2" / "setup.py").write_text(script)
    server = served(app)
    deadline = time.monotonic() + 20
    while "script:bin2/setup.py one two -> exit 0" not in server.err:
        assert time.monotonic() < deadline, server.err
        time.sleep(0.1)
    assert "update_fetch /setup -> 200" in server.err
    assert "app:True:GET:/setup" in server.err
    assert "script says hi" in server.err
    files = json.loads(server.get("/env"))["CONFIG_FILES"]
    assert (Path(files) / "script-ran").read_text() == "one two:demo"
    # an ordinary request, even with a guessed marker header, is not an update
    assert server.get("/setup") == "app:None:GET:/setup"
    status, _, body = server.request("/setup", headers={"X-Silverlining-Update": "guess"})
    assert body == "app:None:GET:/setup"


def test_config_from_devel_sections_and_config_dir(tmp_path, served):
    conf = Path(os.environ["SILVER_CONFIG"])
    conf.write_text("[devel]\npostgresql.dbname = test_APP_NAME\npostgresql.password = pw\n"
                    "redis.port = 6390\n\n[devel:cfg]\nredis.db = 3\n")
    app = make_app(tmp_path / "cfg", "service.postgresql =\nservice.redis =\n"
                   "config.required = true\n", name="cfg")
    (tmp_path / "deploy-conf").mkdir()

    proc = run_silver("serve", str(app), "--port", "0", timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "config.required" in proc.stderr

    server = served(app, "--config", str(tmp_path / "deploy-conf"))
    env = json.loads(server.get("/env"))
    assert env["SILVER_APP_CONFIG"] == str(tmp_path / "deploy-conf")
    assert env["CONFIG_PG_DBNAME"] == "test_cfg"
    assert env["CONFIG_PG_PASSWORD"] == "pw"
    assert env["CONFIG_PG_HOST"] == "" and env["CONFIG_PG_PORT"] == ""
    assert env["CONFIG_PG_SQLALCHEMY"].endswith("@/test_cfg")
    assert env["CONFIG_REDIS_DB"] == "3" and env["CONFIG_REDIS_PORT"] == "6390"
    assert env["CONFIG_REDIS_URL"] == "redis://127.0.0.1:6390/3"

    # editing the user config reloads the app with the new values
    conf.write_text(conf.read_text().replace("redis.db = 3", "redis.db = 5"))
    server.wait_for("/env", lambda s, b: s == 200 and json.loads(b)["CONFIG_REDIS_DB"] == "5")


def test_silvercustomize_runs_before_the_app(tmp_path, served):
    app = make_app(tmp_path / "cust")
    (app / "lib" / "python").mkdir(parents=True)
    (app / "lib" / "python" / "silvercustomize.py").write_text(
        "import os\nos.environ['CONFIG_FROM_HOOK'] = 'yes'\n")
    (app / "lib" / "python" / "extra.pth").write_text("../../vendor\n")
    (app / "vendor").mkdir()
    (app / "vendor" / "vendored.py").write_text("NAME = 'vendored'\n")
    (app / "main.py").write_text("import vendored\n" + ENV_APP.replace(
        '"app:"', 'vendored.NAME + ":"'))
    server = served(app)
    assert json.loads(server.get("/env"))["CONFIG_FROM_HOOK"] == "yes"
    assert server.get("/x") == "vendored:GET:/x"


def test_port_in_use_is_one_line_error(tmp_path, served):
    app = make_app(tmp_path / "busy")
    server = served(app)
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    proc = run_silver("serve", str(app), "--port", port, timeout=30)
    assert proc.returncode == 1
    assert proc.stderr.startswith("silver: error: cannot listen on 127.0.0.1:")
    assert "Traceback" not in proc.stderr


def test_config_checker_runs_before_serving(tmp_path, served):
    app = make_app(tmp_path / "chk", "config.checker = confcheck:check\n")
    (app / "lib" / "python").mkdir(parents=True)
    (app / "lib" / "python" / "confcheck.py").write_text(
        "import os\n"
        "def check(config_dir):\n"
        "    if not os.path.exists(os.path.join(config_dir, 'settings.ini')):\n"
        "        raise ValueError('settings.ini is missing')\n")
    conf = tmp_path / "conf"
    conf.mkdir()
    proc = run_silver("serve", str(app), "--port", "0", "--config", str(conf), timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"silver: error: config.checker confcheck:check rejected "
                                   f"{conf}: settings.ini is missing")
    (conf / "settings.ini").write_text("[x]\n")
    server = served(app, "--config", str(conf))
    assert json.loads(server.get("/env"))["SILVER_APP_CONFIG"] == str(conf)


def test_apploader_command_line_and_factory(tmp_path):
    app = make_app(tmp_path / "ld", runner="main.py#wsgi")
    (app / "main.py").write_text("import helper\nwsgi = helper.make()\n")
    (app / "helper.py").write_text("def make():\n    return lambda e, s: [b'ok']\n")
    (app / "lib" / "python").mkdir(parents=True)
    (app / "lib" / "python" / "silvercustomize.py").write_text(
        "import os\nos.environ['HOOKED'] = '1'\n")
    (app / "tool.py").write_text("import os, sys\nprint(os.environ['HOOKED'], *sys.argv[1:])\n")
    run = [sys.executable, "-m", "silverlining.apploader"]
    proc = subprocess.run([*run, "check", str(app)], capture_output=True, text=True)
    assert proc.stdout.strip() == "demo: main.py#wsgi loads", proc.stderr
    proc = subprocess.run([*run, "run", str(app), "tool.py", "a", "b"], capture_output=True,
                          text=True)
    assert proc.stdout.strip() == "1 a b", proc.stderr
    code = "from silverlining.apploader import from_environ; print(from_environ()({}, None))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "SILVER_APP_DIR": str(app)}, cwd=tmp_path)
    assert proc.stdout.strip() == "[b'ok']", proc.stderr
    proc = subprocess.run([*run, "run", str(app), "missing.py"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr.startswith("silver: error: script 'missing.py'")


@pytest.mark.parametrize("example", ["hello", "hello-asgi"])
def test_examples_serve(tmp_path, served, example):
    import shutil
    app = tmp_path / example
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / example, app)
    # with a password in the environment, to see the page hides it
    with open(app / "app.ini", "a") as fh:
        fh.write("service.postgresql =\n")
    Path(os.environ["SILVER_CONFIG"]).write_text("[devel]\npostgresql.password = hunter2\n")
    server = served(app)
    assert server.get("/health") == "ok\n"
    page = server.get("/")
    assert f"<td>{example}</td>" in page and "SILVER_VERSION" in page and "CONFIG_FILES" in page
    assert "CONFIG_PG_PASSWORD" in page and "hunter2" not in page
    assert "body {" in server.get("/style.css")
    if example == "hello":
        deadline = time.monotonic() + 20
        while "update_fetch /update -> 200" not in server.err:
            assert time.monotonic() < deadline, server.err
            time.sleep(0.1)


def test_unreachable_service_is_a_clear_warning(tmp_path, served):
    import socket
    with socket.socket() as probe:                  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = Path(os.environ["SILVER_CONFIG"])
    conf.write_text(f"[devel]\nredis.port = {port}\n")
    app = make_app(tmp_path / "unreach", "service.redis =\nservice.files =\n", name="unreach")
    server = served(app)
    expected = f"service redis: nothing answers at 127.0.0.1:{port}; start the server"
    deadline = time.monotonic() + 10
    while expected not in server.err and time.monotonic() < deadline:
        time.sleep(0.1)
    assert expected in server.err and "service files" not in server.err
    assert json.loads(server.get("/env"))["CONFIG_REDIS_PORT"] == str(port)


def test_development_postgresql_starts_is_used_and_stops(tmp_path, served, monkeypatch):
    import shutil
    import tempfile
    # PostgreSQL will not run as root: the server runs as the app directory's owner
    # (nobody here), which must be able to reach SILVER_HOME
    home = Path(tempfile.mkdtemp(prefix="silver-devpg-"))
    try:
        home.chmod(0o711)
        monkeypatch.setenv("SILVER_HOME", str(home))
        Path(os.environ["SILVER_CONFIG"]).write_text("[devel]\nredis.db = 1\n")
        app = make_app(home / "pgapp", "service.postgresql =\n", name="pgapp")
        subprocess.run(["chown", "-R", "nobody:nogroup", str(app)], check=True)
        server = served(app)
        env = json.loads(server.get("/env"))
        socket_dir = home / "devel" / "pgapp" / "postgresql"
        assert env["CONFIG_PG_HOST"] == str(socket_dir) and env["CONFIG_PG_DBNAME"] == "pgapp"
        assert "nothing answers" not in server.err
        query = ["psql", "-X", "-At", "-h", env["CONFIG_PG_HOST"], "-p", env["CONFIG_PG_PORT"],
                 "-U", env["CONFIG_PG_USER"], "-d", env["CONFIG_PG_DBNAME"]]
        subprocess.run(query + ["-c", "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')"],
                       check=True, capture_output=True)
        server.stop()
        assert not (socket_dir / ".s.PGSQL.5432").exists()          # stopped with the server
        server = served(app)                                         # the data stays
        out = subprocess.run(query + ["-c", "SELECT v FROM t"], check=True, capture_output=True,
                             text=True).stdout
        assert out.strip() == "kept"
        server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)
