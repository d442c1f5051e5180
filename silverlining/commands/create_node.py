"""``silver create-node``: ask the provider for a server, wait for it, trust its key.

The host key is recorded here and only here: right after the provider made
the node is the one moment a key can be taken on first use. Everything else
(setup-node, update, rsync) refuses unknown keys.
"""

from __future__ import annotations

import inspect
import os
import sys
import time

from libcloud.compute.base import Node, NodeAuthSSHKey, NodeDriver

from silverlining import etchosts, transport
from silverlining.console import Console
from silverlining.errors import ConfigError, SilverError, UsageError
from silverlining.locations import check_hostname
from silverlining.providers import (call_provider, find_node, node_address, open_provider,
                                    state_name)
from silverlining.providers.matchers import select
from silverlining.state import NodeRegistry
from silverlining.userconfig import ProviderConfig

DEFAULT_WAIT = 600.0


def wait_timeout() -> float:
    """``SILVER_WAIT_TIMEOUT`` seconds for the node to get an address and answer SSH."""
    raw = os.environ.get("SILVER_WAIT_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_WAIT
    except ValueError:
        raise UsageError(f"SILVER_WAIT_TIMEOUT={raw!r} is not a number of seconds") from None


def run(console: Console, hostname: str, image: str | None = None, size: str | None = None,
        location: str | None = None, wait: bool = False, setup_node: bool = False,
        if_not_exists: bool = False, etc_hosts: bool | None = None) -> int | None:
    hostname = check_hostname(hostname)
    wait = wait or setup_node
    if wait:
        wait_timeout()              # a bad value is refused before a node is paid for
    cfg, driver = open_provider(console.provider)
    registry = NodeRegistry()
    entry = registry.get(hostname)
    if entry and entry.get("provider") not in (None, cfg.name):
        raise UsageError(f"node {hostname!r} exists with provider {entry['provider']!r} "
                         f"(this is {cfg.name!r}); destroy it first or use -p")
    existing = find_node(call_provider("listing nodes", driver.list_nodes), hostname,
                         (entry or {}).get("node_id"))
    if existing is not None and not if_not_exists:
        raise UsageError(f"node {hostname!r} already exists ({state_name(existing)}, "
                         f"{node_address(existing) or 'no address'}); use --if-not-exists "
                         "to accept an existing node")
    created = existing is None
    if created:
        node = _create(console, cfg, driver, hostname, image, size, location)
    else:
        node = existing
        console.step(hostname, f"exists ({state_name(node)}); not creating it")
        if entry is None:
            registry.put(hostname, provider=cfg.name, driver=cfg.driver, node_id=str(node.id))
    address = node_address(node)
    if address:
        registry.put(hostname, address=address)
    if wait:
        address = _wait(console, driver, cfg, hostname, node, trust=created)
    if address:
        _etc_hosts(console, hostname, address, etc_hosts)
    console.out(f"{hostname} {address or '(no address yet)'}")
    if setup_node:
        from silverlining.commands import setup_node as setup

        return setup.run(console, hosts=(hostname,))
    return None


def _create(console: Console, cfg: ProviderConfig, driver: NodeDriver, hostname: str,
            image: str | None, size: str | None, location: str | None) -> Node:
    source = f"[provider:{cfg.name}] in {cfg.path}"
    defaults = _driver_defaults(driver)
    chosen_image = chosen_size = None
    if image or cfg.image or "image" not in defaults:
        chosen_image = select(call_provider("listing images", driver.list_images),
                              image or cfg.image, "image", "--image" if image else source)
    if size or cfg.size or "size" not in defaults:
        chosen_size = select(call_provider("listing sizes", driver.list_sizes),
                             size or cfg.size, "size", "--size" if size else source)
    kwargs: dict[str, object] = {"name": hostname, "image": chosen_image, "size": chosen_size}
    where = location or cfg.location
    if where:
        kwargs["location"] = select(call_provider("listing locations", driver.list_locations),
                                    where, "location", "--location" if location else source)
    if "ssh_key" in driver.features.get("create_node", []):
        kwargs["auth"] = NodeAuthSSHKey(cfg.public_key_path().read_text().strip())
    elif not cfg.create_args:
        console.warn(f"driver {cfg.driver!r} cannot install an SSH key at creation; set the "
                     "provider's key option with a create.* key (e.g. create.ex_keyname)")
    kwargs.update(cfg.create_args)
    _check_create_args(driver, kwargs, cfg)
    described = [f"{what} {item.name}" for what, item in
                 (("image", chosen_image), ("size", chosen_size),
                  ("location", kwargs.get("location"))) if item is not None]
    console.step(hostname, "creating node" + (": " + ", ".join(described) if described else ""))
    if hasattr(driver, "progress"):  # the local driver reports image builds and boots
        driver.progress = lambda msg: console.step(hostname, msg)
        driver.status = lambda text: console.status(hostname, text)
    try:
        node = call_provider(f"creating node {hostname}", driver.create_node, **kwargs)
    finally:
        console.status_done(hostname)
    NodeRegistry().put(hostname, provider=cfg.name, driver=cfg.driver, node_id=str(node.id),
                       address=node_address(node))
    console.step(hostname, f"created (id {node.id})")
    return node


def _driver_defaults(driver: NodeDriver) -> set[str]:
    """Of image and size, those the driver picks itself when given None."""
    try:
        params = inspect.signature(driver.create_node).parameters
    except (TypeError, ValueError):
        return set()
    return {n for n in ("image", "size") if n in params and params[n].default is None}


def _check_create_args(driver: NodeDriver, kwargs: dict[str, object],
                       cfg: ProviderConfig) -> None:
    """Unknown create.* keys or --location on a driver without locations: say so now."""
    try:
        params = inspect.signature(driver.create_node).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key in params:
            continue
        if key == "location":
            raise UsageError(f"driver {cfg.driver!r} has no locations; drop --location "
                             "and 'location ='")
        raise ConfigError(cfg.path, f"driver {cfg.driver!r} does not take {key!r} when "
                          f"creating nodes (it takes: {', '.join(params)})",
                          key=f"create.{key}", section=f"provider:{cfg.name}")


def _wait(console: Console, driver: NodeDriver, cfg: ProviderConfig, hostname: str,
          node: Node, trust: bool) -> str:
    """Wait for an address and SSH; record the host key of a node we just created."""
    deadline = time.monotonic() + wait_timeout()
    registry = NodeRegistry()
    if cfg.driver == "local" and hasattr(driver, "ex_ensure_running"):
        node = call_provider(f"starting node {hostname}", driver.ex_ensure_running,
                             hostname) or node
    address = node_address(node)
    while not address:
        if time.monotonic() > deadline:
            raise SilverError(f"[{hostname}] the provider gave no address within "
                              f"{wait_timeout():.0f}s")
        time.sleep(3)
        fresh = find_node(call_provider("listing nodes", driver.list_nodes), hostname,
                          str(node.id))
        if fresh is None:
            raise SilverError(f"[{hostname}] the node disappeared at the provider")
        address = node_address(fresh)
    registry.put(hostname, address=address)
    console.step(hostname, f"waiting for SSH on {address}")
    transport.wait_for_ssh(address, max(1.0, deadline - time.monotonic()),
                           progress=lambda msg: console.step(hostname, msg), label=hostname)
    # A recorded key is never replaced here: a changed one fails the login below,
    # and 'silver forget-host' is the explicit way out.
    if trust or not transport.has_host_key(address):
        if hasattr(driver, "ex_host_keys"):
            transport.record_host_keys(address, driver.ex_host_keys(hostname))
            console.step(hostname, "host keys read from the node's own disk and recorded")
        else:
            fp = transport.trust_host_key(address, timeout=30)
            console.step(hostname, f"host key {fp} recorded (trusted on first use)")
    _wait_for_login(console, hostname, address, deadline)
    return address


def _wait_for_login(console: Console, hostname: str, address: str, deadline: float) -> None:
    """Log in once: a fresh cloud node answers SSH before its key is installed."""
    while True:
        try:
            with transport.SSH(address, label=hostname) as ssh:
                ssh.run(["true"], timeout=60)
            console.step(hostname, "SSH login works")
            return
        except transport.HostKeyError:
            raise
        except SilverError as exc:
            if time.monotonic() > deadline:
                raise
            console.detail(f"[{hostname}] not ready yet: {exc.message}")
            time.sleep(3)


def _etc_hosts(console: Console, hostname: str, address: str, choice: bool | None) -> None:
    """Add NAME to /etc/hosts when asked to, or when the user says yes at the prompt."""
    if choice is None:
        if etchosts.lookup(hostname) == address or not (console.yes or sys.stdin.isatty()):
            return
        choice = console.confirm(f"Add '{address} {hostname}' to {etchosts.hosts_path()}?")
    if not choice:
        return
    try:
        status = etchosts.add(hostname, address)
    except SilverError as exc:
        console.warn(exc.message)
        return
    if status == "foreign":
        console.warn(f"{etchosts.hosts_path()} already maps {hostname} with a line silverlining "
                     "did not write; left it alone")
    elif status == "added":
        console.step(hostname, f"added to {etchosts.hosts_path()}")
