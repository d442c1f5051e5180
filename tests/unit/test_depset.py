"""A dependency set on the wire (silverlining/depset.py): the client's tar stream, the
node's unpacking and its check against the fingerprint. Pure file work: the node's
command (deps-install) runs it on real nodes in tests/integration/test_dependencies.py."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from silverlining import depset

KEY = depset.target_key("cpython", "3.13.5", "cp313", "2.41", "x86_64")


def record_line(site: Path, rel: str) -> str:
    data = (site / rel).read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{rel},sha256={digest},{len(data)}"


def make_site(root: Path, sdist: bytes | None = None) -> tuple[Path, str]:
    """A set as uv installs one: a package, a script, its dist-info with a RECORD, the
    manifest (and a source the node builds); returns it and its fingerprint."""
    site = root / "site"
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "bin").mkdir()
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "sub" / "data.bin").write_bytes(os.urandom(3000))
    (site / "bin" / "tool").write_text("#!/usr/bin/python3\n")
    (site / "bin" / "tool").chmod(0o755)
    dist = site / "pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Name: pkg\nVersion: 1.0\n")
    lines = [record_line(site, rel) for rel in
             ("pkg/__init__.py", "pkg/sub/data.bin", "bin/tool", "pkg-1.0.dist-info/METADATA")]
    (dist / "RECORD").write_text("\n".join(lines + ["pkg-1.0.dist-info/RECORD,,"]) + "\n")
    built = {}
    if sdist is not None:
        (site / depset.SDISTS).mkdir()
        (site / depset.SDISTS / "cpkg-1.0.tar.gz").write_bytes(sdist)
        built = {"cpkg": {"version": "1.0", "sdist": "cpkg-1.0.tar.gz",
                          "sha256": hashlib.sha256(sdist).hexdigest()}}
    fingerprint = depset.fingerprint(KEY, [(dist.name, (dist / "RECORD").read_bytes())], built)
    manifest = {"fingerprint": fingerprint, "packages": {"pkg": "1.0"}}
    if built:
        manifest["build_on_node"] = built
    (site / depset.MANIFEST).write_text(json.dumps(manifest))
    return site, fingerprint


def stream_of(site: Path) -> bytes:
    stream = depset.TarStream(site)
    data = b"".join(iter(stream.read1, b""))
    assert stream.sent == len(data)
    return data


def receive(data: bytes, dest: Path, key: str = KEY) -> str:
    dest.mkdir(mode=0o700)
    return depset.verify(dest, depset.unpack(io.BytesIO(data), dest), key)


def test_a_set_arrives_whole_with_its_fingerprint_and_modes(tmp_path: Path) -> None:
    site, fingerprint = make_site(tmp_path, sdist=b"source bytes")
    old = os.umask(0o077)           # the node's umask does not leak into the layer
    try:
        assert receive(stream_of(site), tmp_path / "layer") == fingerprint
    finally:
        os.umask(old)
    layer = tmp_path / "layer"
    assert (layer / "pkg" / "sub" / "data.bin").read_bytes() == \
        (site / "pkg" / "sub" / "data.bin").read_bytes()
    assert stat.S_IMODE((layer / "bin" / "tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((layer / "pkg" / "__init__.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((layer / "pkg" / "sub").stat().st_mode) == 0o755
    assert (layer / depset.SDISTS / "cpkg-1.0.tar.gz").read_bytes() == b"source bytes"


def test_another_target_makes_another_fingerprint(tmp_path: Path) -> None:
    """A set built for another Python does not pass as this node's."""
    site, fingerprint = make_site(tmp_path)
    other = depset.target_key("cpython", "3.11.2", "cp311", "2.36", "x86_64")
    assert receive(stream_of(site), tmp_path / "layer", other) != fingerprint


@pytest.mark.parametrize("change, message", [
    (lambda s: (s / "pkg" / "__init__.py").write_text("VALUE = 2\n"), "not the file its RECORD"),
    (lambda s: (s / "pkg" / "sub" / "data.bin").unlink(), "missing from the set"),
    (lambda s: (s / "pkg" / "extra.py").write_text(""), "in no RECORD"),
    (lambda s: (s / depset.SDISTS / "cpkg-1.0.tar.gz").write_bytes(b"other"),
     "source of cpkg"),
    (lambda s: (s / depset.MANIFEST).unlink(), "no readable manifest"),
])
def test_an_altered_set_is_refused(tmp_path: Path, change, message: str) -> None:
    site, _ = make_site(tmp_path, sdist=b"source bytes")
    change(site)
    with pytest.raises(depset.BadSet, match=message):
        receive(stream_of(site), tmp_path / "layer")


def test_a_stream_that_ends_early_is_refused(tmp_path: Path) -> None:
    site, _ = make_site(tmp_path)
    data = stream_of(site)
    with pytest.raises(depset.BadSet, match="did not arrive whole"):
        receive(data[:len(data) // 2 + 100], tmp_path / "layer")


def hostile(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("member, message", [
    (tarfile.TarInfo("../outside"), "not a path inside it"),
    (tarfile.TarInfo("/etc/outside"), "not a path inside it"),
    (tarfile.TarInfo("pkg/../../outside"), "not a path inside it"),
])
def test_a_path_leaving_the_set_is_refused(tmp_path: Path, member, message: str) -> None:
    with pytest.raises(depset.BadSet, match=message):
        depset.unpack(io.BytesIO(hostile((member, b"x"))), tmp_path / "layer")
    assert not (tmp_path / "outside").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_links_and_special_files_are_refused(tmp_path: Path, kind: bytes) -> None:
    member = tarfile.TarInfo("pkg")
    member.type, member.linkname = kind, "/etc/passwd"
    (tmp_path / "layer").mkdir()
    with pytest.raises(depset.BadSet, match="not a regular file"):
        depset.unpack(io.BytesIO(hostile((member, b""))), tmp_path / "layer")
    assert os.listdir(tmp_path / "layer") == []


def test_a_name_given_twice_is_refused(tmp_path: Path) -> None:
    """The second copy of a file would replace the checked one."""
    twice = hostile((tarfile.TarInfo("a"), b"1"), (tarfile.TarInfo("a"), b"2"))
    (tmp_path / "layer").mkdir()
    with pytest.raises(depset.BadSet, match="twice"):
        depset.unpack(io.BytesIO(twice), tmp_path / "layer")


def test_the_client_sends_no_links(tmp_path: Path) -> None:
    site, _ = make_site(tmp_path)
    (site / "pkg" / "link").symlink_to("/etc/passwd")
    with pytest.raises(depset.BadSet, match="neither a file nor a directory"):
        stream_of(site)


def test_each_file_is_handed_on_once_complete(tmp_path: Path) -> None:
    """The node byte-compiles a module as soon as it is written (``written``)."""
    site, _ = make_site(tmp_path)
    seen: list[tuple[str, bytes]] = []
    layer = tmp_path / "layer"
    layer.mkdir()
    files = depset.unpack(io.BytesIO(stream_of(site)), layer,
                          lambda path: seen.append((path, Path(path).read_bytes())))
    assert sorted(seen) == sorted((str(layer / rel), (site / rel).read_bytes()) for rel in files)


def test_a_shipped_bytecode_cache_is_checked_not_written(tmp_path: Path) -> None:
    """The node writes its own ``__pycache__`` for its Python (while the set arrives): a
    shipped one is hashed against its RECORD like any file, but never lands in the layer,
    so it can neither collide with the node's nor stand in for it."""
    site, _ = make_site(tmp_path)
    cache = site / "pkg" / "__pycache__"
    cache.mkdir()
    (cache / "__init__.cpython-313.pyc").write_bytes(b"shipped")
    dist = site / "pkg-1.0.dist-info"
    record = (dist / "RECORD").read_text()
    (dist / "RECORD").write_text(record_line(site, "pkg/__pycache__/__init__.cpython-313.pyc")
                                 + "\n" + record)
    fingerprint = depset.fingerprint(KEY, [(dist.name, (dist / "RECORD").read_bytes())], {})
    written: list[str] = []
    layer = tmp_path / "layer"
    layer.mkdir()
    files = depset.unpack(io.BytesIO(stream_of(site)), layer, written.append)
    assert depset.verify(layer, files, KEY) == fingerprint
    assert not (layer / "pkg" / "__pycache__").exists()
    assert not any("__pycache__" in path for path in written)
    (cache / "__init__.cpython-313.pyc").write_bytes(b"altered")
    with pytest.raises(depset.BadSet, match="not the file its RECORD"):
        receive(stream_of(site), tmp_path / "again")
    twice = hostile((tarfile.TarInfo("__pycache__/a.pyc"), b"1"),
                    (tarfile.TarInfo("__pycache__/a.pyc"), b"2"))
    with pytest.raises(depset.BadSet, match="twice"):
        depset.unpack(io.BytesIO(twice), layer)


def test_the_stream_comes_in_large_reads(tmp_path: Path) -> None:
    """Thousands of small files, one ssh write each, cost more than their bytes."""
    site = tmp_path / "site"
    site.mkdir()
    for i in range(300):
        (site / f"m{i}.py").write_bytes(os.urandom(600))
    stream = depset.TarStream(site)
    reads = list(iter(stream.read1, b""))
    assert len(reads) <= 2 and sum(map(len, reads)) == stream.sent > 300 * 1024
