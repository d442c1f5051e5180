"""WSGI side of the dev server: static files first, the update marker, and a
traceback page for errors (development only)."""

from __future__ import annotations

import socket
import socketserver
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from silverlining.devserver import errorpage, static

UPDATE_HEADER = "X-Silverlining-Update"


class StaticFirst:
    """Wraps a WSGI app: static/ and writable_root answer first, then the app."""

    def __init__(self, app: Callable, app_dir: Path, writable_root: str | None,
                 update_token: str | None) -> None:
        self.app, self.app_dir = app, app_dir
        self.writable_root, self.update_token = writable_root, update_token

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        token = environ.pop("HTTP_" + UPDATE_HEADER.upper().replace("-", "_"), None)
        if self.update_token and token == self.update_token:
            environ["silverlining.update"] = True
        if environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            roots = static.roots_for(self.app_dir, self.writable_root,
                                     environ.get("HTTP_HOST", ""))
            # PEP 3333: PATH_INFO is bytes decoded as latin-1; file names are UTF-8
            path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
            found = static.find(roots, path, environ.get("QUERY_STRING", ""))
            if found:
                return self.send(found, environ, start_response)
        return self.call_app(environ, start_response)

    def send(self, found: static.Found, environ: dict, start_response: Callable):
        if found.redirect:
            start_response("301 Moved Permanently", [("Location", found.redirect),
                                                     ("Content-Length", "0")])
            return [b""]
        assert found.file is not None
        code, headers = static.file_headers(found.file, environ.get("HTTP_IF_MODIFIED_SINCE"))
        if code == 304:
            start_response("304 Not Modified", headers)
            return [b""]
        start_response("200 OK", headers)
        if environ["REQUEST_METHOD"] == "HEAD":
            return [b""]
        return static.read_chunks(found.file)

    def call_app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = []

        def tracking_start(status, headers, exc_info=None):
            started.append(status)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, tracking_start)
        except Exception as exc:
            traceback.print_exc()
            if started:
                raise
            return error_response(start_response, "Error in the application", exc)


def error_response(start_response: Callable, title: str, exc: BaseException | None,
                   detail: str = "") -> list[bytes]:
    body = errorpage.render(title, exc, detail)
    start_response("500 Internal Server Error",
                   [("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(body)))], sys.exc_info() if exc else None)
    return [body]


def load_error_app(title: str, exc: BaseException | None, detail: str = "") -> Callable:
    """A WSGI app that answers every request with the load error."""
    if not detail and exc is not None:
        detail = "".join(traceback.format_exception(exc))

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        return error_response(start_response, title, None, detail)
    return app


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve(sock: socket.socket, app: Callable) -> None:
    """Serve ``app`` on an already listening socket until the process ends."""
    host, port = sock.getsockname()[:2]
    server = _ThreadingWSGIServer((host, port), _Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_name, server.server_port = host, port
    server.setup_environ()
    server.set_app(app)
    server.serve_forever(poll_interval=0.2)
