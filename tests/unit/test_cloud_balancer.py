"""``--balancer provider:NAME``: the provider's load balancer through libcloud's real
ELB and GCE drivers, against their APIs played on 127.0.0.1.

The answers follow the Elastic Load Balancing API reference, version 2012-06-01
(CreateLoadBalancer, DescribeLoadBalancers, RegisterInstancesWithLoadBalancer,
DeregisterInstancesFromLoadBalancer, DeleteLoadBalancer), and the Compute Engine
API v1 reference (httpHealthChecks, targetPools with addInstance, removeInstance
and getHealth, forwardingRules, region operations). The node side is faked only
where the roll hands a member to a deploy or an activate (``update.deploy_to``,
``_balanced.activate_on``); the real node path is tests/integration/test_balancer.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from silverlining import topology
from silverlining.commands import _balanced, _provider_front, update
from silverlining.errors import SilverError
from silverlining.providers.balancers import ELB_READY_WAIT, balancer_name
from silverlining.state import NodeRegistry
from tests.unit.cloudtest import api, assert_one_line_error, silver, write_config  # noqa: F401
from tests.unit.test_cloud_ec2 import SECRET, ec2_api
from tests.unit.test_cloud_gce import P, SELF, ZONE, config as gce_config, gce_api

ELB_NS = "http://elasticloadbalancing.amazonaws.com/doc/2012-06-01/"
ELB_ROOT = "/2012-06-01"
LOCATION = "shop.test"
NAME = balancer_name(LOCATION)
REGION = "europe-west3"


def elb_xml(action: str, inner: str) -> tuple[int, str]:
    return 200, (f'<{action}Response xmlns="{ELB_NS}"><{action}Result>{inner}</{action}Result>'
                 "<ResponseMetadata><RequestId>83c88b9d-12b7-11e3-8b82-87b12EXAMPLE"
                 f"</RequestId></ResponseMetadata></{action}Response>")


def elb_api(api, events: list[str]) -> dict:
    """Classic load balancers in memory; each change is logged in ``events``."""
    state: dict = {"balancers": {}}

    def describe(lb: dict) -> str:
        instances = "".join(f"<member><InstanceId>{i}</InstanceId></member>"
                            for i in lb["instances"])
        zones = "".join(f"<member>{z}</member>" for z in lb["zones"])
        return (f"<member><LoadBalancerName>{lb['name']}</LoadBalancerName>"
                f"<DNSName>{lb['name']}-1234567890.eu-central-1.elb.amazonaws.com</DNSName>"
                "<ListenerDescriptions><member><Listener><Protocol>HTTP</Protocol>"
                "<LoadBalancerPort>80</LoadBalancerPort><InstanceProtocol>HTTP"
                "</InstanceProtocol><InstancePort>80</InstancePort></Listener>"
                "<PolicyNames/></member></ListenerDescriptions>"
                f"<Instances>{instances}</Instances><AvailabilityZones>{zones}"
                "</AvailabilityZones><HealthCheck><Target>TCP:80</Target><Interval>30"
                "</Interval><Timeout>5</Timeout><UnhealthyThreshold>2</UnhealthyThreshold>"
                "<HealthyThreshold>10</HealthyThreshold></HealthCheck>"
                "<Scheme>internet-facing</Scheme></member>")

    def action(req, m):
        form = req.form
        name, lb_name = form["Action"], form.get("LoadBalancerName")
        if name == "DescribeLoadBalancers":
            wanted = form.get("LoadBalancerNames.member.1")
            found = [lb for n, lb in state["balancers"].items() if wanted in (None, n)]
            return elb_xml(name, "<LoadBalancerDescriptions>"
                           + "".join(describe(lb) for lb in found)
                           + "</LoadBalancerDescriptions>")
        if name == "CreateLoadBalancer":
            state["balancers"][lb_name] = {
                "name": lb_name, "instances": [], "form": form,
                "zones": [v for k, v in sorted(form.items())
                          if k.startswith("AvailabilityZones.member.")]}
            events.append(f"create {lb_name}")
            return elb_xml(name, f"<DNSName>{lb_name}-1234567890.eu-central-1.elb."
                           "amazonaws.com</DNSName>")
        lb = state["balancers"].get(lb_name)
        if lb is None:
            return 400, (f'<ErrorResponse xmlns="{ELB_NS}"><Error><Type>Sender</Type>'
                         "<Code>LoadBalancerNotFound</Code><Message>There is no ACTIVE "
                         f"Load Balancer named '{lb_name}'</Message></Error>"
                         "<RequestId>x</RequestId></ErrorResponse>")
        instance = form.get("Instances.member.1.InstanceId")
        if name == "RegisterInstancesWithLoadBalancer":
            lb["instances"].append(instance)
            events.append(f"attach {instance}")
        elif name == "DeregisterInstancesFromLoadBalancer":
            lb["instances"].remove(instance)
            events.append(f"detach {instance}")
        elif name == "DeleteLoadBalancer":
            del state["balancers"][lb_name]
            events.append(f"delete {lb_name}")
            return elb_xml(name, "")
        else:
            return 400, "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>"
        return elb_xml(name, "<Instances>" + "".join(
            f"<member><InstanceId>{i}</InstanceId></member>" for i in lb["instances"])
            + "</Instances>")

    api.route("GET", ELB_ROOT, action)
    api.route("POST", ELB_ROOT, action)
    return state


def ec2_instance(n: int) -> dict:
    return {"id": f"i-0web{n}", "name": f"web{n}", "image": "ami-013b", "type": "t3.small",
            "group": "sg-0aa11", "ip": f"192.0.2.8{n}", "ip6": f"2a05:d014::8{n}",
            "state": "running"}


@pytest.fixture
def app(tmp_path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "app.ini").write_text("[production]\napp_name = shop\nrunner = main.py\n")
    (root / "main.py").write_text("def application(environ, start_response):\n"
                                  "    start_response('200 OK', [])\n    return [b'hi']\n")
    return root


class Members:
    """The seam where the roll hands a member to the node: deploy, activate and the
    guard (``balanced`` on each member) are recorded in the same log as the provider's
    changes; ``failing`` fail their gate."""

    def __init__(self, monkeypatch, events: list[str]) -> None:
        self.events, self.failing = events, set()
        self.live: dict[str, int] = {}
        self.guarded: dict[str, str] = {}
        self.released: list[str] = []
        monkeypatch.setattr(update, "deploy_to", self.deploy)
        monkeypatch.setattr(_balanced, "activate_on", self.activate)
        monkeypatch.setattr(_provider_front, "guard_members", self.guard)
        monkeypatch.setattr(_balanced, "release", self.release)
        monkeypatch.setattr(_balanced, "redeploy_on", self.restart)

    def restart(self, console, node, location, changes) -> _balanced.Change:
        self.events.append(f"restart {node}")
        previous = self.live[node]
        self.live[node] += 1
        return _balanced.Change(node, f"v{self.live[node]}", f"v{previous}",
                                text=f"{node}: restarted")

    def release(self, console, member, location, keep_prev=True) -> None:
        self.released.append(member)

    def guard(self, console, location, vias) -> None:
        assert location.startswith(LOCATION)
        self.guarded.update(vias)

    def deploy(self, console, node, plan, ask=False) -> update.Outcome:
        self.events.append(f"deploy {node}")
        if node in self.failing:
            raise SilverError(f"shop.v{self.live.get(node, 0) + 1} failed its health check: "
                              "HTTP 500; the old version keeps serving")
        previous = self.live.get(node)
        self.live[node] = (previous or 0) + 1
        return update.Outcome(node, f"v{self.live[node]}",
                              f"v{previous}" if previous else None, 1200, 3, 1.0)

    def activate(self, console, node, location, version) -> _balanced.Change:
        self.events.append(f"activate {node} {version}")
        previous = self.live[node]
        self.live[node] = previous - 1 if version == "prev" else int(version.removeprefix("v"))
        version = f"v{self.live[node]}"
        return _balanced.Change(node, version, f"v{previous}",
                                text=f"{node}: shop.{version} live at {location}")


def first_deploy(app: Path, provider: str, location: str = LOCATION, *more: str):
    """``silver update`` that makes web1 and web2 the location's members."""
    return silver("-y", "update", str(app), location, "--node", "web1", "--node", "web2",
                  "--balancer", f"provider:{provider}", *more)


def register(provider: str, driver: str, names_ids: list[tuple[str, str]]) -> None:
    for name, node_id in names_ids:
        NodeRegistry().put(name, provider=provider, driver=driver, node_id=node_id,
                           address="192.0.2.1")


def aws_config(extra: str = "") -> None:
    write_config("[provider:aws]\ndriver = ec2\nkey = AKIAIOSFODNN7EXAMPLE\n"
                 f"secret = {SECRET}\nregion = eu-central-1\n{extra}")


@pytest.fixture
def aws(api, monkeypatch):
    events: list[str] = []
    ec2 = ec2_api(api, group_exists=True)
    ec2["instances"] += [ec2_instance(1), ec2_instance(2)]
    elb = elb_api(api, events)
    register("aws", "ec2", [("web1", "i-0web1"), ("web2", "i-0web2")])
    aws_config()
    sleeps: list[float] = []        # the waits for ELB (others poll in milliseconds)
    monkeypatch.setattr(time, "sleep", lambda s: sleeps.append(s) if s >= 1 else None)
    return elb, events, Members(monkeypatch, events), sleeps


def test_elb_is_made_for_the_location_and_rolls_each_batch_in_order(aws, app):
    elb, events, members, sleeps = aws
    result = first_deploy(app, "aws")
    assert result.status == 0, result.stderr
    lb = elb["balancers"][NAME]
    form = lb["form"]
    assert (form["Listeners.member.1.Protocol"], form["Listeners.member.1.LoadBalancerPort"],
            form["Listeners.member.1.InstanceProtocol"],
            form["Listeners.member.1.InstancePort"]) == ("HTTP", "80", "HTTP", "80")
    assert lb["zones"] == ["eu-central-1a"]             # the members' zone
    # new members: deployed through their own gate, then attached (and waited for)
    assert events[0] == f"create {NAME}"
    assert sorted(events[1:3]) == ["deploy web1", "deploy web2"]
    assert sorted(events[3:]) == ["attach i-0web1", "attach i-0web2"]
    assert sleeps == [ELB_READY_WAIT]
    assert "web1: shop.v1 live at shop.test" in result.stdout
    assert f"{NAME}-1234567890.eu-central-1.elb.amazonaws.com" in result.stderr
    # each member takes the location only from the VPC ELB's nodes connect from
    assert members.guarded == {"web1": "172.31.0.0/16", "web2": "172.31.0.0/16"}
    assert topology.get(LOCATION) == topology.Topology(LOCATION, "provider:aws",
                                                       ["web1", "web2"], "1", "shop")

    # later: no flags; one member at a time, detached, deployed, attached again
    events.clear()
    sleeps.clear()
    result = silver("-y", "update", str(app), LOCATION)
    assert result.status == 0, result.stderr
    assert events == ["detach i-0web1", "deploy web1", "attach i-0web1",
                      "detach i-0web2", "deploy web2", "attach i-0web2"]
    assert sleeps == [ELB_READY_WAIT, ELB_READY_WAIT]
    assert "web2: shop.v2 live at shop.test (was v1" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_a_failing_batch_stops_and_the_updated_members_go_back(aws, app):
    elb, events, members, _ = aws
    assert first_deploy(app, "aws").status == 0
    events.clear()
    members.failing = {"web2"}
    result = silver("-y", "update", str(app), LOCATION)
    assert result.status == 1
    assert events == ["detach i-0web1", "deploy web1", "attach i-0web1",
                      "detach i-0web2", "deploy web2", "attach i-0web2",   # old version
                      "detach i-0web1", "activate web1 v1", "attach i-0web1"]
    assert members.live == {"web1": 1, "web2": 1}
    assert "web2: FAILED: shop.v2 failed its health check" in result.stdout
    assert ("rollout of shop.test stopped: web1 back on v1; every member serves the "
            "version it served before") in result.stdout
    assert sorted(elb["balancers"][NAME]["instances"]) == ["i-0web1", "i-0web2"]


def test_activate_prev_rolls_through_the_same_rules(aws, app):
    elb, events, members, _ = aws
    assert first_deploy(app, "aws").status == 0
    assert silver("-y", "update", str(app), LOCATION).status == 0
    events.clear()
    result = silver("activate", LOCATION, "prev")
    assert result.status == 0, result.stderr
    assert events == ["detach i-0web1", "activate web1 prev", "attach i-0web1",
                      "detach i-0web2", "activate web2 prev", "attach i-0web2"]
    assert members.live == {"web1": 1, "web2": 1}


def test_restart_rolls_through_the_same_rules(aws, app):
    elb, events, members, _ = aws
    assert first_deploy(app, "aws").status == 0
    events.clear()
    assert silver("restart", LOCATION).status == 0
    assert events == ["detach i-0web1", "restart web1", "attach i-0web1",
                      "detach i-0web2", "restart web2", "attach i-0web2"]


def test_a_removed_member_is_detached_then_released(aws, app):
    elb, events, members, _ = aws
    assert first_deploy(app, "aws").status == 0
    events.clear()
    result = silver("-y", "update", str(app), LOCATION, "--remove-node", "web2")
    assert result.status == 0, result.stderr
    assert events == ["deploy web1", "detach i-0web2"] and members.released == ["web2"]
    assert elb["balancers"][NAME]["instances"] == ["i-0web1"]
    assert topology.get(LOCATION).members == ["web1"]


def test_batches_and_the_ready_wait_follow_the_config(aws, app):
    elb, events, members, sleeps = aws
    aws_config("balancer_ready_wait = 45\n")
    assert first_deploy(app, "aws", LOCATION, "--batch", "100%").status == 0
    events.clear()
    sleeps.clear()
    assert silver("-y", "update", str(app), LOCATION).status == 0
    # a batch of every member is not detached (the location would have none left)
    assert sorted(events[:2]) == ["deploy web1", "deploy web2"] and len(events) == 2
    assert sleeps == [45]


def test_deactivate_deletes_the_load_balancer_and_the_record(aws, app):
    elb, events, members, _ = aws
    assert first_deploy(app, "aws").status == 0
    result = silver("deactivate", LOCATION)
    assert result.status == 0, result.stderr
    assert sorted(members.released) == ["web1", "web2"]
    assert events[-1] == f"delete {NAME}" and elb["balancers"] == {}
    assert topology.get(LOCATION) is None


def test_a_provider_refusal_is_one_line(aws, app, api):
    elb, events, members, _ = aws
    api.route("GET", ELB_ROOT, lambda req, m: (400, (
        f'<ErrorResponse xmlns="{ELB_NS}"><Error><Type>Sender</Type><Code>'
        "TooManyLoadBalancers</Code><Message>Exceeded quota of account 123456789012"
        "</Message></Error><RequestId>x</RequestId></ErrorResponse>")))
    assert_one_line_error(
        first_deploy(app, "aws"), 1,
        "Amazon Elastic Load Balancing: listing load balancers failed: "
        "TooManyLoadBalancers: Exceeded quota of account 123456789012")
    assert members.live == {} and topology.get(LOCATION) is None


def test_members_of_another_provider_and_https_are_refused(aws, app):
    NodeRegistry().put("web3", provider="local", driver="local", address="10.213.3.2")
    assert_one_line_error(
        silver("-y", "update", str(app), LOCATION, "--node", "web1", "--node", "web3",
               "--balancer", "provider:aws"), 2,
        "web3 was not made with [provider:aws]: its load balancer fronts only that "
        "provider's nodes")
    assert_one_line_error(
        first_deploy(app, "aws", LOCATION, "--https", "required"), 2,
        "HTTPS at a provider's balancer (provider:aws) is not built yet")


def test_query_of_a_provider_balancer_says_to_query_a_member(aws):
    assert_one_line_error(silver("query", "provider:aws"), 2,
                          "provider:aws is a provider's load balancer, not a node")


def test_a_driver_without_a_load_balancer_is_refused(api, app, tmp_path):
    write_config("[provider:dummy]\ndriver = dummy\ncreds = 0\n")
    NodeRegistry().put("web1", provider="dummy", driver="dummy", node_id="1")
    assert_one_line_error(
        silver("-y", "update", str(app), LOCATION, "--node", "web1",
               "--balancer", "provider:dummy"), 2,
        "--balancer provider:dummy: driver 'dummy' has no load balancer silver can drive "
        "(ec2: ELB, gce: GCE's network load balancer)")


# --- GCE: a forwarding rule, a target pool and an HTTP health check ---------------------

def gce_lb_api(api, state: dict, events: list[str]) -> None:
    """Target pools, forwarding rules and legacy HTTP health checks of one region."""
    R = P + f"/regions/{REGION}"
    region = {"kind": "compute#region", "id": "1230", "name": REGION, "status": "UP",
              "zones": [f"{SELF}/zones/{ZONE}"], "quotas": [],
              "selfLink": f"{SELF}/regions/{REGION}", "description": REGION,
              "creationTimestamp": "1969-12-31T16:00:00.000-08:00"}
    api.route("GET", R, (200, region))
    state.update(checks={}, pools={}, rules={}, health={})

    def operation(target: str, kind: str = "compute#operation") -> tuple[int, dict]:
        state["ops"] += 1
        name = f"operation-lb-{state['ops']}"
        return 200, {"kind": kind, "id": str(state["ops"]), "name": name, "status": "DONE",
                     "progress": 100, "operationType": "insert", "targetLink": target,
                     "selfLink": f"{SELF}/regions/{REGION}/operations/{name}",
                     "insertTime": "2026-12-07T06:00:00.000-08:00"}

    api.route("GET", R + r"/operations/([\w-]+)", lambda r, m: (200, {
        "kind": "compute#operation", "id": "1", "name": m[1], "status": "DONE",
        "progress": 100, "selfLink": f"{SELF}/regions/{REGION}/operations/{m[1]}"}))

    def collection(path: str, store: dict, label: str, render) -> None:
        """List, insert, get and delete of one kind of resource, named in the body."""
        url = SELF + path.removeprefix(P)

        def add(req, m):
            store[req.json["name"]] = dict(req.json)
            events.append(f"{label} {req.json['name']}")
            return operation(f"{url}/{req.json['name']}")

        def delete(req, m):
            del store[m[1]]
            events.append(f"delete {label} {m[1]}")
            return operation(f"{url}/{m[1]}")

        api.route("GET", path, lambda r, m: (200, {"items": [render(d) for d in
                                                             store.values()]}))
        api.route("POST", path, add)
        api.route("GET", path + r"/([\w-]+)", lambda r, m: (200, render(store[m[1]])))
        api.route("DELETE", path + r"/([\w-]+)", delete)

    collection(P + "/global/httpHealthChecks", state["checks"], "health check", lambda d: {
        "kind": "compute#httpHealthCheck", "id": "7001", **d,
        "selfLink": f"{SELF}/global/httpHealthChecks/{d['name']}",
        "creationTimestamp": "2026-12-07T06:00:00.000-08:00"})
    collection(R + "/targetPools", state["pools"], "target pool", lambda d: {
        "kind": "compute#targetPool", "id": "5101", "name": d["name"],
        "region": f"{SELF}/regions/{REGION}", "healthChecks": d.get("healthChecks", []),
        "instances": d.get("instances", []), "sessionAffinity": "NONE",
        "selfLink": f"{SELF}/regions/{REGION}/targetPools/{d['name']}",
        "creationTimestamp": "2026-12-07T06:00:00.000-08:00"})
    collection(R + "/forwardingRules", state["rules"], "forwarding rule", lambda d: {
        "kind": "compute#forwardingRule", "id": "6101", "name": d["name"],
        "region": f"{SELF}/regions/{REGION}", "IPAddress": "34.89.7.7",
        "IPProtocol": d["IPProtocol"], "portRange": f"{d['portRange']}-{d['portRange']}",
        "target": d["target"],
        "selfLink": f"{SELF}/regions/{REGION}/forwardingRules/{d['name']}",
        "creationTimestamp": "2026-12-07T06:00:00.000-08:00"})

    def pool_change(req, m):
        data, url = state["pools"][m[1]], req.json["instances"][0]["instance"]
        name = url.rsplit("/", 1)[-1]
        if m[2] == "addInstance":
            data.setdefault("instances", []).append(url)
            events.append(f"attach {name}")
        else:
            data["instances"].remove(url)
            events.append(f"detach {name}")
        return operation(f"{SELF}/regions/{REGION}/targetPools/{m[1]}")

    def health(req, m):
        url = req.json["instance"]
        name = url.rsplit("/", 1)[-1]
        states = state["health"].get(name, ["HEALTHY"])
        current = states.pop(0) if len(states) > 1 else states[0]
        return 200, {"kind": "compute#targetPoolInstanceHealth", "healthStatus": [
            {"healthState": current, "instance": url, "ipAddress": "34.89.7.7", "port": 80}]}

    api.route("POST", R + r"/targetPools/([\w-]+)/(addInstance|removeInstance)", pool_change)
    api.route("POST", R + r"/targetPools/([\w-]+)/getHealth", health)


@pytest.fixture
def gce(api, monkeypatch, tmp_path):
    events: list[str] = []
    state = gce_api(api)
    state["instances"] += [{"name": f"web{n}", "machineType":
                            f"{SELF}/zones/{ZONE}/machineTypes/e2-small"} for n in (1, 2)]
    gce_lb_api(api, state, events)
    gce_config(tmp_path)
    register("gce", "gce", [("web1", "44web1"), ("web2", "44web2")])
    return state, events, Members(monkeypatch, events)


def test_gce_health_check_pool_and_rule_then_a_rolling_deploy(gce, app, api):
    state, events, members = gce
    result = first_deploy(app, "gce", f"{LOCATION}/api")
    assert result.status == 0, result.stderr
    name = balancer_name(f"{LOCATION}/api")
    check, = state["checks"].values()
    assert (check["name"], check["host"], check["requestPath"], check["port"]) == \
        (f"{name}-hc", LOCATION, "/api/.silver/health", 80)
    assert (check["checkIntervalSec"], check["timeoutSec"], check["unhealthyThreshold"],
            check["healthyThreshold"]) == (2, 2, 2, 2)
    pool = state["pools"][f"{name}-tp"]
    assert pool["healthChecks"] == [f"{SELF}/global/httpHealthChecks/{name}-hc"]
    rule = state["rules"][name]
    assert (rule["IPProtocol"], rule["portRange"]) == ("TCP", "80")
    assert rule["target"].endswith(f"/regions/{REGION}/targetPools/{name}-tp")
    assert events[:3] == [f"health check {name}-hc", f"target pool {name}-tp",
                          f"forwarding rule {name}"]
    assert sorted(events[3:]) == ["attach web1", "attach web2", "deploy web1", "deploy web2"]
    assert events.index("attach web1") > events.index("deploy web1")
    assert "34.89.7.7" in result.stderr
    assert members.guarded == {}         # GCE passes the client's address: no guard

    events.clear()
    state["health"]["web1"] = ["UNHEALTHY", "UNHEALTHY", "HEALTHY"]
    health_asked = len(api.sent("POST", P + r"/regions/[\w-]+/targetPools/[\w-]+/getHealth"))
    result = silver("-y", "update", str(app), f"{LOCATION}/api")
    assert result.status == 0, result.stderr
    assert events == ["detach web1", "deploy web1", "attach web1",
                      "detach web2", "deploy web2", "attach web2"]
    asked = api.sent("POST", P + r"/regions/[\w-]+/targetPools/[\w-]+/getHealth")
    assert len(asked) - health_asked == 4           # web1 until HEALTHY (3), then web2
    assert topology.get(f"{LOCATION}/api").balancer == "provider:gce"


def test_gce_a_member_that_never_gets_healthy_fails_its_batch(gce, app, monkeypatch):
    from silverlining.providers import balancers

    state, events, members = gce
    assert first_deploy(app, "gce").status == 0
    events.clear()
    state["health"]["web2"] = ["UNHEALTHY"]
    monkeypatch.setattr(balancers, "GCE_READY_TIMEOUT", 0.0)
    result = silver("-y", "update", str(app), LOCATION)
    assert result.status == 1, result.stderr
    assert "web2: FAILED: web2: not HEALTHY at load balancer" in result.stdout
    # web2 changed but GCE never saw it up: it goes back too (and is still not up)
    assert events == ["detach web1", "deploy web1", "attach web1",
                      "detach web2", "deploy web2", "attach web2",
                      "detach web1", "activate web1 v1", "attach web1",
                      "detach web2", "activate web2 v1", "attach web2"]
    assert members.live == {"web1": 1, "web2": 1}
    assert "rollout of shop.test stopped: web1 back on v1;" in result.stdout
    assert "web2: rolling back FAILED: web2: not HEALTHY" in result.stdout


def test_gce_deactivate_deletes_rule_pool_and_check(gce, app):
    state, events, members = gce
    assert first_deploy(app, "gce").status == 0
    events.clear()
    assert silver("deactivate", LOCATION).status == 0
    assert events == [f"delete forwarding rule {NAME}", f"delete target pool {NAME}-tp",
                      f"delete health check {NAME}-hc"]
    assert state["rules"] == state["pools"] == state["checks"] == {}


def test_balancer_names_fit_both_providers():
    import re

    for location in ("shop.test", "a-very-long-host-name.example.com/some/deep/path", "*",
                     ".example.com", "Shop.Test/API"):
        name = balancer_name(location)
        assert len(name) <= 32 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    assert balancer_name("shop.test/a") != balancer_name("shop.test/b")
