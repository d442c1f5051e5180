"""/etc/hosts lines: ours are replaced or removed, never duplicated; others never touched."""

from __future__ import annotations

import pytest

from silverlining import etchosts
from silverlining.errors import SilverError

HEADER = "127.0.0.1 localhost\n# a comment\n10.0.0.9 web1.example.com web1\n"


@pytest.fixture
def hosts(tmp_path, monkeypatch):
    path = tmp_path / "hosts"
    path.write_text(HEADER)
    monkeypatch.setenv("SILVER_ETC_HOSTS", str(path))
    return path


def test_add_appends_a_marked_line(hosts):
    assert etchosts.add("n1", "10.213.1.2") == "added"
    assert hosts.read_text() == HEADER + "10.213.1.2 n1 # silverlining\n"
    assert etchosts.lookup("n1") == "10.213.1.2"


def test_add_again_is_unchanged_and_new_address_replaces(hosts):
    etchosts.add("n1", "10.213.1.2")
    assert etchosts.add("n1", "10.213.1.2") == "unchanged"
    assert etchosts.add("n1", "10.213.7.2") == "added"
    text = hosts.read_text()
    assert text.count(" n1 ") == 1 and "10.213.7.2 n1 # silverlining" in text
    assert text.startswith(HEADER)


def test_a_line_we_did_not_write_is_left_alone(hosts):
    assert etchosts.add("web1", "10.213.3.2") == "foreign"
    assert hosts.read_text() == HEADER
    assert etchosts.remove("web1") == "absent"
    assert hosts.read_text() == HEADER


def test_remove_only_ours(hosts):
    etchosts.add("n1", "10.213.1.2")
    etchosts.add("n2", "10.213.2.2")
    assert etchosts.remove("n1") == "removed"
    assert hosts.read_text() == HEADER + "10.213.2.2 n2 # silverlining\n"
    assert etchosts.remove("n1") == "absent"


def test_missing_file(tmp_path, monkeypatch):
    path = tmp_path / "none" / "hosts"
    monkeypatch.setenv("SILVER_ETC_HOSTS", str(path))
    assert etchosts.remove("n1") == "absent"
    assert etchosts.lookup("n1") is None
    with pytest.raises(SilverError, match=r"add this line yourself: 10.213.1.2 n1"):
        etchosts.add("n1", "10.213.1.2")

