"""Declared dependencies built for a node (silverlining/deps.py), without a node: uv
runs for real, from local wheel directories (--no-index), never PyPI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from silverlining import deps
from silverlining.deps import Target
from silverlining.errors import SilverError, UsageError

CACHE = Path(os.environ.get("SILVER_LOCAL_CACHE") or "/var/cache/silverlining-test")
WHEELS = CACHE / "wheels-deps"        # downloaded by scripts/test
NODE = Target("cpython", "3.11.2", "cp311", "2.36", "x86_64")     # a Debian 12 node


def make_wheel(directory: Path, name: str, version: str = "1.0",
               requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel written directly (no build step, no network)."""
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name}/__init__.py": f"VALUE = {name!r}\n", f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def make_c_sdist(directory: Path, name: str = "cpkg", version: str = "1.0",
                 setup_extra: str = "", broken: bool = False) -> Path:
    """A source-only package with a C extension (no wheel anywhere), written directly
    (no build step, no network): ``NAME.answer()`` returns 42. ``setup_extra`` runs in
    its setup.py first; ``broken`` makes its C fail to compile."""
    c_code = ("#include <Python.h>\n"
              "static PyObject *answer(PyObject *self, PyObject *args) "
              "{ return PyLong_FromLong(42); }\n"
              "static PyMethodDef methods[] = {{\"answer\", answer, METH_NOARGS, NULL}, "
              "{NULL, NULL, 0, NULL}};\n"
              f"static struct PyModuleDef m = {{PyModuleDef_HEAD_INIT, \"{name}\", NULL, -1, "
              "methods};\n"
              f"PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&m); }}\n")
    if broken:
        c_code += "this is not C;\n"
    files = {
        "setup.py": f"{setup_extra}\nfrom setuptools import setup, Extension\n"
                    f"setup(name={name!r}, version={version!r}, "
                    f"ext_modules=[Extension({name!r}, [{name + '.c'!r}])])\n",
        f"{name}.c": c_code,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("SILVER_HOME", str(tmp_path / "home"))


def app_with(tmp_path: Path, requirements: str) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "requirements.txt").write_text(requirements)
    return app


def build(app: Path, target: Target = NODE) -> deps.Build:
    decl = deps.declared(app)
    assert decl is not None
    return deps.build(decl, target, "n1")


def tags_of(site: Path) -> dict[str, list[str]]:
    return {dist.name.split("-")[0].lower(): deps.wheel_tags(dist)
            for dist in site.glob("*.dist-info")}


@pytest.mark.parametrize("host", ["linux-aarch64", "macos-arm64"])
def test_a_laptop_gets_the_wheels_of_an_x86_64_node(tmp_path, host):
    """The find-links directory holds this laptop's wheels next to the node's; the
    node's are installed, whatever machine runs uv."""
    host_wheels = {"linux-aarch64": "aarch64", "macos-arm64": "macosx"}[host]
    found = sorted(WHEELS.glob("*.whl"))
    assert any(host_wheels in p.name for p in found), f"scripts/test downloads {WHEELS}"
    links = tmp_path / "wheels"
    links.mkdir()
    for wheel in found:            # the host's own and the node's, nothing else
        if host_wheels in wheel.name or "x86_64" in wheel.name or "none-any" in wheel.name:
            (links / wheel.name).symlink_to(wheel)
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\n"
                             "psycopg[binary]\npillow\npydantic\n")
    result = build(app)
    assert {"pillow", "psycopg", "psycopg-binary", "pydantic", "pydantic-core"} \
        <= {deps.normalize(n) for n in result.packages}
    compiled = {name: tags for name, tags in tags_of(result.site).items()
                if tags and not tags[0].endswith("-none-any")}
    assert set(compiled) == {"pillow", "psycopg_binary", "pydantic_core"}
    for name, tags in compiled.items():
        assert all(t.startswith("cp311-cp311-manylinux") and t.endswith("_x86_64")
                   for t in tags), (name, tags)


def test_python_full_version_markers_resolve_for_the_node(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, "needsold", requires=('oldhelper; python_full_version < "3.11.3"',))
    make_wheel(links, "oldhelper")
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\nneedsold\n")
    on_node = build(app, NODE)
    assert set(on_node.packages) == {"needsold", "oldhelper"}
    newer = build(app, Target("cpython", "3.11.7", "cp311", "2.36", "x86_64"))
    assert set(newer.packages) == {"needsold"}
    assert on_node.fingerprint != newer.fingerprint


def test_a_build_is_cached_by_declaration_and_target(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, "tiny")
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\ntiny\n")
    first = build(app)
    decl = deps.declared(app)
    again = deps.cached(decl, NODE)
    assert again is not None and again.fingerprint == first.fingerprint
    assert again.packages == {"tiny": "1.0"}
    manifest = json.loads((first.site / deps.MANIFEST).read_text())
    assert manifest["fingerprint"] == first.fingerprint
    assert not (first.site / ".lock").exists()
    assert deps.cached(decl, Target("cpython", "3.13.5", "cp313", "2.41", "x86_64")) is None
    # a copy elsewhere with the same requirements builds the same set: same layer
    other = tmp_path / "other"
    shutil.copytree(app, other)
    (other / "requirements.txt").write_text(f"--find-links {links}\n--no-index\ntiny\n")
    assert build(other).fingerprint == first.fingerprint


@pytest.mark.parametrize("target", [NODE, Target("cpython", "3.13.5", "cp313", "2.41",
                                                  "x86_64")])
def test_a_compiled_package_without_wheels_is_refused_in_one_line(tmp_path, target):
    links = tmp_path / "wheels"
    make_c_sdist(links)
    for wheel in WHEELS.glob("setuptools-*.whl"):     # to build it, as uv would here
        shutil.copy(wheel, links)
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\ncpkg\n")
    with pytest.raises(SilverError) as err:
        build(app, target)
    message = err.value.message
    assert "\n" not in message
    assert message.startswith(f"cpkg has compiled code and no wheel for n1 "
                               f"({target.describe()}): pin a version of cpkg"), message
    assert message.endswith("or have the node build it (build_on_node = cpkg in app.ini)")


def test_build_on_node_sends_the_source_and_installs_the_rest(tmp_path):
    """With build_on_node = cpkg, cpkg is resolved with the rest but only its sdist goes
    into the build (checked against its hash), for the node to compile; the
    fingerprint says so, and so does the cache key."""
    links = tmp_path / "wheels"
    sdist = make_c_sdist(links)
    make_wheel(links, "tiny")
    for wheel in WHEELS.glob("setuptools-*.whl"):     # uv reads cpkg's metadata with it
        shutil.copy(wheel, links)
    app = app_with(tmp_path, "--no-index\n--find-links wheels-link\ncpkg\ntiny\n")
    (app / "wheels-link").symlink_to(links)           # relative to the requirements file
    plain = deps.declared(app)
    decl = deps.declared(app, ("cpkg",))
    assert decl.key(NODE) != plain.key(NODE)
    made = deps.build(decl, NODE, "n1")
    assert made.packages == {"tiny": "1.0", "cpkg": "1.0"}
    assert sorted(p.name for p in made.site.iterdir()) == [
        deps.MANIFEST, deps.SDISTS, "tiny", "tiny-1.0.dist-info"]
    assert (made.site / deps.SDISTS / sdist.name).read_bytes() == sdist.read_bytes()
    manifest = json.loads((made.site / deps.MANIFEST).read_text())
    assert manifest["build_on_node"] == {"cpkg": {
        "version": "1.0", "sdist": sdist.name,
        "sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}}
    assert deps.cached(decl, NODE).fingerprint == made.fingerprint
    assert deps.cached(plain, NODE) is None

    with pytest.raises(UsageError, match=r"build_on_node names nothere, which "
                                         r"requirements.txt does not install for n1"):
        deps.build(deps.declared(app, ("nothere",)), NODE, "n1")
    (app / "requirements.txt").write_text("# nothing yet\n")
    with pytest.raises(UsageError, match=r"build_on_node names cpkg, but the app declares "
                                         "no dependencies"):
        deps.declared(app, ("cpkg",))


def test_build_on_node_needs_a_source_distribution(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, "tiny")
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\ntiny\n")
    with pytest.raises(SilverError, match=r"^tiny 1.0: build_on_node needs its source "
                                          r"distribution \(.tar.gz\), and uv found none "
                                          "for n1"):
        deps.build(deps.declared(app, ("tiny",)), NODE, "n1")


def test_refresh_resolves_an_unpinned_set_again(tmp_path):
    """An unpinned requirement stays as first resolved (the cache is keyed by the
    declaring files) until a refresh (silver update --refresh-deps) resolves it anew,
    once per target in one run."""
    links = tmp_path / "wheels"
    make_wheel(links, "tiny")
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\ntiny\n")
    decl = deps.declared(app)
    assert build(app).packages == {"tiny": "1.0"}
    make_wheel(links, "tiny", "2.0")
    assert build(app).packages == {"tiny": "1.0"}
    refreshed = deps.build(decl, NODE, "n1", refresh=True)
    assert refreshed.packages == {"tiny": "2.0"}
    assert deps.cached(decl, NODE).fingerprint == refreshed.fingerprint
    make_wheel(links, "tiny", "3.0")                 # a second node in the same run: reused
    assert deps.build(decl, NODE, "n2", refresh=True).packages == {"tiny": "2.0"}


def test_uv_failures_are_one_line(tmp_path):
    app = app_with(tmp_path, f"--no-index\n--find-links {tmp_path}\nnosuchpackage\n")
    with pytest.raises(SilverError) as err:
        build(app)
    assert "\n" not in err.value.message
    assert err.value.message.startswith("installing requirements.txt for n1 (CPython "
                                        "3.11.2, manylinux_2_36_x86_64) failed: ")
    assert "nosuchpackage" in err.value.message


def test_a_password_in_the_requirements_is_refused(tmp_path):
    app = app_with(tmp_path, "--extra-index-url https://me:s3cret@pypi.example.test/simple\n"
                             "tiny\n")
    with pytest.raises(UsageError, match=r"requirements.txt:1 has a password in a URL"):
        build(app)
    (app / "requirements.txt").write_text(
        "--extra-index-url https://me:${PYPI_TOKEN}@pypi.example.test/simple\n")
    deps.check_no_credentials(deps.declared(app))


def test_declarations_lock_first(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    assert deps.declared(app) is None
    (app / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '1'\n")
    assert deps.declared(app) is None              # no dependencies key: nothing declared
    (app / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '1'\n"
                                        "dependencies = ['tiny']\n")
    assert deps.declared(app).kind == "pyproject.toml"
    (app / "requirements.txt").write_text("tiny\n")
    assert deps.declared(app).kind == "requirements.txt"
    (app / "pylock.toml").write_text("lock-version = '1.0'\n")
    assert deps.declared(app).kind == "pylock.toml"
    (app / "uv.lock").write_text("version = 1\n")
    assert deps.declared(app).kind == "uv.lock"


def test_pyproject_dependencies_and_tool_uv_sources(tmp_path):
    links = tmp_path / "wheels"
    make_wheel(links, "tiny")
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        "[project]\nname = 'x'\nversion = '1'\ndependencies = ['tiny']\n"
        f"[tool.uv]\nno-index = true\nfind-links = [{str(links)!r}]\n")
    assert build(app).packages == {"tiny": "1.0"}


def test_what_bin_pip_installed_is_left_out_but_not_editables_or_own_files(tmp_path):
    lib = tmp_path / "app" / "lib" / "python"
    for name, editable, files in (("django", False, ["django/__init__.py",
                                                       "../../bin/django-admin"]),
                                  ("mine", True, ["__editable__.mine-1.0.pth"])):
        dist = lib / f"{name}-1.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text(f"Name: {name}\nVersion: 1.0\n")
        (dist / "INSTALLER").write_text("pip\n")
        (dist / "RECORD").write_text("".join(f"{f},,\n" for f in files)
                                     + f"{dist.name}/RECORD,,\n")
        if editable:
            (dist / "direct_url.json").write_text(
                json.dumps({"url": "file:///x", "dir_info": {"editable": True}}))
    (lib / "vendored").mkdir()
    found = deps.pip_installed(tmp_path / "app")
    assert found.names == {"django": "1.0"}
    assert found.excludes == ["/lib/python/django", "/lib/python/django-1.0.dist-info"]


def test_package_changes():
    assert deps.package_changes({"Django": "5.1", "old": "1", "same": "2"},
                                {"django": "5.2", "new": "3", "same": "2"}) == [
        "~ django 5.1 -> 5.2", "+ new 3", "- old 1"]


@pytest.mark.parametrize("lock", ["uv.lock", "pylock.toml"])
def test_a_lock_is_installed_as_locked(tmp_path, lock):
    import subprocess

    links = tmp_path / "wheels"
    make_wheel(links, "tiny", "1.0")
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        "[project]\nname = 'x'\nversion = '1'\nrequires-python = '>=3.11'\n"
        f"dependencies = ['tiny']\n[tool.uv]\nno-index = true\nfind-links = [{str(links)!r}]\n")
    subprocess.run([deps.uv_bin(), "lock", "--quiet"], cwd=app, check=True)
    if lock == "pylock.toml":
        subprocess.run([deps.uv_bin(), "export", "--format", "pylock.toml", "--quiet",
                        "--no-emit-project", "-o", "pylock.toml"], cwd=app, check=True)
        (app / "uv.lock").unlink()
    make_wheel(links, "tiny", "2.0")         # newer, but the lock says 1.0
    assert deps.declared(app).kind == lock
    assert build(app).packages == {"tiny": "1.0"}


def test_local_projects_are_built_and_rebuilt_when_edited_and_editables_refused(tmp_path):
    links = tmp_path / "wheels"
    for wheel in WHEELS.glob("setuptools-*.whl"):     # the local project's build backend
        links.mkdir(exist_ok=True)
        shutil.copy(wheel, links)
    app = app_with(tmp_path, f"--no-index\n--find-links {links}\n./vendor/mine\n")
    project = app / "vendor" / "mine"
    (project / "mine").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools']\nbuild-backend = 'setuptools.build_meta'\n"
        "[project]\nname = 'mine'\nversion = '0.1'\n")
    (project / "mine" / "__init__.py").write_text("V = 1\n")
    first = build(app)
    assert first.packages == {"mine": "0.1"}
    assert (first.site / "mine" / "__init__.py").read_text() == "V = 1\n"
    (project / "mine" / "__init__.py").write_text("V = 2\n")
    second = build(app)
    assert (second.site / "mine" / "__init__.py").read_text() == "V = 2\n"
    assert second.fingerprint != first.fingerprint
    (app / "requirements.txt").write_text(f"--no-index\n--find-links {links}\n-e ./vendor/mine\n")
    with pytest.raises(UsageError, match=r"requirements.txt installs mine editable \(-e\)"):
        build(app)


def test_a_tool_uv_sources_path_is_rebuilt_when_edited(tmp_path):
    """A local project named in [tool.uv.sources] is part of the cache key: editing
    its code makes a new build of it, not the cached one."""
    links = tmp_path / "wheels"
    links.mkdir()
    for wheel in WHEELS.glob("setuptools-*.whl"):     # the local project's build backend
        shutil.copy(wheel, links)
    app = tmp_path / "app"
    project = tmp_path / "libs" / "mine"              # outside the app, as a sibling repo
    (project / "mine").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        "[build-system]\nrequires = ['setuptools']\nbuild-backend = 'setuptools.build_meta'\n"
        "[project]\nname = 'mine'\nversion = '0.1'\n")
    (project / "mine" / "__init__.py").write_text("V = 1\n")
    app.mkdir()
    (app / "pyproject.toml").write_text(
        "[project]\nname = 'x'\nversion = '1'\ndependencies = ['mine']\n"
        f"[tool.uv]\nno-index = true\nfind-links = [{str(links)!r}]\n"
        "[tool.uv.sources]\nmine = { path = '../libs/mine' }\n")
    first = build(app)
    assert (first.site / "mine" / "__init__.py").read_text() == "V = 1\n"
    assert deps.declared(app).local == ["mine"]
    (project / "mine" / "__init__.py").write_text("V = 2\n")
    second = build(app)
    assert (second.site / "mine" / "__init__.py").read_text() == "V = 2\n"
    assert second.fingerprint != first.fingerprint


def test_an_empty_declaration_leaves_lib_python_as_it_is(tmp_path):
    """silver init's requirements.txt (comments only) declares nothing: what bin/pip
    installed is uploaded as before (the 2010 layout)."""
    app = app_with(tmp_path, "# nothing yet\n--no-index\n")
    dist = app / "lib" / "python" / "django-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Name: django\nVersion: 1.0\n")
    (dist / "INSTALLER").write_text("pip\n")
    (dist / "RECORD").write_text("django/__init__.py,,\n")
    decl, excludes, local = deps.upload_excludes(app)
    assert decl.empty and local == {} and not any("django" in p for p in excludes)
    (app / "requirements.txt").write_text("Django\n")
    decl, excludes, local = deps.upload_excludes(app)
    assert local == {"django": "1.0"} and "/lib/python/django" in excludes


RACE = """
import threading
from silverlining import deps
start, failed = threading.Barrier(8), []

def look():
    start.wait()
    try:
        deps.uv_bin()
    except Exception as exc:
        failed.append(repr(exc))

threads = [threading.Thread(target=look) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(failed)
"""


def test_uv_is_found_by_several_threads_at_once():
    """An update to several nodes builds their sets in threads: uv's lookup, through
    sysconfig's first use (not thread-safe), gave one of them None for ``EXE`` (a
    traceback). Each run is a fresh interpreter, where sysconfig is not read yet."""
    import subprocess
    import sys

    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", RACE], capture_output=True, text=True,
                             check=True, cwd=Path(deps.__file__).parents[1]).stdout
        assert out.strip() == "[]", out
