"""Hello, silverlining (ASGI): a raw ASGI callable showing the app's SILVER_*
and CONFIG_* variables (passwords hidden), with a /health path."""

import html
import os
import re

HIDDEN = ("PASSWORD", "SECRET", "TOKEN")
URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def shown(key, value):
    """Secrets never reach the page: hide password variables and URL passwords."""
    if any(word in key for word in HIDDEN):
        return "(hidden)"
    return URL_PASSWORD.sub(r"\1(hidden)@", value)


def visible_environment():
    for key in sorted(os.environ):
        if key.startswith(("SILVER_", "CONFIG_")) or key == "TEMP":
            yield key, shown(key, os.environ[key])


async def send_text(send, status, text, ctype=b"text/html; charset=utf-8"):
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await send_text(send, 200, "ok\n", b"text/plain; charset=utf-8")
        return
    if scope["path"] != "/":
        await send_text(send, 404, "not found\n", b"text/plain; charset=utf-8")
        return
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in visible_environment())
    await send_text(send, 200, "<!DOCTYPE html><html><head><meta charset='utf-8'>"
                    "<title>hello-asgi</title><link rel='stylesheet' href='/style.css'>"
                    f"</head><body><h1>Hello from ASGI</h1><table>{rows}</table>"
                    "</body></html>")
