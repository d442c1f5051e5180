"""``silver list-images``: what ``--image`` can choose from; the default marked ``*``.

For the local provider a STATE column says which images are cached and
which are built (mmdebstrap) when a node first needs them.
"""

from __future__ import annotations

from silverlining.commands.list_nodes import table
from silverlining.console import Console
from silverlining.providers import call_provider, clouds, open_provider
from silverlining.providers.matchers import find_default


def run(console: Console) -> None:
    cfg, driver = open_provider(console.provider)
    images = call_provider("listing images", driver.list_images)
    default = find_default(images, cfg.image)
    profile = clouds.profile_for(driver)
    if cfg.image is None and profile is not None:   # the image create-node would choose
        default = next((i for i in reversed(images) if profile.is_default_image(i)), None)
    rows = [("*" if image is default else "", image.id, image.name or "") for image in images]
    if not rows:
        console.info(f"provider {cfg.name!r} offers no images")
        return
    header: tuple[str, ...] = ("", "ID", "NAME")
    if any("cached" in (image.extra or {}) for image in images):
        header += ("STATE",)
        rows = [row + ("cached" if (image.extra or {}).get("cached") else "built on first use",)
                for row, image in zip(rows, images)]
    for line in table(header, rows):
        console.out(line)
