"""``silver list-sizes``: what ``--size`` can choose from; the default marked ``*``."""

from __future__ import annotations

from silverlining.commands.list_nodes import table
from silverlining.console import Console
from silverlining.providers import call_provider, clouds, open_provider
from silverlining.providers.matchers import find_default


def _number(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def run(console: Console) -> None:
    cfg, driver = open_provider(console.provider)
    sizes = call_provider("listing sizes", driver.list_sizes)
    profile = clouds.profile_for(driver)
    default = find_default(sizes, cfg.size or (profile.default_size if profile else None))
    rows = [("*" if size is default else "", size.id, size.name or "", _number(size.ram),
             _number(size.disk), _number(size.price)) for size in sizes]
    if not rows:
        console.info(f"provider {cfg.name!r} offers no sizes")
        return
    for line in table(("", "ID", "NAME", "RAM_MB", "DISK_GB", "PRICE"), rows):
        console.out(line)
