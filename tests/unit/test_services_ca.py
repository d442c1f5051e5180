"""The services nodes' CA on the client, and what a member's app is told (docs/services-node.md)."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlparse

import pytest

from silverlining import servicesca
from silverlining.commands._services import passwords
from silverlining.services.mysql import mysql_env
from silverlining.services.postgresql import pg_env
from silverlining.services.redis import remote_env, tls_conf


def serve_once(cert: servicesca.ServerCert, tmp_path) -> int:
    """A TLS server on 127.0.0.1 with the node's certificate, for one handshake."""
    (tmp_path / "s.crt").write_text(cert.cert)
    (tmp_path / "s.key").write_text(cert.key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass
        listener.close()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def handshake(port: int, cafile, host: str = "127.0.0.1") -> None:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=host):
            pass


def test_the_ca_signs_a_certificate_members_verify_for_its_address(tmp_path):
    cert = servicesca.server_cert("db1", {"127.0.0.1"})
    (tmp_path / "ca.crt").write_text(cert.ca)
    handshake(serve_once(cert, tmp_path), tmp_path / "ca.crt")
    key = servicesca.ca_dir() / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(servicesca.ca_dir().stat().st_mode) == 0o700
    assert "PRIVATE KEY" not in cert.ca


def test_another_address_or_another_ca_fails_verification(tmp_path):
    cert = servicesca.server_cert("db1", {"127.0.0.1"})
    (tmp_path / "ca.crt").write_text(cert.ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(serve_once(cert, tmp_path), tmp_path / "ca.crt", host="10.213.0.9")
    with pytest.raises(ssl.SSLCertVerificationError):      # the system CAs did not sign it
        handshake(serve_once(cert, tmp_path), ssl.get_default_verify_paths().cafile
                  or "/etc/ssl/certs/ca-certificates.crt")


def test_a_new_address_reissues_and_keeps_the_old_ones():
    first = servicesca.server_cert("db1", {"10.213.0.2"})
    assert servicesca.server_cert("db1", {"10.213.0.2"}) == first
    second = servicesca.server_cert("db1", {"10.213.0.3"})
    assert second.cert != first.cert and second.ca == first.ca
    from cryptography import x509
    san = x509.load_pem_x509_certificate(second.cert.encode()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)) == \
        ["10.213.0.2", "10.213.0.3"]


def test_a_new_ca_key_reissues_the_node_certificates(tmp_path):
    old = servicesca.server_cert("db1", {"127.0.0.1"})
    for name in ("ca.key", "ca.crt"):       # the CA replaced (lost, or rotated by hand)
        (servicesca.ca_dir() / name).unlink()
    new = servicesca.server_cert("db1", {"127.0.0.1"})
    assert new.ca != old.ca and new.cert != old.cert
    (tmp_path / "ca.crt").write_text(new.ca)
    handshake(serve_once(new, tmp_path), tmp_path / "ca.crt")


def test_passwords_are_stable_per_purpose_and_differ_between_them():
    a = servicesca.password("postgresql:shop")
    assert a == servicesca.password("postgresql:shop")
    assert a != servicesca.password("postgresql:other")
    assert len(a) == 48 and a.isalnum()


def test_a_member_app_is_told_to_verify_the_server():
    env = pg_env({"dbname": "sl_shop", "user": "sl_shop", "password": "pw",
                  "host": "10.213.0.5", "port": "5432", "sslmode": "verify-full",
                  "sslrootcert": "/var/lib/silverlining/data/shop/services-ca.crt"})
    assert env["CONFIG_PG_URL"] == ("postgresql://sl_shop:pw@10.213.0.5:5432/sl_shop?"
                                    "sslmode=verify-full&sslrootcert=/var/lib/silverlining/data/"
                                    "shop/services-ca.crt")
    assert env["PGSSLMODE"] == env["CONFIG_PG_SSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/var/lib/silverlining/data/shop/services-ca.crt"
    assert env["PGCONNECT_TIMEOUT"] == "10"
    local = pg_env({"dbname": "d", "user": "u", "password": "p", "host": "127.0.0.1",
                    "port": "5432"})
    assert "?" not in local["CONFIG_PG_URL"] and "PGSSLMODE" not in local
    assert "PGCONNECT_TIMEOUT" not in local


def test_an_app_s_mariadb_and_redis_users_get_passwords_of_their_own():
    given = passwords("shop")
    assert sorted(given) == ["mysql:sl_shop", "mysql:slrun_shop", "redis:sl-shop", "sl_shop",
                             "slrun_shop"]
    assert len(set(given.values())) == 5
    assert given == passwords("shop")


def test_a_member_mariadb_app_is_told_the_ca_to_verify_with():
    ca = "/var/lib/silverlining/data/shop/services-ca.crt"
    env = mysql_env({"dbname": "sl_shop", "user": "sl_shop", "password": "pw",
                     "host": "10.213.0.5", "port": "3306", "ssl_ca": ca})
    assert env["CONFIG_MYSQL_SSL_CA"] == ca
    assert env["CONFIG_MYSQL_SQLALCHEMY"] == ("mysql://sl_shop:pw@10.213.0.5:3306/sl_shop?"
                                              f"ssl_ca={ca}")
    local = mysql_env({"dbname": "d", "user": "u", "password": "p", "host": "127.0.0.1",
                       "port": "3306"})
    assert "?" not in local["CONFIG_MYSQL_SQLALCHEMY"] and "CONFIG_MYSQL_SSL_CA" not in local


def test_a_member_redis_app_gets_a_url_that_verifies_the_server():
    """The query as redis-py's ``parse_url`` hands it to its SSL connection: the CA,
    certificates required, the address checked against the certificate."""
    ca = "/var/lib/silverlining/data/shop/services-ca.crt"
    env = remote_env({"host": "10.213.0.5", "port": "6380", "db": "0", "user": "sl-shop",
                      "password": "p w", "ssl_ca": ca, "remote": "db1"})
    url = urlparse(env["CONFIG_REDIS_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("rediss", "10.213.0.5", 6380, "/0")
    assert (unquote(url.username), unquote(url.password)) == ("sl-shop", "p w")
    assert parse_qs(url.query) == {"ssl_cert_reqs": ["required"], "ssl_ca_certs": [ca],
                                   "ssl_check_hostname": ["true"]}
    assert env["CONFIG_REDIS_SSL_CA"] == ca and env["CONFIG_REDIS_PREFIX"] == ""
    assert "CONFIG_REDIS_SOCKET" not in env


def test_a_services_node_redis_has_tls_alone_on_its_port():
    paths = SimpleNamespace(SERVICES_TLS="/etc/silverlining/services-tls")
    assert tls_conf(0, paths) == ""
    lines = tls_conf(6381, paths).splitlines()
    assert "tls-port 6381" in lines and "tls-auth-clients no" in lines
    assert 'tls-protocols "TLSv1.2 TLSv1.3"' in lines
    assert "tls-key-file /etc/silverlining/services-tls/redis/server.key" in lines
    assert not any(line.startswith("port ") for line in lines)    # the config keeps port 0
