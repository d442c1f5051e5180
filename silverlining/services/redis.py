"""``service.redis``: a Redis database number per app (``CONFIG_REDIS_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from silverlining.services.base import Service

KEYS = ("host", "port", "db", "password")


class RedisService(Service):
    name = "redis"
    dev_keys = KEYS

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        return redis_env({
            "host": self.setting(settings, "host", "127.0.0.1"),
            "port": self.setting(settings, "port", "6379"),
            "db": self.setting(settings, "db", "0"),
            "password": self.setting(settings, "password"),
        })

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        return redis_env({
            "host": creds.get("host") or "127.0.0.1",
            "port": creds.get("port") or "6379",
            "db": creds.get("db") or "0",
            "password": creds.get("password", ""),
        })


def redis_env(values: dict[str, str]) -> dict[str, str]:
    """CONFIG_REDIS_HOST/PORT/DB/URL, plus CONFIG_REDIS_PASSWORD when one is set."""
    auth = f":{quote(values['password'], safe='')}@" if values["password"] else ""
    env = {
        "CONFIG_REDIS_HOST": values["host"],
        "CONFIG_REDIS_PORT": values["port"],
        "CONFIG_REDIS_DB": values["db"],
        "CONFIG_REDIS_URL": f"redis://{auth}{values['host']}:{values['port']}/{values['db']}",
    }
    if values["password"]:
        env["CONFIG_REDIS_PASSWORD"] = values["password"]
    return env


SERVICE = RedisService()
