"""HTTPS on a real local node, with certificates from a real ACME server.

pebble (Let's Encrypt's test ACME server, Debian package ``pebble``) and
pebble-challtestsrv (its DNS, answering every name with the node's address)
run on the host side of the node's link, 10.213.N.1, and nowhere else. The
node's provider section points ``acme_directory`` at pebble and ``acme_ca``
at the CA of pebble's API, in a config file of this module's own (the
session's config stays free of ACME settings). Served certificates are
checked against pebble's issuing root, fetched from its management port.

One node for the module; the tests run in order and build on each other
(secure.test gets its certificate first, later tests redirect and renew it).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.fixtures_apps import (  # noqa: F401 (fixtures)
    HELLO, http_get, live_version, node, setup_node)
from tests.unit.test_https import selfsigned

pytestmark = pytest.mark.node

ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT = 14000, 15000, 8053, 8055


class Pebble:
    """pebble and challtestsrv for one node, and what tests need to check against them."""

    def __init__(self, host_side: str, node_address: str, root: Path) -> None:
        self.host_side, self.node_address, self.root = host_side, node_address, root
        self.procs: list[subprocess.Popen] = []
        self.api_ca = root / "api-ca.pem"
        self.issuer_root = root / "issuer-root.pem"

    @property
    def directory(self) -> str:
        return f"https://{self.host_side}:{ACME_PORT}/dir"

    def start(self) -> None:
        self._api_certificate()
        config = self.root / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"{self.host_side}:{ACME_PORT}",
            "managementListenAddress": f"{self.host_side}:{MANAGEMENT_PORT}",
            "certificate": str(self.root / "api.pem"), "privateKey": str(self.root / "api.key"),
            "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}))
        log = (self.root / "pebble.log").open("w")
        dns = f"{self.host_side}:{DNS_PORT}"
        self.procs.append(subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", self.node_address, "-defaultIPv6", "",
             "-dns01", dns, "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"{self.host_side}:{DNS_MANAGEMENT_PORT}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        self.procs.append(subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", dns],
            env={"PATH": "/usr/bin:/bin", "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        while True:
            try:
                self.issuer_root.write_bytes(self._management("/roots/0"))
                break
            except OSError:
                assert all(p.poll() is None for p in self.procs), \
                    (self.root / "pebble.log").read_text()
                assert time.monotonic() < deadline, (self.root / "pebble.log").read_text()
                time.sleep(0.2)

    def _api_certificate(self) -> None:
        """A CA and, signed by it, pebble's API certificate for the host-side IP."""
        def ossl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=self.root)

        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        ossl("req", "-x509", *ec, "-keyout", "api-ca.key", "-out", "api-ca.pem", "-days", "2",
             "-subj", "/CN=silverlining test pebble API CA")
        ossl("req", *ec, "-keyout", "api.key", "-out", "api.csr", "-subj", f"/CN={self.host_side}")
        (self.root / "ext.cnf").write_text(f"subjectAltName=IP:{self.host_side}\n"
                                           "basicConstraints=CA:FALSE\n")
        ossl("x509", "-req", "-in", "api.csr", "-CA", "api-ca.pem", "-CAkey", "api-ca.key",
             "-CAcreateserial", "-out", "api.pem", "-days", "2", "-extfile", "ext.cnf")

    def _management(self, path: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.api_ca))
        url = f"https://{self.host_side}:{MANAGEMENT_PORT}{path}"
        with urllib.request.urlopen(url, context=context, timeout=5) as resp:
            return resp.read()

    def resolve(self, host: str, address: str) -> None:
        """Make challtestsrv answer ``host`` with ``address`` (pebble validates there)."""
        request = urllib.request.Request(
            f"http://{self.host_side}:{DNS_MANAGEMENT_PORT}/add-a", method="POST",
            data=json.dumps({"host": host, "addresses": [address]}).encode())
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def pebble(node, tmp_path_factory):
    for tool in ("pebble", "pebble-challtestsrv", "openssl", "curl"):
        assert shutil.which(tool), f"{tool} is not installed: scripts/test installs it"
    host_side = node.address.rsplit(".", 1)[0] + ".1"
    server = Pebble(host_side, node.address, tmp_path_factory.mktemp("pebble"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def acme_config(node, pebble, tmp_path_factory) -> dict[str, str]:
    """SILVER_CONFIG for this module: the session's provider plus pebble as its ACME."""
    path = tmp_path_factory.mktemp("acme-config") / "silverlining.conf"
    path.write_text(Path(node.env.env["SILVER_CONFIG"]).read_text()
                    + f"acme_directory = {pebble.directory}\nacme_ca = {pebble.api_ca}\n"
                    "acme_email = ops@example.com\n")
    return {"SILVER_CONFIG": str(path)}


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("app") / "hello"
    shutil.copytree(HELLO, dest)
    return dest


def update(node, env, app: Path, location: str, *extra: str, check: bool = True):
    return node.silver("-y", "update", str(app), location, "--node", node.name,
                       "--noetchosts", *extra, check=check, env=env)


def curl(node, host: str, cafile: Path, path: str = "/") -> tuple[int, dict, str]:
    """GET https://HOST/PATH on the node, verified against ``cafile`` (exit status,
    headers, body)."""
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(cafile), "--resolve",
         f"{host}:443:{node.address}", "-D", "-", f"https://{host}{path}"],
        capture_output=True, text=True)
    head, _, body = proc.stdout.partition("\n\n")        # text mode: \r\n became \n
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    headers["status"] = head.split(" ")[1] if head.startswith("HTTP") else proc.stderr
    return proc.returncode, {k.lower(): v for k, v in headers.items()}, body


def served_cert(node, host: str, cafile: Path) -> bytes:
    """The DER certificate the node serves for ``host`` (SNI), verified."""
    context = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection((node.address, 443), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            return tls.getpeercert(binary_form=True)


# --- tests ------------------------------------------------------------------------

def test_auto_serves_https_with_a_pebble_certificate(node, pebble, acme_config, app):
    proc = update(node, acme_config, app, "secure.test", "--https", "auto")
    assert "HTTPS for secure.test: certificate issued" in proc.stderr, proc.stderr
    status, headers, body = curl(node, "secure.test", pebble.issuer_root)
    assert status == 0 and headers["status"] == "200", (headers, proc.stderr)
    assert "Hello from hello" in body and "strict-transport-security" not in headers
    assert http_get(node.address, "secure.test")[0] == 200          # auto: HTTP still serves
    # www.HOST got its own certificate and redirects to HOST over HTTPS
    status, headers, _ = curl(node, "www.secure.test", pebble.issuer_root, "/x?y=1")
    assert headers["status"] == "301" and headers["location"] == "https://secure.test/x?y=1"
    modes = node.root("stat -c '%a %U' /etc/silverlining/certs /etc/silverlining/certs/"
                      "secure.test /etc/silverlining/certs/secure.test/privkey.pem").split()
    assert modes == ["700", "root", "700", "root", "600", "root"]


def test_required_redirects_http_sends_hsts_and_still_answers_challenges(
        node, pebble, acme_config, app):
    proc = update(node, acme_config, app, "secure.test", "--https", "required")
    assert "certificate kept" in proc.stderr, proc.stderr           # valid: not asked again
    status, body, headers = http_get(node.address, "secure.test", "/page?q=1")
    assert status == 301 and headers["Location"] == "https://secure.test/page?q=1"
    status, headers, body = curl(node, "secure.test", pebble.issuer_root)
    assert headers["status"] == "200" and "Hello from hello" in body
    assert headers["strict-transport-security"] == "max-age=31536000"
    node.root("mkdir -p /var/lib/silverlining/acme-webroot/.well-known/acme-challenge && "
              "echo token-1 > /var/lib/silverlining/acme-webroot/.well-known/acme-challenge/t1")
    try:
        status, body, _ = http_get(node.address, "secure.test", "/.well-known/acme-challenge/t1")
        assert (status, body) == (200, b"token-1\n")
    finally:
        node.root("rm -f /var/lib/silverlining/acme-webroot/.well-known/acme-challenge/t1")
    assert http_get(node.address, "secure.test", "/.silver/health")[0] == 200
    # a restart (a redeploy of the live files) keeps the version's HTTPS mode
    node.silver("restart", "secure.test", "--node", node.name, check=True, env=acme_config)
    assert http_get(node.address, "secure.test")[0] == 301


def test_user_certificate_is_served_and_checked_first(node, acme_config, app, tmp_path):
    cert, key = tmp_path / "own.pem", tmp_path / "own.key"
    selfsigned(cert, key, "own.test", days=5)          # doctor warns about it later
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    selfsigned(other_cert, other_key, "other.test")
    bad = update(node, acme_config, app, "own.test", "--cert", str(cert), "--key",
                 str(other_key), check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == \
        f"silver: error: {other_key}: the key does not belong to the certificate"
    wrong = update(node, acme_config, app, "own.test", "--cert", str(other_cert), "--key",
                   str(other_key), check=False)
    assert wrong.returncode == 2
    assert "not valid for own.test (it is for other.test)" in wrong.stderr.splitlines()[-1]
    proc = update(node, acme_config, app, "own.test", "--cert", str(cert), "--key", str(key))
    assert "certificate installed" in proc.stderr and "asking" not in proc.stderr
    status, headers, body = curl(node, "own.test", cert)
    assert status == 0 and headers["status"] == "200" and "Hello from hello" in body
    assert str(key.read_text()).split("\n")[1] not in proc.stdout + proc.stderr
    # later deploys keep it (ACME never replaces a certificate of yours)
    again = update(node, acme_config, app, "own.test", "--https", "required")
    assert "HTTPS for own.test: certificate kept" in again.stderr, again.stderr
    assert http_get(node.address, "own.test")[2]["Location"] == "https://own.test/"


def test_app_user_cannot_read_private_keys(node):
    for command in ("cat /etc/silverlining/certs/secure.test/privkey.pem",
                    "ls /etc/silverlining/certs",
                    "cat /etc/letsencrypt/live/secure.test/privkey.pem"):
        out = node.root(f"runuser -u sl-hello -- {command} 2>&1; echo status=$?", check=False)
        assert "Permission denied" in out and "status=0" not in out, (command, out)
        assert "BEGIN" not in out


def test_unvalidatable_host_under_auto_is_served_over_http_and_fails_required(
        node, pebble, acme_config, app):
    pebble.resolve("bad.test", pebble.host_side)        # nothing answers on port 80 there
    proc = update(node, acme_config, app, "bad.test", "--https", "auto")
    warning = [ln for ln in proc.stderr.splitlines() if "bad.test: no certificate" in ln]
    assert warning and "served over HTTP only" in warning[0], proc.stderr
    assert re.search(r"connect|refused|Connection|Fetching", warning[0]), warning
    first = live_version(proc.stdout)
    assert http_get(node.address, "bad.test")[0] == 200
    status, _, _ = curl(node, "bad.test", pebble.issuer_root)
    assert status != 0                                   # no certificate for bad.test
    failed = update(node, acme_config, app, "bad.test", "--https", "required", check=False)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"silver: error: [{node.name}] bad.test: no certificate:"), last
    assert "the live version keeps serving" in last
    query = node.silver("query", node.name, "hello", check=True).stdout
    assert re.search(rf"^  {first} .* running +live at .*bad\.test", query, re.M), query
    assert re.search(r"^  v\d+ .*\bfailed\b", query, re.M), query    # the refused version
    assert http_get(node.address, "bad.test")[0] == 200


def test_renewal_replaces_certificates_and_query_shows_them(node, pebble, acme_config):
    before = served_cert(node, "secure.test", pebble.issuer_root)
    out = node.root("/usr/local/sbin/silver-node certs-renew "
                    "'{\"renew_within\": 100000, \"hosts\": [\"secure.test\"]}'")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["renewed"] == ["secure.test"] and not result["failed"], out
    after = served_cert(node, "secure.test", pebble.issuer_root)
    assert after != before                               # nginx reloaded onto the new one
    assert node.root("systemctl is-enabled silverlining-certs.timer").strip() == "enabled"
    assert node.root("systemctl start silverlining-certs.service && systemctl show -P Result "
                     "silverlining-certs.service").strip() == "success"   # what the timer runs
    # setup-node checks renewals too, and its second run still changes nothing
    again = node.silver("setup-node", node.name, check=True, env=acme_config)
    assert "0 changes" in again.stdout and "changed:" not in again.stderr, again.stderr
    plain = node.silver("query", node.name, "hello", check=True, env=acme_config).stdout
    line = [ln for ln in plain.splitlines() if ln.startswith("certificate secure.test:")]
    assert line and "Pebble" in line[0] and "expires" in line[0] and "acme" in line[0], plain
    assert "last renewal" not in plain
    full = node.silver("query", node.name, "--certs", check=True, env=acme_config).stdout
    assert re.search(r"^certificate secure\.test: Pebble.*; last renewal \S+: ok$", full,
                     re.M), full
    assert re.search(r"^certificate own\.test: own\.test, .*user\); last renewal: never$",
                     full, re.M), full
    doctor = node.silver("doctor", node.name, env=acme_config).stdout
    assert re.search(r"warning +certificates +own\.test expires in [45](\.\d)? days", doctor), doctor
    assert "--cert FILE --key FILE" in doctor
