"""A new dependency set reuses what the node's other sets hold (node/deps.py ``Reuse``):
a file with the same path, bytes and mode is a hard link to the other layer's, its
``.pyc`` too; anything else is written (and compiled) as before, and the set still
checks against its fingerprint."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import py_compile
from pathlib import Path

import pytest

from silverlining import depset
from silverlining.node.deps import Reuse
from tests.unit.test_depset import KEY, make_site, record_line, stream_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="layers are root's")


def layer_of(site: Path, dest: Path, reuse: Reuse | None = None,
             compiled: list[str] | None = None) -> str:
    """``site`` unpacked into ``dest`` as the node does; its fingerprint."""
    dest.mkdir(mode=0o700)
    handed = compiled.append if compiled is not None else None
    return depset.verify(dest, depset.unpack(io.BytesIO(stream_of(site)), dest, handed,
                                             reuse), KEY)


def test_files_another_set_has_are_linked_with_their_pyc(tmp_path: Path) -> None:
    site, fingerprint = make_site(tmp_path)
    old = tmp_path / "old"
    assert layer_of(site, old) == fingerprint
    py_compile.compile(str(old / "pkg" / "__init__.py"))
    # the new set: one file changed, the rest the same
    (site / "pkg" / "sub" / "data.bin").write_bytes(b"changed")
    dist = site / "pkg-1.0.dist-info"
    rows = [record_line(site, rel) for rel in ("pkg/__init__.py", "pkg/sub/data.bin",
                                               "bin/tool", "pkg-1.0.dist-info/METADATA")]
    (dist / "RECORD").write_text("\n".join(rows + ["pkg-1.0.dist-info/RECORD,,"]) + "\n")
    changed = depset.fingerprint(KEY, [(dist.name, (dist / "RECORD").read_bytes())], {})

    compiled: list[str] = []
    reuse = Reuse([old], compiled.append)
    new = tmp_path / "new"
    assert layer_of(site, new, reuse, compiled) == changed
    same = lambda rel: (old / rel).stat().st_ino == (new / rel).stat().st_ino  # noqa: E731
    assert same("pkg/__init__.py") and same("bin/tool") and same("pkg-1.0.dist-info/METADATA")
    assert not same("pkg/sub/data.bin")
    assert (new / "pkg" / "sub" / "data.bin").read_bytes() == b"changed"
    pyc = importlib.util.cache_from_source(str(new / "pkg" / "__init__.py"))
    assert os.stat(pyc).st_ino == os.stat(
        importlib.util.cache_from_source(str(old / "pkg" / "__init__.py"))).st_ino
    assert reuse.linked == 3 and str(new / "pkg" / "__init__.py") not in compiled


def test_what_differs_is_written_and_compiled(tmp_path: Path) -> None:
    site, fingerprint = make_site(tmp_path)
    old = tmp_path / "old"
    layer_of(site, old)
    (old / "bin" / "tool").chmod(0o644)           # another mode: not the same file
    compiled: list[str] = []
    reuse = Reuse([old], compiled.append)
    new = tmp_path / "new"
    assert layer_of(site, new, reuse, compiled) == fingerprint
    assert (new / "bin" / "tool").stat().st_ino != (old / "bin" / "tool").stat().st_ino
    assert os.stat(new / "bin" / "tool").st_mode & 0o777 == 0o755
    # linked, but the old layer had no .pyc for it: compiled here
    assert (new / "pkg" / "__init__.py").stat().st_ino == \
        (old / "pkg" / "__init__.py").stat().st_ino
    assert [p for p in compiled if p.endswith(".py")] == [str(new / "pkg" / "__init__.py")]
    assert str(new / "bin" / "tool") in compiled           # written: handed on as before


def test_the_files_a_node_has_are_not_sent(tmp_path: Path) -> None:
    """The client leaves out what the node's layer of another set holds the same
    (``shared_files``); the node links those from that layer (``fill``), and the set
    checks against its fingerprint as if it had come whole."""
    base_site, _ = make_site(tmp_path / "a")
    site, _ = make_site(tmp_path / "b")
    (site / "pkg" / "sub" / "data.bin").write_bytes(b"changed")
    (site / "bin" / "tool").chmod(0o644)                  # the same bytes, not executable
    dist = site / "pkg-1.0.dist-info"
    rows = [record_line(site, rel) for rel in ("pkg/__init__.py", "pkg/sub/data.bin",
                                               "bin/tool", "pkg-1.0.dist-info/METADATA")]
    (dist / "RECORD").write_text("\n".join(rows + ["pkg-1.0.dist-info/RECORD,,"]) + "\n")
    fingerprint = depset.fingerprint(KEY, [(dist.name, (dist / "RECORD").read_bytes())], {})
    skip = depset.shared_files(site, base_site)
    assert skip == {"pkg/__init__.py", "pkg-1.0.dist-info/METADATA"}

    old = tmp_path / "old"
    layer_of(base_site, old)
    py_compile.compile(str(old / "pkg" / "__init__.py"))
    data = b"".join(iter(depset.TarStream(site, skip).read1, b""))
    assert b"VALUE = 1" not in data and b"changed" in data
    compiled: list[str] = []
    reuse = Reuse([], compiled.append, base=old)
    new = tmp_path / "new"
    new.mkdir(mode=0o700)
    files = depset.unpack(io.BytesIO(data), new, compiled.append, reuse)
    reuse.fill(new, files)
    assert depset.verify(new, files, KEY) == fingerprint
    assert (new / "pkg" / "__init__.py").stat().st_ino == \
        (old / "pkg" / "__init__.py").stat().st_ino
    assert os.path.exists(importlib.util.cache_from_source(str(new / "pkg" / "__init__.py")))
    # without that layer, what was left out is missing: the set is refused
    alone = tmp_path / "alone"
    alone.mkdir(mode=0o700)
    files = depset.unpack(io.BytesIO(data), alone)
    Reuse([], compiled.append).fill(alone, files)
    with pytest.raises(depset.BadSet, match="missing"):
        depset.verify(alone, files, KEY)


def test_the_cached_set_sharing_most_packages_is_the_base(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from silverlining import deps

    monkeypatch.setattr(deps, "cache_root", lambda: tmp_path)
    for key, fingerprint, packages in (("k1", "f1", {"a": "1", "b": "1"}),
                                       ("k2", "f2", {"a": "1", "b": "1", "c": "1"}),
                                       ("k3", "f3", {"a": "1", "b": "1", "c": "1", "d": "1"}),
                                       ("k4", "f4", {"a": "2"})):
        (tmp_path / key / "site").mkdir(parents=True)
        (tmp_path / key / "site" / depset.MANIFEST).write_text(json.dumps(
            {"fingerprint": fingerprint, "packages": packages}))
    build = deps.Build("new", tmp_path / "new", {"a": "1", "b": "1", "c": "1", "d": "2"})
    assert deps.base_for(build, ["f1", "f2", "f4"]).fingerprint == "f2"   # f3: not there
    assert deps.base_for(build, ["f4"]) is None                          # nothing shared


def test_what_a_killed_install_left_is_swept(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    """``deps-install`` killed outright leaves its work directory (named after its pid);
    the next install, or clean-node, removes it once that process is gone, and nothing
    else: not a running install's, not a layer."""
    import subprocess
    import sys

    from silverlining.node import deps, paths

    monkeypatch.setattr(paths, "DEPS", tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale, running, layer = (tmp_path / f".{'a' * 32}.{gone}",
                             tmp_path / f".{'b' * 32}.{os.getpid()}", tmp_path / ("c" * 32))
    for folder in (stale, running, layer):
        (folder / "pkg").mkdir(parents=True)
    deps.sweep_work()
    assert not stale.exists() and running.is_dir() and layer.is_dir()


def test_a_node_that_lost_the_base_is_sent_the_whole_set(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The client leaves out what the node's layer of another set holds; should the node
    have removed that layer meanwhile (``clean-node``), it refuses the set as missing
    files (``test_the_files_a_node_has_are_not_sent``), and the client sends it whole."""
    from types import SimpleNamespace

    from silverlining import deps, protocol
    from silverlining.commands.update import send_deps
    from silverlining.errors import SilverError

    monkeypatch.setattr(deps, "cache_root", lambda: tmp_path / "cache")
    base_site, _ = make_site(tmp_path / "cache" / "k1")
    site, fingerprint = make_site(tmp_path / "cache" / "k2")
    (site / depset.MANIFEST).write_text(json.dumps({"fingerprint": fingerprint,
                                                    "packages": {"pkg": "1.0"}}))
    (base_site / depset.MANIFEST).write_text(json.dumps({"fingerprint": "f" * 32,
                                                         "packages": {"pkg": "1.0"}}))
    calls: list[tuple[str | None, bytes]] = []

    def send(call: protocol.DepsInstall, input) -> dict:
        calls.append((call.base, b"".join(iter(input.read1, b""))))
        if call.base:
            raise SilverError(f"dependency set {fingerprint}: pkg/__init__.py is missing "
                              "from the set; nothing was installed, run silver update again")
        return {"files": 5}

    console = SimpleNamespace(step=lambda *a: None, detail=lambda *a: None)
    session = SimpleNamespace(name="n1", console=console, send=send)
    build = deps.Build(fingerprint, site, {"pkg": "1.0"})
    sent, files = send_deps(session, build, ["f" * 32])        # type: ignore[arg-type]
    (base, partial), (again, whole) = calls
    assert base == "f" * 32 and again is None
    assert b"VALUE = 1" not in partial and b"VALUE = 1" in whole
    assert (sent, files) == (len(whole), 5)
