"""Routing generation (pure): which nginx text a routing table produces.

When nginx is installed on the test machine the generated files are also
checked with ``nginx -t`` inside a minimal http block.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from silverlining.node import routing
from silverlining.node.routing import Route, generate

PAGES = "/usr/local/share/silverlining/pages"


def route(location: str, app: str = "hello", version: str = "v1", **kw) -> Route:
    host, slash, rest = location.partition("/")
    return Route(host=host, path=slash + rest, app=app, version=version,
                 socket=f"/run/silverlining/{app}/{version}.sock", **kw)


def servers(text: str) -> dict[str, str]:
    """server_name -> the server block's text."""
    blocks = {}
    for block in re.findall(r"^server \{\n.*?^\}", text, flags=re.S | re.M):
        name = re.search(r"server_name (\S+);", block).group(1)
        blocks[name] = block
    return blocks


def location_order(block: str) -> list[str]:
    return re.findall(r"location (~ \S+|= \S+|@\S+|/) \{", block)


def test_exact_host_proxies_to_the_instance_socket():
    text = generate([route("hello.example.com")], PAGES)
    block = servers(text)["hello.example.com"]
    assert "proxy_pass http://unix:/run/silverlining/hello/v1.sock:;" in block
    assert 'proxy_set_header X-Script-Name "";' in block
    assert 'proxy_set_header X-Silverlining-Update "";' in block   # clients cannot fake it
    assert "location / {" not in block                              # root is served by the app


def test_longest_prefix_comes_first_and_becomes_script_name():
    text = generate([route("h.example.com", "root"), route("h.example.com/a", "a"),
                     route("h.example.com/a/b.c", "ab")], PAGES)
    block = servers(text)["h.example.com"]
    regexes = [loc for loc in location_order(block) if loc.startswith("~")]
    assert regexes == [r"~ ^/a/b\.c(/.*)?$", r"~ ^/a(/.*)?$", r"~ ^(/.*)?$"]
    sections = dict(re.findall(r"# h\.example\.com(\S*) -> (\S+)\n", block))
    assert sections == {"/a/b.c": "ab", "/a": "a", "": "root"}
    for part in re.split(r"\n    # ", block)[1:]:
        prefix = part.split(" ", 1)[0].removeprefix("h.example.com")
        assert f'X-Script-Name "{prefix}";' in part
        assert f"/run/silverlining/{part.split('-> ')[1].split(chr(10))[0]}/v1.sock" in part


def test_prefix_regex_matches_like_a_path_prefix():
    text = generate([route("h.example.com/a")], PAGES)
    rx = re.search(r"location ~ (\S+) \{", servers(text)["h.example.com"]).group(1)
    pattern = re.compile(rx)
    assert pattern.match("/a") and pattern.match("/a/") and pattern.match("/a/x/y")
    assert not pattern.match("/ab") and not pattern.match("/b/a")


def test_host_without_root_route_answers_not_found():
    block = servers(generate([route("h.example.com/a")], PAGES))["h.example.com"]
    assert "location / {\n        return 404;" in block
    assert "error_page 404 /.silverlining/not-found.html;" in block
    assert f"alias {PAGES}/not-found.html;" in block


def test_static_then_writable_root_then_app():
    r = route("h.example.com/p", static_dir="/srv/i/static", writable_root="/srv/d/wr")
    block = servers(generate([r], PAGES))["h.example.com"]
    assert ("try_files /srv/i/static$silver_rest /srv/d/wr/$host$silver_rest "
            "/srv/d/wr$silver_rest @silver_app_1;") in block
    assert "disable_symlinks if_not_owner;" in block   # no serving other apps' files via links
    order = location_order(block)
    # URIs ending in '/' go straight to the app, before the file lookup
    assert order.index(r"~ ^/p(/.*)?/$") < order.index(r"~ ^/p(?<silver_rest>/.*)?$")
    assert "@silver_app_1" in order


def test_www_redirects_to_the_bare_host_unless_routed():
    text = generate([route("example.com"), route("other.org"), route("www.other.org", "w")],
                    PAGES)
    blocks = servers(text)
    assert "return 301 $scheme://example.com$request_uri;" in blocks["www.example.com"]
    assert "return 301" not in blocks["www.other.org"]
    assert "www.www.other.org" not in blocks


def test_suffix_wildcard_and_catch_all():
    text = generate([route(".example.com", "wild"), route("*", "any")], PAGES)
    blocks = servers(text)
    assert ".example.com" in blocks
    assert "~^.+$" in blocks
    # exact names are tried by nginx before wildcards before regexes; order in the
    # file is also exact, suffix, catch-all for readability
    assert text.index("server_name .example.com") < text.index("server_name ~^.+$")


def test_suffix_wildcard_next_to_the_exact_host_does_not_conflict():
    blocks = servers(generate([route("example.com", "a"), route(".example.com", "b")], PAGES))
    assert "*.example.com" in blocks and "example.com" in blocks


def test_disabled_app_answers_503_except_to_localhost():
    block = servers(generate([route("h.example.com", disabled=True)], PAGES))["h.example.com"]
    assert "if ($silver_from_localhost = 0) { return 503; }" in block
    assert "error_page 503 /.silverlining/disabled.html;" in block


def test_special_locations_are_served_by_their_apps():
    text = generate([route("h.example.com/a"), route("not-found", "nf"),
                     route("disabled", "dis")], PAGES)
    blocks = servers(text)
    h = blocks["h.example.com"]
    assert "error_page 404 = @silver_not_found;" in h
    assert "error_page 503 = @silver_disabled;" in h
    assert "/run/silverlining/nf/v1.sock" in blocks["~^.+$"]   # unknown hosts
    assert "disabled" not in blocks and "not-found" not in blocks


def test_generation_is_deterministic():
    routes = [route("b.example.com"), route("a.example.com/x", "x"), route("*", "c")]
    assert generate(routes, PAGES) == generate(list(reversed(routes)), PAGES)


def test_nginx_accepts_the_generated_config(tmp_path):
    assert shutil.which("nginx"), "nginx is not installed: scripts/test installs nginx-light"
    routes = [route("example.com"), route("example.com/a/b", "ab", static_dir=str(tmp_path)),
              route(".example.com", "wild", writable_root=str(tmp_path)),
              route("*", "any"), route("not-found", "nf"), route("disabled", "dis"),
              route("off.example.org", "off", disabled=True),
              route("bal.example.org", "bal", via="10.213.0.9"),
              route("bal.example.org/s", "bals", static_dir=str(tmp_path), via="10.213.0.9"),
              route("bal6.example.org", "bal6", disabled=True, via="fd00::9"),
              route("elb.example.org", "elb", via="172.31.0.0/16")]
    (tmp_path / "routes.conf").write_text(generate(routes, PAGES))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\nhttp {\n"
        f"  access_log off; client_body_temp_path {tmp_path};\n"
        "  server { listen 80 default_server; server_name _; return 404; }\n"
        f"  include {tmp_path}/routes.conf;\n}}\n")
    proc = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"),
                           "-p", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "conflicting server name" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("served, new, hidden", [
    ({}, "shop.test", False),
    ({"a.test": "v1"}, "shop.test", False),
    ({"a.test": "v1"}, "a.test/api", True),              # a path of a served host
    ({"a.test/api": "v1"}, "a.test", True),
    ({"a.test": "v1"}, "www.a.test", True),              # redirected to a.test now
    ({"www.a.test": "v1"}, "a.test", False),
    ({".a.test": "v1"}, "shop.a.test", True),            # the wildcard serves it now
    ({".a.test": "v1"}, "a.test", True),
    ({".a.test": "v1"}, "b.test", False),
    ({"*": "v1"}, "shop.test", True),                    # the catch-all serves it now
    ({"not-found": "v1"}, "shop.test", True),            # an app answers unknown hosts
    ({"a.test": None}, "a.test", False),                 # deactivated: nothing served
    ({"@worker": "v1"}, "shop.test", False),
    ({}, "not-found", True),                             # every unknown host's page
    ({}, "disabled", True),
    ({}, "*", True),
])
def test_a_route_is_given_ahead_only_where_it_hides_nothing_served(served, new, hidden):
    table = {loc: {"app": "x", "version": version} for loc, version in served.items()}
    assert routing.hides(new, table) is hidden
