"""A local node that ``silver setup-node`` has already set up, for tests of later commands.

Import it into a test module (pytest finds fixtures imported there)::

    from tests.integration.fixtures_setup import setup_node  # noqa: F401

``setup_node`` (module scope) is a ``NodeAddress`` of a fresh node named after
the module (``test_update.py`` -> ``update-node``), made and set up with the real
``silver create-node --setup-node`` and destroyed when the module's tests are done. ``http_get`` asks a node's nginx
for a URL with a given Host header.
"""

from __future__ import annotations

import http.client
import os
import time

import pytest

from silverlining.nodes import NodeAddress


def node_name_for(module_name: str) -> str:
    """The module's node name; SILVER_TEST_NODE_TAG keeps checkouts that run the
    same module at once on one machine apart."""
    base = module_name.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    tag = os.environ.get("SILVER_TEST_NODE_TAG", "")
    return f"{base[:40].strip('-') or 'setup'}-node" + (f"-{tag}" if tag else "")


@pytest.fixture(scope="module")
def setup_node(request, node_env, make_module_node) -> NodeAddress:
    return make_module_node(node_name_for(request.module.__name__), "--setup-node")


def http_get(address: str, host: str, path: str = "/", timeout: float = 10,
             wait: float = 0) -> tuple[int, str]:
    """(status, body) of ``GET path`` on the node's port 80 with ``Host: host``.

    ``wait`` > 0 retries connection failures for that many seconds (a node
    that is still booting).
    """
    deadline = time.monotonic() + wait
    while True:
        conn = http.client.HTTPConnection(address, 80, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)
        finally:
            conn.close()
