"""~/.silverlining.conf: providers, their driver and create.* arguments, and the
[devel] sections; errors name the file, line and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from silverlining.errors import ConfigError
from silverlining.userconfig import UserConfig

FULL = """
[provider:default]
driver = digitalocean
key = abc123
region = ams3
image = name debian-12*
size = ram 1024
location = id ams3
ssh_public_key = {key}
create.ex_monitoring = true

[provider:local]
driver = local

[devel]
postgresql.dbname = test_APP_NAME
redis.db = 1

[devel:shop]
redis.db = 2
"""


def load(tmp_path: Path, text: str) -> UserConfig:
    path = tmp_path / "silverlining.conf"
    path.write_text(text)
    return UserConfig.load(path)


def test_full_config(tmp_path):
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAA test\n")
    config = load(tmp_path, FULL.format(key=key))
    do = config.provider("default")
    assert do.driver == "digitalocean"
    assert do.driver_args == {"key": "abc123", "region": "ams3"}
    assert do.create_args == {"ex_monitoring": "true"}
    assert (do.image, do.size, do.location) == ("name debian-12*", "ram 1024", "id ams3")
    assert do.public_key_path() == key
    assert config.provider(None) is do
    assert config.provider("local").driver == "local"
    assert config.devel_settings("shop") == {"postgresql.dbname": "test_shop", "redis.db": "2"}
    assert config.devel_settings("blog") == {"postgresql.dbname": "test_blog", "redis.db": "1"}


def test_missing_file_is_empty_and_uses_silver_config(tmp_path):
    assert os.environ["SILVER_CONFIG"] != str(Path.home() / ".silverlining.conf")
    config = UserConfig.load()
    assert config.providers == {} and config.devel == {}
    with pytest.raises(ConfigError, match=r"no \[provider:NAME\] section"):
        config.provider(None)


def test_provider_selection(tmp_path):
    config = load(tmp_path, "[provider:a]\ndriver = local\n[provider:b]\ndriver = local\n")
    with pytest.raises(ConfigError, match="several providers and none named 'default'"):
        config.provider(None)
    with pytest.raises(ConfigError, match=r"no section \[provider:c\].*a, b"):
        config.provider("c")
    assert load(tmp_path, "[provider:only]\ndriver = local\n").provider(None).name == "only"


@pytest.mark.parametrize("text,line,fragment", [
    ("[provider:x]\nimage = y\n", 1, "missing key 'driver'"),
    ("[provider:x]\ndriver = not a driver\n", 2, "is not a provider name"),
    ("[provider:x]\ndriver = local\nBad-Key = 1\n", 3, "not a valid argument name"),
    ("[devels]\nx = 1\n", 1, "unknown section [devels]"),
    ("[provider]\ndriver = local\n", 1, "unknown section [provider]"),
    ("driver = local\n", 1, "before any [section]"),
])
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.message.startswith(f"{tmp_path / 'silverlining.conf'}:{line}: ")
    assert fragment in info.value.message


def test_missing_public_key_file(tmp_path):
    config = load(tmp_path, f"[provider:x]\ndriver = local\nssh_public_key = {tmp_path}/no.pub\n")
    with pytest.raises(ConfigError, match="not found"):
        config.provider("x").public_key_path()


def test_dns_section_named_by_a_provider(tmp_path):
    cfg = load(tmp_path, "[provider:do]\ndriver = digitalocean\nkey = t\ndns = zone\n"
                         "[dns:zone]\ndriver = route53\nkey = AKIA\nsecret = s\n"
                         "zone = Example.COM.\nttl = 300\n")
    dns = cfg.provider("do").dns
    assert (dns.name, dns.driver, dns.zone, dns.ttl) == ("zone", "route53", "example.com", 300)
    assert dns.driver_args == {"key": "AKIA", "secret": "s"}
    assert cfg.provider("do").driver_args == {"key": "t"}


@pytest.mark.parametrize("text, message", [
    ("[provider:p]\ndriver = dummy\ndns = zonee\n[dns:zone]\ndriver = route53\n"
     "zone = example.com\n", "conf:3: [provider:p] dns: no section [dns:zonee] "
                            "(did you mean 'zone'?)"),
    ("[dns:zone]\ndriver = route53\n", "conf:1: missing key 'zone' (the domain records go in"),
    ("[dns:zone]\nzone = example.com\n", "conf:1: missing key 'driver' (a libcloud DNS"),
    ("[dns:zone]\ndriver = route53\nzone = example.com\nttl = soon\n",
     "ttl must be a number of seconds, not 'soon'"),
])
def test_dns_section_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert message in info.value.message
