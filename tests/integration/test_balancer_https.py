"""HTTPS at the balancer: TLS ends on the HAProxy node, the members serve plain HTTP.

Real local nodes, ``TAG-lb`` and ``TAG-w1``; pebble (``test_https.Pebble``) runs on
the host side of the balancer's link with its DNS answering every name with the
balancer's address, so HTTP-01 is validated through HAProxy's port 80. Served
certificates are checked against pebble's issuing root. The tests build on each
other: the certificate is issued under ``auto``, then ``required`` redirects, then
a renewal replaces it.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_balancer import get
from tests.integration.test_https import Pebble, curl
from tests.unit.test_https import selfsigned

pytestmark = pytest.mark.node

TAG = os.environ.get("SILVER_TEST_NODE_TAG") or "bt"
LB, WEB = f"{TAG}-lb", f"{TAG}-w1"
HOST = "tls.test"

APP = '''\
import json

def application(environ, start_response):
    body = json.dumps({"scheme": environ["wsgi.url_scheme"],
                       "remote": environ.get("REMOTE_ADDR")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


class At:
    """A node as ``curl``/``served`` want it (name, address, root commands)."""

    def __init__(self, node_env, name: str, address: str) -> None:
        self.env, self.name, self.address = node_env, name, address

    def root(self, command: str) -> str:
        with self.env.ssh(self.name) as ssh:
            return ssh.run(["sh", "-c", command], check=True).stdout


@pytest.fixture(scope="module")
def cluster(node_env, make_module_node):
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = list(pool.map(lambda n: make_module_node(n, "--setup-node"), [LB, WEB]))
    return {n.name: At(node_env, n.name, n.address) for n in made}


@pytest.fixture(scope="module")
def pebble(cluster, tmp_path_factory):
    for tool in ("pebble", "pebble-challtestsrv", "openssl", "curl"):
        assert shutil.which(tool), f"{tool} is not installed: scripts/test installs it"
    lb = cluster[LB].address
    server = Pebble(lb.rsplit(".", 1)[0] + ".1", lb, tmp_path_factory.mktemp("pebble"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def acme_env(node_env, pebble, tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("acme-config") / "silverlining.conf"
    path.write_text(Path(node_env.env["SILVER_CONFIG"]).read_text()
                    + f"acme_directory = {pebble.directory}\nacme_ca = {pebble.api_ca}\n")
    return {"SILVER_CONFIG": str(path)}


def deploy(node_env, env, tmp_path: Path, mode: str):
    app = tmp_path / f"app-{mode}"
    app.mkdir()
    (app / "app.ini").write_text("[production]\napp_name = tls\nrunner = main.py\n")
    (app / "main.py").write_text(APP)
    return node_env.silver("-y", "update", str(app), HOST, "--node", WEB, "--balancer", LB,
                           "--https", mode, "--noetchosts", check=True, env=env)


def served(address: str, cafile: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((address, 443), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=HOST) as tls:
            return tls.getpeercert(binary_form=True)


def test_the_balancer_gets_a_certificate_and_the_app_sees_https(
        node_env, cluster, pebble, acme_env, tmp_path):
    lb, web = cluster[LB], cluster[WEB]
    proc = deploy(node_env, acme_env, tmp_path, "auto")
    assert f"HTTPS for {HOST}: certificate issued" in proc.stderr, proc.stderr
    status, headers, body = curl(lb, HOST, pebble.issuer_root)     # verified: pebble's chain
    assert status == 0 and headers["status"] == "200", (headers, proc.stderr)
    assert json.loads(body)["scheme"] == "https"
    assert "strict-transport-security" not in headers
    status, body = get(lb.address, HOST)                          # auto: HTTP still serves
    assert status == 200 and json.loads(body)["scheme"] == "http"
    # the members hold no certificate: TLS ends at the balancer
    assert web.root("ls /etc/silverlining/certs 2>/dev/null | wc -l").strip() == "0"
    modes = lb.root(f"stat -c '%a %U' /etc/haproxy/silver-certs "
                    f"/etc/haproxy/silver-certs/{HOST}.pem").split()
    assert modes == ["700", "root", "600", "root"]


def test_the_scheme_cannot_be_spoofed(cluster):
    lb, web = cluster[LB], cluster[WEB]
    conn = http.client.HTTPConnection(lb.address, 80, timeout=5)
    conn.request("GET", "/", headers={"Host": HOST, "X-Forwarded-Proto": "https"})
    resp = conn.getresponse()
    assert json.loads(resp.read())["scheme"] == "http"           # the balancer sets it
    conn.close()
    # from the member itself (allowed in, but not the balancer): its own scheme
    out = web.root(f"curl -s -H 'Host: {HOST}' -H 'X-Forwarded-Proto: https' "
                   "http://127.0.0.1/")
    assert json.loads(out)["scheme"] == "http", out


def test_required_redirects_at_the_balancer_with_hsts(node_env, cluster, pebble, acme_env,
                                                      tmp_path):
    lb = cluster[LB]
    proc = deploy(node_env, acme_env, tmp_path, "required")
    assert f"HTTPS for {HOST}: certificate kept" in proc.stderr, proc.stderr
    conn = http.client.HTTPConnection(lb.address, 80, timeout=5)
    conn.request("GET", "/page?q=1", headers={"Host": HOST})
    resp = conn.getresponse()
    assert resp.status == 301 and resp.getheader("Location") == f"https://{HOST}/page?q=1"
    conn.close()
    _, headers, body = curl(lb, HOST, pebble.issuer_root)
    assert headers["status"] == "200" and json.loads(body)["scheme"] == "https"
    assert headers["strict-transport-security"] == "max-age=31536000"


def test_renewal_at_the_balancer_serves_the_new_certificate(cluster, pebble):
    lb = cluster[LB]
    before = served(lb.address, pebble.issuer_root)
    out = lb.root("/usr/local/sbin/silver-node certs-renew "
                  f"'{{\"renew_within\": 100000, \"hosts\": [\"{HOST}\"]}}'")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["renewed"] == [HOST] and not result["failed"], out
    assert served(lb.address, pebble.issuer_root) != before      # HAProxy reloaded


def test_your_own_certificate_is_served_at_the_balancer(node_env, cluster, tmp_path):
    """``--cert/--key`` on a balanced location: checked on this machine, installed on
    the balancer only, served there; the key is never printed."""
    lb, web = cluster[LB], cluster[WEB]
    host = "own-tls.test"
    cert, key = tmp_path / "own.pem", tmp_path / "own.key"
    selfsigned(cert, key, host)
    app = tmp_path / "own"
    app.mkdir()
    (app / "app.ini").write_text("[production]\napp_name = owntls\nrunner = main.py\n")
    (app / "main.py").write_text(APP)
    proc = node_env.silver("-y", "update", str(app), host, "--node", WEB, "--balancer", LB,
                           "--cert", str(cert), "--key", str(key), "--noetchosts", check=True)
    assert f"HTTPS for {host}: certificate installed" in proc.stderr, proc.stderr
    assert key.read_text().split("\n")[1] not in proc.stdout + proc.stderr
    status, headers, body = curl(lb, host, cert)                   # verified: our own cert
    assert status == 0 and headers["status"] == "200", headers
    assert json.loads(body)["scheme"] == "https"
    assert lb.root(f"stat -c '%a %U' /etc/haproxy/silver-certs/{host}.pem").split() == \
        ["600", "root"]
    assert web.root("ls /etc/silverlining/certs 2>/dev/null | wc -l").strip() == "0"
