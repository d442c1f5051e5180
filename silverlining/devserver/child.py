"""The app process of ``silver serve``: loads the app and serves it on the
listening socket the reloader passes in. Restarted on every change, so app
code is always fresh; a load error becomes a page, not a dead server.

``python -m silverlining.devserver.child APP_DIR --fd N [--config DIR]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from silverlining import apploader
from silverlining.appconfig import AppConfig
from silverlining.devserver import asgiapp, wsgiapp
from silverlining.devserver.environ import app_environ
from silverlining.errors import SilverError
from silverlining.userconfig import UserConfig

TOKEN_VAR = "SILVER_DEVSERVER_TOKEN"


def _exit_with_parent() -> None:
    """Never outlive the reloader, even if it was killed without cleaning up."""
    parent = os.getppid()
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def _load(app_dir: Path, config_dir: str | None) -> tuple[AppConfig | None, Callable | None,
                                                          Callable | None]:
    """(config, app, error_app): exactly one of app / error_app is set."""
    config = None
    try:
        config = AppConfig.load(app_dir)
        os.environ.update(app_environ(config, UserConfig.load(), config_dir))
        os.chdir(config.app_dir)
        if config.interface == "asgi" and importlib.util.find_spec("uvicorn") is None:
            raise SilverError("interface = asgi needs uvicorn on this machine: "
                              "pip install uvicorn")
        config, app = apploader.load_app(config.app_dir, config)
        return config, app, None
    except SilverError as exc:
        print(f"silver serve: {exc.message}", file=sys.stderr)
        return config, None, wsgiapp.load_error_app("The app cannot start", None, exc.message)
    except BaseException as exc:  # the app's import may raise anything, even SystemExit
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        return config, None, wsgiapp.load_error_app("Error loading the app", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="silverlining.devserver.child")
    parser.add_argument("app_dir")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--config")
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_VAR, None)
    sock = socket.socket(fileno=args.fd)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    app_dir = Path(args.app_dir).absolute()
    config, app, error_app = _load(app_dir, args.config)
    writable_root = None
    if config is not None and "writable_root" in config.services:
        writable_root = os.environ.get("CONFIG_WRITABLE_ROOT")
    if app is not None and config is not None and config.interface == "asgi":
        asgiapp.serve(sock, asgiapp.StaticFirst(app, app_dir, writable_root, token))
    else:
        wsgiapp.serve(sock, wsgiapp.StaticFirst(app or error_app, app_dir, writable_root,
                                                token))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
