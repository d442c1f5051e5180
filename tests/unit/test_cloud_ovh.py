"""create-node / destroy-node on OVH Public Cloud with libcloud's real driver.

The answers follow OVHcloud's API v1 reference (api.ovh.com/console):
/auth/time, /cloud/project/{serviceName}/region, image, flavor and instance.
"""

from __future__ import annotations

from silverlining.providers.clouds import cloud_config
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import (PUBKEY, api, assert_one_line_error, key_path,  # noqa: F401
                                  silver, write_config)

PROJECT = "/1.0/cloud/project/5a6980507c0a40dca362eb9b22d79044"
SECRET = "ovh-application-secret-9f8e"


def ovh_api(api):
    state = {"instances": []}
    api.route("GET", "/1.0/auth/time", (200, "1795413600"))
    api.route("GET", PROJECT + "/region", (200, ["GRA11", "DE1"]))

    def images(req, m):
        region = req.query["region"]
        return 200, [{"id": f"img-{region}-{n}", "name": name, "region": region,
                      "visibility": "public", "type": "linux", "status": "active"}
                     for n, name in ((1, "Debian 12"), (2, "Ubuntu 24.04"),
                                     (3, "Debian 12 - Docker"), (4, "Debian 13"),
                                     (5, "Debian 13 - Docker"))]

    def flavors(req, m):
        region = req.query["region"]
        return 200, [{"id": f"flv-{region}-d2-2", "name": "d2-2", "vcpus": 1, "ram": 2000,
                      "disk": 25, "outboundBandwidth": 100, "type": "ovh.ssd.eg",
                      "region": region}]

    api.route("GET", PROJECT + "/image", images)
    api.route("GET", PROJECT + "/flavor", flavors)

    def instance(data, status):
        ips = [] if status == "BUILD" else [
            {"ip": "57.128.0.15", "type": "public", "version": 4},
            {"ip": "2001:41d0:304:200::3a", "type": "public", "version": 6}]
        return {"id": data["id"], "name": data["name"], "status": status,
                "region": data["region"], "flavorId": data["flavorId"],
                "imageId": data["imageId"], "ipAddresses": ips,
                "created": "2026-11-23T06:00:00Z"}

    api.route("GET", PROJECT + "/instance", lambda r, m: (200, [
        instance(d, "ACTIVE") for d in state["instances"]]))

    def create(req, m):
        data = {**req.json, "id": "0b2d9a8e-2f6c-4a9e-8d7b-8a1f0c9e3d21"}
        state["instances"].append(data)
        return 200, instance(data, "BUILD")

    api.route("POST", PROJECT + "/instance", create)

    def delete(req, m):
        state["instances"] = [d for d in state["instances"] if d["id"] != m[1]]
        return 200, None

    api.route("DELETE", PROJECT + r"/instance/([\w-]+)", delete)
    return state


def config(location: str = "id GRA11") -> None:
    write_config(f"[provider:ovh]\ndriver = ovh\nkey = app-key-123\nsecret = {SECRET}\n"
                 "ex_project_id = 5a6980507c0a40dca362eb9b22d79044\n"
                 "ex_consumer_key = consumer-key-456\n"
                 f"location = {location}\nssh_public_key = {key_path()}\n")


def test_ovh_user_data_in_the_region_and_signed(api):
    state = ovh_api(api)
    config()
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 57.128.0.15\n"
    assert SECRET not in result.stdout + result.stderr
    body = api.sent("POST", PROJECT + "/instance")[0].json
    assert body == {"name": "web1", "imageId": "img-GRA11-4", "flavorId": "flv-GRA11-d2-2",
                    "region": "GRA11", "userData": cloud_config(PUBKEY)}
    assert [r.query.get("region") for r in api.sent("GET", PROJECT + "/(image|flavor)")] \
        == ["GRA11", "GRA11"]
    signed = api.sent("POST", PROJECT + "/instance")[0].headers
    assert signed["X-Ovh-Consumer"] == "consumer-key-456"
    assert signed["X-Ovh-Signature"].startswith("$1$")
    assert NodeRegistry().get("web1")["address6"] == "2001:41d0:304:200::3a"
    assert silver("-y", "destroy-node", "web1").status == 0
    assert state["instances"] == []


def test_ovh_debian_12_is_one_image_matcher_away(api):
    ovh_api(api)
    config()
    assert silver("create-node", "web1", "--image", "Debian 12", "--no-etc-hosts").status == 0
    assert api.sent("POST", PROJECT + "/instance")[0].json["imageId"] == "img-GRA11-1"


def test_ovh_region_missing_from_libclouds_table_still_listed(api):
    """DE1 is not in the driver's fixed region table; --location still finds it."""
    ovh_api(api)
    config("id DE1")
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    assert api.sent("POST", PROJECT + "/instance")[0].json["region"] == "DE1"


def test_ovh_error_is_one_line(api):
    ovh_api(api)
    api.route("POST", PROJECT + "/instance", (400, {
        "message": "Quota exceeded: instances (limit 0)"}))
    config()
    assert_one_line_error(silver("create-node", "web1"), 1,
                          "OVH: creating node web1 failed: Quota exceeded: instances (limit 0)")
