"""A minimal WSGI app made by `silver init`: replace it with yours."""

import html
import os


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok\n"]
    name = html.escape(os.environ.get("SILVER_APP_NAME", "app"))
    body = (f"<!DOCTYPE html><title>{name}</title>"
            f"<h1>Hello from {name}</h1>"
            f"<p>Running on {html.escape(os.environ.get('SILVER_VERSION', '?'))}.</p>")
    data = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(data)))])
    return [data]
