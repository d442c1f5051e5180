"""Matchers pick exactly one image/size/location or say why not (pure logic)."""

from __future__ import annotations

import pytest
from libcloud.compute.drivers.dummy import DummyNodeDriver

from silverlining.errors import UsageError
from silverlining.providers import matchers
from silverlining.providers.matchers import Matcher, find_default, parse, select

DRIVER = DummyNodeDriver(0)
IMAGES = DRIVER.list_images()        # Ubuntu 9.10 (1), Ubuntu 9.04 (2), Slackware 4 (3)
SIZES = DRIVER.list_sizes()          # Small 128, Medium 512, Big 4096, XXL Big 8192
LOCATIONS = DRIVER.list_locations()


@pytest.mark.parametrize("text, expected", [
    ("id 3", Matcher("id", "3", False, "id 3")),
    ("name Ubuntu*", Matcher("name", "Ubuntu*", False, "name Ubuntu*")),
    ("Ubuntu 9.10", Matcher("name", "Ubuntu 9.10", False, "Ubuntu 9.10")),
    ("ram 512", Matcher("ram", "512", False, "ram 512")),
    ("ram 4G", Matcher("ram", "4096", False, "ram 4G")),
    ("ram 2gb first", Matcher("ram", "2048", True, "ram 2gb first")),
    ("name Ubuntu* first", Matcher("name", "Ubuntu*", True, "name Ubuntu* first")),
    ("first", Matcher("any", "", True, "first")),
    ("ID 2", Matcher("id", "2", False, "ID 2")),
])
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("id", "'id' needs a value"),
    ("ram lots", "'ram' takes megabytes"),
    ("ram", "'ram' needs a value"),
])
def test_parse_errors(text, message):
    with pytest.raises(UsageError, match=message):
        parse(text, "size")


def test_select_by_id_name_ram():
    assert select(IMAGES, "id 3", "image").name == "Slackware 4"
    assert select(IMAGES, "Slackware*", "image").id == "3"
    assert select(IMAGES, "ubuntu 9.04", "image").id == "2"       # names match case-insensitively
    assert select(SIZES, "ram 512", "size").name == "Medium"
    assert select(SIZES, "ram 8G", "size").name == "XXL Big"
    assert select(LOCATIONS, "name London*", "location").country == "GB"


def test_ambiguous_lists_candidates_and_first_takes_one():
    with pytest.raises(UsageError) as info:
        select(IMAGES, "name Ubuntu*", "image")
    msg = info.value.message
    assert "2 images match 'name Ubuntu*'" in msg
    assert "Ubuntu 9.10 (id 1)" in msg and "Ubuntu 9.04 (id 2)" in msg
    assert "Slackware" not in msg and "'first'" in msg
    assert select(IMAGES, "name Ubuntu* first", "image").id == "1"
    assert select(SIZES, "*Big first", "size").name == "Big"


def test_no_match_lists_available_and_source():
    with pytest.raises(UsageError) as info:
        select(SIZES, "ram 1024", "size", "[provider:x] in conf")
    msg = info.value.message
    assert "no size matches 'ram 1024' (from [provider:x] in conf)" in msg
    assert "Small (id 1, 128 MB)" in msg and "XXL Big (id 4, 8192 MB)" in msg


def test_long_listing_is_cut(monkeypatch):
    monkeypatch.setattr(matchers, "_LISTED", 2)
    with pytest.raises(UsageError, match=r"and 2 more"):
        select(SIZES, "nothing", "size")


def test_no_matcher_needs_a_single_choice():
    assert select(IMAGES[:1], None, "image").id == "1"
    with pytest.raises(UsageError, match="choose a size with --size or 'size ='"):
        select(SIZES, None, "size")
    with pytest.raises(UsageError, match="offers no images"):
        select([], None, "image")


def test_ram_matcher_ignores_items_without_ram():
    with pytest.raises(UsageError, match="no image matches"):
        select(IMAGES, "ram 128", "image")


def test_find_default_marks_only_an_unambiguous_match():
    assert find_default(SIZES, "ram 512").name == "Medium"
    assert find_default(IMAGES, "name Ubuntu*") is None
    assert find_default(IMAGES, "bad matcher id") is None
    assert find_default(IMAGES, None) is None
    assert find_default(IMAGES[:1], None) is IMAGES[0]
