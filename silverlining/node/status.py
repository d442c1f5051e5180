"""``/.silver/health`` and ``/.silver/info`` of every location, with no app code.

nginx passes these two paths of each location to this small server
(``silverlining-status.socket``: a unix socket only www-data can open; the
server runs as www-data, never root) with the location in a header it sets
itself. It reads only what root published for it in ``STATUS/APP.json``
(``root:www-data 0640``: no app can read another's deploy records) and the
routing table, asks the live instance's socket for its health check and
systemd for its workers' state.

- ``/.silver/health``: 200 when the live web instance answers its health check
  (as the deploy gate judges it) and every worker instance is running; 503
  otherwise, with a short JSON body saying what failed.
- ``/.silver/info``: app, version, its number, when and by whom it was
  deployed, and the source (with the git revision when the app dir was a
  git checkout).
"""

from __future__ import annotations

import grp
import json
import os
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

from silverlining.node import instances, jobs, paths
from silverlining.node._state import canonical_hostname, load_routes
from silverlining.node.base import write_atomic
from silverlining.node.headers import STATUS_LOCATION_HEADER

LISTEN_FD = 3                          # systemd socket activation


def status_path(app: str):
    return paths.STATUS / f"{app}.json"


def publish(app: str, versions: dict[str, dict]) -> None:
    """What the status server may know of an app's versions (root writes it)."""
    keep = ("number", "time", "who", "source", "health_check", "processes", "worker_checks",
            "web")
    data = {v: {k: meta.get(k) for k in keep} for v, meta in versions.items()}
    paths.STATUS.mkdir(mode=0o750, exist_ok=True)
    write_atomic(status_path(app), json.dumps(data, sort_keys=True), mode=0o640,
                 gid=grp.getgrnam(paths.NGINX_USER).gr_gid)


def _live(location: str) -> tuple[str, str, dict]:
    entry = load_routes().get(location) or {}
    app, version = entry.get("app"), entry.get("version")
    if not app or not version:
        raise LookupError(f"nothing is served at {location}")
    with open(status_path(app)) as fh:
        meta = json.load(fh).get(version)
    if meta is None:
        raise LookupError(f"no record of {app}.{version}")
    return app, version, meta


def info(location: str) -> tuple[int, dict]:
    app, version, meta = _live(location)
    source = meta.get("source") or ""
    where, _, revision = source.partition("@")
    return 200, {"app": app, "version": version, "number": meta.get("number"),
                 "deployed_at": meta.get("time"), "deployed_by": meta.get("who"),
                 "source": where or None, "revision": revision or None,
                 "dirty": revision.endswith("-dirty") if revision else None}


def health(location: str) -> tuple[int, dict]:
    app, version, meta = _live(location)
    _, slash, rest = location.partition("/")
    problems = []
    path = meta.get("health_check") or "/"
    try:
        if meta.get("web", True):
            status, _ = instances.request(app, version, path, canonical_hostname(app),
                                          prefix=slash + rest, timeout=5)
            if problem := instances.health_problem(status, meta.get("health_check")):
                problems.append(f"web: {problem}")
    except OSError as exc:
        problems.append(f"web: GET {path} failed: {exc or type(exc).__name__}")
    for key, (port, check) in sorted((meta.get("worker_checks") or {}).items()):
        if problem := jobs.worker_health(port, check):
            problems.append(f"process {key}: {problem}")
    for name, count in sorted((meta.get("processes") or {}).items()):
        running = sum(s["running"] for s in jobs.process_states(app, version, name, count))
        if running < count:
            problems.append(f"process {name}: {running} of {count} running")
    body = {"app": app, "version": version, "ok": not problems, "problems": problems}
    return (503 if problems else 200), body


class Handler(BaseHTTPRequestHandler):
    server_version = "silverlining-status"

    def do_GET(self) -> None:            # noqa: N802 (the http.server protocol)
        location = self.headers.get(STATUS_LOCATION_HEADER, "")
        what = self.path.rsplit("/", 1)[-1]
        try:
            if what == "health":
                code, body = health(location)
            elif what == "info":
                code, body = info(location)
            else:
                code, body = 404, {"error": "no such status page"}
        except (LookupError, OSError, ValueError) as exc:
            code, body = 503, {"ok": False, "problems": [str(exc)]}
        data = (json.dumps(body) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "nginx"

    def log_message(self, format: str, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self) -> None:
        socketserver.BaseServer.__init__(self, "", Handler)
        self.socket = socket.socket(fileno=LISTEN_FD)

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("nginx", 0)


def main() -> int:
    if os.environ.get("LISTEN_FDS") != "1":
        print("run by silverlining-status.socket (systemd socket activation)", file=sys.stderr)
        return 1
    Server().serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
