"""What ``create-node`` does on each real cloud beyond libcloud's ``create_node``.

libcloud makes a server on every provider, but not one we can log in to as
root: DigitalOcean and Vultr want the id of a key registered with them, EC2
and OVH images log in as ``admin``/``debian`` unless cloud-init is told
otherwise, GCE images refuse root logins and only open port 22. A
``CloudProfile`` per provider fills that gap: the default image and size, the
root key, the firewall, and what must be removed again on ``destroy-node``.

Everything a profile registers for one node is returned in ``Prepared.records``
and kept in that node's registry entry, so ``destroy-node`` removes exactly
that (a key stays while another node in the registry still uses it).
"""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
import hashlib
import inspect
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libcloud.compute.base import KeyPair, Node, NodeDriver, NodeImage, NodeLocation

from silverlining.errors import UsageError
from silverlining.providers.matchers import parse

WEB_PORTS = (22, 80, 443)
FIREWALL_NAME = "silverlining-web"
# The Debian release a node gets when no image is chosen; each profile names its
# image after it. Debian 12 stays one --image away (docs/nodes.md, Clouds).
DEBIAN = 13

Call = Callable[..., Any]   # providers.call_provider, bound to a description


@dataclass
class Prepared:
    """Extra ``create_node`` arguments, and what was registered to make them."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def public_key_blob(pubkey: str) -> tuple[str, bytes]:
    """(type, decoded blob) of an OpenSSH public key line; a bad line is a UsageError."""
    parts = pubkey.split()
    try:
        return parts[0], base64.b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        raise UsageError("the SSH public key is not an OpenSSH public key line "
                         "('ssh-ed25519 AAAA... comment')") from None


def fingerprints(pubkey: str) -> set[str]:
    """The key's fingerprints in the forms providers report: MD5 hex and SHA256 base64."""
    _, blob = public_key_blob(pubkey)
    md5 = hashlib.md5(blob).hexdigest()
    sha = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return {":".join(md5[i:i + 2] for i in range(0, 32, 2)), md5, sha, "SHA256:" + sha}


def key_name(pubkey: str) -> str:
    """The name we register a key under: stable for the same key, valid everywhere."""
    _, blob = public_key_blob(pubkey)
    return "silverlining-" + hashlib.sha256(blob).hexdigest()[:12]


def same_key(pair: KeyPair, pubkey: str) -> bool:
    """Whether a key the provider holds is ``pubkey`` (by material, fingerprint or our name)."""
    if pair.public_key:
        try:
            if public_key_blob(pair.public_key) == public_key_blob(pubkey):
                return True
        except UsageError:
            pass
    fp = (pair.fingerprint or "").lower()
    return (bool(fp) and fp in {f.lower() for f in fingerprints(pubkey)}) \
        or pair.name == key_name(pubkey)


def cloud_config(pubkey: str) -> str:
    """cloud-init user-data that lets root log in with ``pubkey`` (and only with keys).

    Cloud images put the key on a default user (``admin``, ``debian``,
    ``ubuntu``) and make root print "login as ..."; ``disable_root: false``
    gives root the same keys without that prefix.
    """
    return ("#cloud-config\n"
            "disable_root: false\n"
            "ssh_pwauth: false\n"
            "ssh_authorized_keys:\n"
            f"  - {json.dumps(pubkey.strip())}\n")   # quoted: a comment may hold ": "


def root_key_script(pubkey: str) -> str:
    """A boot script (GCE ``startup-script``) that installs ``pubkey`` for root.

    GCE's Debian images have no cloud-init and ``PermitRootLogin no``; a drop-in
    in sshd_config.d comes first and so wins, allowing key logins only.
    """
    key = pubkey.strip().replace("'", "")
    return ("#!/bin/sh\n"
            "install -d -m 700 /root/.ssh\n"
            f"grep -qxF '{key}' /root/.ssh/authorized_keys 2>/dev/null || "
            f"echo '{key}' >> /root/.ssh/authorized_keys\n"
            "chmod 600 /root/.ssh/authorized_keys\n"
            "echo 'PermitRootLogin prohibit-password' > "
            "/etc/ssh/sshd_config.d/10-silverlining.conf\n"
            "systemctl reload ssh || systemctl reload sshd || true\n")


def listing(call: Call, what: str, method: Callable[..., list], location: Any) -> list:
    """A driver's images or sizes, of the chosen location when the method takes one
    (OVH lists the same size names once per region, with different ids)."""
    try:
        takes = "location" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes = False
    if location is not None and takes:
        return call(f"listing {what}", method, location=location)
    return call(f"listing {what}", method)


class CloudProfile(ABC):
    """The defaults and the set-up one provider needs; subclasses override."""

    label = "provider"
    default_size: str | None = None
    image_matcher: str | None = None      # used when default_image is not overridden

    @property
    def name(self) -> str:
        """The provider's name in error lines (``call_provider`` reads it)."""
        return self.label

    def default_image(self, call: Call, driver: NodeDriver,
                      location: NodeLocation | None) -> NodeImage:
        """The default Debian image, from the provider's list."""
        images = call("listing images", driver.list_images)
        found = [i for i in images if self.is_default_image(i)]
        if not found:
            raise UsageError(f"{self.label} lists no Debian {DEBIAN} image; choose "
                             "one with --image or 'image =' (see silver list-images)")
        return found[-1]

    def check_name(self, hostname: str) -> None:
        """Refuse a node name the provider would refuse, before anything is created."""

    def locations(self, call: Call, driver: NodeDriver) -> list[NodeLocation]:
        """Where nodes can be created, as ``--location`` matches them."""
        return call("listing locations", driver.list_locations)

    def images(self, call: Call, driver: NodeDriver, location: NodeLocation | None,
               text: str) -> list[NodeImage]:
        """The images an ``--image`` matcher ``text`` chooses from."""
        return listing(call, "images", driver.list_images, location)

    def is_default_image(self, image: NodeImage) -> bool:
        return bool(self.image_matcher) and parse(self.image_matcher, "image").matches(image)

    @abstractmethod
    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        """Arguments that install root's key and open the web ports."""

    def ipv6(self, node: Node) -> str | None:
        """The node's public IPv6 address, if the provider gave one."""
        for ip in list(node.public_ips or []):
            if ip and ":" in str(ip) and str(ip) != "::":
                return str(ip)
        return None

    def release(self, call: Call, driver: NodeDriver, records: dict[str, Any],
                still_used: Callable[[str, Any], bool]) -> list[str]:
        """Remove what ``prepare`` registered for one node; returns what was removed.

        ``still_used(kind, value)`` says whether another node records the same thing.
        """
        removed: list[str] = []
        key_id = records.get("key_id")
        if key_id is not None and records.get("key_created") and \
                not still_used("key_id", key_id):
            pairs = call("listing SSH keys", driver.list_key_pairs)
            for pair in pairs:
                if str((pair.extra or {}).get("id", pair.name)) == str(key_id):
                    call(f"deleting SSH key {pair.name}", driver.delete_key_pair, pair)
                    removed.append(f"SSH key {pair.name}")
        return removed

    # --- helpers for key-id providers ---------------------------------------------

    def import_key(self, call: Call, driver: NodeDriver, name: str, pubkey: str) -> KeyPair:
        """Register ``pubkey`` with the provider under ``name``."""
        return call(f"registering SSH key {name}", driver.import_key_pair_from_string,
                    name, pubkey)

    def registered_key(self, call: Call, driver: NodeDriver, pubkey: str) -> Prepared:
        """The provider's id for ``pubkey``: an existing key with it, else a new one."""
        prepared = Prepared()
        for pair in call("listing SSH keys", driver.list_key_pairs):
            if same_key(pair, pubkey):
                prepared.records["key_id"] = str(pair.extra.get("id", pair.name))
                if pair.name == key_name(pubkey):   # ours: goes with the last node using it
                    prepared.records["key_created"] = True
                prepared.notes.append(f"using the SSH key {pair.name!r} already registered")
                return prepared
        name = key_name(pubkey)
        pair = self.import_key(call, driver, name, pubkey.strip())
        prepared.records["key_id"] = str(pair.extra.get("id", pair.name))
        prepared.records["key_created"] = True
        prepared.notes.append(f"registered SSH key {name!r}")
        return prepared


class DigitalOcean(CloudProfile):
    """Droplets take registered key ids; no firewall unless the user adds one."""

    label = "DigitalOcean"
    default_size = "id s-1vcpu-1gb"

    def import_key(self, call: Call, driver: NodeDriver, name: str, pubkey: str) -> KeyPair:
        # this driver registers keys with create_key_pair; import_* is not implemented
        return call(f"registering SSH key {name}", driver.create_key_pair, name,
                    public_key=pubkey)

    def default_image(self, call: Call, driver: NodeDriver,
                      location: NodeLocation | None) -> NodeImage:
        return _by_slug(super().default_image(call, driver, location))

    def images(self, call: Call, driver: NodeDriver, location: NodeLocation | None,
               text: str) -> list[NodeImage]:
        """Public images by slug, so ``--image 'id debian-12-x64'`` picks one."""
        return [_by_slug(i) for i in super().images(call, driver, location, text)]

    def is_default_image(self, image: NodeImage) -> bool:
        return (image.extra or {}).get("slug") == f"debian-{DEBIAN}-x64"

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        prepared = self.registered_key(call, driver, pubkey)
        prepared.kwargs["ex_create_attr"] = {"ipv6": True,
                                             "ssh_keys": [int(prepared.records["key_id"])]}
        return prepared

    def ipv6(self, node: Node) -> str | None:
        for net in ((node.extra or {}).get("networks") or {}).get("v6", []):
            if net.get("type") == "public":
                return str(net["ip_address"])
        return None


def _by_slug(image: NodeImage) -> NodeImage:
    """A DigitalOcean image with its slug as id, when it has one: libcloud turns
    numeric image ids into strings, and the API reads a string image as a slug."""
    slug = (image.extra or {}).get("slug")
    if not slug:
        return image
    return NodeImage(id=slug, name=image.name, driver=image.driver, extra=image.extra)


class Linode(CloudProfile):
    """Linodes take the key itself for root; a root password is required, so a random
    one is generated and never kept (logins are by key)."""

    label = "Linode"
    default_size = "id g6-nanode-1"
    image_matcher = f"id linode/debian{DEBIAN}"

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        return Prepared({"ex_authorized_keys": [pubkey.strip()],
                         "root_pass": secrets.token_urlsafe(32)})

    def ipv6(self, node: Node) -> str | None:
        value = (node.extra or {}).get("ipv6") or ""
        return str(value).split("/")[0] or None


class Vultr(CloudProfile):
    """Vultr takes registered key ids; IPv6 must be asked for."""

    label = "Vultr"
    default_size = "id vc2-1c-1gb"
    image_matcher = f"name Debian {DEBIAN} x64*"

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        prepared = self.registered_key(call, driver, pubkey)
        prepared.kwargs.update(ex_ssh_key_ids=[prepared.records["key_id"]],
                               ex_enable_ipv6=True, ex_hostname=hostname)
        return prepared


DEBIAN_AMI_OWNER = "136693071363"   # Debian's AWS account, as published on wiki.debian.org


class EC2(CloudProfile):
    """cloud-init user-data for root's key; a shared security group for 22/80/443."""

    label = "Amazon EC2"
    default_size = "id t3.small"

    def default_image(self, call: Call, driver: NodeDriver,
                      location: NodeLocation | None) -> NodeImage:
        images = call(f"listing Debian {DEBIAN} images", driver.list_images,
                      ex_owner=DEBIAN_AMI_OWNER,
                      ex_filters={"name": f"debian-{DEBIAN}-amd64-*",
                                  "architecture": "x86_64"})
        if not images:
            raise UsageError(f"{self.label} lists no Debian {DEBIAN} image in this region; "
                             "choose one with --image 'id ami-...'")
        return sorted(images, key=lambda i: i.name or "")[-1]

    def images(self, call: Call, driver: NodeDriver, location: NodeLocation | None,
               text: str) -> list[NodeImage]:
        """Only the images the matcher can pick: EC2 lists every public AMI otherwise."""
        matcher = parse(text, "image")
        if matcher.kind == "id":
            return call("looking up image", driver.list_images, ex_image_ids=[matcher.value])
        if matcher.kind == "name":
            return call("listing images", driver.list_images,
                        ex_filters={"name": matcher.value})
        return call("listing images", driver.list_images)

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        prepared = Prepared({"ex_userdata": cloud_config(pubkey)})
        groups = call(f"looking up security group {FIREWALL_NAME}",
                      driver.ex_get_security_groups, filters={"group-name": FIREWALL_NAME})
        if groups:
            group_id = groups[0].id
        else:
            group_id = call(f"creating security group {FIREWALL_NAME}",
                            driver.ex_create_security_group, FIREWALL_NAME,
                            "silverlining: SSH, HTTP and HTTPS from anywhere")["group_id"]
            for port in WEB_PORTS:
                call(f"opening port {port} in security group {FIREWALL_NAME}",
                     driver.ex_authorize_security_group_ingress, group_id, port, port,
                     cidr_ips=["0.0.0.0/0"], protocol="tcp")
            prepared.notes.append(f"created security group {FIREWALL_NAME} ({group_id}) "
                                  f"open on ports {', '.join(map(str, WEB_PORTS))}")
        # by name: ids need a subnet, names work in the default VPC new nodes go to
        prepared.kwargs["ex_security_groups"] = [FIREWALL_NAME]
        prepared.records["security_group"] = group_id
        return prepared


class GCE(CloudProfile):
    """A startup script for root's key; a shared firewall rule for tagged nodes."""

    label = "Google Compute Engine"
    default_size = "name e2-small"

    def check_name(self, hostname: str) -> None:
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", hostname):
            raise UsageError(f"{hostname!r} cannot be a {self.label} instance name (a letter, "
                             "then letters, digits and '-', no dots); name the node e.g. "
                             "'web1' (with 'dns =' it becomes web1.ZONE)")

    def default_image(self, call: Call, driver: NodeDriver,
                      location: NodeLocation | None) -> NodeImage:
        return call(f"looking up image family debian-{DEBIAN}",
                    driver.ex_get_image_from_family,
                    f"debian-{DEBIAN}", ex_project_list=["debian-cloud"],
                    ex_standard_projects=False)

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        prepared = Prepared({"ex_metadata": {"startup-script": root_key_script(pubkey)},
                             "ex_tags": [FIREWALL_NAME]})
        firewalls = call("listing firewall rules", driver.ex_list_firewalls)
        if not any(f.name == FIREWALL_NAME for f in firewalls):
            call(f"creating firewall rule {FIREWALL_NAME}", driver.ex_create_firewall,
                 FIREWALL_NAME, allowed=[{"IPProtocol": "tcp",
                                          "ports": [str(p) for p in WEB_PORTS]}],
                 source_ranges=["0.0.0.0/0"], target_tags=[FIREWALL_NAME])
            prepared.notes.append(f"created firewall rule {FIREWALL_NAME} for ports "
                                  f"{', '.join(map(str, WEB_PORTS))}")
        prepared.records["firewall"] = FIREWALL_NAME
        return prepared


class OVH(CloudProfile):
    """OVH Public Cloud: cloud-init user-data for root's key; no firewall by default.

    Two gaps in libcloud's driver are bridged through its own signed connection:
    ``create_node`` has no user-data argument, and ``list_locations`` only knows
    a fixed table of regions (newer ones such as GRA11 or DE1 make it fail).
    """

    label = "OVH"
    default_size = "name d2-2"
    image_matcher = f"name Debian {DEBIAN}"

    def locations(self, call: Call, driver: NodeDriver) -> list[NodeLocation]:
        regions = call("listing regions", driver.connection.request,
                       driver._get_project_action("region")).object
        known = driver.connectionCls.LOCATIONS
        return [NodeLocation(id=r, name=known.get(r, {}).get("name", r),
                             country=known.get(r, {}).get("country", ""), driver=driver)
                for r in regions]

    def default_image(self, call: Call, driver: NodeDriver,
                      location: NodeLocation | None) -> NodeImage:
        images = call("listing images", driver.list_images, location)
        found = [i for i in images if self.is_default_image(i)]
        if not found:
            raise UsageError(f"{self.label} lists no Debian {DEBIAN} image in this region; "
                             "choose one with --image")
        return found[0]

    def prepare(self, call: Call, driver: NodeDriver, hostname: str, pubkey: str,
                location: NodeLocation | None) -> Prepared:
        return Prepared({"ex_userdata": cloud_config(pubkey)})

    def create(self, driver: NodeDriver, name: str, image: NodeImage, size: Any,
               location: NodeLocation, ex_userdata: str) -> Node:
        """``create_node`` with ``userData``, which the driver's own method cannot send."""
        data = {"name": name, "imageId": image.id, "flavorId": size.id,
                "region": location.id, "userData": ex_userdata}
        response = driver.connection.request(driver._get_project_action("instance"),
                                             data=data, method="POST")
        return driver._to_node(response.object)


def used_elsewhere(provider: str, hostname: str) -> Callable[[str, Any], bool]:
    """For ``release``: whether another registered node of ``provider`` records the
    same cloud resource (the registry is the only list of "our" nodes there is)."""
    from silverlining.state import NodeRegistry

    def check(kind: str, value: Any) -> bool:
        return any(name != hostname and entry.get("provider") == provider
                   and str((entry.get("cloud") or {}).get(kind)) == str(value)
                   for name, entry in NodeRegistry().all().items())
    return check


def _driver_classes() -> list[tuple[str, str, type[CloudProfile]]]:
    return [
        ("libcloud.compute.drivers.digitalocean", "DigitalOcean_v2_NodeDriver", DigitalOcean),
        ("libcloud.compute.drivers.linode", "LinodeNodeDriverV4", Linode),
        ("libcloud.compute.drivers.vultr", "VultrNodeDriverV2", Vultr),
        ("libcloud.compute.drivers.ec2", "EC2NodeDriver", EC2),
        ("libcloud.compute.drivers.gce", "GCENodeDriver", GCE),
        ("libcloud.compute.drivers.ovh", "OvhNodeDriver", OVH),
    ]


def profile_for(driver: NodeDriver) -> CloudProfile | None:
    """The profile of ``driver``'s provider, or None (dummy, local, user drivers)."""
    import importlib

    for module_name, class_name, profile in _driver_classes():
        module = importlib.import_module(module_name)
        if isinstance(driver, getattr(module, class_name)):
            return profile()
    return None

