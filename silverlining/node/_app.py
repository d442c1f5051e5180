"""The object gunicorn (WSGI) or uvicorn (ASGI) serves for an instance.

Loaded inside the app's own process (as the app's user, cwd = the instance
directory) through ``silverlining.apploader``, so ``path/file.py#name`` and
``module:name`` runners start exactly as under ``silver serve``. The wrapper
turns nginx's ``X-Script-Name`` into SCRIPT_NAME / root_path (one instance
can serve several path prefixes), marks internal update requests, and gives
the app the client's address as nginx saw it (``X-Real-IP``, which nginx always
sets, from the balancer's ``X-Forwarded-For`` only on a balanced location) as
REMOTE_ADDR / the scope's client: the server itself only sees a unix socket.
"""

from __future__ import annotations

import os

from silverlining.apploader import load_app
from silverlining.node.headers import REAL_IP_HEADER, SCRIPT_NAME_HEADER, UPDATE_HEADER

_PREFIX_KEY = SCRIPT_NAME_HEADER.lower().encode()
_UPDATE_KEY = UPDATE_HEADER.lower().encode()
_REAL_IP_KEY = REAL_IP_HEADER.lower().encode()
_REAL_IP_ENV = "HTTP_" + REAL_IP_HEADER.upper().replace("-", "_")
_PREFIX_ENV = "HTTP_" + SCRIPT_NAME_HEADER.upper().replace("-", "_")
_UPDATE_ENV = "HTTP_" + UPDATE_HEADER.upper().replace("-", "_")


def wrap_wsgi(app):
    def application(environ, start_response):
        prefix = environ.pop(_PREFIX_ENV, "")
        path = environ.get("PATH_INFO", "")
        if prefix and (path == prefix or path.startswith(prefix + "/")):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix):]
        if environ.pop(_UPDATE_ENV, None):
            environ["silverlining.update"] = True
        if real := environ.get(_REAL_IP_ENV):
            environ["REMOTE_ADDR"] = real
        return app(environ, start_response)
    return application


def wrap_asgi(app):
    async def application(scope, receive, send):
        if scope.get("type") in ("http", "websocket"):
            prefix, update, headers = "", False, []
            client = scope.get("client")
            for name, value in scope.get("headers", []):
                if name == _REAL_IP_KEY:
                    client = (value.decode("latin-1"), 0)
                    headers.append((name, value))
                elif name == _PREFIX_KEY:
                    prefix = value.decode("latin-1")
                elif name == _UPDATE_KEY:
                    update = True
                else:
                    headers.append((name, value))
            scope = dict(scope, headers=headers, client=client)
            if prefix:
                scope["root_path"] = scope.get("root_path", "") + prefix
            if update:
                scope["silverlining.update"] = True
        await app(scope, receive, send)
    return application


def _load():
    config, app = load_app(os.getcwd())
    return wrap_asgi(app) if config.interface == "asgi" else wrap_wsgi(app)


application = _load()
