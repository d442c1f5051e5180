"""create-node / destroy-node on Linode (API v4) and Vultr (API v2), libcloud's real drivers.

The answers follow each provider's public API reference: Linode's
/v4/linode/instances, /v4/regions, /v4/linode/types, /v4/images; Vultr's
/v2/instances, /v2/regions, /v2/plans, /v2/os, /v2/ssh-keys.
"""

from __future__ import annotations

from silverlining.providers.clouds import key_name
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import (PUBKEY, api, assert_one_line_error, key_path,  # noqa: F401
                                  silver, write_config)


# --- Linode -------------------------------------------------------------------------------

def linode_api(api):
    state = {"instances": []}

    def page(items):
        return 200, {"data": items, "page": 1, "pages": 1, "results": len(items)}

    api.route("GET", "/v4/regions", lambda r, m: page([
        {"id": "eu-central", "country": "de", "status": "ok", "capabilities": ["Linodes"],
         "resolvers": {}}]))
    api.route("GET", "/v4/linode/types", lambda r, m: page([
        {"id": "g6-nanode-1", "label": "Nanode 1GB", "class": "nanode", "memory": 1024,
         "disk": 25600, "network_out": 1000, "vcpus": 1, "gpus": 0, "transfer": 1000,
         "price": {"hourly": 0.0075, "monthly": 5.0}, "addons": {}, "successor": None}]))
    api.route("GET", "/v4/images", lambda r, m: page([
        {"id": image, "label": label, "type": "manual", "description": "",
         "created": "2024-06-10T00:00:00", "created_by": "linode", "is_public": True,
         "size": 1500, "eol": None, "vendor": vendor} for image, label, vendor in
        (("linode/debian12", "Debian 12", "Debian"), ("linode/debian13", "Debian 13", "Debian"),
         ("linode/ubuntu24.04", "Ubuntu 24.04 LTS", "Ubuntu"))]))

    def instance(data):
        return {"id": data["id"], "label": data["label"], "status": "running",
                "ipv4": ["192.0.2.44", "192.168.130.7"], "ipv6": "2600:3c00::f03c:1/128",
                "region": data["region"], "type": data["type"], "image": data["image"],
                "created": "2026-11-23T06:00:00", "tags": [], "hypervisor": "kvm",
                "specs": {}, "alerts": {}, "backups": {}, "watchdog_enabled": True}

    api.route("GET", "/v4/linode/instances", lambda r, m: page(
        [instance(d) for d in state["instances"]]))

    def create(req, m):
        data = {**req.json, "id": 4401}
        state["instances"].append(data)
        return 200, instance(data)

    api.route("POST", "/v4/linode/instances", create)

    def delete(req, m):
        state["instances"] = [d for d in state["instances"] if str(d["id"]) != m[1]]
        return 200, {}

    api.route("DELETE", r"/v4/linode/instances/(\d+)", delete)
    return state


def test_linode_root_key_and_generated_password(api):
    state = linode_api(api)
    write_config("[provider:li]\ndriver = linode\nkey = linode-token-xyz\n"
                 f"location = id eu-central\nssh_public_key = {key_path()}\n")
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 192.0.2.44\n"
    body = api.sent("POST", "/v4/linode/instances")[0].json
    password = body.pop("root_pass")
    assert len(password) >= 32 and password not in result.stdout + result.stderr
    assert password not in NodeRegistry().path.read_text()
    assert body == {"region": "eu-central", "type": "g6-nanode-1", "image": "linode/debian13",
                    "label": "web1", "authorized_keys": [PUBKEY], "private_ip": False,
                    "backups_enabled": False}
    assert NodeRegistry().get("web1")["address6"] == "2600:3c00::f03c:1"
    assert silver("-y", "destroy-node", "web1").status == 0
    assert state["instances"] == []
    assert api.sent("DELETE", r"/v4/linode/instances/4401")


def test_linode_debian_12_is_one_image_matcher_away(api):
    linode_api(api)
    write_config("[provider:li]\ndriver = linode\nkey = linode-token-xyz\n"
                 f"location = id eu-central\nssh_public_key = {key_path()}\n")
    result = silver("create-node", "web1", "--image", "id linode/debian12", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert api.sent("POST", "/v4/linode/instances")[0].json["image"] == "linode/debian12"


def test_linode_api_error_names_the_field(api):
    linode_api(api)
    api.route("POST", "/v4/linode/instances", (400, {"errors": [
        {"reason": "Region does not support Linodes", "field": "region"}]}))
    write_config("[provider:li]\ndriver = linode\nkey = t\nlocation = id eu-central\n"
                 f"ssh_public_key = {key_path()}\n")
    assert_one_line_error(silver("create-node", "web1"), 1,
                          "Linode: creating node web1 failed: Region does not support "
                          "Linodes-region Status code: 400.")


# --- Vultr --------------------------------------------------------------------------------

def vultr_api(api, keys=()):
    state = {"instances": [], "keys": list(keys)}

    def page(name, items):
        return 200, {name: items, "meta": {"total": len(items),
                                           "links": {"next": "", "prev": ""}}}

    api.route("GET", "/v2/regions", lambda r, m: page("regions", [
        {"id": "fra", "city": "Frankfurt", "country": "DE", "continent": "Europe",
         "options": ["ddos_protection"]}]))
    api.route("GET", "/v2/plans", lambda r, m: page("plans", [
        {"id": "vc2-1c-1gb", "vcpu_count": 1, "ram": 1024, "disk": 25, "disk_count": 1,
         "bandwidth": 1024, "monthly_cost": 5, "type": "vc2", "locations": ["fra"]}]))
    api.route("GET", "/v2/plans-metal", lambda r, m: page("plans_metal", []))
    api.route("GET", "/v2/os", lambda r, m: page("os", [
        {"id": 2136, "name": "Debian 12 x64 (bookworm)", "arch": "x64", "family": "debian"},
        {"id": 2625, "name": "Debian 13 x64 (trixie)", "arch": "x64", "family": "debian"},
        {"id": 2284, "name": "Ubuntu 24.04 LTS x64", "arch": "x64", "family": "ubuntu"}]))
    api.route("GET", "/v2/ssh-keys", lambda r, m: page("ssh_keys", state["keys"]))

    def add_key(req, m):
        key = {"id": "cb676a46-66fd-4dfb-b839-443f2e6c0b60", "name": req.json["name"],
               "ssh_key": req.json["ssh_key"], "date_created": "2026-11-23T06:00:00+00:00"}
        state["keys"].append(key)
        return 201, {"ssh_key": key}

    api.route("POST", "/v2/ssh-keys", add_key)

    def delete_key(req, m):
        state["keys"] = [k for k in state["keys"] if k["id"] != m[1]]
        return 204, ""

    api.route("DELETE", r"/v2/ssh-keys/([\w-]+)", delete_key)

    def instance(data, pending=False):
        return {"id": data["id"], "label": data["label"], "os": "Debian 13 x64",
                "os_id": data["os_id"], "plan": data["plan"], "region": data["region"],
                "main_ip": "0.0.0.0" if pending else "198.51.100.7",
                "v6_main_ip": "" if pending else "2001:19f0:5:1::7",
                "date_created": "2026-11-23T06:00:00+00:00", "ram": 1024, "disk": 25,
                "netmask_v4": "255.255.254.0", "gateway_v4": "198.51.100.1",
                "v6_network": "2001:19f0:5:1::", "v6_network_size": 64, "app_id": 0,
                "image_id": "", "features": ["ipv6"], "tag": "", "tags": [],
                "status": "pending" if pending else "active", "power_status": "running",
                "server_status": "ok", "vcpu_count": 1, "allowed_bandwidth": 1000,
                "firewall_group_id": "", "internal_ip": ""}

    api.route("GET", "/v2/instances", lambda r, m: page(
        "instances", [instance(d) for d in state["instances"]]))
    api.route("GET", "/v2/bare-metals", lambda r, m: page("bare_metals", []))

    def create(req, m):
        data = {**req.json, "id": "2e0ba2a4-1fce-4a49-9d7b-5a2d2fe0c1a7"}
        state["instances"].append(data)
        return 202, {"instance": instance(data, pending=True)}

    api.route("POST", "/v2/instances", create)

    def delete(req, m):
        state["instances"] = [d for d in state["instances"] if d["id"] != m[1]]
        return 204, ""

    api.route("DELETE", r"/v2/instances/([\w-]+)", delete)
    return state


def vultr_config() -> None:
    write_config("[provider:vu]\ndriver = vultr\nkey = vultr-api-key\nlocation = id fra\n"
                 f"ssh_public_key = {key_path()}\n")


def test_vultr_registers_key_waits_past_the_placeholder_address(api):
    state = vultr_api(api)
    vultr_config()
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 198.51.100.7\n"            # not the pending 0.0.0.0
    assert api.sent("POST", "/v2/ssh-keys")[0].json == {"name": key_name(PUBKEY),
                                                        "ssh_key": PUBKEY}
    body = api.sent("POST", "/v2/instances")[0].json
    assert body == {"label": "web1", "region": "fra", "plan": "vc2-1c-1gb",
                    "enable_ipv6": True, "activation_email": False, "os_id": "2625",
                    "sshkey_id": ["cb676a46-66fd-4dfb-b839-443f2e6c0b60"],
                    "hostname": "web1"}
    entry = NodeRegistry().get("web1")
    assert entry["address6"] == "2001:19f0:5:1::7"
    assert silver("-y", "destroy-node", "web1").status == 0
    assert state["instances"] == [] and state["keys"] == []


def test_vultr_debian_12_is_one_image_matcher_away(api):
    vultr_api(api)
    vultr_config()
    result = silver("create-node", "web1", "--image", "Debian 12 x64*", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert api.sent("POST", "/v2/instances")[0].json["os_id"] == "2136"


def test_vultr_reuses_a_key_with_the_same_material(api):
    mine = {"id": "k-1", "name": "laptop", "ssh_key": PUBKEY,
            "date_created": "2025-01-01T00:00:00+00:00"}
    state = vultr_api(api, keys=[mine])
    vultr_config()
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    assert api.sent("POST", "/v2/ssh-keys") == []
    assert api.sent("POST", "/v2/instances")[0].json["sshkey_id"] == ["k-1"]
    assert silver("-y", "destroy-node", "web1").status == 0
    assert state["keys"] == [mine]


def test_vultr_error_is_one_line(api):
    vultr_api(api)
    api.route("POST", "/v2/instances", (400, {"error": "Invalid plan chosen.", "status": 400}))
    vultr_config()
    assert_one_line_error(silver("create-node", "web1"), 1,
                          "Vultr: creating node web1 failed: (400) Invalid plan chosen.")


def test_listings_mark_the_cloud_defaults(api):
    vultr_api(api)
    vultr_config()
    images = silver("list-images")
    assert images.status == 0, images.stderr
    assert [line.split()[:2] for line in images.stdout.splitlines() if line.startswith("*")] \
        == [["*", "2625"]]
    sizes = silver("list-sizes").stdout.splitlines()
    assert [line.split()[:2] for line in sizes if line.startswith("*")] == [["*", "vc2-1c-1gb"]]
