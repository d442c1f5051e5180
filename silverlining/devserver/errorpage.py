"""The development-only page shown when the app fails to load or raises.

It shows the traceback (never do this in production: the node shows a plain
error page), and says the server reloads once a file is fixed.
"""

from __future__ import annotations

import html
import traceback


def render(title: str, exc: BaseException | None = None, detail: str = "") -> bytes:
    if not detail and exc is not None:
        detail = "".join(traceback.format_exception(exc))
    body = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#fee;padding:1em;"
        "overflow:auto}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<pre>{html.escape(detail)}</pre>"
        "<p>silver serve (development): fix the file and reload this page.</p>"
        "</body></html>"
    )
    return body.encode("utf-8")
