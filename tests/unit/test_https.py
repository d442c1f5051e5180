"""HTTPS, the pure parts: nginx text for 443, redirects and HSTS; which certificate
covers which hostname; app.ini's ``https`` key; checking a user's certificate."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from silverlining import tlscerts
from silverlining.appconfig import AppConfig
from silverlining.errors import ConfigError
from silverlining.node.routing import HSTS, Route, generate
from tests.unit.test_routing import PAGES, servers

CERTS = {"example.com": "/etc/silverlining/certs/example.com",
         "www.example.com": "/etc/silverlining/certs/www.example.com",
         "wild.org": "/etc/silverlining/certs/wild.org"}


def route(location: str, https: str = "auto", app: str = "hello") -> Route:
    host, slash, rest = location.partition("/")
    return Route(host=host, path=slash + rest, app=app, version="v1",
                 socket=f"/run/silverlining/apps/{app}/v1.sock", https=https)


def blocks(text: str) -> dict[tuple[str, bool], str]:
    """(server_name, is 443) -> the server block."""
    out = {}
    for block in servers_all(text):
        name = block.split("server_name ", 1)[1].split(";", 1)[0]
        out[(name, "listen 443 ssl;" in block)] = block
    return out


def servers_all(text: str) -> list[str]:
    import re
    return re.findall(r"^server \{\n.*?^\}", text, flags=re.S | re.M)


# --- nginx generation ------------------------------------------------------------

def test_host_with_certificate_gets_a_443_twin_and_keeps_port_80():
    b = blocks(generate([route("example.com")], PAGES, CERTS))
    tls = b[("example.com", True)]
    assert "ssl_certificate /etc/silverlining/certs/example.com/fullchain.pem;" in tls
    assert "ssl_certificate_key /etc/silverlining/certs/example.com/privkey.pem;" in tls
    assert "proxy_pass http://unix:/run/silverlining/apps/hello/v1.sock:;" in tls
    plain = b[("example.com", False)]
    assert "proxy_pass" in plain and "return 301 https" not in plain   # auto: no redirect
    assert HSTS not in tls                                             # auto: no HSTS


def test_no_certificate_or_https_off_means_no_443():
    assert ("other.com", True) not in blocks(generate([route("other.com")], PAGES, CERTS))
    b = blocks(generate([route("example.com", "off")], PAGES, CERTS))
    assert ("example.com", True) not in b and ("www.example.com", True) not in b
    assert "443" not in generate([route("example.com", "off")], PAGES, CERTS)


def test_required_redirects_plain_http_except_challenges_and_status_and_sends_hsts():
    b = blocks(generate([route("example.com", "required")], PAGES, CERTS))
    plain, tls = b[("example.com", False)], b[("example.com", True)]
    assert "return 301 https://$host$request_uri;" in plain
    assert "proxy_pass http://unix:/run/silverlining/apps" not in plain
    assert "location ^~ /.well-known/acme-challenge/ {" in plain
    assert "location = /.silver/health {" in plain
    assert HSTS in tls and "return 301" not in tls
    assert HSTS not in plain


def test_required_without_a_certificate_does_not_redirect_into_nothing():
    plain = blocks(generate([route("nocert.com", "required")], PAGES, CERTS))[("nocert.com", False)]
    assert "return 301" not in plain and "proxy_pass" in plain


def test_required_only_redirects_its_own_path_prefix():
    text = generate([route("example.com", "auto", "root"),
                     route("example.com/admin", "required", "admin")], PAGES, CERTS)
    plain = blocks(text)[("example.com", False)]
    admin = plain.split("# example.com/admin -> admin (HTTPS required)\n", 1)[1].split("    # ", 1)[0]
    assert "return 301 https://$host$request_uri;" in admin
    root = plain.split("# example.com -> root\n", 1)[1]
    assert "return 301" not in root and "proxy_pass" in root


def test_every_port_80_server_answers_acme_challenges_from_the_webroot():
    text = generate([route("example.com"), route(".wild.org"), route("*", app="any")],
                    PAGES, CERTS)
    for (name, tls), block in blocks(text).items():
        if not tls:
            assert "location ^~ /.well-known/acme-challenge/ {" in block, name
            assert "root /var/lib/silverlining/acme-webroot;" in block, name


def test_wildcard_and_path_locations_share_their_hosts_certificate():
    b = blocks(generate([route(".wild.org"), route("example.com/app")], PAGES, CERTS))
    assert "/etc/silverlining/certs/wild.org/fullchain.pem" in b[(".wild.org", True)]
    assert "/etc/silverlining/certs/example.com/fullchain.pem" in b[("example.com", True)]


def test_www_redirects_over_https_when_it_has_a_certificate():
    b = blocks(generate([route("example.com")], PAGES, CERTS))
    assert "return 301 https://example.com$request_uri;" in b[("www.example.com", True)]
    assert "return 301 $scheme://example.com$request_uri;" in b[("www.example.com", False)]
    assert "acme-challenge" in b[("www.example.com", False)]


def test_nginx_accepts_https_config(tmp_path):
    assert shutil.which("nginx"), "nginx is not installed: scripts/test installs nginx-light"
    cert_dir = tmp_path / "example.com"
    cert_dir.mkdir()
    selfsigned(cert_dir / "fullchain.pem", cert_dir / "privkey.pem", "example.com")
    routes = [route("example.com", "required"), route("example.com/a", "auto", "a"),
              route(".example.com", "auto", "w"), route("*", "off", "any")]
    (tmp_path / "routes.conf").write_text(
        generate(routes, PAGES, {"example.com": str(cert_dir), "www.example.com": str(cert_dir)}))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\nhttp {\n"
        f"  access_log off; client_body_temp_path {tmp_path};\n"
        f"  include {tmp_path}/routes.conf;\n}}\n")
    proc = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"),
                           "-p", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# --- certificate facts -------------------------------------------------------------

def selfsigned(cert: Path, key: Path, *names: str, days: int = 30) -> None:
    san = ",".join(f"DNS:{n}" for n in names)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", str(days), "-subj", f"/CN={names[0]}", "-addext",
                    f"subjectAltName={san}"], check=True, capture_output=True)


label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostname = st.lists(label, min_size=2, max_size=4).map(".".join)


@given(hostname)
def test_a_name_covers_itself_in_any_case(host):
    assert tlscerts.covers([host.upper()], host)


@given(label, hostname)
def test_a_wildcard_covers_exactly_one_more_label(first, parent):
    assert tlscerts.covers([f"*.{parent}"], f"{first}.{parent}")
    assert not tlscerts.covers([f"*.{parent}"], parent)
    assert not tlscerts.covers([f"*.{parent}"], f"x.{first}.{parent}")


@given(hostname, hostname)
def test_different_names_do_not_cover_each_other(a, b):
    if a != b:
        assert not tlscerts.covers([a], b)


def test_reserved_names_are_not_public():
    for host in ("hello.test", "a.example", "x.localhost", "box", "10.1.2.3", "n.home.arpa"):
        assert not tlscerts.is_public_name(host), host
    assert tlscerts.is_public_name("example.com")


def test_user_certificate_checks(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    selfsigned(cert, key, "shop.example.com", "*.shop.example.com")
    assert tlscerts.problems(cert, key, "shop.example.com") is None
    assert tlscerts.problems(cert, key, "a.shop.example.com") is None
    why = tlscerts.problems(cert, key, "other.example.com")
    assert why and "not valid for other.example.com" in why and "shop.example.com" in why
    other_cert, other_key = tmp_path / "c2.pem", tmp_path / "k2.pem"
    selfsigned(other_cert, other_key, "shop.example.com")
    assert "does not belong" in tlscerts.problems(cert, other_key, "shop.example.com")
    assert "not a PEM certificate" in tlscerts.problems(key, key, "shop.example.com")
    facts = tlscerts.read_facts(cert)
    assert facts.issuer == "shop.example.com" and 29 < facts.days_left() <= 30
    assert "expired" in tlscerts.problems(cert, key, "shop.example.com",
                                          now=time.time() + 40 * 86400)


# --- app.ini ----------------------------------------------------------------------

def write_app(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "main.py").write_text("def application(e, s): pass\n")
    (tmp_path / "app.ini").write_text(f"[production]\napp_name = a\nrunner = main.py\n{extra}")
    return tmp_path


@pytest.mark.parametrize("text,mode", [("", "off"), ("https = auto\n", "auto"),
                                       ("https = Required\n", "required"),
                                       ("https = off\n", "off")])
def test_https_key(tmp_path, text, mode):
    assert AppConfig.load(write_app(tmp_path, text)).https == mode


def test_bad_https_value_names_file_key_and_choices(tmp_path):
    with pytest.raises(ConfigError) as info:
        AppConfig.load(write_app(tmp_path, "https = yes\n"))
    message = info.value.message
    assert "app.ini" in message and "https" in message and "off, auto, required" in message


# --- what silver update asks for -------------------------------------------------

def test_request_for_modes_certificates_and_locations(tmp_path):
    from silverlining.commands._https import request_for
    from silverlining.errors import UsageError
    from silverlining.locations import parse_location

    config = AppConfig.load(write_app(tmp_path, ""))
    shop = parse_location("shop.example.com/app")
    assert request_for(config, shop, None, None, None) is None          # no key: off
    assert request_for(config, shop, "required", None, None).mode == "required"
    assert request_for(config, parse_location(".example.com"), "auto", None,
                       None).host == "example.com"
    assert request_for(config, parse_location("*"), "auto", None, None) is None
    with pytest.raises(UsageError, match="needs a hostname"):
        request_for(config, parse_location("*"), "required", None, None)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    selfsigned(cert, key, "shop.example.com")
    given = request_for(config, shop, None, str(cert), str(key))
    assert given.mode == "auto" and given.cert_pem == cert.read_text()
    with pytest.raises(UsageError, match="together"):
        request_for(config, shop, None, str(cert), None)
    with pytest.raises(UsageError, match="--https off"):
        request_for(config, shop, "off", str(cert), str(key))
    with pytest.raises(UsageError, match="not valid for other.example.com"):
        request_for(config, parse_location("other.example.com"), None, str(cert), str(key))


def test_provider_acme_settings(tmp_path):
    from silverlining.userconfig import LETSENCRYPT, UserConfig

    conf = tmp_path / "silver.conf"
    conf.write_text("[provider:a]\ndriver = local\n\n[provider:b]\ndriver = local\n"
                    "acme_email = ops@example.com\nacme_directory = https://10.213.1.1:14000/dir\n"
                    f"acme_ca = {tmp_path}/ca.pem\n")
    config = UserConfig.load(conf)
    assert config.providers["a"].acme is None
    b = config.providers["b"]
    assert b.acme.directory == "https://10.213.1.1:14000/dir" and b.acme.explicit
    assert "acme_email" not in b.driver_args and "acme_ca" not in b.driver_args
    with pytest.raises(ConfigError, match="cannot read"):
        b.acme.ca_pem(str(conf))
    conf.write_text("[provider:c]\ndriver = local\nacme_email = x@y.org\n")
    acme = UserConfig.load(conf).providers["c"].acme
    assert acme.directory == LETSENCRYPT and not acme.explicit
    conf.write_text("[provider:c]\ndriver = local\nacme_directory = http://plain/dir\n")
    with pytest.raises(ConfigError, match="acme_directory"):
        UserConfig.load(conf)
