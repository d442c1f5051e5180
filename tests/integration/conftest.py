"""Shared fixtures for tests on real local nodes (systemd-nspawn, 10.213.N.2).

Use them from any integration test module (setup-node, update, ...):

``node_env`` (session)
    One SILVER_HOME/SILVER_CONFIG for the whole session with
    ``[provider:local] driver = local``, a fresh ed25519 key (SILVER_SSH_KEY;
    its .pub is the provider's ssh_public_key), a private /etc/hosts
    (SILVER_ETC_HOSTS) and the shared image cache (SILVER_LOCAL_CACHE,
    default /var/cache/silverlining-test/images, built once per machine).
    Nodes run the local driver's default image (Debian 13), or the one
    SILVER_TEST_IMAGE names (``debian-12``: the whole suite on Debian 12).
    ``node_env.silver(*args)`` runs the real CLI in that environment,
    ``node_env.env`` is the environment dict for your own subprocesses,
    ``node_env.ssh(name)`` opens a ``transport.SSH`` to a node, and
    ``node_env.reboot(name)`` restarts its container (the reboot faults). Every node still
    registered at the end of the session is destroyed.

``make_node(name, *create_args)`` (per test) / ``make_module_node`` (per module)
    ``silver create-node NAME --wait --etc-hosts`` and return a ``NodeAddress``;
    the node is destroyed when the test (module) ends, even if it failed.
    Prefer ``make_module_node`` and a few nodes per module: boots cost seconds.

``node_environ`` (per test)
    Puts node_env's variables into ``os.environ`` (monkeypatch) for in-process
    calls such as ``transport.SSH``, ``transport.rsync`` or ``nodes.resolve``
    (the autouse ``silver_env`` fixture would otherwise point them at a
    per-test SILVER_HOME).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.env import private_environment
from silverlining.nodes import NodeAddress
from tests.conftest import run_silver


@dataclass
class NodeEnv:
    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return Path(self.env["SILVER_HOME"])

    @property
    def key(self) -> Path:
        return Path(self.env["SILVER_SSH_KEY"])

    @property
    def etc_hosts(self) -> Path:
        return Path(self.env["SILVER_ETC_HOSTS"])

    def silver(self, *args: str, check: bool = False, timeout: float = 900,
               env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
        """The real CLI in this environment (``env`` adds to it)."""
        return run_silver(*args, env={**self.env, **(env or {})}, check=check,
                          timeout=timeout, **kwargs)

    @contextlib.contextmanager
    def environ(self) -> Iterator[None]:
        """This environment in ``os.environ`` for the block (in-process calls)."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def registry(self) -> dict[str, dict]:
        with self.environ():
            from silverlining.state import NodeRegistry
            return NodeRegistry().all()

    def address(self, name: str) -> str:
        return self.registry()[name]["address"]

    def ssh(self, name: str, user: str = "root"):
        """A connected ``transport.SSH`` to a node made here (close it, or use ``with``)."""
        from silverlining import transport
        with self.environ():
            return transport.SSH(self.address(name), user=user, label=name)

    def create(self, name: str, *args: str) -> NodeAddress:
        self.silver("create-node", name, "--wait", "--etc-hosts", *args, check=True)
        return NodeAddress(name, self.address(name))

    def destroy(self, *names: str) -> subprocess.CompletedProcess:
        return self.silver("-y", "destroy-node", *names)

    def reboot(self, name: str) -> None:
        """Restart the node's container as the local driver does (a clean shutdown, then
        a boot); it returns once the container runs again, before its SSH answers."""
        with self.environ():
            from silverlining.providers import get_driver
            from silverlining.userconfig import UserConfig
            driver = get_driver(UserConfig.load().provider("local"))
            driver.reboot_node(driver.ex_get_node(name))


def suite_image() -> str | None:
    """The local image the suite's nodes run (None: the driver's default)."""
    return os.environ.get("SILVER_TEST_IMAGE") or None


def other_image() -> str:
    """The supported local image the suite's nodes do not run (Debian 12 by default),
    for the tests that need both releases."""
    from silverlining.providers import local_image
    ours = suite_image() or local_image.DEFAULT_IMAGE
    return next(image for image in local_image.IMAGES if image != ours)


@pytest.fixture(scope="session")
def node_env(tmp_path_factory) -> Iterator[NodeEnv]:
    root = tmp_path_factory.mktemp("node-env")
    env = NodeEnv(root, private_environment(root, "silver-test", suite_image()))
    yield env
    listed = env.silver("list-nodes").stdout.splitlines()[1:]
    left = sorted(set(env.registry()) | {line.split()[0] for line in listed if line.strip()})
    if left:
        env.destroy(*left)


class _Maker:
    """Creates nodes and remembers them so the finalizer destroys each one."""

    def __init__(self, env: NodeEnv) -> None:
        self.env, self.made = env, []

    def __call__(self, name: str, *args: str) -> NodeAddress:
        self.made.append(name)
        return self.env.create(name, *args)

    def track(self, *names: str) -> None:
        """Destroy these too at the end (nodes the test creates by other means)."""
        self.made.extend(names)

    def cleanup(self) -> None:
        """Destroy each node made, half-made ones too (a failed create may leave one)."""
        failed = []
        for name in dict.fromkeys(self.made):
            proc = self.env.destroy(name)
            if proc.returncode != 0 and "unknown node" not in proc.stderr:
                failed.append(f"{name}: {proc.stderr.strip()}")
        assert not failed, "destroying nodes failed:\n" + "\n".join(failed)


@pytest.fixture
def make_node(node_env) -> Iterator[Callable[..., NodeAddress]]:
    maker = _Maker(node_env)
    yield maker
    maker.cleanup()


@pytest.fixture(scope="module")
def make_module_node(node_env) -> Iterator[Callable[..., NodeAddress]]:
    maker = _Maker(node_env)
    yield maker
    maker.cleanup()


@pytest.fixture
def node_environ(node_env, monkeypatch) -> NodeEnv:
    for key, value in node_env.env.items():
        monkeypatch.setenv(key, value)
    return node_env
