"""What ``silver update`` refuses when several nodes serve one app: data kept on each node."""

from __future__ import annotations

from pathlib import Path

import pytest

from silverlining.appconfig import AppConfig
from silverlining.commands.update import NODE_DATA_SERVICES, NODE_DISK_SERVICES, check_node_disk
from silverlining.errors import UsageError
from silverlining.services import SERVICE_NAMES


def config(tmp_path: Path, *services: str) -> AppConfig:
    lines = ["[production]", "app_name = shop", "runner = main.py",
             *(f"service.{name} =" for name in services)]
    (tmp_path / "app.ini").write_text("\n".join(lines) + "\n")
    (tmp_path / "main.py").write_text("")
    return AppConfig.load(tmp_path)


def test_every_service_is_node_disk_or_node_data():
    assert sorted(NODE_DISK_SERVICES + NODE_DATA_SERVICES) == sorted(SERVICE_NAMES)


@pytest.mark.parametrize("services, balanced, refused", [
    (("files",), False, "service.files in "),
    (("writable_root", "postgresql"), False, "service.writable_root in "),
    (("writable_root", "postgresql"), True, "service.writable_root, service.postgresql in "),
    (("files", "writable_root", "redis"), True,
     "service.files, service.writable_root, service.redis in "),
    (("mysql",), True, "service.mysql in "),
    (("postgis",), True, "service.postgis in "),
])
def test_several_nodes_refuse_node_local_data_in_one_line(tmp_path, services, balanced, refused):
    with pytest.raises(UsageError) as err:
        check_node_disk(config(tmp_path, *services), ["web1", "web2"], balanced=balanced)
    message = err.value.message
    assert "\n" not in message
    assert message.startswith(refused)
    assert "several nodes (web1, web2): each node would keep its own" in message
    assert "--services-node" in message and "object storage" in message \
        and "one node" in message


def test_plain_several_nodes_take_databases_with_a_warning(tmp_path):
    warning = check_node_disk(config(tmp_path, "postgresql", "redis"), ["web1", "web2"])
    assert warning == ("service.postgresql, service.redis: each of web1, web2 gets a "
                       "database of its own (nothing is shared between them)")


def test_several_nodes_take_an_app_without_node_data(tmp_path):
    assert check_node_disk(config(tmp_path), ["web1", "web2", "web3"], balanced=True) is None


def test_one_node_takes_node_disk_services(tmp_path):
    assert check_node_disk(config(tmp_path, "files", "postgresql"), ["web1"],
                           balanced=True) is None


def test_a_services_node_takes_the_databases_of_several_members(tmp_path):
    assert check_node_disk(config(tmp_path, "postgresql"), ["web1", "web2"], balanced=True,
                           services_node="db1") is None
    assert check_node_disk(config(tmp_path, "postgis"), ["web1", "web2"],
                           services_node="db1") is None
    assert check_node_disk(config(tmp_path, "mysql"), ["web1", "web2"], balanced=True,
                           services_node="db1") is None
    with pytest.raises(UsageError) as err:      # files stay each node's own
        check_node_disk(config(tmp_path, "postgresql", "files"), ["web1", "web2"],
                        balanced=True, services_node="db1")
    assert err.value.message.startswith("service.files in ")
