"""A location served by three (then four) web nodes behind an HAProxy balancer node.

Real local nodes on the nodes' private network: ``lb-TAG`` and ``webN-TAG``. The
app answers with its mark, its node and REMOTE_ADDR; a request loop through the
balancer counts what fails while the topology changes under it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

TAG = os.environ.get("SILVER_TEST_NODE_TAG") or "bal"
LB = f"lb-{TAG}"
WEB = [f"web{i}-{TAG}" for i in range(1, 5)]
HOST = "shop.test"

APP = '''\
import json, os, socket
MARK = {mark!r}
FAIL_ON = {fail_on!r}

def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        ok = socket.gethostname() != FAIL_ON
        start_response("200 OK" if ok else "500 Internal Server Error",
                       [("Content-Type", "text/plain")])
        return [b"ok" if ok else b"failing here"]
    body = json.dumps({{"mark": MARK, "node": socket.gethostname(),
                        "remote": environ.get("REMOTE_ADDR"),
                        "instance": os.environ.get("SILVER_INSTANCE_NAME"),
                        "greeting": os.environ.get("GREETING")}}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


def write_app(root: Path, mark: str, fail_on: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.ini").write_text("[parameter:greeting]\ndefault = hello\n\n"
                                  "[production]\napp_name = shop\nrunner = main.py\n"
                                  "health_check = /health\n")
    (root / "main.py").write_text(APP.format(mark=mark, fail_on=fail_on))
    return root


def get(address: str, host: str = HOST, path: str = "/", timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def answers(address: str, count: int = 30) -> list[dict]:
    """What ``count`` requests through the balancer were answered with."""
    out = []
    for _ in range(count):
        status, body = get(address)
        assert status == 200, (status, body[:300])
        out.append(json.loads(body))
    return out


@dataclass
class Loop:
    """Requests through the balancer, one after another, until stopped."""

    address: str
    results: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "Loop":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, body = get(self.address)
                ok = status == 200
                what = json.loads(body)["node"] if ok else f"{status} {body[:80]!r}"
            except (OSError, ValueError, http.client.HTTPException) as exc:
                ok, what = False, repr(exc)
            self.results.append((started, ok, what))
            time.sleep(0.01)

    def failed(self, since: float = 0.0) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if not r[1] and r[0] >= since]

    def count(self, since: float = 0.0) -> int:
        return sum(1 for r in self.results if r[0] >= since)


@pytest.fixture(scope="module")
def cluster(node_env, make_module_node, tmp_path_factory):
    """The balancer and four web nodes, made at once; the first three serve shop.test."""
    with ThreadPoolExecutor(max_workers=5) as pool:
        made = list(pool.map(lambda n: make_module_node(n, "--setup-node"), [LB, *WEB]))
    app = write_app(tmp_path_factory.mktemp("shop") / "v1", "v1")
    args = [a for w in WEB[:3] for a in ("--node", w)]
    node_env.silver("-y", "update", str(app), HOST, *args, "--balancer", LB,
                    "--noetchosts", check=True)
    return {n.name: n.address for n in made}


def deploy(node_env, tmp_path: Path, mark: str, *extra: str, fail_on: str = "",
           check: bool = True):
    app = write_app(tmp_path / mark, mark, fail_on)
    return node_env.silver("-y", "update", str(app), HOST, "--noetchosts", *extra,
                           check=check)


def test_the_balancer_fronts_every_member_and_the_app_sees_the_client(node_env, cluster):
    seen = answers(cluster[LB])
    assert {a["node"] for a in seen} == set(WEB[:3])
    # the client here is the host, which reaches the balancer from its side of the link
    client = cluster[LB].rsplit(".", 1)[0] + ".1"
    assert {a["remote"] for a in seen} == {client}
    out = node_env.silver("query", LB, check=True).stdout
    for web in WEB[:3]:
        assert re.search(rf"{web}\s+\S+\s+v\d+\s+UP\s+takes traffic", out), out


def test_a_member_refuses_the_balanced_location_but_serves_others_directly(
        node_env, cluster, tmp_path):
    status, _ = get(cluster[WEB[0]])
    assert status == 403
    status, _ = get(cluster[WEB[0]], path="/.silver/health")
    assert status == 403
    other = write_app(tmp_path / "other", "direct")
    (other / "app.ini").write_text((other / "app.ini").read_text().replace("shop", "direct"))
    node_env.silver("-y", "update", str(other), "direct.test", "--node", WEB[0],
                    "--noetchosts", check=True)
    status, body = get(cluster[WEB[0]], host="direct.test")
    assert status == 200 and json.loads(body)["mark"] == "direct"


def test_a_rolling_deploy_with_no_flags_loses_no_request_and_reaches_all(
        node_env, cluster, tmp_path):
    with Loop(cluster[LB]) as loop:
        time.sleep(0.5)
        out = deploy(node_env, tmp_path, "v-roll").stdout
        time.sleep(0.5)
    assert loop.count() > 50 and loop.failed() == [], loop.failed()[:5]
    for web in WEB[:3]:
        assert re.search(rf"^{web}: shop\.v\d+ live at {HOST}", out, re.M), out
    seen = answers(cluster[LB])
    assert {a["mark"] for a in seen} == {"v-roll"}
    assert {a["node"] for a in seen} == set(WEB[:3])


def live_mark(address: str) -> str:
    """The mark every member serves (the cluster is never left mixed)."""
    marks = {a["mark"] for a in answers(address)}
    assert len(marks) == 1, marks
    return marks.pop()


def test_a_version_failing_on_the_second_member_stops_the_rollout(
        node_env, cluster, tmp_path):
    good = live_mark(cluster[LB])
    proc = deploy(node_env, tmp_path, "v-bad", "--batch", "1", fail_on=WEB[1], check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{WEB[1]}: FAILED" in proc.stdout
    assert re.search(rf"rollout of {HOST} stopped: {WEB[0]} back on v\d+", proc.stdout), \
        proc.stdout
    seen = answers(cluster[LB], 40)
    assert {a["mark"] for a in seen} == {good}
    assert {a["node"] for a in seen} == set(WEB[:3])


def test_a_member_that_stops_answering_leaves_the_rotation(node_env, cluster):
    with Loop(cluster[LB]) as loop:
        time.sleep(1)
        stopped = time.monotonic()
        with node_env.ssh(WEB[2]) as ssh:
            ssh.run(["systemctl", "stop", "nginx"])
        try:
            time.sleep(6)
            during = loop.failed(stopped)
            total = loop.count(stopped)
            after = loop.failed(stopped + 3)
            assert loop.count(stopped + 3) > 20
        finally:
            with node_env.ssh(WEB[2]) as ssh:
                ssh.run(["systemctl", "start", "nginx"])
        back = time.monotonic() + 10
        while time.monotonic() < back and not any(
                r[2] == WEB[2] for r in loop.results if r[0] > stopped + 6):
            time.sleep(0.2)
    assert len(during) <= total / 100, during[:5]
    assert after == [], after[:5]
    assert any(r[2] == WEB[2] for r in loop.results if r[0] > stopped + 6), \
        "the member did not come back after it answered again"


def test_a_fourth_member_takes_traffic_only_after_its_gate_and_leaves_drained(
        node_env, cluster, tmp_path):
    with Loop(cluster[LB]) as loop:       # the others roll to v-four, then web4 joins
        out = deploy(node_env, tmp_path, "v-four", "--node", WEB[3]).stdout
        time.sleep(2)
        added = loop.count()
        assert any(r[2] == WEB[3] for r in loop.results), "the new member gets no traffic"
        assert re.search(rf"^{WEB[3]}: shop\.v\d+ live at {HOST}.*\(added\)", out, re.M), out
        removed = node_env.silver("-y", "update", str(tmp_path / "v-four"), HOST,
                                  "--remove-node", WEB[3], "--noetchosts", check=True).stdout
        gone = time.monotonic()
        time.sleep(1)
    assert added > 20 and loop.failed() == [], loop.failed()[:5]
    assert f"{WEB[3]}: removed from {HOST}" in removed
    assert not any(r[2] == WEB[3] for r in loop.results if r[0] > gone)
    seen = answers(cluster[LB])
    assert {a["node"] for a in seen} == set(WEB[:3]) and {a["mark"] for a in seen} == {"v-four"}


def test_activate_prev_rolls_every_member_back(node_env, cluster, tmp_path):
    old = live_mark(cluster[LB])
    deploy(node_env, tmp_path, "v-new")
    with Loop(cluster[LB]) as loop:
        node_env.silver("activate", HOST, "prev", check=True)
    assert loop.failed() == [], loop.failed()[:5]
    seen = answers(cluster[LB])
    assert {a["mark"] for a in seen} == {old}
    assert {a["node"] for a in seen} == set(WEB[:3])


def test_params_and_restart_with_no_flags_roll_over_every_member(node_env, cluster):
    before = answers(cluster[LB])
    with Loop(cluster[LB]) as loop:
        node_env.silver("params", HOST, "--set", "greeting=hi there", check=True)
        changed = answers(cluster[LB])
        node_env.silver("restart", HOST, check=True)
    assert loop.failed() == [], loop.failed()[:5]
    assert {a["node"] for a in changed} == set(WEB[:3])
    assert {a["greeting"] for a in changed} == {"hi there"}
    restarted = answers(cluster[LB])
    for seen, earlier in ((changed, before), (restarted, changed)):
        old = {a["node"]: a["instance"] for a in earlier}
        assert all(a["instance"] != old[a["node"]] for a in seen), (earlier, seen)
    assert {a["greeting"] for a in restarted} == {"hi there"}


def test_another_machine_learns_the_topology_from_the_balancer(node_env, cluster):
    record = node_env.home / "balanced.json"
    saved = record.read_text()
    record.unlink()
    try:
        proc = node_env.silver("logs", HOST, "-n", "5")
        assert proc.returncode != 0                  # shop.test is no node it knows
        out = node_env.silver("query", LB, check=True).stdout
        assert f"{HOST}  (balanced: shop" in out
        assert json.loads(record.read_text())[HOST]["members"] == WEB[:3]
        node_env.silver("logs", HOST, "-n", "5", check=True)
        ran = node_env.silver("run", HOST, "python", "-c",
                              "import socket; print(socket.gethostname())", check=True)
        assert ran.stdout.strip() == WEB[0]
    finally:
        record.write_text(saved)


def test_a_database_of_each_members_own_is_refused(node_env, cluster, tmp_path):
    """Each member would get its own PostgreSQL: refused in one line, nothing changed."""
    app = write_app(tmp_path / "db", "v-db")
    (app / "app.ini").write_text((app / "app.ini").read_text() + "service.postgresql =\n")
    before = {a["mark"] for a in answers(cluster[LB])}
    proc = node_env.silver("-y", "update", str(app), HOST, "--noetchosts")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("silver: error: service.postgresql in "), lines
    assert "each node would keep its own copy of the data" in lines[0]
    assert {a["mark"] for a in answers(cluster[LB])} == before


# A worker of an app on the balancer node: listens where HAProxy sends every balanced
# host's ACME HTTP-01 challenges (certbot's port while it validates)
SQUAT = """import http.server
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"squatted")
http.server.HTTPServer(("127.0.0.1", 8402), Answer).serve_forever()
"""


def test_the_balancer_node_takes_no_app(node_env, cluster, tmp_path):
    """An app's process on the balancer could answer the challenges of every name it
    fronts (and so be issued their certificates): a deploy there is refused, in one
    line, before it is built or started (it failed on nginx, whose port 80 is
    HAProxy's, in systemd's words)."""
    app = tmp_path / "squat"
    app.mkdir()
    (app / "app.ini").write_text("[production]\napp_name = squat\n\n"
                                 "[process:acme]\ncommand = squat.py\n")
    (app / "squat.py").write_text(SQUAT)
    proc = node_env.silver("-y", "update", str(app), "--node", LB, "--noetchosts")
    challenge = "/.well-known/acme-challenge/token"
    deadline = time.monotonic() + 2
    while get(cluster[LB], HOST, challenge)[1] != b"squatted" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert get(cluster[LB], HOST, challenge)[1] != b"squatted"
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("silver: error: ") and "this node is a balancer" in error, error
