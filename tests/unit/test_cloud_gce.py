"""create-node / destroy-node on Google Compute Engine with libcloud's real driver.

Authentication is the real service-account flow: the driver signs a JWT with
the key from a service-account JSON file and trades it for a token. The
answers follow the Compute Engine API v1 reference (zones, regions,
images/family, machineTypes, firewalls, networks, instances, zone operations).
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from silverlining.providers.clouds import FIREWALL_NAME, root_key_script
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import (PUBKEY, api, assert_one_line_error, key_path,  # noqa: F401
                                  silver, write_config)

P = "/compute/v1/projects/web-project"
ZONE = "europe-west3-a"
SELF = "https://www.googleapis.com" + P


def gce_api(api):
    state = {"instances": [], "firewalls": [], "ops": 0}
    api.route("POST", "/o/oauth2/token", (200, {"access_token": "ya29.fake-token",
                                                "token_type": "Bearer", "expires_in": 3600}))
    zone = {"kind": "compute#zone", "id": "2231", "name": ZONE, "status": "UP",
            "region": f"{SELF}/regions/europe-west3", "selfLink": f"{SELF}/zones/{ZONE}",
            "description": ZONE, "creationTimestamp": "1969-12-31T16:00:00.000-08:00"}
    api.route("GET", P + "/zones", (200, {"kind": "compute#zoneList", "items": [zone]}))
    api.route("GET", P + f"/zones/{ZONE}", (200, zone))
    api.route("GET", P + "/regions", (200, {"kind": "compute#regionList", "items": [
        {"kind": "compute#region", "id": "1230", "name": "europe-west3", "status": "UP",
         "zones": [f"{SELF}/zones/{ZONE}"], "quotas": [],
         "selfLink": f"{SELF}/regions/europe-west3", "description": "europe-west3",
         "creationTimestamp": "1969-12-31T16:00:00.000-08:00"}]}))
    image = {"kind": "compute#image", "id": "7913", "name": "debian-13-trixie-v20251014",
             "family": "debian-13", "licenses": [], "status": "READY",
             "selfLink": "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/"
                         "images/debian-13-trixie-v20251014",
             "creationTimestamp": "2025-10-14T00:00:00.000-08:00", "diskSizeGb": "10",
             "sourceType": "RAW", "archiveSizeBytes": "1", "description": "Debian 13"}
    api.route("GET", "/compute/v1/projects/debian-cloud/global/images/family/debian-13",
              (200, image))
    size = {"kind": "compute#machineType", "id": "334002", "name": "e2-small",
            "guestCpus": 2, "memoryMb": 2048, "zone": ZONE, "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168", "isSharedCpu": True,
            "selfLink": f"{SELF}/zones/{ZONE}/machineTypes/e2-small",
            "description": "2 vCPU (1 shared physical core) and 2 GB RAM",
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00"}
    api.route("GET", P + f"/zones/{ZONE}/machineTypes", (200, {"items": [size]}))
    api.route("GET", P + f"/zones/{ZONE}/machineTypes/e2-small", (200, size))
    api.route("GET", P + "/aggregated/machineTypes", (200, {"items": {
        f"zones/{ZONE}": {"machineTypes": [size]}}}))
    network = {"kind": "compute#network", "id": "5520", "name": "default",
               "autoCreateSubnetworks": True, "selfLink": f"{SELF}/global/networks/default",
               "creationTimestamp": "2020-01-01T00:00:00.000-08:00", "subnetworks": []}
    api.route("GET", P + "/global/networks/default", (200, network))
    api.route("GET", P + "/aggregated/disks", (200, {"items": {}}))
    api.route("GET", P + f"/zones/{ZONE}/diskTypes/pd-standard", (200, {
        "kind": "compute#diskType", "id": "30007", "name": "pd-standard",
        "zone": f"{SELF}/zones/{ZONE}", "validDiskSize": "10GB-65536GB",
        "defaultDiskSizeGb": "500", "description": "Standard Persistent Disk",
        "selfLink": f"{SELF}/zones/{ZONE}/diskTypes/pd-standard",
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00"}))

    def operation(target: str, kind: str) -> tuple[int, dict]:
        state["ops"] += 1
        name = f"operation-{state['ops']}"
        where = f"zones/{ZONE}/operations" if kind == "zone" else "global/operations"
        return 200, {"kind": "compute#operation", "id": str(state["ops"]), "name": name,
                     "status": "DONE", "progress": 100, "operationType": "insert",
                     "targetLink": target, "selfLink": f"{SELF}/{where}/{name}",
                     "insertTime": "2026-11-23T06:00:00.000-08:00"}

    def done(req, m):
        return 200, {"kind": "compute#operation", "id": "1", "name": m[1], "status": "DONE",
                     "progress": 100, "selfLink": f"{SELF}/x/{m[1]}"}

    api.route("GET", P + r"/global/operations/([\w-]+)", done)
    api.route("GET", P + rf"/zones/{ZONE}/operations/([\w-]+)", done)

    def firewall(data):
        return {"kind": "compute#firewall", "id": "9901", "name": data["name"],
                "network": f"{SELF}/global/networks/default", "allowed": data["allowed"],
                "sourceRanges": data.get("sourceRanges", []),
                "targetTags": data.get("targetTags", []), "direction": "INGRESS",
                "priority": 1000, "selfLink": f"{SELF}/global/firewalls/{data['name']}",
                "creationTimestamp": "2026-11-23T06:00:00.000-08:00", "description": ""}

    api.route("GET", P + "/global/firewalls", lambda r, m: (200, {
        "items": [firewall(f) for f in state["firewalls"]]}))

    def add_firewall(req, m):
        state["firewalls"].append(req.json)
        return operation(f"{SELF}/global/firewalls/{req.json['name']}", "global")

    api.route("POST", P + "/global/firewalls", add_firewall)
    api.route("GET", P + r"/global/firewalls/([\w-]+)", lambda r, m: (200, firewall(
        next(f for f in state["firewalls"] if f["name"] == m[1]))))

    def instance(data):
        return {"kind": "compute#instance", "id": f"44{data['name']}", "name": data["name"],
                "status": "RUNNING", "zone": f"{SELF}/zones/{ZONE}",
                "machineType": data["machineType"],
                "tags": {**data.get("tags", {}), "fingerprint": "42WmSpB8rSM="},
                "metadata": {**data.get("metadata", {}), "fingerprint": "r3GFiWdpnKY="},
                "disks": [],
                "networkInterfaces": [{"network": f"{SELF}/global/networks/default",
                                       "networkIP": "10.156.0.2", "accessConfigs": [
                                           {"type": "ONE_TO_ONE_NAT", "name": "External NAT",
                                            "natIP": "34.89.1.20"}]}],
                "selfLink": f"{SELF}/zones/{ZONE}/instances/{data['name']}",
                "creationTimestamp": "2026-11-23T06:00:00.000-08:00"}

    def add_instance(req, m):
        state["instances"].append(req.json)
        return operation(f"{SELF}/zones/{ZONE}/instances/{req.json['name']}", "zone")

    api.route("POST", P + f"/zones/{ZONE}/instances", add_instance)
    api.route("GET", P + rf"/zones/{ZONE}/instances/([\w-]+)", lambda r, m: (200, instance(
        next(d for d in state["instances"] if d["name"] == m[1]))))
    api.route("GET", P + f"/zones/{ZONE}/instances", lambda r, m: (200, {
        "items": [instance(d) for d in state["instances"]]}))

    def delete_instance(req, m):
        state["instances"] = [d for d in state["instances"] if d["name"] != m[1]]
        return operation(f"{SELF}/zones/{ZONE}/instances/{m[1]}", "zone")

    api.route("DELETE", P + rf"/zones/{ZONE}/instances/([\w-]+)", delete_instance)
    return state


def config(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    account = tmp_path / "sa.json"
    account.write_text(json.dumps({"type": "service_account", "project_id": "web-project",
                                   "private_key": pem, "client_email":
                                   "silver@web-project.iam.gserviceaccount.com"}))
    write_config("[provider:gce]\ndriver = gce\n"
                 "user_id = silver@web-project.iam.gserviceaccount.com\n"
                 f"key = {account}\nproject = web-project\ndatacenter = {ZONE}\n"
                 f"ssh_public_key = {key_path()}\n")


def test_gce_startup_script_firewall_and_token(api, tmp_path):
    state = gce_api(api)
    config(tmp_path)
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 34.89.1.20\n"
    token, = api.sent("POST", "/o/oauth2/token")
    assert "assertion=" in token.body                      # a signed JWT, not a secret
    calls = [r for r in api.requests if r.path.startswith(P)]
    assert all(r.headers["Authorization"] == "Bearer ya29.fake-token" for r in calls)
    rule = api.sent("POST", P + "/global/firewalls")[0].json
    assert rule["name"] == FIREWALL_NAME
    assert rule["allowed"] == [{"IPProtocol": "tcp", "ports": ["22", "80", "443"]}]
    assert rule["sourceRanges"] == ["0.0.0.0/0"] and rule["targetTags"] == [FIREWALL_NAME]
    body = api.sent("POST", P + f"/zones/{ZONE}/instances")[0].json
    assert body["name"] == "web1"
    assert body["machineType"].endswith(f"/zones/{ZONE}/machineTypes/e2-small")
    assert body["tags"] == {"items": [FIREWALL_NAME]}
    assert body["metadata"]["items"] == [{"key": "startup-script",
                                          "value": root_key_script(PUBKEY)}]
    disk = body["disks"][0]["initializeParams"]
    assert disk["sourceImage"].endswith("/debian-cloud/global/images/"
                                        "debian-13-trixie-v20251014")
    assert NodeRegistry().get("web1")["cloud"] == {"firewall": FIREWALL_NAME}

    # a second node finds the rule and does not create it again
    assert silver("create-node", "web2", "--no-etc-hosts").status == 0
    assert len(api.sent("POST", P + "/global/firewalls")) == 1
    assert silver("-y", "destroy-node", "web1", "web2").status == 0
    assert state["instances"] == []


def test_root_key_script_installs_only_the_key():
    script = root_key_script(PUBKEY)
    assert script.startswith("#!/bin/sh\n")
    assert f"echo '{PUBKEY}' >> /root/.ssh/authorized_keys" in script
    assert "PermitRootLogin prohibit-password" in script


def test_gce_error_is_one_line(api, tmp_path):
    gce_api(api)
    api.route("POST", P + f"/zones/{ZONE}/instances", (403, {"error": {
        "code": 403, "message": "Quota 'CPUS' exceeded.  Limit: 0.0 in region europe-west3.",
        "errors": [{"reason": "quotaExceeded", "domain": "usageLimits",
                    "message": "Quota 'CPUS' exceeded.  Limit: 0.0 in region "
                               "europe-west3."}]}}))
    config(tmp_path)
    assert_one_line_error(silver("create-node", "web1"), 1,
                          "Google Compute Engine: creating node web1 failed: Quota 'CPUS' "
                          "exceeded. Limit: 0.0 in region europe-west3.")


def test_gce_refuses_a_dotted_name_before_creating(api, tmp_path):
    gce_api(api)
    config(tmp_path)
    assert_one_line_error(silver("create-node", "web1.example.com"), 2,
                          "'web1.example.com' cannot be a Google Compute Engine instance name")
    assert api.sent("POST", P + f"/zones/{ZONE}/instances") == []
    assert api.sent("POST", P + "/global/firewalls") == []
