"""The balancer's pure parts: HAProxy's configuration from a topology, the runtime
API's ``show stat`` parser, the rolling order, and the members' nginx guard.

When haproxy is installed on the test machine the generated file is also checked
with ``haproxy -c``.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from silverlining import topology
from silverlining.commands._balanced import Change, roll
from silverlining.errors import SilverError, UsageError
from silverlining.node.haproxy import Member, Site, generate, parse_stat
from silverlining.node.routing import Route, generate as nginx_generate


def site(location: str, *members: tuple[str, str, str]) -> Site:
    return Site(location, tuple(Member(*m) for m in members))


def backend_block(text: str, location: str) -> str:
    name = Site(location, ()).backend
    return re.search(rf"^backend {re.escape(name)}\n(.*?)(?=^\S|\Z)", text,
                     flags=re.S | re.M).group(1)


def test_each_member_is_checked_on_the_locations_health_page_with_its_host():
    text = generate([site("shop.test/api", ("web1", "10.213.0.3", "ready"),
                          ("web2", "10.213.0.4", "ready"))])
    block = backend_block(text, "shop.test/api")
    assert "http-check send meth GET uri /api/.silver/health ver HTTP/1.1 hdr Host shop.test" \
        in block
    assert "http-check expect status 200" in block
    servers = re.findall(r"server (\S+) (\S+) (.*)", block)
    assert [(n, a) for n, a, _ in servers] == [("web1", "10.213.0.3:80"),
                                               ("web2", "10.213.0.4:80")]
    for _, _, options in servers:
        assert "check" in options and "fall 2" in options and "disabled" not in options


def test_a_silent_member_leaves_within_three_seconds():
    """Two failed checks take it out: inter + timeout check + fastinter + timeout check."""
    text = generate([site("a.test", ("web1", "10.0.0.1", "ready"))])
    opts = re.search(r"server web1 \S+ (.*)", text).group(1).split()
    value = {k: v for k, v in zip(opts, opts[1:])}
    ms = {k: int(v.removesuffix("ms")) if v.endswith("ms") else int(v.removesuffix("s")) * 1000
          for k, v in value.items() if k in ("inter", "fastinter")}
    check = int(re.search(r"timeout check (\d+)ms", text).group(1))
    assert value["fall"] == "2"
    assert ms["inter"] + check + ms["fastinter"] + check < 3000


def test_retries_redispatch_and_the_client_address():
    text = generate([site("a.test", ("web1", "10.0.0.1", "ready"))])
    assert "option redispatch 1" in text
    assert re.search(r"retry-on .*conn-failure", text)
    assert "http-request disable-l7-retry if !METH_GET" in text     # POSTs are not replayed
    assert "http-request set-header X-Forwarded-For %[src]" in text  # never the client's own


def test_members_out_of_rotation_are_written_disabled():
    text = generate([site("a.test", ("web1", "10.0.0.1", "ready"),
                          ("web2", "10.0.0.2", "maint"), ("web3", "10.0.0.3", "drain"))])
    lines = {m.group(1): ln for ln in text.splitlines()
             if (m := re.search(r"server (web\d)", ln))}
    assert "disabled" not in lines["web1"]
    assert lines["web2"].endswith(" disabled") and lines["web3"].endswith(" disabled")


def test_exact_hosts_come_first_then_longest_paths_then_wildcards():
    text = generate([site("*"), site(".ex.com"), site("ex.com"), site("ex.com/a"),
                     site("ex.com/a/b")])
    order = [Site(loc, ()).backend for loc in ("ex.com/a/b", "ex.com/a", "ex.com", ".ex.com", "*")]
    assert re.findall(r"use_backend (\S+)", text) == ["silver_acme", *order]
    assert "default_backend silver_none" in text


def test_a_prefix_matches_itself_and_below_but_not_a_longer_name():
    line = next(ln for ln in generate([site("ex.com/a")]).splitlines()
                if ln.strip().startswith("use_backend loc_"))
    assert "{ path -m str /a }" in line and "{ path -m beg /a/ }" in line
    assert "-m beg /a }" not in line


def test_tls_ends_at_the_balancer_only_for_hosts_with_a_certificate():
    plain = generate([Site("a.test", (), "required")])
    assert ":443" not in plain and "redirect" not in plain
    text = generate([Site("a.test", (), "required"), Site("b.test", (), "auto"),
                     Site(".c.test", (), "required")], frozenset({"a.test", "b.test", "c.test"}))
    assert "    bind :443 ssl crt /etc/haproxy/silver-certs strict-sni" in text
    backends = {b.split("\n", 1)[0]: b for b in text.split("backend ")[1:]}
    a, b, c = (backends[Site(loc, ()).backend] for loc in ("a.test", "b.test", ".c.test"))
    for required in (a, c):
        assert "http-request redirect scheme https code 301 if !{ ssl_fc }" in required
        assert "Strict-Transport-Security max-age=31536000 if { ssl_fc }" in required
    assert "redirect" not in b and "Strict-Transport" not in b


def test_the_scheme_is_the_balancers_and_challenges_go_to_certbot():
    text = generate([site("a.test")])
    assert "http-request set-header X-Forwarded-Proto https if { ssl_fc }" in text
    assert "http-request set-header X-Forwarded-Proto http if !{ ssl_fc }" in text
    first = next(ln for ln in text.splitlines() if "use_backend" in ln)
    assert "silver_acme" in first and "!{ ssl_fc }" in first
    assert "server certbot 127.0.0.1:8402" in text


def test_same_topology_same_text():
    sites = [site("b.test", ("w2", "10.0.0.2", "ready")), site("a.test", ("w1", "10.0.0.1", "ready"))]
    assert generate(sites) == generate(list(reversed(sites)))


def test_haproxy_accepts_the_configuration(tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(generate([site("shop.test", ("web1", "10.0.0.1", "ready")),
                             site(".ex.com/api", ("web2", "10.0.0.2", "maint")), site("*")]))
    proc = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- show stat --------------------------------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9._-]{0,20}", fullmatch=True)
_rows = st.lists(st.fixed_dictionaries({
    "pxname": _names, "svname": _names, "scur": st.integers(0, 10_000).map(str),
    "status": st.sampled_from(["UP", "DOWN", "MAINT", "DRAIN", "UP 1/2", "no check"]),
    "weight": st.integers(0, 256).map(str),
    "check_status": st.sampled_from(["L7OK", "L4CON", "L7STS", ""])}), max_size=8)


def _stat_text(rows: list[dict], extra: bool) -> str:
    fields = ["pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "status",
              "weight", "check_status"] + (["future_field"] if extra else [])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", restval="",
                            lineterminator="\n")
    out.write("# " + ",".join(fields) + "\n")
    writer.writerow({"pxname": "silver", "svname": "FRONTEND", "status": "OPEN"})
    for row in rows:
        writer.writerow(row)
    writer.writerow({"pxname": "silver", "svname": "BACKEND", "status": "UP"})
    return out.getvalue() + "\n"


@given(_rows, st.booleans())
def test_show_stat_rows_come_back_as_written(rows, extra):
    rows = [r for r in rows if r["svname"] not in ("frontend", "backend")]
    assert parse_stat(_stat_text(rows, extra)) == rows


@given(st.text(max_size=200))
def test_show_stat_parser_never_fails_on_other_text(text):
    assert isinstance(parse_stat(text), list)


# --- batches ------------------------------------------------------------------------

@given(st.lists(_names, unique=True, min_size=1, max_size=30),
       st.one_of(st.integers(1, 40).map(str), st.integers(1, 100).map(lambda p: f"{p}%")))
def test_batches_cover_every_member_once_in_order(members, batch):
    order = topology.batches(members, batch)
    assert [m for b in order for m in b] == members
    sizes = {len(b) for b in order[:-1]}
    assert len(sizes) <= 1 and all(0 < len(b) <= len(order[0]) for b in order)


def test_batch_defaults_and_percentages():
    six = [f"w{i}" for i in range(6)]
    assert topology.batches(six, "1") == [[m] for m in six]
    assert topology.batches(six, "100%") == [six]
    assert topology.batches(six, "50%") == [six[:3], six[3:]]
    assert topology.batches(six, "1%") == [[m] for m in six]       # at least one
    assert topology.batches(six, "10") == [six]


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "a", "1.5", "%", "50 %", ""])
def test_bad_batches_are_refused(text):
    with pytest.raises(UsageError, match="--batch"):
        topology.check_batch(text)


# --- the members' nginx -----------------------------------------------------------

def test_a_balanced_location_answers_only_through_the_balancer():
    routes = [Route("shop.test", "", "shop", "v1", "/run/s.sock", via="10.213.0.5"),
              Route("other.test", "", "other", "v1", "/run/o.sock")]
    text = nginx_generate(routes, "/pages")
    shop = re.search(r"server_name shop\.test;.*?\n\}", text, flags=re.S).group(0)
    other = re.search(r"server_name other\.test;.*?\n\}", text, flags=re.S).group(0)
    assert "geo $realip_remote_addr $silver_via_10_213_0_5 {" in text
    assert re.search(r"\$silver_via_10_213_0_5 \{\n    default 0;\n    10\.213\.0\.5 1;", text)
    proxied = [b for b in re.findall(r"location [^{]*\{.*?\n    \}", shop, flags=re.S)
               if "proxy_pass" in b]
    assert len(proxied) == 3            # /.silver/health, /.silver/info, the app
    for block in proxied:
        assert "set_real_ip_from 10.213.0.5;" in block
        assert "if ($silver_via_10_213_0_5 = 0) { return 403; }" in block
    assert "set_real_ip_from" not in other and "return 403" not in other
    # the scheme the balancer saw, believed from the balancer's own connections only
    assert ("geo $realip_remote_addr $silver_from_10_213_0_5 {\n    default 0;\n"
            "    10.213.0.5 1;\n}") in text
    assert ('map "$silver_from_10_213_0_5$http_x_forwarded_proto" $silver_proto_10_213_0_5 {\n'
            '    default $scheme;\n    "1https" https;\n}') in text
    app = [b for b in proxied if "/run/s.sock" in b]
    assert len(app) == 1
    assert "proxy_set_header X-Forwarded-Proto $silver_proto_10_213_0_5;" in app[0]
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in other


def test_a_provider_balancer_is_let_through_from_its_network():
    """ELB's nodes connect from changing addresses in the VPC: the guard takes a CIDR."""
    text = nginx_generate([Route("shop.test", "", "shop", "v1", "/run/s.sock",
                                 via="172.31.0.0/16")], "/pages")
    assert re.search(r"geo \$realip_remote_addr \$silver_via_172_31_0_0_16 \{\n"
                     r"    default 0;\n    172\.31\.0\.0/16 1;", text)
    assert "set_real_ip_from 172.31.0.0/16;" in text
    assert "if ($silver_via_172_31_0_0_16 = 0) { return 403; }" in text


# --- the rolling order and its way back -----------------------------------------------

class FakeBalancer:
    """Records what the rollout asks of HAProxy (the real one: test_balancer.py in
    tests/integration)."""

    def __init__(self, batch: str) -> None:
        self.topo = topology.Topology("shop.test", "lb", [], batch)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def drain(self, members):
        self.calls.append(("drain", tuple(members)))

    def ready(self, members):
        self.calls.append(("ready", tuple(members)))


class Quiet:
    def info(self, _text):
        pass


def _change(fail_on=(), unchanged=()):
    def change(node):
        if node in fail_on:
            raise SilverError(f"{node} failed its health check")
        return Change(node, "v2", "v1", node not in unchanged, f"{node}: v2")
    return change


def _back(log):
    def back(change):
        log.append(change.node)
        return Change(change.node, change.previous, change.version, True)
    return back


def test_a_rollout_drains_changes_and_readies_each_batch_in_turn():
    lb, undone = FakeBalancer("2"), []
    rollout = roll(Quiet(), lb, ["w1", "w2", "w3"], _change(), _back(undone))
    assert [c.node for c in rollout.done] == ["w1", "w2", "w3"] and not rollout.failed
    assert lb.calls == [("drain", ("w1", "w2")), ("ready", ("w1", "w2")),
                        ("drain", ("w3",)), ("ready", ("w3",))]
    assert undone == []


def test_the_first_failing_batch_stops_and_the_changed_members_go_back():
    lb, undone = FakeBalancer("1"), []
    rollout = roll(Quiet(), lb, ["w1", "w2", "w3", "w4"], _change(fail_on={"w3"},
                                                                  unchanged={"w2"}),
                   _back(undone))
    assert rollout.done == [] and set(rollout.failed) == {"w3"}
    assert undone == ["w1"]                      # w2 had nothing to undo, w4 was not reached
    assert [c.node for c in rollout.rolled_back] == ["w1"]
    assert ("ready", ("w3",)) in lb.calls        # its old version serves: back in rotation
    assert not any("w4" in members for _, members in lb.calls)
    assert lb.calls[-2:] == [("drain", ("w1",)), ("ready", ("w1",))]


def test_a_batch_of_every_member_is_not_drained():
    lb = FakeBalancer("100%")
    roll(Quiet(), lb, ["w1", "w2"], _change(), _back([]))
    assert lb.calls == [("ready", ("w1", "w2"))]


def test_a_destroyed_node_leaves_the_topology(tmp_path, monkeypatch):
    monkeypatch.setenv("SILVER_HOME", str(tmp_path))
    topology.put(topology.Topology("shop.test", "lb1", ["web1", "web2"], "1", "shop"))
    topology.put(topology.Topology("blog.test", "lb2", ["web2"], "1", "blog"))
    assert set(topology.forget_node("web2")) == {"no longer a member of shop.test",
                                                 "forgot balanced location blog.test"}
    assert topology.get("shop.test").members == ["web1"]
    assert topology.get("blog.test") is None
    assert topology.forget_node("lb1") == ["forgot balanced location shop.test"]
    assert topology.forget_node("lb1") == []


def test_an_old_worker_counts_until_it_stops_listening():
    """After a reload the old worker still accepts until its listeners close: the
    reload waits for that (this process stands for the old worker)."""
    import os
    import socket

    from silverlining.node import haproxy

    me = str(os.getpid())
    assert not haproxy.still_listening(me) and not haproxy.still_listening(None)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        assert not haproxy.still_listening(me)          # bound, not listening yet
        listener.listen(1)
        assert haproxy.still_listening(me)
    assert not haproxy.still_listening(me)
    assert not haproxy.still_listening("999999999")     # gone
