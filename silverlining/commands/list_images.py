"""``silver list-images``: what ``--image`` can choose from; the default marked ``*``."""

from __future__ import annotations

from silverlining.commands.list_nodes import table
from silverlining.console import Console
from silverlining.providers import call_provider, open_provider
from silverlining.providers.matchers import find_default


def run(console: Console) -> None:
    cfg, driver = open_provider(console.provider)
    images = call_provider("listing images", driver.list_images)
    default = find_default(images, cfg.image)
    rows = [("*" if image is default else "", image.id, image.name or "") for image in images]
    if not rows:
        console.info(f"provider {cfg.name!r} offers no images")
        return
    for line in table(("", "ID", "NAME"), rows):
        console.out(line)
