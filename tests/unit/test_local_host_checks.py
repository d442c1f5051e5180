"""The local provider refuses, in one line, a machine that cannot run local nodes."""

from __future__ import annotations

import pytest

from silverlining.errors import SilverError
from silverlining.providers import local_host


def test_not_linux(monkeypatch):
    monkeypatch.setattr(local_host.sys, "platform", "darwin")
    with pytest.raises(SilverError, match=r"local nodes need Linux \(systemd-nspawn\); this is darwin"):
        local_host.check_host()


def test_not_root(monkeypatch):
    monkeypatch.setattr(local_host.os, "geteuid", lambda: 1000)
    with pytest.raises(SilverError, match="local nodes need root"):
        local_host.check_host()


def test_missing_tools_name_their_packages(monkeypatch):
    monkeypatch.setattr(local_host.os, "geteuid", lambda: 0)
    gone = {"systemd-nspawn", "mmdebstrap"}
    monkeypatch.setattr(local_host, "find_tool",
                        lambda name: None if name in gone else f"/usr/bin/{name}")
    with pytest.raises(SilverError) as info:
        local_host.check_host()
    message = info.value.message
    assert "systemd-nspawn" in message and "mmdebstrap" in message
    assert message.endswith("apt-get install mmdebstrap systemd-container")


def test_all_present_passes(monkeypatch):
    monkeypatch.setattr(local_host.os, "geteuid", lambda: 0)
    monkeypatch.setattr(local_host, "find_tool", lambda name: f"/usr/bin/{name}")
    local_host.check_host()
