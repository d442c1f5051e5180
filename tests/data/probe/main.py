"""Reports, as JSON, what a deployed app sees: its instance, SCRIPT_NAME /
PATH_INFO, SILVER_*/CONFIG_* variables, its user, and whether it can read a
given path (GET /read?path=...); writes into its writable_root
(GET /write?name=...). Used by the update tests."""

import json
import os
import pwd
from urllib.parse import parse_qs

MARK = "probe-marker-1"


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    if path == "/health":
        body = {"ok": True}
    elif path == "/read":
        target = parse_qs(environ.get("QUERY_STRING", "")).get("path", [""])[0]
        try:
            if os.path.isdir(target):
                content = " ".join(sorted(os.listdir(target)))
            else:
                with open(target, "rb") as fh:
                    content = fh.read(4096).decode("utf-8", "replace")
            body = {"readable": True, "content": content}
        except OSError as exc:
            body = {"readable": False, "error": exc.strerror}
    elif path == "/write":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("name", [""])[0]
        target = os.path.join(os.environ["CONFIG_WRITABLE_ROOT"], name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as fh:
            fh.write(f"written {name}\n")
        body = {"written": target}
    else:
        body = {
            "mark": MARK,
            "instance": os.environ.get("SILVER_INSTANCE_NAME"),
            "script_name": environ.get("SCRIPT_NAME", ""),
            "path_info": path,
            "update": bool(environ.get("silverlining.update")),
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "env": {k: v for k, v in os.environ.items()
                    if k.startswith(("SILVER_", "CONFIG_")) or k == "TEMP"},
        }
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
