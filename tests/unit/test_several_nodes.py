"""What ``silver update`` refuses when several nodes serve one app: data kept on each node."""

from __future__ import annotations

from pathlib import Path

import pytest

from silverlining.appconfig import AppConfig
from silverlining.commands.update import NODE_DISK_SERVICES, check_node_disk
from silverlining.errors import UsageError
from silverlining.services import SERVICE_NAMES


def config(tmp_path: Path, *services: str) -> AppConfig:
    lines = ["[production]", "app_name = shop", "runner = main.py",
             *(f"service.{name} =" for name in services)]
    (tmp_path / "app.ini").write_text("\n".join(lines) + "\n")
    (tmp_path / "main.py").write_text("")
    return AppConfig.load(tmp_path)


def test_node_disk_services_are_known_services():
    assert set(NODE_DISK_SERVICES) <= set(SERVICE_NAMES)


@pytest.mark.parametrize("services, refused", [
    (("files",), "service.files in "),
    (("writable_root", "postgresql"), "service.writable_root, service.postgresql in "),
    (("files", "writable_root", "redis"), "service.files, service.writable_root, "
                                          "service.redis in "),
    (("mysql",), "service.mysql in "),
    (("postgis",), "service.postgis in "),
])
def test_several_nodes_refuse_node_disk_services_in_one_line(tmp_path, services, refused):
    with pytest.raises(UsageError) as err:
        check_node_disk(config(tmp_path, *services), ["web1", "web2"])
    message = err.value.message
    assert "\n" not in message
    assert message.startswith(refused)
    assert "several nodes (web1, web2): each node would keep its own copy" in message
    assert "database server" in message and "object storage" in message \
        and "one node" in message


def test_several_nodes_take_an_app_without_node_data(tmp_path):
    check_node_disk(config(tmp_path), ["web1", "web2", "web3"])


def test_one_node_takes_node_disk_services(tmp_path):
    check_node_disk(config(tmp_path, "files", "writable_root"), ["web1"])
