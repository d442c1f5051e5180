"""A deployed version's app.ini: its config and the services it uses (backups, silver run)."""

from __future__ import annotations

import dataclasses

from silverlining.appconfig import AppConfig
from silverlining.errors import SilverError
from silverlining.node._errors import NodeError
from silverlining.node._state import instance_dir


def app_services(app: str, version: str) -> tuple[AppConfig, list[str]]:
    """The live version's config and its services, one per database (postgis covers
    postgresql: they are the same database)."""
    try:
        config = dataclasses.replace(AppConfig.load(instance_dir(app, version)), app_name=app)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    names = sorted(config.services)
    if "postgis" in names and "postgresql" in names:
        names.remove("postgresql")
    return config, names
