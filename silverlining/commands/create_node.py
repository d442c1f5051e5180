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
from silverlining.providers import (call_provider, clouds, dns, find_node, node_address,
                                    open_provider, private_address, state_name)
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
    profile = clouds.profile_for(driver)
    if profile is not None and existing is None:
        profile.check_name(hostname)
    zone = None
    if cfg.dns is not None:     # a name outside the zone, or no such zone, fails now
        dns.record_name(hostname, cfg.dns.zone)
        zone = dns.open_zone(cfg.dns)
    cloud = profile is not None         # reached on a public address
    waits = wait or cfg.dns is not None or cloud
    if waits:
        wait_timeout()                  # a bad value is refused before a node is paid for
    created = existing is None
    if created:
        node = _create(console, cfg, driver, hostname, image, size, location)
    else:
        node = existing
        console.step(hostname, f"exists ({state_name(node)}); not creating it")
        if entry is None:
            registry.put(hostname, provider=cfg.name, driver=cfg.driver, node_id=str(node.id))
    deadline = time.monotonic() + wait_timeout() if waits else 0.0
    if waits:       # for SSH, for DNS, or for a cloud's address, which comes in seconds
        node = _wait_for_address(driver, cfg, hostname, node, deadline, cloud)
    address = node_address(node, public=cloud)
    if address:
        registry.put(hostname, address=address, **_private(node))
        address6 = _ipv6(driver, node)
        if address6:
            registry.put(hostname, address6=address6)
        if zone is not None:
            _point_dns(console, zone, hostname, address, address6)
    if wait:
        _wait(console, driver, hostname, address, deadline, trust=created)
    if address and (cfg.dns is None or etc_hosts):
        _etc_hosts(console, hostname, address, etc_hosts)
    console.out(f"{hostname} {address or '(no address yet)'}")
    if setup_node:
        from silverlining.commands import setup_node as setup

        return setup.run(console, hosts=(hostname,))
    return None


def _private(node: Node) -> dict[str, str]:
    """The registry's ``private_address`` for ``node``, when it is on a private network."""
    private = private_address(node)
    return {"private_address": private} if private else {}


def _ipv6(driver: NodeDriver, node: Node) -> str | None:
    profile = clouds.profile_for(driver)
    return profile.ipv6(node) if profile is not None else None


def _point_dns(console: Console, zone: dns.DnsZone, hostname: str, address: str,
               address6: str | None) -> None:
    """A and AAAA records for the node; what was written is kept to remove it later."""
    addresses = {"A": address, **({"AAAA": address6} if address6 else {})}
    records = dns.point(zone, hostname, addresses)
    NodeRegistry().put(hostname, dns=records)
    for record in records:
        console.step(hostname, f"DNS {record['type']} {record['name']} -> {record['data']}")


def _create(console: Console, cfg: ProviderConfig, driver: NodeDriver, hostname: str,
            image: str | None, size: str | None, location: str | None) -> Node:
    source = f"[provider:{cfg.name}] in {cfg.path}"
    defaults = _driver_defaults(driver)
    profile = clouds.profile_for(driver)
    kwargs: dict[str, object] = {"name": hostname}
    where = location or cfg.location
    chosen_location = None
    if where or _required(driver, "location"):
        locations = (profile.locations(call_provider, driver) if profile is not None
                     else call_provider("listing locations", driver.list_locations))
        chosen_location = select(locations, where, "location",
                                 "--location" if location else source)
        kwargs["location"] = chosen_location
    chosen_image = chosen_size = None
    if image or cfg.image:
        text = image or cfg.image
        images = (profile.images(call_provider, driver, chosen_location, text)
                  if profile is not None else
                  clouds.listing(call_provider, "images", driver.list_images, chosen_location))
        chosen_image = select(images, text, "image", "--image" if image else source)
    elif profile is not None:
        chosen_image = profile.default_image(call_provider, driver, chosen_location)
    elif "image" not in defaults:
        chosen_image = select(clouds.listing(call_provider, "images", driver.list_images,
                                             chosen_location), None, "image")
    size_text = size or cfg.size or (profile.default_size if profile else None)
    if size_text or "size" not in defaults:
        origin = ("--size" if size else source if cfg.size
                  else f"the default for {profile.label}" if profile else "")
        chosen_size = select(clouds.listing(call_provider, "sizes", driver.list_sizes,
                                            chosen_location), size_text, "size", origin)
    kwargs.update(image=chosen_image, size=chosen_size)
    pubkey = cfg.public_key_path().read_text().strip()
    _check_create_args(driver, {**kwargs, **cfg.create_args}, cfg)
    prepared = clouds.Prepared()
    if profile is not None:
        prepared = profile.prepare(call_provider, driver, hostname, pubkey, chosen_location)
        for note in prepared.notes:
            console.step(hostname, note)
    elif "ssh_key" in driver.features.get("create_node", []):
        kwargs["auth"] = NodeAuthSSHKey(pubkey)
    elif not cfg.create_args:
        console.warn(f"driver {cfg.driver!r} cannot install an SSH key at creation; set the "
                     "provider's key option with a create.* key (e.g. create.ex_keyname)")
    kwargs.update(prepared.kwargs)
    kwargs.update(cfg.create_args)
    described = [f"{what} {item.name}" for what, item in
                 (("image", chosen_image), ("size", chosen_size),
                  ("location", chosen_location)) if item is not None]
    console.step(hostname, "creating node" + (": " + ", ".join(described) if described else ""))
    if hasattr(driver, "progress"):  # the local driver reports image builds and boots
        driver.progress = lambda msg: console.step(hostname, msg)
        driver.status = lambda text: console.status(hostname, text)
    create = getattr(profile, "create", None)
    try:
        if create is not None:
            node = call_provider(f"creating node {hostname}", create, driver, **kwargs)
        else:
            node = call_provider(f"creating node {hostname}", driver.create_node, **kwargs)
    except SilverError:
        if profile is not None and prepared.records:
            _release(console, profile, driver, cfg, hostname, prepared.records)
        raise
    finally:
        console.status_done(hostname)
    NodeRegistry().put(hostname, provider=cfg.name, driver=cfg.driver, node_id=str(node.id),
                       address=node_address(node, public=profile is not None),
                       **_private(node),
                       **({"cloud": prepared.records} if prepared.records else {}))
    console.step(hostname, f"created (id {node.id})")
    return node


def _release(console: Console, profile: clouds.CloudProfile, driver: NodeDriver,
             cfg: ProviderConfig, hostname: str, records: dict[str, object]) -> None:
    """Undo the registrations of a node that was not created after all."""
    try:
        for what in profile.release(call_provider, driver, records,
                                    clouds.used_elsewhere(cfg.name, hostname)):
            console.step(hostname, f"removed {what}")
    except SilverError as exc:
        console.warn(exc.message)


def _required(driver: NodeDriver, name: str) -> bool:
    """Whether the driver's ``create_node`` cannot do without argument ``name``."""
    try:
        params = inspect.signature(driver.create_node).parameters
    except (TypeError, ValueError):
        return False
    return name in params and params[name].default is inspect.Parameter.empty


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


def _wait_for_address(driver: NodeDriver, cfg: ProviderConfig, hostname: str, node: Node,
                      deadline: float, public: bool) -> Node:
    """The node once the provider has given it an address (a fresh cloud node has none)."""
    if cfg.driver == "local" and hasattr(driver, "ex_ensure_running"):
        node = call_provider(f"starting node {hostname}", driver.ex_ensure_running,
                             hostname) or node
    while not node_address(node, public):
        if time.monotonic() > deadline:
            raise SilverError(f"[{hostname}] the provider gave no address within "
                              f"{wait_timeout():.0f}s")
        time.sleep(3)
        fresh = find_node(call_provider("listing nodes", driver.list_nodes), hostname,
                          str(node.id))
        if fresh is None:
            raise SilverError(f"[{hostname}] the node disappeared at the provider")
        node = fresh
    return node


def _wait(console: Console, driver: NodeDriver, hostname: str, address: str | None,
          deadline: float, trust: bool) -> None:
    """Wait for SSH; record the host key of a node we just created."""
    if not address:
        raise SilverError(f"[{hostname}] the provider gave no address")
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
    # The local driver writes the key into the node before it boots, so a refusal
    # there is final; a cloud node installs it some time after sshd answers.
    refusals = 0.0 if hasattr(driver, "ex_host_keys") else REFUSED_LOGIN_WAIT
    _wait_for_login(console, hostname, address, deadline, refusals)


REFUSED_LOGIN_WAIT = 180.0      # seconds a cloud node may refuse our key after booting


def _wait_for_login(console: Console, hostname: str, address: str, deadline: float,
                    refusals: float) -> None:
    """Log in once: a fresh cloud node answers SSH before its key is installed, so a
    refused login is retried for ``refusals`` seconds (then it is the wrong key)."""
    refused_until = time.monotonic() + refusals
    while True:
        try:
            with transport.SSH(address, label=hostname) as ssh:
                ssh.run(["true"], timeout=60)
            console.step(hostname, "SSH login works")
            return
        except transport.HostKeyError:
            raise
        except SilverError as exc:
            now = time.monotonic()
            if now > deadline or (isinstance(exc, transport.LoginRefused)
                                  and now >= refused_until):
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
