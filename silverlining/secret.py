"""``get_secret``: a stable secret for the app (Django's SECRET_KEY, signing keys...).

Importable by apps, on a node and under ``silver serve`` alike::

    from silverlining.secret import get_secret
    SECRET_KEY = get_secret()            # or get_secret("sessions") for another key

Each purpose gets its own key, derived (HMAC-SHA256) from the app's secret
in the file named by ``SILVER_SECRET_FILE``. On a node that file is
``/var/lib/silverlining/data/APP/secret`` (root-owned, 0640, group ``sl-APP``),
itself derived from the node's secret, so it is the same for every version
of the app on that node and different for every app. In development it is
``SILVER_HOME/devel/APP/secret``, random, made on first use (``silver serve``;
the local ``bin/python`` does not import silverlining). Stdlib only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

ENV_VAR = "SILVER_SECRET_FILE"


def get_secret(purpose: str = "default") -> str:
    """64 hex digits, the same every time for this app and ``purpose``."""
    path = os.environ.get(ENV_VAR)
    if not path:
        raise RuntimeError(f"{ENV_VAR} is not set: get_secret works in an app deployed by "
                           "silver update or under silver serve")
    key = Path(path).read_text(encoding="ascii").strip()
    if not key:
        raise RuntimeError(f"{path} is empty")
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def derive(master: bytes, app: str) -> str:
    """The app's secret on a node, from the node's secret: one-way, one per app."""
    return hmac.new(master, f"silverlining app {app}".encode(), hashlib.sha256).hexdigest()


def dev_secret_file(devel_dir: Path) -> Path:
    """The development secret of an app (random, 0600, made once)."""
    path = devel_dir / "secret"
    if not path.is_file():
        devel_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path
