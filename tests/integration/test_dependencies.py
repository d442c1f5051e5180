"""Declared dependencies built for each node's Python (issue 20), against real local nodes.

Wheels come from local directories that scripts/test fills (``wheels-deps``:
the test apps' packages for the nodes' Pythons; ``wheels-py313``: silverlining's
own dependencies for a Python 3.13 developer) or that a test writes; every
install runs with ``--no-index``, so no test talks to PyPI. Next to the module's
node (the suite's image, Debian 13) runs one of the other release (Debian 12), so
one ``silver update`` builds for two Pythons.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import other_image
from tests.integration.fixtures_apps import (  # noqa: F401 (fixtures)
    REPO, Node, http_get, live_version, node, setup_node)
from tests.unit.test_deps import make_c_sdist, make_wheel

pytestmark = pytest.mark.node

CACHE = Path(os.environ.get("SILVER_LOCAL_CACHE") or "/var/cache/silverlining-test")
WHEELS = CACHE / "wheels-deps"
SILVER_WHEELS = CACHE / "wheels-py313"

PAGE = '''\
import json, os, sys

import PIL, psycopg, pydantic


class Row(pydantic.BaseModel):
    answer: int


def application(environ, start_response):
    with psycopg.connect(os.environ["CONFIG_PG_URL"]) as db:
        row = Row(answer=db.execute("SELECT 6 * 7").fetchone()[0])
    body = json.dumps({"answer": row.answer, "pil": PIL.__version__, "pil_file": PIL.__file__,
                       "psycopg": psycopg.pq.__impl__, "python": sys.version.split()[0],
                       "deps": os.environ.get("SILVER_DEPS")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

TINY_PAGE = '''\
import json, os

import needsold, tiny

try:
    import oldhelper                    # needsold's, on the module node's Python only
    OLD = oldhelper.VALUE
except ImportError:
    OLD = None


def application(environ, start_response):
    body = json.dumps({"tiny": tiny.VALUE, "oldhelper": OLD,
                       "deps": os.environ.get("SILVER_DEPS")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''


def python313() -> str:
    """A Python 3.13 that is not the one running the tests (pyenv has one here)."""
    found = [os.environ.get("SILVER_TEST_PY313") or ""] + sorted(glob.glob(
        os.path.expanduser("~/.pyenv/versions/3.13*/bin/python3.13"))) + \
        [shutil.which("python3.13") or ""]
    for candidate in found:
        if candidate and subprocess.run([candidate, "-c", ""],
                                        capture_output=True).returncode == 0:
            return candidate
    pytest.fail("no Python 3.13 here (pyenv install 3.13, or set SILVER_TEST_PY313)")


@pytest.fixture(scope="module")
def other(node_env, make_module_node) -> Node:
    """A set-up node of the other release: its own Python, its own builds."""
    made = make_module_node("deps-other-node", "--image", f"id {other_image()}",
                            "--setup-node")
    return Node(node_env, made.name, made.address)


def node_python(node) -> str:  # noqa: F811
    return node.root("python3 -c 'import platform; print(platform.python_version())'").strip()


def get_json(node, host: str) -> dict:  # noqa: F811
    status, body, _ = http_get(node.address, host, "/")
    assert status == 200, (status, body[:800])
    return json.loads(body)


def test_a_python_313_developer_deploys_compiled_packages(node, other, tmp_path):  # noqa: F811
    """silver under Python 3.13: init, bin/pip install -r requirements.txt (wheels for
    3.13), one update to a Debian 13 and a Debian 12 node. Each node gets the build for
    its own Python, and the page imports psycopg, pillow and pydantic and queries its
    PostgreSQL."""
    assert list(WHEELS.glob("pillow-*cp313*x86_64*.whl")), f"scripts/test fills {WHEELS}"
    assert list(SILVER_WHEELS.glob("click-*.whl")), f"scripts/test fills {SILVER_WHEELS}"
    venv = tmp_path / "venv313"
    subprocess.run([python313(), "-m", "venv", str(venv)], check=True)
    work = tmp_path / "src"          # a clean copy: the worktree's build files stay out of it
    shutil.copytree(REPO, work, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                    str(SILVER_WHEELS), str(work)], check=True, capture_output=True)
    env = {k: v for k, v in {**os.environ, **node.env.env}.items() if k != "PYTHONPATH"}

    def silver(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(venv / "bin" / "silver"), *args], env=env, text=True,
                              capture_output=True, timeout=900)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    app = tmp_path / "pics"
    silver("init", str(app))
    assert "3.13" in (app / "pyvenv.cfg").read_text()
    (app / "requirements.txt").write_text(
        (app / "requirements.txt").read_text()
        + f"--no-index\n--find-links {WHEELS}\npsycopg[binary]\npillow\npydantic\n")
    subprocess.run([str(app / "bin" / "pip"), "install", "-q", "-r",
                    str(app / "requirements.txt")], check=True, capture_output=True, env=env)
    assert list((app / "lib" / "python" / "PIL").glob("*.cpython-313-*.so"))
    (app / "main.py").write_text(PAGE)
    (app / "app.ini").write_text((app / "app.ini").read_text().replace(
        "#service.postgresql =", "service.postgresql ="))
    proc = silver("-y", "update", str(app), "pics.test", "--node", node.name,
                  "--node", other.name, "--noetchosts")
    assert proc.stderr.count("sending dependency set") == 2, proc.stderr
    pages = [get_json(n, "pics.test") for n in (node, other)]
    assert {p["python"][:4] for p in pages} == {"3.11", "3.13"}
    assert pages[0]["deps"] != pages[1]["deps"]                    # one build per Python
    for each, page in zip((node, other), pages):
        assert page["answer"] == 42 and page["python"] == node_python(each)
        assert page["pil_file"].startswith(page["deps"] + "/PIL/")
        assert page["deps"].startswith("/var/lib/silverlining/deps/")
        assert page["psycopg"] == "binary"


@pytest.fixture(scope="module")
def tiny_wheels(node, tmp_path_factory) -> Path:  # noqa: F811
    """tiny 1.0 and 2.0; needsold, which wants oldhelper only on the module node's
    exact Python (a marker on python_full_version that the Python running silver here
    never matches)."""
    node_python = node.root("python3 -c 'import platform; print(platform.python_version())'")
    assert node_python.strip() != platform.python_version()
    links = tmp_path_factory.mktemp("wheels")
    make_wheel(links, "tiny")
    make_wheel(links, "tiny", "2.0")
    make_wheel(links, "needsold",
               requires=(f'oldhelper; python_full_version == "{node_python.strip()}"',))
    make_wheel(links, "oldhelper")
    return links


def tiny_app(tmp_path: Path, links: Path, pins: str = "tiny==1.0", name: str = "tiny") -> Path:
    app = tmp_path / name
    app.mkdir()
    (app / "app.ini").write_text(f"[production]\napp_name = {name}\nrunner = main.py\n")
    (app / "main.py").write_text(TINY_PAGE)
    (app / "requirements.txt").write_text(f"--no-index\n--find-links {links}\n{pins}\n"
                                          "needsold\n")
    return app


def test_markers_resolve_for_each_node(node, other, tmp_path, tiny_wheels):  # noqa: F811
    """needsold wants oldhelper only on the first node's exact Python: in one update,
    that node gets it and the node of the other image does not, whatever Python
    runs silver."""
    app = tiny_app(tmp_path, tiny_wheels, pins="tiny==2.0", name="markers")  # a set of its own
    node.update(app, "markers.test", "--node", other.name)
    for each in (node, other):
        wanted = "oldhelper" if node_python(each) == node_python(node) else None
        assert get_json(each, "markers.test")["oldhelper"] == wanted, node_python(each)


def test_an_unchanged_set_is_not_sent(node, tmp_path, tiny_wheels):  # noqa: F811
    """A redeploy of new code sends no dependency bytes, and the set is root's,
    read-only to the app."""
    app = tiny_app(tmp_path, tiny_wheels)
    first = node.update(app, "tiny.test")
    assert "sending dependency set" in first.stderr
    page = get_json(node, "tiny.test")
    assert page["tiny"] == "tiny"
    assert page["oldhelper"] == "oldhelper"           # the marker names this node's Python
    count = 3                                         # tiny, needsold, oldhelper
    layer = page["deps"]
    owner = node.root(f"stat -c '%U %a' {layer} {layer}/tiny {layer}/tiny/__init__.py")
    assert owner.split("\n")[:3] == ["root 755", "root 755", "root 644"], owner
    assert "Permission denied" in node.root(
        f"setpriv --reuid=sl-tiny --regid=sl-tiny --clear-groups touch {layer}/tiny/x 2>&1",
        check=False)
    # byte-compiled for the node's Python when installed: the app can never write there
    compiled = node.root(f"stat -c '%U %a %n' {layer}/tiny/__pycache__/*.pyc")
    assert compiled.startswith("root 644 ") and ".cpython-3" in compiled, compiled

    # the node takes a set only when what arrives is what its fingerprint names
    entry = "/usr/local/sbin/silver-node deps-install"
    cut = node.root(f"head -c 3000 /bin/sh | {entry} '{{\"fingerprint\": \"{'a' * 32}\"}}'",
                    check=False)
    assert "did not arrive whole" in cut, cut
    stream = f"tar -C {layer} -cf - --exclude=__pycache__ ."
    other = node.root(f"{stream} | {entry} '{{\"fingerprint\": \"{'b' * 32}\"}}'",
                      check=False)
    assert f"is {layer.rsplit('/', 1)[1]} here" in other, other
    assert not node.root("ls -A /var/lib/silverlining/deps | grep -e aaaa -e bbbb",
                         check=False), "a refused set left files behind"

    (app / "main.py").write_text(TINY_PAGE.replace('"tiny": tiny.VALUE', '"tiny": "new"'))
    again = node.update(app, "tiny.test")
    assert "sending dependency set" not in again.stderr
    assert f"({count} packages): already there" in again.stderr
    assert get_json(node, "tiny.test") == {**page, "tiny": "new"}
    query = node.silver("query", node.name, "tiny", check=True).stdout
    fingerprint = layer.rsplit("/", 1)[1]
    assert query.count(f"dependencies {fingerprint} ({count} packages)") == 2, query

    # what the developer put into lib/python by hand wins over the declared set
    (app / "lib" / "python" / "tiny").mkdir(parents=True)
    (app / "lib" / "python" / "tiny" / "__init__.py").write_text("VALUE = 'vendored'\n")
    (app / "main.py").write_text(TINY_PAGE)
    node.update(app, "tiny.test")
    assert get_json(node, "tiny.test")["tiny"] == "vendored"
    shutil.rmtree(app / "lib" / "python" / "tiny")

    # silver diff shows a changed requirement as a package version change
    (app / "requirements.txt").write_text((app / "requirements.txt").read_text().replace(
        "tiny==1.0", "tiny==2.0"))
    diff = node.silver("diff", str(app), "tiny.test", "--node", node.name)
    assert diff.returncode == 1, diff.stderr
    assert "  ~ tiny 1.0 -> 2.0" in diff.stdout.splitlines(), diff.stdout

    # a package added: the new set's files the old one has are not sent again, but
    # linked to them on the node, .pyc included (the package is this test's own, so is
    # the set)
    more = make_wheel(tmp_path / "more", "addedpkg").parent
    (app / "requirements.txt").write_text(f"--find-links {more}\naddedpkg\n" + (
        app / "requirements.txt").read_text().replace("tiny==2.0", "tiny==1.0"))
    bumped = node.update(app, "tiny.test")
    assert f"files are in {layer.rsplit('/', 1)[1]} there: not sent" in bumped.stderr, \
        bumped.stderr
    assert "files were in this node's other sets: linked" in bumped.stderr, bumped.stderr
    new_layer = get_json(node, "tiny.test")["deps"]
    assert new_layer != layer
    inodes = node.root("stat -c %i " + " ".join(
        f"{d}/needsold/{rel}" for rel in ("__init__.py", "__pycache__/*.pyc")
        for d in (layer, new_layer))).split()
    assert inodes[0] == inodes[1] and inodes[2] == inodes[3], inodes


def test_pip_installed_packages_are_not_uploaded(node, tmp_path, tiny_wheels):  # noqa: F811
    """What bin/pip put into lib/python for silver serve stays here; a package
    installed there but not declared is named before the deploy."""
    app = tiny_app(tmp_path, tiny_wheels)
    run = subprocess.run([os.environ.get("PYTHON", "python3"), "-m", "silverlining", "init",
                          str(app)], env={**os.environ, **node.env.env}, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    subprocess.run([str(app / "bin" / "pip"), "install", "-q", "--no-index", "--find-links",
                    str(tiny_wheels), "tiny==2.0", "oldhelper"], check=True, capture_output=True)
    assert (app / "lib" / "python" / "tiny").is_dir()
    proc = node.update(app, "tiny2.test", "--name", "tiny2")
    page = get_json(node, "tiny2.test")
    assert page["tiny"] == "tiny"
    listing = node.root(f"ls /var/lib/silverlining/apps/tiny2/{live_version(proc.stdout)}"
                        "/lib/python")
    assert "tiny" not in listing.split() and "oldhelper" not in listing.split(), listing


def test_clean_node_removes_sets_no_version_uses(node, tmp_path, tiny_wheels):  # noqa: F811
    app = tiny_app(tmp_path, tiny_wheels)
    node.update(app, "tiny3.test", "--name", "tiny3")
    used = get_json(node, "tiny3.test")["deps"]
    stale = "/var/lib/silverlining/deps/" + "0" * 32
    fresh = "/var/lib/silverlining/deps/" + "1" * 32
    # what an install killed outright left (its pid gone) and a running one's (pid 1)
    killed, running = (f"/var/lib/silverlining/deps/.{'2' * 32}.{pid}" for pid in
                       (node.root("sh -c 'echo $$'").strip(), 1))
    node.root(f"mkdir -p {stale} {fresh} {killed}/pkg {running} && "
              f"touch -d '2 hours ago' {stale}")
    out = node.silver("clean-node", node.name, "--keep", "100", check=True).stdout
    assert f"deleted dependency set {'0' * 32}" in out, out
    left = node.root("ls -A /var/lib/silverlining/deps").split()
    assert "0" * 32 not in left and "1" * 32 in left and used.rsplit("/", 1)[1] in left
    assert killed.rsplit("/", 1)[1] not in left and running.rsplit("/", 1)[1] in left, left
    node.root(f"rmdir {fresh} {running}")


C_PAGE = '''\
import json, os

import cpkg, cpkg_info


def application(environ, start_response):
    body = json.dumps({"answer": cpkg.answer(), "so": cpkg.__file__, "uid": cpkg_info.UID,
                       "network": cpkg_info.NETWORK}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

# in the sdist's setup.py: records who built it and whether it could reach the node's
# sshd, as a module the package installs (on this machine, uv only reads its metadata);
# on the node it also plants a setuid copy of id(1) in the output pip installs into
BUILD_FACTS = '''\
import os, shutil, socket
try:
    socket.create_connection(("127.0.0.1", 22), timeout=5).close()
    NETWORK = "reached"
except OSError as exc:
    NETWORK = type(exc).__name__
if os.environ.get("HOME", "").startswith("/var/lib/silverlining/deps-build/"):
    os.makedirs(os.environ["HOME"] + "/site", exist_ok=True)
    shutil.copy("/usr/bin/id", os.environ["HOME"] + "/site/planted-id")
    try:
        os.chmod(os.environ["HOME"] + "/site/planted-id", 0o6755)
    except OSError:
        pass
with open("cpkg_info.py", "w") as fh:
    fh.write(f"UID = {os.geteuid()}\\nNETWORK = {NETWORK!r}\\n")
import setuptools
_setup = setuptools.setup
setuptools.setup = lambda **kw: _setup(py_modules=["cpkg_info"], **kw)
'''


def test_a_package_without_wheels_is_built_on_the_node_when_asked(node, tmp_path):  # noqa: F811
    """cpkg (C, source only) is refused in one line; with build_on_node = cpkg the node
    compiles it for its own Python, as an unprivileged user without network, into the
    root-owned layer, and the page calls it. A build that fails leaves the old
    version serving, and says why in the compiler's words."""
    links = tmp_path / "links"
    make_c_sdist(links, setup_extra=BUILD_FACTS)
    make_c_sdist(links, version="2.0", broken=True)
    make_wheel(links, "tiny")
    for wheel in WHEELS.glob("setuptools-*.whl"):     # uv reads cpkg's metadata with it
        shutil.copy(wheel, links)
    app = tmp_path / "capp"
    app.mkdir()
    ini = "[production]\napp_name = capp\nrunner = main.py\n"
    (app / "app.ini").write_text(ini)
    (app / "main.py").write_text(C_PAGE)
    (app / "requirements.txt").write_text(f"--no-index\n--find-links {links}\ncpkg==1.0\n"
                                          "tiny\n")
    refused = node.update(app, "capp.test", check=False)
    assert refused.returncode != 0
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("silver: error: cpkg has compiled code and no wheel for "), error
    assert error.endswith("(build_on_node = cpkg in app.ini)"), error

    (app / "app.ini").write_text(ini + "build_on_node = cpkg\n")
    built = node.update(app, "capp.test")
    assert "building cpkg 1.0 for this node" in built.stderr, built.stderr
    page = get_json(node, "capp.test")
    assert page["answer"] == 42
    assert page["uid"] != 0 and page["network"] != "reached", page
    layer = page["so"].rsplit("/", 1)[0]
    assert layer.startswith("/var/lib/silverlining/deps/"), page
    abi = node.root("python3 -c 'import sys; print(sys.implementation.cache_tag)'").strip()
    assert Path(page["so"]).name.startswith(f"cpkg.{abi}-"), (abi, page["so"])
    assert node.root(f"stat -c %U {page['so']} {layer}").split() == ["root", "root"]
    assert "Permission denied" in node.root(
        f"setpriv --reuid=sl-capp --regid=sl-capp --clear-groups touch {page['so']} 2>&1",
        check=False)
    assert ".silver-sdists" not in node.root(f"ls -A {layer}").split()
    # what the build left setuid is not root's setuid program in the shared layer
    assert node.root(f"setpriv --reuid=sl-capp --regid=sl-capp --clear-groups "
                     f"{layer}/planted-id -u").strip() != "0"
    assert node.root(f"find {layer} -perm /6000").strip() == ""
    assert page["uid"] == int(node.root("id -u silver-build"))
    again = node.update(app, "capp.test")               # the same set: neither sent nor built
    assert "already there" in again.stderr and "building cpkg" not in again.stderr

    (app / "requirements.txt").write_text((app / "requirements.txt").read_text().replace(
        "cpkg==1.0", "cpkg==2.0"))
    failed = node.update(app, "capp.test", check=False)
    assert failed.returncode != 0
    assert "building cpkg 2.0 on this node failed" in failed.stderr, failed.stderr
    error = failed.stderr[failed.stderr.index("silver: error: "):]
    assert "the previous version keeps serving. Last lines:" in error.splitlines()[0], error
    assert "cpkg.c:6:1: error: unknown type name" in error, error     # gcc's own words
    assert get_json(node, "capp.test")["answer"] == 42
    assert node.root("ls -A /var/lib/silverlining/deps-build").split() == []   # cleaned up


def test_refresh_deps_resolves_an_unpinned_set_again(node, tmp_path):  # noqa: F811
    """An unpinned requirement keeps its first resolution (the local cache) until
    silver update --refresh-deps, which resolves it again and deploys."""
    links = tmp_path / "links"
    make_wheel(links, "tiny")
    make_wheel(links, "needsold")
    app = tiny_app(tmp_path, links, pins="tiny", name="fresh")

    def layer_has() -> list[str]:
        layer = get_json(node, "fresh.test")["deps"]
        return [n for n in node.root(f"ls {layer}").split() if n.startswith("tiny-")]

    node.update(app, "fresh.test")
    assert layer_has() == ["tiny-1.0.dist-info"]
    make_wheel(links, "tiny", "2.0")
    kept = node.update(app, "fresh.test")
    assert "already there" in kept.stderr and layer_has() == ["tiny-1.0.dist-info"]
    refreshed = node.update(app, "fresh.test", "--refresh-deps")
    assert "sending dependency set" in refreshed.stderr, refreshed.stderr
    assert layer_has() == ["tiny-2.0.dist-info"]
