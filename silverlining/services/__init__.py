"""Services an app asks for with ``service.NAME =`` in app.ini.

One module per service, each defining a ``Service`` subclass; this module is
the registry. Stdlib only: the node imports it too.
"""

from __future__ import annotations

import importlib

SERVICE_NAMES = ("files", "writable_root", "postgresql", "postgis", "mysql", "redis")


def get_service(name: str):
    """The service object for ``name`` (one of ``SERVICE_NAMES``)."""
    module = importlib.import_module(f"silverlining.services.{name}")
    return module.SERVICE
