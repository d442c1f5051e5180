"""ASGI side of the dev server: static files first, the update marker, then
the app, served by uvicorn on the socket the reloader owns."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote

from silverlining.devserver import static

UPDATE_HEADER = b"x-silverlining-update"

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class StaticFirst:
    """Wraps an ASGI app: static/ and writable_root answer GET/HEAD first.

    An ``update_fetch`` request carries ``scope["silverlining.update"] = True``
    (as on the node, see ``silverlining.node._app``).
    """

    def __init__(self, app: Callable, app_dir: Path, writable_root: str | None,
                 update_token: str | None) -> None:
        self.app, self.app_dir = app, app_dir
        self.writable_root, self.update_token = writable_root, update_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = []
        host = ""
        for name, value in scope.get("headers", []):
            if name == UPDATE_HEADER:
                if self.update_token and value.decode("latin-1") == self.update_token:
                    scope = {**scope, "silverlining.update": True}
                continue
            if name == b"host":
                host = value.decode("latin-1")
            headers.append((name, value))
        scope = {**scope, "headers": headers}
        if scope.get("method") in ("GET", "HEAD"):
            roots = static.roots_for(self.app_dir, self.writable_root, host)
            query = scope.get("query_string", b"").decode("latin-1")
            found = static.find(roots, unquote(scope.get("path", "/")), query)
            if found:
                await self.send_found(found, scope, send)
                return
        await self.app(scope, receive, send)

    async def send_found(self, found: static.Found, scope: Scope, send: Send) -> None:
        if found.redirect:
            await send({"type": "http.response.start", "status": 301,
                        "headers": [(b"location", found.redirect.encode("latin-1")),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        assert found.file is not None
        ims = next((v.decode("latin-1") for k, v in scope["headers"]
                    if k == b"if-modified-since"), None)
        code, headers = static.file_headers(found.file, ims)
        await send({"type": "http.response.start", "status": code,
                    "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]})
        if code == 304 or scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        chunks = list(static.read_chunks(found.file)) or [b""]
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < len(chunks) - 1})


def serve(sock: socket.socket, app: Callable) -> None:
    """Run uvicorn on an already listening socket until the process ends."""
    import uvicorn  # the child checked it is there; only ASGI apps need it
    config = uvicorn.Config(app, lifespan="auto", log_level="info",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))
