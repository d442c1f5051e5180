"""``service.writable_root``: files the app writes and the web server serves
publicly after ``static/`` (``CONFIG_WRITABLE_ROOT``; a ``HOST/`` subdirectory
there is looked at first for requests to that host). On a node it is
``DATA/APP/writable_root``, backed up and restored like ``files``."""

from __future__ import annotations

import grp
from typing import Any

from silverlining.services.files import DirectoryService


class WritableRootService(DirectoryService):
    name = "writable_root"
    variable = "CONFIG_WRITABLE_ROOT"

    def group(self, app: Any, node_paths: Any) -> int:
        """nginx's group: it serves these files (no other app can read nginx's)."""
        return grp.getgrnam(node_paths.NGINX_USER).gr_gid


SERVICE = WritableRootService()
