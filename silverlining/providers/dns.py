"""DNS records for nodes through a libcloud DNS driver (``[dns:NAME]``).

``create-node`` points ``NAME.ZONE`` (or NAME itself when it is inside the
zone) at the node with A and AAAA records and keeps each record's id, zone and
value in the node's registry entry; ``destroy-node`` deletes exactly those
records, and only while they still hold the value we wrote, so a record
someone re-pointed since is left alone.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from libcloud.common.types import LibcloudError
from libcloud.dns.base import DNSDriver, Record, Zone
from libcloud.dns.providers import get_driver as libcloud_dns_driver
from libcloud.dns.types import Provider, RecordType

from silverlining.console import Console
from silverlining.errors import ConfigError, UsageError
from silverlining.providers import (call_provider, check_constructor, construct,
                                    provider_names)
from silverlining.userconfig import DnsConfig


@dataclass
class DnsZone:
    """An open DNS driver and the zone our records go in."""

    cfg: DnsConfig
    driver: DNSDriver
    zone: Zone


def dns_driver(cfg: DnsConfig) -> DNSDriver:
    """The ``[dns:NAME]`` section's driver, built from its credential keys."""
    section = f"dns:{cfg.name}"
    if ":" in cfg.driver:
        module_name, _, class_name = cfg.driver.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError as exc:
            raise ConfigError(cfg.path, f"cannot import {module_name!r}: {exc}",
                              key="driver", section=section) from None
        if not (isinstance(cls, type) and issubclass(cls, DNSDriver)):
            raise ConfigError(cfg.path, f"{cfg.driver!r} is not a libcloud DNSDriver class",
                              key="driver", section=section)
    else:
        names = provider_names(Provider)
        provider = names.get(cfg.driver.lower())
        if provider is None:
            close = difflib.get_close_matches(cfg.driver.lower(), sorted(set(names.values())),
                                              n=5, cutoff=0.6)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise ConfigError(cfg.path, f"unknown libcloud DNS provider {cfg.driver!r}{hint}",
                              key="driver", section=section)
        try:
            cls = libcloud_dns_driver(provider)
        except (AttributeError, ImportError, LibcloudError) as exc:
            raise ConfigError(cfg.path, f"libcloud cannot load DNS driver {cfg.driver!r}: "
                              f"{exc}", key="driver", section=section) from None
    check_constructor(cls, cfg.driver, cfg.driver_args, cfg.path, section)
    return construct(cls, cfg.driver, cfg.driver_args, cfg.path, section)


def open_zone(cfg: DnsConfig) -> DnsZone:
    """The configured zone at the DNS provider; a zone it does not have is an error."""
    driver = dns_driver(cfg)
    zones = call_provider("listing DNS zones", driver.list_zones)
    for zone in zones:
        if zone.domain.rstrip(".").lower() == cfg.zone:
            return DnsZone(cfg, driver, zone)
    known = ", ".join(z.domain.rstrip(".") for z in zones) or "none"
    raise UsageError(f"{driver.name}: no DNS zone {cfg.zone!r} (zones: {known}); "
                     f"fix 'zone =' in [dns:{cfg.name}]")


def record_name(hostname: str, zone: str) -> str:
    """The record name for ``hostname`` in ``zone``: '' for the apex, else the label(s).

    A name without dots goes under the zone (web1 -> web1.ZONE); a dotted name
    must be inside the zone.
    """
    hostname = hostname.rstrip(".").lower()
    if hostname == zone:
        return ""
    if hostname.endswith("." + zone):
        return hostname[:-len(zone) - 1]
    if "." not in hostname:
        return hostname
    raise UsageError(f"{hostname!r} is not in the DNS zone {zone!r}: name the node "
                     f"NAME.{zone}, or a bare NAME")


def fqdn(hostname: str, zone: str) -> str:
    name = record_name(hostname, zone)
    return f"{name}.{zone}" if name else zone


def point(target: DnsZone, hostname: str, addresses: dict[str, str]) -> list[dict[str, Any]]:
    """Make ``hostname`` resolve to ``addresses`` ({"A": ip4, "AAAA": ip6}).

    An existing record of the same name and type is changed, not duplicated.
    Returns what to keep in the registry to remove the records later.
    """
    name = record_name(hostname, target.cfg.zone)
    existing = call_provider(f"listing DNS records of {target.cfg.zone}",
                             target.driver.list_records, target.zone)
    extra = {"ttl": target.cfg.ttl} if target.cfg.ttl else None
    kept: list[dict[str, Any]] = []
    for rtype, value in addresses.items():
        what = f"{rtype} record {fqdn(hostname, target.cfg.zone)} -> {value}"
        old = [r for r in existing if r.type == rtype and _same_name(r, name, target.cfg.zone)]
        if old and old[0].data == value:
            record = old[0]
        elif old:
            record = call_provider(f"changing {what}", target.driver.update_record, old[0],
                                   old[0].name, getattr(RecordType, rtype), value, extra)
        else:
            record = call_provider(f"adding {what}", target.driver.create_record, name,
                                   target.zone, getattr(RecordType, rtype), value, extra)
        kept.append({"zone": target.zone.id, "id": str(record.id), "type": rtype,
                     "name": fqdn(hostname, target.cfg.zone), "data": value})
    return kept


def remove(target: DnsZone, records: list[dict[str, Any]]) -> list[str]:
    """Delete the records ``point`` made that still hold our value; returns their names."""
    if not records:
        return []
    existing = call_provider(f"listing DNS records of {target.cfg.zone}",
                             target.driver.list_records, target.zone)
    removed = []
    for kept in records:
        for record in existing:
            if str(record.id) == kept["id"] and record.type == kept["type"] \
                    and record.data == kept["data"]:
                call_provider(f"deleting {kept['type']} record {kept['name']}",
                              target.driver.delete_record, record)
                removed.append(f"{kept['type']} {kept['name']}")
    return removed


def _same_name(record: Record, name: str, zone: str) -> bool:
    """Drivers spell names relative ('web1'), absolute ('web1.example.com.') or '@'."""
    got = (record.name or "").rstrip(".").lower()
    if got in ("@", zone):
        got = ""
    elif got.endswith("." + zone):
        got = got[:-len(zone) - 1]
    return got == name


def in_zone(host: str, zone: str) -> bool:
    host = host.rstrip(".").lower()
    return host == zone or host.endswith("." + zone)


def offer_location(console: Console, host: str, node: str, choice: bool | None) -> bool:
    """Point an app's exact ``host`` at ``node`` in DNS (``silver update --dns``).

    ``choice`` None asks (yes with -y; only a hint without a terminal).
    Returns False when the node's provider has no DNS, so the caller offers
    the /etc/hosts mapping instead.
    """
    from silverlining.nodes import node_dns
    from silverlining.state import NodeRegistry

    cfg = node_dns(node)
    if cfg is None:
        return False
    if choice is False:
        return True
    if not in_zone(host, cfg.zone):
        console.info(f"{host} is not in the DNS zone {cfg.zone}: no DNS record made")
        return True
    entry = NodeRegistry().get(node) or {}
    if not entry.get("address"):
        return True
    addresses = {"A": entry["address"],
                 **({"AAAA": entry["address6"]} if entry.get("address6") else {})}
    target = open_zone(cfg)
    existing = call_provider(f"listing DNS records of {cfg.zone}", target.driver.list_records,
                             target.zone)
    name = record_name(host, cfg.zone)
    current = {r.type: r.data for r in existing if _same_name(r, name, cfg.zone)}
    if all(current.get(t) == v for t, v in addresses.items()):
        return True
    if choice is None:
        if not (console.yes or sys.stdin.isatty()):
            console.info(f"{host} does not point to {node} ({entry['address']}) in DNS: "
                         "pass --dns (or -y) to point it there")
            return True
        if not console.confirm(f"Point {host} at {node} ({entry['address']}) in DNS?",
                               default=True):
            return True
    records = point(target, host, addresses)
    kept = [r for r in entry.get("dns") or [] if r["id"] not in {n["id"] for n in records}]
    NodeRegistry().put(node, dns=kept + records)
    for record in records:
        console.step(node, f"DNS {record['type']} {record['name']} -> {record['data']}")
    return True
