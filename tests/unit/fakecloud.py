"""A provider's HTTP API played by a server on 127.0.0.1, for libcloud's real drivers.

Every libcloud connection is redirected here (``Connection.conn_class``), so a
driver builds, signs and sends its requests exactly as it would to the
provider, and parses our answers with its own code. The answers are written
from each provider's public API documentation; every request is recorded with
the host it was meant for, so tests check what the driver sent.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from libcloud.common.base import Connection
from libcloud.http import LibcloudConnection

REAL_HOST = "X-Silverlining-Real-Host"


@dataclass
class Request:
    method: str
    host: str
    path: str
    query: dict[str, str]
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def form(self) -> dict[str, str]:
        """A form-encoded body (EC2's Query API) merged with the query string."""
        merged = dict(self.query)
        merged.update({k: v[-1] for k, v in parse_qs(self.body).items()})
        return merged


Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]
Handler = Callable[[Request, re.Match], Answer]


class FakeApi:
    """Routes ``(METHOD, path regex)`` to handlers; answers 404 with JSON otherwise."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern, Handler]] = []
        self.requests: list[Request] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, method: str, pattern: str, handler: Handler | Answer) -> None:
        """Answer METHOD on paths matching ``pattern`` (the whole path, no query)."""
        fn = handler if callable(handler) else (lambda req, m, answer=handler: answer)
        self.routes.insert(0, (method, re.compile(pattern + r"/?$"), fn))

    def sent(self, method: str, pattern: str) -> list[Request]:
        """The recorded requests of METHOD whose path matches ``pattern``."""
        rx = re.compile(pattern + r"/?$")
        return [r for r in self.requests if r.method == method and rx.match(r.path)]

    def calls(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def _answer(self, req: Request) -> Answer:
        self.requests.append(req)
        for method, rx, fn in self.routes:
            match = rx.match(req.path)
            if method == req.method and match:
                return fn(req, match)
        return 404, {"id": "not_found", "message": f"fake API: no route {req.method} "
                                                   f"{req.path}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                url = urlsplit(self.path)
                req = Request(self.command, self.headers.get(REAL_HOST, ""), url.path,
                              {k: v[-1] for k, v in parse_qs(url.query).items()}, body,
                              dict(self.headers))
                answer = api._answer(req)
                status, payload = answer[0], answer[1]
                headers = answer[2] if len(answer) > 2 else {}
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode()
                    headers = {"Content-Type": "application/json", **headers}
                else:
                    data = (payload or "").encode()
                    headers = {"Content-Type": "text/xml", **headers}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> "FakeApi":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def redirect_libcloud(monkeypatch, api: FakeApi) -> None:
    """Send every libcloud connection to ``api`` over plain HTTP on 127.0.0.1."""

    class ToFakeApi(LibcloudConnection):
        def __init__(self, host: str, port: int, secure: bool | None = None,
                     **kwargs: Any) -> None:
            super().__init__("127.0.0.1", api.port, secure=False, **kwargs)
            self.real_host = host

        def request(self, method, url, body=None, headers=None, raw=False, stream=False,
                    hooks=None):
            headers = {**(headers or {}), REAL_HOST: self.real_host}
            return super().request(method, url, body=body, headers=headers, raw=raw,
                                   stream=stream, hooks=hooks)

    monkeypatch.setattr(Connection, "conn_class", ToFakeApi)
