"""create-node / destroy-node on Amazon EC2 with libcloud's real driver (Query API, XML).

The answers follow the EC2 API reference (DescribeImages, DescribeSecurityGroups,
CreateSecurityGroup, AuthorizeSecurityGroupIngress, RunInstances,
DescribeInstances, TerminateInstances), API version 2016-11-15.
"""

from __future__ import annotations

import base64
import fnmatch

from silverlining.providers.clouds import DEBIAN_AMI_OWNER, FIREWALL_NAME, cloud_config
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import (PUBKEY, api, assert_one_line_error, key_path,  # noqa: F401
                                  silver, write_config)

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def xml(action: str, inner: str) -> tuple[int, str]:
    return 200, (f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{NS}">'
                 f"<requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>{inner}"
                 f"</{action}Response>")


AMIS = (("ami-0old", "debian-12-amd64-20240201-1647"),
        ("ami-0new", "debian-12-amd64-20241004-1890"),
        ("ami-013a", "debian-13-amd64-20250814-2204"),
        ("ami-013b", "debian-13-amd64-20251006-2257"))


def image(ami: str, name: str) -> str:
    return (f"<item><imageId>{ami}</imageId><imageLocation>136693071363/{name}</imageLocation>"
            f"<imageState>available</imageState><imageOwnerId>{DEBIAN_AMI_OWNER}</imageOwnerId>"
            f"<isPublic>true</isPublic><architecture>x86_64</architecture>"
            f"<imageType>machine</imageType><name>{name}</name>"
            f"<rootDeviceType>ebs</rootDeviceType><rootDeviceName>/dev/xvda</rootDeviceName>"
            f"<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>"
            f"<blockDeviceMapping/></item>")


def instance(data: dict) -> str:
    state = data.get("state", "running")
    code = {"pending": 0, "running": 16, "terminated": 48}[state]
    public = f"<ipAddress>{data['ip']}</ipAddress>" if state == "running" else ""
    ipv6 = ("<networkInterfaceSet><item><networkInterfaceId>eni-1</networkInterfaceId>"
            "<subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId><status>in-use</status>"
            "<privateIpAddress>172.31.5.9</privateIpAddress><ipv6AddressesSet><item>"
            f"<ipv6Address>{data['ip6']}</ipv6Address></item></ipv6AddressesSet>"
            "</item></networkInterfaceSet>") if state == "running" else ""
    return (f"<item><instanceId>{data['id']}</instanceId><imageId>{data['image']}</imageId>"
            f"<instanceState><code>{code}</code><name>{state}</name></instanceState>"
            f"<privateDnsName/><dnsName/><instanceType>{data['type']}</instanceType>"
            f"<launchTime>2026-11-23T06:00:00.000Z</launchTime>"
            f"<placement><availabilityZone>eu-central-1a</availabilityZone></placement>"
            f"<privateIpAddress>172.31.5.9</privateIpAddress>{public}"
            f"<subnetId>subnet-1</subnetId><vpcId>vpc-1</vpcId>"
            f"<groupSet><item><groupId>{data['group']}</groupId>"
            f"<groupName>{FIREWALL_NAME}</groupName></item></groupSet>"
            f"<tagSet><item><key>Name</key><value>{data['name']}</value></item></tagSet>"
            f"{ipv6}</item>")


def reservation(items: list[dict]) -> str:
    return ("<reservationSet>" + "".join(
        f"<item><reservationId>r-{d['id']}</reservationId><ownerId>123456789012</ownerId>"
        f"<groupSet/><instancesSet>{instance(d)}</instancesSet></item>" for d in items)
        + "</reservationSet>")


def ec2_api(api, group_exists=False):
    state = {"instances": [], "groups": ["sg-0aa11" ] if group_exists else []}

    def action(req, m):
        form = req.form
        name = form["Action"]
        if name == "DescribeImages":                  # the id and name filters, as EC2 does
            found = [(ami, n) for ami, n in AMIS if form.get("ImageId.1", ami) == ami
                     and fnmatch.fnmatchcase(n, form.get("Filter.1.Value.1", "*"))]
            return xml(name, "<imagesSet>" + "".join(image(*i) for i in found) + "</imagesSet>")
        if name == "DescribeSecurityGroups":
            return xml(name, "<securityGroupInfo>" + "".join(
                f"<item><ownerId>123456789012</ownerId><groupId>{g}</groupId>"
                f"<groupName>{FIREWALL_NAME}</groupName><groupDescription>x</groupDescription>"
                "<vpcId>vpc-1</vpcId><ipPermissions/><ipPermissionsEgress/></item>"
                for g in state["groups"]) + "</securityGroupInfo>")
        if name == "CreateSecurityGroup":
            state["groups"].append("sg-0new")
            return xml(name, "<return>true</return><groupId>sg-0new</groupId>")
        if name == "AuthorizeSecurityGroupIngress":
            return xml(name, "<return>true</return>")
        if name == "RunInstances":
            data = {"id": "i-0abc", "name": form["TagSpecification.1.Tag.1.Value"],
                    "image": form["ImageId"], "type": form["InstanceType"],
                    "group": state["groups"][0], "ip": "192.0.2.80",
                    "ip6": "2a05:d014::80", "state": "pending"}
            state["instances"].append(data)
            return xml(name, "<reservationId>r-1</reservationId><ownerId>1</ownerId>"
                       f"<groupSet/><instancesSet>{instance(data)}</instancesSet>")
        if name == "DescribeInstances":
            for d in state["instances"]:
                d["state"] = "running" if d["state"] == "pending" else d["state"]
            return xml(name, reservation(state["instances"]))
        if name == "DescribeVpcs":
            return xml(name, "<vpcSet><item><vpcId>vpc-1</vpcId><state>available</state>"
                       "<cidrBlock>172.31.0.0/16</cidrBlock><dhcpOptionsId>dopt-1"
                       "</dhcpOptionsId><instanceTenancy>default</instanceTenancy>"
                       "<isDefault>true</isDefault></item></vpcSet>")
        if name == "DescribeAddresses":
            return xml(name, "<addressesSet/>")
        if name == "TerminateInstances":
            for d in state["instances"]:
                d["state"] = "terminated"
            return xml(name, "<instancesSet><item><instanceId>i-0abc</instanceId>"
                       "<currentState><code>32</code><name>shutting-down</name></currentState>"
                       "<previousState><code>16</code><name>running</name></previousState>"
                       "</item></instancesSet>")
        return 400, (f"<Response><Errors><Error><Code>InvalidAction</Code><Message>{name}"
                     "</Message></Error></Errors></Response>")

    api.route("GET", "/", action)
    api.route("POST", "/", action)
    return state


def config() -> None:
    write_config("[provider:aws]\ndriver = ec2\nkey = AKIAIOSFODNN7EXAMPLE\n"
                 f"secret = {SECRET}\nregion = eu-central-1\nssh_public_key = {key_path()}\n")


def actions(api) -> list[dict[str, str]]:
    return [r.form for r in api.requests]


def test_ec2_debian_ami_user_data_and_security_group(api):
    ec2_api(api)
    config()
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert result.stdout == "web1 192.0.2.80\n"
    assert SECRET not in result.stdout + result.stderr
    sent = actions(api)
    images = next(f for f in sent if f["Action"] == "DescribeImages")
    assert images["Owner.1"] == DEBIAN_AMI_OWNER
    assert {images["Filter.1.Name"]: images["Filter.1.Value.1"],
            images["Filter.2.Name"]: images["Filter.2.Value.1"]} == {
        "name": "debian-13-amd64-*", "architecture": "x86_64"}
    rules = [(f["IpPermissions.1.FromPort"], f["IpPermissions.1.IpRanges.1.CidrIp"])
             for f in sent if f["Action"] == "AuthorizeSecurityGroupIngress"]
    assert rules == [("22", "0.0.0.0/0"), ("80", "0.0.0.0/0"), ("443", "0.0.0.0/0")]
    run = next(f for f in sent if f["Action"] == "RunInstances")
    assert run["ImageId"] == "ami-013b"                     # the newest Debian 13
    assert run["InstanceType"] == "t3.small"
    assert run["SecurityGroup.1"] == FIREWALL_NAME
    assert "KeyName" not in run
    user_data = base64.b64decode(run["UserData"]).decode()
    assert user_data == cloud_config(PUBKEY)
    assert "disable_root: false" in user_data and PUBKEY in user_data
    assert all(r.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA")
               for r in api.requests)
    entry = NodeRegistry().get("web1")
    assert entry["cloud"] == {"security_group": "sg-0new"}
    assert entry["address"] == "192.0.2.80"

    api.requests.clear()
    assert silver("-y", "destroy-node", "web1").status == 0
    assert [f["Action"] for f in actions(api)] == ["DescribeInstances", "DescribeAddresses",
                                                   "TerminateInstances"]
    assert NodeRegistry().all() == {}


def test_ec2_existing_group_is_used_not_changed(api):
    ec2_api(api, group_exists=True)
    config()
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    sent = [f["Action"] for f in actions(api)]
    assert "CreateSecurityGroup" not in sent and "AuthorizeSecurityGroupIngress" not in sent
    run = next(f for f in actions(api) if f["Action"] == "RunInstances")
    assert run["SecurityGroup.1"] == FIREWALL_NAME


def test_ec2_error_is_one_line(api):
    ec2_api(api)

    def refuse(req, m):
        if req.form["Action"] != "RunInstances":
            return ec2_handler(req, m)
        return 400, ("<Response><Errors><Error><Code>InstanceLimitExceeded</Code><Message>"
                     "You have requested more instances (1) than your current instance "
                     "limit of 0 allows</Message></Error></Errors><RequestID>x</RequestID>"
                     "</Response>")

    ec2_handler = api.routes[0][2]
    api.route("GET", "/", refuse)
    config()
    assert_one_line_error(silver("create-node", "web1"), 1,
                          "Amazon EC2: creating node web1 failed: InstanceLimitExceeded: You "
                          "have requested more instances (1) than your current instance limit")


# --- Route 53 (DNS for EC2 nodes), API 2012-02-29 ------------------------------------------

R53 = "https://route53.amazonaws.com/doc/2012-02-29/"


def route53_api(api):
    """One hosted zone; ChangeResourceRecordSets applied to an in-memory record list."""
    import xml.etree.ElementTree as ET

    records: list[tuple[str, str, str]] = []     # (name, type, value)
    api.route("GET", "/2012-02-29/hostedzone", (200, (
        f'<ListHostedZonesResponse xmlns="{R53}"><HostedZones><HostedZone>'
        "<Id>/hostedzone/Z1D633PJN98FT9</Id><Name>example.com.</Name>"
        "<CallerReference>ref</CallerReference><Config><Comment>web</Comment></Config>"
        "<ResourceRecordSetCount>2</ResourceRecordSetCount></HostedZone></HostedZones>"
        "<IsTruncated>false</IsTruncated><MaxItems>100</MaxItems>"
        "</ListHostedZonesResponse>")))

    def list_sets(req, m):
        sets = "".join(f"<ResourceRecordSet><Name>{n}</Name><Type>{t}</Type><TTL>300</TTL>"
                       f"<ResourceRecords><ResourceRecord><Value>{v}</Value></ResourceRecord>"
                       "</ResourceRecords></ResourceRecordSet>" for n, t, v in records)
        return 200, (f'<ListResourceRecordSetsResponse xmlns="{R53}"><ResourceRecordSets>'
                     f"{sets}</ResourceRecordSets><IsTruncated>false</IsTruncated>"
                     "<MaxItems>100</MaxItems></ListResourceRecordSetsResponse>")

    def change(req, m):
        ns = {"r": R53}
        for c in ET.fromstring(req.body).iterfind(".//r:Change", ns):
            item = (c.findtext("r:ResourceRecordSet/r:Name", namespaces=ns),
                    c.findtext("r:ResourceRecordSet/r:Type", namespaces=ns),
                    c.findtext(".//r:Value", namespaces=ns))
            if c.findtext("r:Action", namespaces=ns) == "CREATE":
                records.append(item)
            else:
                records.remove(item)
        return 200, (f'<ChangeResourceRecordSetsResponse xmlns="{R53}"><ChangeInfo>'
                     "<Id>/change/C2682N5HXP0BZ4</Id><Status>PENDING</Status>"
                     "<SubmittedAt>2026-11-23T06:00:00.000Z</SubmittedAt></ChangeInfo>"
                     "</ChangeResourceRecordSetsResponse>")

    api.route("GET", "/2012-02-29/hostedzone/Z1D633PJN98FT9/rrset", list_sets)
    api.route("POST", "/2012-02-29/hostedzone/Z1D633PJN98FT9/rrset", change)
    return records


def test_ec2_node_with_route53_records(api):
    ec2_api(api)
    records = route53_api(api)
    write_config("[provider:aws]\ndriver = ec2\nkey = AKIAIOSFODNN7EXAMPLE\n"
                 f"secret = {SECRET}\nregion = eu-central-1\nssh_public_key = {key_path()}\n"
                 "dns = r53\n[dns:r53]\ndriver = route53\nkey = AKIAIOSFODNN7EXAMPLE\n"
                 f"secret = {SECRET}\nzone = example.com\nttl = 300\n")
    result = silver("create-node", "web1.example.com")
    assert result.status == 0, result.stderr
    assert records == [("web1.example.com.", "A", "192.0.2.80")]
    change, = api.sent("POST", "/2012-02-29/hostedzone/Z1D633PJN98FT9/rrset")
    assert "<Action>CREATE</Action>" in change.body and "<TTL>300</TTL>" in change.body
    assert change.headers["X-Amzn-Authorization"].startswith("AWS3-HTTPS AWSAccessKeyId=AKIA")
    assert NodeRegistry().get("web1.example.com")["dns"] == [
        {"zone": "Z1D633PJN98FT9", "id": "A:web1", "type": "A", "name": "web1.example.com",
         "data": "192.0.2.80"}]
    assert silver("-y", "destroy-node", "web1.example.com").status == 0
    assert records == []


def test_ec2_image_matchers_ask_for_only_those_images(api):
    """EC2 lists every public AMI unfiltered: an id or name matcher is sent as a filter."""
    ec2_api(api)
    config()
    assert silver("create-node", "web1", "--image", "id ami-0old", "--no-etc-hosts").status == 0
    assert silver("create-node", "web2", "--image", "debian-12-amd64-2024* first",
                  "--no-etc-hosts").status == 0
    runs = [f["ImageId"] for f in actions(api) if f["Action"] == "RunInstances"]
    assert runs == ["ami-0old", "ami-0old"]          # "first" of the two the API gave
    looked = [f for f in actions(api) if f["Action"] == "DescribeImages"]
    assert looked[0]["ImageId.1"] == "ami-0old" and "Owner.1" not in looked[0]
    assert (looked[1]["Filter.1.Name"], looked[1]["Filter.1.Value.1"]) == (
        "name", "debian-12-amd64-2024*")


def test_ec2_name_free_again_while_the_old_instance_is_listed_terminated(api):
    state = ec2_api(api)
    config()
    assert silver("create-node", "web1", "--no-etc-hosts").status == 0
    assert silver("-y", "destroy-node", "web1").status == 0
    assert [d["state"] for d in state["instances"]] == ["terminated"]   # still listed
    result = silver("create-node", "web1", "--no-etc-hosts")
    assert result.status == 0, result.stderr
    assert len([f for f in actions(api) if f["Action"] == "RunInstances"]) == 2
