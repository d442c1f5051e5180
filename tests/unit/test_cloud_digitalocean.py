"""create-node / destroy-node on DigitalOcean with libcloud's real drivers (compute + DNS).

The answers follow DigitalOcean's API v2 reference (docs.digitalocean.com/reference/api):
droplets, regions, sizes, images, account keys, domains and domain records.
"""

from __future__ import annotations

import json

from silverlining.console import Console
from silverlining.providers.clouds import key_name
from silverlining.providers.dns import offer_location
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import (PUBKEY, api, assert_one_line_error, key_path,  # noqa: F401
                                  silver, write_config)

TOKEN = "dop_v1_secret_token_123"


def do_api(api, keys=None):
    """A DigitalOcean account: one region, two sizes, Debian and Ubuntu images."""
    state = {"droplets": [], "keys": list(keys or []), "records": [], "next": 1000}

    def page(name, items):
        return 200, {name: items, "links": {}, "meta": {"total": len(items)}}

    api.route("GET", "/v2/regions", lambda r, m: page("regions", [
        {"slug": "fra1", "name": "Frankfurt 1", "available": True, "features": ["ipv6"],
         "sizes": ["s-1vcpu-1gb"]},
        {"slug": "nyc3", "name": "New York 3", "available": True, "features": [],
         "sizes": ["s-1vcpu-1gb"]}]))
    api.route("GET", "/v2/sizes", lambda r, m: page("sizes", [
        {"slug": slug, "memory": mem, "vcpus": 1, "disk": 25, "transfer": 1.0,
         "price_monthly": price, "price_hourly": price / 730, "regions": ["fra1"],
         "available": True} for slug, mem, price in
        (("s-1vcpu-1gb", 1024, 6.0), ("s-1vcpu-2gb", 2048, 12.0))]))
    api.route("GET", "/v2/images", lambda r, m: page("images", [
        {"id": 1601, "name": "12 x64", "distribution": "Debian", "slug": "debian-12-x64",
         "public": True, "regions": ["fra1"], "min_disk_size": 15,
         "created_at": "2024-06-01T00:00:00Z"},
        {"id": 1603, "name": "13 x64", "distribution": "Debian", "slug": "debian-13-x64",
         "public": True, "regions": ["fra1"], "min_disk_size": 15,
         "created_at": "2025-08-12T00:00:00Z"},
        {"id": 1602, "name": "24.04 (LTS) x64", "distribution": "Ubuntu",
         "slug": "ubuntu-24-04-x64", "public": True, "regions": ["fra1"],
         "min_disk_size": 15, "created_at": "2024-06-01T00:00:00Z"}]))

    def droplet(data, networks):
        return {"id": data["id"], "name": data["name"], "status": data["status"],
                "memory": 1024, "vcpus": 1, "disk": 25, "locked": False,
                "created_at": "2026-11-23T06:00:00Z", "size_slug": data["size"],
                "region": {"slug": data["region"], "name": "Frankfurt 1"},
                "image": None, "size": None, "features": ["ipv6"], "tags": [],
                "networks": networks}

    def addresses(data):
        return {"v4": [{"ip_address": "10.19.0.5", "type": "private"},
                       {"ip_address": data["ip"], "type": "public"}],
                "v6": [{"ip_address": data["ip6"], "type": "public"}]}

    api.route("GET", "/v2/droplets", lambda r, m: page("droplets", [
        droplet(d, addresses(d)) for d in state["droplets"]]))

    def create(req, m):
        body = req.json
        state["next"] += 1
        n = state["next"]
        data = {"id": n, "name": body["name"], "status": "active", "size": body["size"],
                "region": body["region"], "ip": f"203.0.113.{n % 100}",
                "ip6": f"2001:db8::{n % 100}", "body": body}
        state["droplets"].append(data)
        return 202, {"droplet": droplet({**data, "status": "new"}, {"v4": [], "v6": []}),
                     "links": {"actions": []}}

    api.route("POST", "/v2/droplets", create)

    def destroy(req, m):
        state["droplets"] = [d for d in state["droplets"] if str(d["id"]) != m[1]]
        return 204, ""

    api.route("DELETE", r"/v2/droplets/(\d+)", destroy)
    api.route("GET", "/v2/account/keys", lambda r, m: page("ssh_keys", state["keys"]))

    def add_key(req, m):
        state["next"] += 1
        key = {"id": state["next"], "name": req.json["name"], "fingerprint": "aa:bb",
               "public_key": req.json["public_key"]}
        state["keys"].append(key)
        return 201, {"ssh_key": key}

    api.route("POST", "/v2/account/keys", add_key)

    def delete_key(req, m):
        state["keys"] = [k for k in state["keys"] if str(k["id"]) != m[1]]
        return 204, ""

    api.route("DELETE", r"/v2/account/keys/(\d+)", delete_key)
    api.route("GET", "/v2/domains", lambda r, m: page("domains", [
        {"name": "example.com", "ttl": 1800, "zone_file": ""}]))
    api.route("GET", "/v2/domains/example.com/records", lambda r, m: page(
        "domain_records", state["records"]))

    def add_record(req, m):
        state["next"] += 1
        record = {"id": state["next"], "port": None, "priority": None, "weight": None,
                  "ttl": 1800, "flags": None, "tag": None, **req.json}
        state["records"].append(record)
        return 201, {"domain_record": record}

    api.route("POST", "/v2/domains/example.com/records", add_record)

    def delete_record(req, m):
        state["records"] = [r for r in state["records"] if str(r["id"]) != m[1]]
        return 204, ""

    api.route("DELETE", r"/v2/domains/example.com/records/(\d+)", delete_record)
    return state


def config(dns: bool = True) -> None:
    write_config(f"[provider:do]\ndriver = digitalocean\nkey = {TOKEN}\nlocation = id fra1\n"
                 f"ssh_public_key = {key_path()}\n"
                 + ("dns = zone\n[dns:zone]\ndriver = digitalocean\n"
                    f"key = {TOKEN}\nzone = example.com\n" if dns else ""))


def test_create_registers_key_and_dns_and_destroy_removes_them(api):
    state = do_api(api, keys=[{"id": 7, "name": "someone-else", "fingerprint": "11:22",
                               "public_key": "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1 x"}])
    config()
    result = silver("create-node", "web1")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 203.0.113.2\n"
    assert TOKEN not in result.stdout + result.stderr

    key_post, = api.sent("POST", "/v2/account/keys")
    assert key_post.json == {"name": key_name(PUBKEY), "public_key": PUBKEY}
    assert key_post.headers["Authorization"] == f"Bearer {TOKEN}"
    create, = api.sent("POST", "/v2/droplets")
    assert create.json == {"name": "web1", "size": "s-1vcpu-1gb", "image": "debian-13-x64",
                           "region": "fra1", "user_data": None, "ipv6": True,
                           "ssh_keys": [1001]}
    records = [r.json for r in api.sent("POST", "/v2/domains/example.com/records")]
    assert records == [{"type": "A", "name": "web1", "data": "203.0.113.2"},
                       {"type": "AAAA", "name": "web1", "data": "2001:db8::2"}]
    entry = NodeRegistry().get("web1")
    assert entry["address"] == "203.0.113.2" and entry["address6"] == "2001:db8::2"
    assert entry["cloud"] == {"key_id": "1001", "key_created": True}
    assert [(r["type"], r["name"]) for r in entry["dns"]] == [("A", "web1.example.com"),
                                                              ("AAAA", "web1.example.com")]
    assert "registered SSH key" in result.stderr

    result = silver("-y", "destroy-node", "web1")
    assert result.status == 0, result.stderr
    assert state["droplets"] == [] and state["records"] == []
    assert [k["id"] for k in state["keys"]] == [7]          # only ours went
    assert api.sent("DELETE", r"/v2/account/keys/7") == []
    assert NodeRegistry().all() == {}


def test_existing_key_is_reused_and_kept(api):
    """The same key material under the user's own name: used by id, never deleted."""
    state = do_api(api, keys=[{"id": 42, "name": "my laptop", "fingerprint": "x",
                               "public_key": PUBKEY.rsplit(" ", 1)[0] + " other-comment"}])
    config(dns=False)
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert api.sent("POST", "/v2/account/keys") == []
    assert api.sent("POST", "/v2/droplets")[0].json["ssh_keys"] == [42]
    assert NodeRegistry().get("web1")["cloud"] == {"key_id": "42"}
    assert silver("-y", "destroy-node", "web1").status == 0
    assert [k["id"] for k in state["keys"]] == [42]


def test_debian_12_is_one_image_matcher_away_and_sent_by_slug(api):
    do_api(api)
    config(dns=False)
    for name, matcher in (("web1", "id debian-12-x64"), ("web2", "12 x64")):
        result = silver("create-node", name, "--image", matcher, "--no-etc-hosts")
        assert result.status == 0, result.stderr
    assert [r.json["image"] for r in api.sent("POST", "/v2/droplets")] == ["debian-12-x64"] * 2


def test_a_key_two_nodes_use_goes_with_the_last(api):
    state = do_api(api)
    config(dns=False)
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    assert silver("create-node", "web2", "--no-etc-hosts").status == 0
    assert len(api.sent("POST", "/v2/account/keys")) == 1     # web2 found web1's key
    assert silver("-y", "destroy-node", "web1").status == 0
    assert len(state["keys"]) == 1
    assert silver("-y", "destroy-node", "web2").status == 0
    assert state["keys"] == []


def test_api_error_is_one_line_and_undoes_the_key(api):
    state = do_api(api)
    api.route("POST", "/v2/droplets", (422, {"id": "unprocessable_entity",
                                            "message": "Droplet limit exceeded"}))
    config(dns=False)
    result = silver("create-node", "web1")
    assert_one_line_error(result, 1, "DigitalOcean: creating node web1 failed: Droplet "
                                     "limit exceeded (code: 422)")
    assert state["keys"] == []                              # registered, then removed
    assert NodeRegistry().all() == {}


def test_bad_token_and_missing_location(api):
    do_api(api)
    api.route("GET", "/v2/droplets", (401, {"id": "unauthorized",
                                           "message": "Unable to authenticate you"}))
    config(dns=False)
    assert_one_line_error(silver("list-nodes"), 1, "DigitalOcean: credentials refused while "
                                                   "listing nodes: Unable to authenticate you")
    do_api(api)
    write_config(f"[provider:do]\ndriver = digitalocean\nkey = {TOKEN}\n"
                 f"ssh_public_key = {key_path()}\n")
    result = silver("create-node", "web1")
    assert_one_line_error(result, 2, "choose a location with --location or 'location =' "
                                     "in the provider section; available: Frankfurt 1 (id "
                                     "fra1), New York 3 (id nyc3)")
    assert api.sent("POST", "/v2/droplets") == []


def test_name_outside_the_dns_zone_is_refused_before_creating(api):
    do_api(api)
    config()
    result = silver("create-node", "web1.other.org")
    assert_one_line_error(result, 2, "'web1.other.org' is not in the DNS zone 'example.com'")
    assert api.sent("POST", "/v2/droplets") == [] and api.sent("POST", "/v2/account/keys") == []


def test_record_outside_our_value_is_left_alone(api):
    """A record someone re-pointed after create-node is not ours to delete."""
    state = do_api(api)
    config()
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    state["records"][0]["data"] = "198.51.100.9"
    assert silver("-y", "destroy-node", "web1").status == 0
    assert [r["data"] for r in state["records"]] == ["198.51.100.9"]
    assert json.dumps(NodeRegistry().all()) == "{}"


def test_update_points_an_app_host_at_the_node(api, capsys):
    """``silver update --dns``: the location's exact host gets A/AAAA records for the node;
    without a terminal or -y it only says how; destroy-node removes them with the node."""
    state = do_api(api)
    config()
    assert silver("create-node", "web1").status == 0
    console = Console(provider=None, yes=False, verbose=False, quiet=False)
    assert offer_location(console, "shop.example.com", "web1", None) is True
    assert "pass --dns (or -y)" in capsys.readouterr().err
    assert len(state["records"]) == 2
    assert offer_location(console, "shop.example.com", "web1", True) is True
    shop = [(r["type"], r["data"]) for r in state["records"] if r["name"] == "shop"]
    assert shop == [("A", "203.0.113.2"), ("AAAA", "2001:db8::2")]
    assert len(NodeRegistry().get("web1")["dns"]) == 4
    assert offer_location(console, "shop.other.org", "web1", True) is True
    assert "not in the DNS zone example.com" in capsys.readouterr().err
    assert silver("-y", "destroy-node", "web1").status == 0
    assert state["records"] == []


def test_update_without_dns_falls_back_to_etc_hosts(api):
    do_api(api)
    config(dns=False)
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    console = Console(provider=None, yes=True, verbose=False, quiet=False)
    assert offer_location(console, "shop.example.com", "web1", True) is False
    assert api.sent("POST", "/v2/domains/example.com/records") == []


def test_rate_limit_and_missing_image_are_one_line(api):
    do_api(api)
    api.route("GET", "/v2/droplets", (429, {"id": "too_many_requests",
                                           "message": "API Rate limit exceeded."},
                                      {"Retry-After": "0"}))
    config(dns=False)
    result = silver("create-node", "web1")
    assert_one_line_error(result, 1, "DigitalOcean: listing nodes failed: ")
    assert "Rate limit" in result.stderr.splitlines()[-1]
    do_api(api)
    api.route("GET", "/v2/images", (200, {"images": [], "links": {}, "meta": {"total": 0}}))
    assert_one_line_error(silver("create-node", "web1"), 2,
                          "DigitalOcean lists no Debian 13 image; choose one with --image")


def test_missing_dns_zone_is_refused_before_creating(api):
    do_api(api)
    write_config(f"[provider:do]\ndriver = digitalocean\nkey = {TOKEN}\nlocation = id fra1\n"
                 f"ssh_public_key = {key_path()}\ndns = zone\n[dns:zone]\n"
                 f"driver = digitalocean\nkey = {TOKEN}\nzone = example.org\n")
    assert_one_line_error(silver("create-node", "web1"), 2,
                          "DigitalOcean: no DNS zone 'example.org' (zones: example.com); fix "
                          "'zone =' in [dns:zone]")
    assert api.sent("POST", "/v2/droplets") == []


def test_existing_record_of_the_name_is_changed_not_duplicated(api):
    state = do_api(api)
    state["records"].append({"id": 77, "type": "A", "name": "web1", "data": "198.51.100.1",
                             "port": None, "priority": None, "weight": None, "ttl": 1800})

    def update(req, m):
        record = next(r for r in state["records"] if str(r["id"]) == m[1])
        record.update(req.json)
        return 200, {"domain_record": record}

    api.route("PUT", r"/v2/domains/example.com/records/(\d+)", update)
    config()
    assert silver("create-node", "web1").status == 0
    put, = api.sent("PUT", "/v2/domains/example.com/records/77")
    assert put.json == {"type": "A", "name": "web1", "data": "203.0.113.2"}
    assert sorted((r["type"], r["data"]) for r in state["records"]) == [
        ("A", "203.0.113.2"), ("AAAA", "2001:db8::2")]
