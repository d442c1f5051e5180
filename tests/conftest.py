"""Shared test set-up: every test gets its own SILVER_HOME and SILVER_CONFIG.

Node tests (marked ``node``) run against real local nodes. They are never
skipped silently: only ``SILVER_SKIP_NODE_TESTS=1`` turns them off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# No per-example deadline: the unit tests share 2 CPUs with node boots in the same run,
# so hypothesis's 200 ms would time the machine's load, not the code.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.fixture(autouse=True)
def silver_env(tmp_path_factory, monkeypatch):
    """Point the tool's state and config at fresh temp paths (never the real home)."""
    if os.environ.get("SILVER_TEST_SESSION_HOME"):
        return
    home = tmp_path_factory.mktemp("silver-home")
    monkeypatch.setenv("SILVER_HOME", str(home / "state"))
    monkeypatch.setenv("SILVER_CONFIG", str(home / "silverlining.conf"))


def run_silver(*args: str, cwd: Path | None = None, env: dict | None = None,
               input: str | None = None, timeout: float = 600,
               check: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would. Without ``input`` its stdin is
    /dev/null, not the test process's (under xdist, the pipe the worker talks on)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "silverlining", *args], cwd=cwd,
                          env=full_env, input=input, text=True, capture_output=True,
                          timeout=timeout,
                          stdin=subprocess.DEVNULL if input is None else None)
    if check and proc.returncode != 0:
        raise AssertionError(f"silver {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# The longest modules (several nodes each), started first: with four modules at a time
# (``--dist loadfile``), one of them started last would set the suite's end alone.
LONG_FIRST = ("test_services_node.py", "test_balancer.py", "test_dependencies.py")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: LONG_FIRST.index(item.path.name)
               if item.path.name in LONG_FIRST else len(LONG_FIRST))
    if os.environ.get("SILVER_SKIP_NODE_TESTS") == "1":
        skip = pytest.mark.skip(reason="SILVER_SKIP_NODE_TESTS=1")
        for item in items:
            if "node" in item.keywords:
                item.add_marker(skip)
