"""Key fingerprints, key matching, DNS record names, node addresses and driver set-up
errors (no provider contacted)."""

from __future__ import annotations

import subprocess

import pytest
from libcloud.compute.base import KeyPair, Node, NodeDriver
from libcloud.compute.types import NodeState

from silverlining.errors import ConfigError, UsageError
from silverlining.providers import get_driver, node_address
from silverlining.providers.clouds import fingerprints, key_name, same_key
from silverlining.providers.dns import dns_driver, record_name
from silverlining.userconfig import DnsConfig, ProviderConfig
from tests.unit.cloudtest import PUBKEY


@pytest.mark.parametrize("kind", ["md5", "sha256"])
def test_fingerprints_are_those_ssh_keygen_prints(kind):
    out = subprocess.run(["ssh-keygen", "-l", "-E", kind, "-f", "-"], input=PUBKEY,
                         capture_output=True, text=True, check=True).stdout
    printed = out.split()[1]                     # "MD5:aa:bb:..." or "SHA256:..."
    assert printed.removeprefix("MD5:") in fingerprints(PUBKEY)


def test_same_key_by_material_fingerprint_or_our_name():
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJev0+dwLABvcQmnqGvtWL/oVTx09t39hw5zaoqJCxaa x"
    md5 = next(f for f in fingerprints(PUBKEY) if ":" in f and len(f) == 47)
    def pair(name, public_key=None, fingerprint=None):
        return KeyPair(name, public_key=public_key, fingerprint=fingerprint, driver=None)

    assert same_key(pair("laptop", PUBKEY.replace("me@laptop", "other")), PUBKEY)
    assert same_key(pair("laptop", fingerprint=md5.upper()), PUBKEY)
    assert same_key(pair(key_name(PUBKEY)), PUBKEY)
    assert not same_key(pair("laptop", other, "00:11"), PUBKEY)


def test_a_bad_public_key_is_one_clear_error():
    with pytest.raises(UsageError, match="not an OpenSSH public key line"):
        fingerprints("-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize("host, name", [
    ("web1", "web1"), ("web1.example.com", "web1"), ("a.b.example.com", "a.b"),
    ("example.com", ""), ("WEB1.Example.com.", "web1")])
def test_record_names(host, name):
    assert record_name(host, "example.com") == name


def test_record_name_outside_the_zone():
    with pytest.raises(UsageError, match="'web1.example.org' is not in the DNS zone"):
        record_name("web1.example.org", "example.com")


def test_node_address_skips_placeholders_and_prefers_public_ipv4():
    node = Node("1", "n", NodeState.PENDING, ["0.0.0.0", "2001:db8::7"], ["10.0.0.5"], None)
    assert node_address(node) == "10.0.0.5"
    assert node_address(node, public=True) == "2001:db8::7"
    node = Node("1", "n", NodeState.PENDING, ["0.0.0.0"], ["10.0.0.5"], None)
    assert node_address(node, public=True) is None
    node = Node("1", "n", NodeState.RUNNING, ["2001:db8::7", "192.0.2.1"], [], None)
    assert node_address(node) == "192.0.2.1"


class ValidateFirstDriver(NodeDriver):
    """Like OVH's driver without a consumer key: a bare Exception from the constructor."""

    name = "Validate first"

    def __init__(self, key: str) -> None:
        raise Exception("Your consumer key isn't validated, go to 'https://example/validate'")


def test_a_drivers_bare_exception_at_setup_is_one_config_line(tmp_path):
    cfg = ProviderConfig(name="p", driver=f"{__name__}:ValidateFirstDriver",
                         driver_args={"key": "k"}, path=str(tmp_path / "conf"))
    with pytest.raises(ConfigError) as info:
        get_driver(cfg)
    assert "cannot set up driver" in info.value.message
    assert "go to 'https://example/validate'" in info.value.message


def test_dns_driver_names_and_errors(tmp_path):
    def cfg(driver: str, **args: str) -> DnsConfig:
        return DnsConfig(name="z", driver=driver, zone="example.com", driver_args=args,
                         path=str(tmp_path / "conf"))

    assert type(dns_driver(cfg("Route53", key="AKIA", secret="s"))).__name__ == \
        "Route53DNSDriver"
    with pytest.raises(ConfigError, match="unknown libcloud DNS provider 'route35'"):
        dns_driver(cfg("route35"))
    with pytest.raises(ConfigError, match="driver 'digitalocean' needs 'key'"):
        dns_driver(cfg("digitalocean"))
