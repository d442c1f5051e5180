"""``service.mysql``: a MySQL/MariaDB database per app (``CONFIG_MYSQL_*``)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

from silverlining.services.base import Service, sqlalchemy_url

KEYS = ("dbname", "user", "password", "host", "port")


class MysqlService(Service):
    name = "mysql"
    dev_keys = KEYS

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        return mysql_env({
            "dbname": self.setting(settings, "dbname", app.app_name),
            "user": self.setting(settings, "user", getpass.getuser()),
            "password": self.setting(settings, "password"),
            "host": self.setting(settings, "host"),
            "port": self.setting(settings, "port"),
        })

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        return mysql_env({k: creds.get(k, "") for k in KEYS})


def mysql_env(values: dict[str, str]) -> dict[str, str]:
    """The CONFIG_MYSQL_* variables; host empty = local socket, port empty = default."""
    env = {f"CONFIG_MYSQL_{k.upper()}": values[k] for k in KEYS}
    env["CONFIG_MYSQL_SQLALCHEMY"] = sqlalchemy_url(
        "mysql", values["user"], values["password"], values["host"], values["port"],
        values["dbname"])
    return env


SERVICE = MysqlService()
