"""Hello, silverlining (WSGI): shows the app's SILVER_* and CONFIG_* variables
(passwords hidden), counts visits in the files service, answers /health."""

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


def counter_path():
    return os.path.join(os.environ["CONFIG_FILES"], "visits.txt")


def bump_visits():
    path = counter_path()
    try:
        with open(path) as fh:
            count = int(fh.read().strip() or 0)
    except FileNotFoundError:
        count = 0
    count += 1
    with open(path, "w") as fh:
        fh.write(str(count))
    return count


def respond(start_response, status, body, ctype="text/html; charset=utf-8"):
    data = body.encode("utf-8")
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    if path == "/health":
        return respond(start_response, "200 OK", "ok\n", "text/plain; charset=utf-8")
    if path == "/update":
        if not environ.get("silverlining.update"):
            return respond(start_response, "403 Forbidden", "only for update_fetch\n",
                           "text/plain; charset=utf-8")
        with open(counter_path(), "w") as fh:
            fh.write("0")
        return respond(start_response, "200 OK", "visit counter reset\n",
                       "text/plain; charset=utf-8")
    if path != "/":
        return respond(start_response, "404 Not Found", "not found\n",
                       "text/plain; charset=utf-8")
    visits = bump_visits()
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in visible_environment())
    body = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>hello</title>"
            "<link rel='stylesheet' href='/style.css'></head><body>"
            f"<h1>Hello from {html.escape(os.environ.get('SILVER_APP_NAME', '?'))}</h1>"
            f"<p>Visit number {visits}.</p><table>{rows}</table></body></html>")
    return respond(start_response, "200 OK", body)
