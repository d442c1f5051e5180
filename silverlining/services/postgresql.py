"""``service.postgresql``: a PostgreSQL database per app (``CONFIG_PG_*``)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from silverlining.services.base import Service, sqlalchemy_url

KEYS = ("dbname", "user", "password", "host", "port")


class PostgresqlService(Service):
    name = "postgresql"
    dev_keys = KEYS
    #: sections of the devel settings looked at, in order
    setting_prefixes: tuple[str, ...] = ("postgresql",)

    def lookup(self, settings: dict[str, str], key: str, default: str = "") -> str:
        for prefix in self.setting_prefixes:
            if f"{prefix}.{key}" in settings:
                return settings[f"{prefix}.{key}"]
        return default

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        values = {
            "dbname": self.lookup(settings, "dbname", app.app_name),
            "user": self.lookup(settings, "user", getpass.getuser()),
            "password": self.lookup(settings, "password"),
            "host": self.lookup(settings, "host"),
            "port": self.lookup(settings, "port"),
        }
        return pg_env(values)

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        return pg_env({k: creds.get(k, "") for k in KEYS})


def pg_env(values: dict[str, str]) -> dict[str, str]:
    """The CONFIG_PG_* variables; host empty = local socket, port empty = default."""
    return {
        "CONFIG_PG_DBNAME": values["dbname"],
        "CONFIG_PG_USER": values["user"],
        "CONFIG_PG_PASSWORD": values["password"],
        "CONFIG_PG_HOST": values["host"],
        "CONFIG_PG_PORT": values["port"],
        "CONFIG_PG_SQLALCHEMY": sqlalchemy_url("postgresql", values["user"], values["password"],
                                               values["host"], values["port"], values["dbname"]),
    }


SERVICE = PostgresqlService()
