"""Dependency layers: an app's declared dependencies, built by the client for this
node's interpreter, stored once and shared read-only by every version using them.

``DEPS/FINGERPRINT`` is root-owned and read-only to apps; a version's
environment names its layer in ``SILVER_DEPS``, which the app loader adds to
``sys.path`` after ``lib/python`` (``.pth`` files work). A version that keeps
its dependencies neither uploads, walks nor links their files: it only names
the layer. ``facts`` is what ``prepare`` tells the client: this interpreter
(so the client builds for it) and which layers are already here. A set the
node lacks arrives as one tar stream (``receive``, ``silverlining/depset.py``),
next to the app's upload, and becomes a layer only once every file matches
the fingerprint.

A set whose manifest lists ``build_on_node`` packages brings their source
distributions; they are compiled here, for this interpreter, with Debian's
compiler and Python headers, by ``BUILD_USER`` in a transient systemd unit
without network or write access outside its build directory (``setup.py`` is
code), then copied into the layer as root's files like the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import pwd
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from silverlining import depset, protocol
from silverlining.depset import MANIFEST, SDISTS
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._state import AppState, all_apps
from silverlining.node.base import apt_install, make_dir, node_lock, run, say

# what compiling a package needs besides what the app's packages = adds (its libraries'
# headers); wheel: Debian 12's setuptools has no bdist_wheel of its own
BUILD_TOOLS = ("build-essential", "python3-dev", "python3-pip", "python3-setuptools",
               "python3-wheel")
BUILD_TIMEOUT = 1800
_SDIST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.(?:tar\.gz|zip)\Z")
# in the build unit: sources -> wheels -> a site directory, as BUILD_USER, offline
_BUILD_SCRIPT = """set -e
out=$1; shift
python3 -m pip wheel --no-deps --no-build-isolation --use-pep517 --no-index --no-cache-dir \\
    --disable-pip-version-check --wheel-dir "$out/wheels" "$@"
python3 -m pip install --no-deps --no-index --no-cache-dir --no-compile \\
    --disable-pip-version-check --target "$out/site" "$out"/wheels/*.whl
"""
ENV_VAR = "SILVER_DEPS"
_REUSE_LAYERS = 8           # the newest layers a new set may link files from
_COMPILERS = 4              # at most: a set's modules arrive at a few hundred a second
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{32}$")
_WORK_RE = re.compile(r"^\.[0-9a-f]{32}\.([0-9]+)\Z")     # receive's, by its pid


def target() -> dict[str, str]:
    """This interpreter and platform, as wheels and markers see them. The apps run
    under the same ``python3`` as ``silver-node``."""
    libc, version = platform.libc_ver()
    return {"implementation": sys.implementation.name, "python": platform.python_version(),
            "abi": f"cp{sys.version_info.major}{sys.version_info.minor}"
            if sys.implementation.name == "cpython" else sys.implementation.cache_tag,
            "glibc": version if libc == "glibc" else "", "machine": platform.machine()}


def present() -> list[str]:
    """The layers this node has."""
    try:
        return sorted(n for n in os.listdir(paths.DEPS) if _FINGERPRINT_RE.match(n))
    except FileNotFoundError:
        return []


def facts() -> dict:
    return {"target": target(), "deps": present()}


def check_fingerprint(fingerprint: str) -> str:
    if not _FINGERPRINT_RE.match(fingerprint):
        raise NodeError(f"bad dependency fingerprint {fingerprint!r}")
    return fingerprint


def layer(fingerprint: str) -> Path:
    return paths.DEPS / check_fingerprint(fingerprint)


def installed(fingerprint: str) -> Path:
    """The layer ``fingerprint``, which the client sends (``receive``) before it lets
    a deploy that names it go on."""
    final = layer(fingerprint)
    if not final.is_dir():
        raise NodeError(f"dependency set {fingerprint} is not on this node: run silver "
                        "update again")
    return final


def receive(call: protocol.DepsInstall) -> protocol.DepsInstallResult:
    """Make the layer ``call.fingerprint`` from the tar stream on stdin: unpacked as
    root's own read-only files into a directory only root can enter, its modules
    byte-compiled for this Python as they arrive (the app can never write them, and
    without them every start compiles its imports anew), checked against the
    fingerprint (every file against its RECORD, for this node's target), its
    ``build_on_node`` packages compiled, and put in place by one rename. Anything
    wrong: nothing is left."""
    fingerprint = check_fingerprint(call.fingerprint)
    final = layer(fingerprint)
    if final.is_dir():
        return {"fingerprint": fingerprint, "installed": False, "files": 0}
    make_dir(paths.DEPS, 0, 0, 0o755)
    sweep_work()
    work = paths.DEPS / f".{fingerprint}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    say(f"installing dependency set {fingerprint}")
    compiler = Compiler()
    base = layer(check_fingerprint(call.base)) if call.base else None
    reuse = Reuse([paths.DEPS / name for name in present()], compiler.add, base)
    try:
        work.mkdir(mode=0o700)
        try:
            files = depset.unpack(sys.stdin.buffer, work, compiler.add, reuse)
            reuse.fill(work, files)
            made = depset.verify(work, files, depset.target_key(**target()))
        except depset.BadSet as exc:
            raise NodeError(f"dependency set {fingerprint}: {exc}; nothing was installed, "
                            "run silver update again") from None
        if made != fingerprint:
            raise NodeError(f"the dependency set sent as {fingerprint} is {made} here (built "
                            "for another Python or platform?): run silver update again")
        compiler.finish()
        if reuse.linked:
            say(f"{reuse.linked} of {len(files)} files were in this node's other sets: "
                "linked, not written again")
        on_node = json.loads((work / MANIFEST).read_text()).get("build_on_node") or {}
        if on_node:
            build_here(on_node, work / SDISTS, work)
            byte_compile(work)          # what the build added; the rest is compiled
        shutil.rmtree(work / SDISTS, ignore_errors=True)
        os.chmod(work, 0o755)
        try:
            work.rename(final)
        except OSError:                    # another deploy put it there meanwhile
            pass
    finally:
        compiler.stop()             # before the removal: a worker would make directories
        shutil.rmtree(work, ignore_errors=True)
    return {"fingerprint": fingerprint, "installed": True, "files": len(files)}


# a byte-compiling worker: NUL-ended paths of complete modules on stdin, each compiled as
# it comes; one that does not compile for this Python (a template, test data) stays as it
# is. Its .pyc is what py_compile makes (PEP 552, checked by the source's mtime and size),
# written straight into the layer's private directory: py_compile's temporary file and
# rename, there for readers that could see a half-written .pyc, are for a place others
# read while it is written, which the layer is not before its rename
_COMPILER = """import marshal, os, struct, sys
from importlib.util import MAGIC_NUMBER, cache_from_source
os.umask(0o022)
rest = b""
while chunk := sys.stdin.buffer.read1(1 << 16):
    *names, rest = (rest + chunk).split(b"\\0")
    for name in names:
        path = os.fsdecode(name)
        try:
            with open(path, "rb") as source:
                st = os.fstat(source.fileno())
                code = compile(source.read(), path, "exec", dont_inherit=True)
            data = MAGIC_NUMBER + struct.pack("<III", 0, int(st.st_mtime) & 0xFFFFFFFF,
                                              st.st_size & 0xFFFFFFFF) + marshal.dumps(code)
            pyc = cache_from_source(path)
            os.makedirs(os.path.dirname(pyc), 0o755, exist_ok=True)
            out = open(pyc, "xb")
        except Exception:
            continue
        try:
            with out:
                out.write(data)
        except Exception:       # a part of a .pyc would fail the import: none at all
            os.unlink(pyc)
"""


class Compiler:
    """Byte-compiles a set's modules while the rest of it still arrives: ``add`` hands
    each file in turn to one of a worker process per CPU (up to ``_COMPILERS``), so
    the node's unpacking (mostly the kernel creating files) and the compiling overlap
    instead of running one after the other. Workers write only ``__pycache__`` next
    to the modules they are given, all inside the layer's root-only directory."""

    def __init__(self) -> None:
        argv = [sys.executable, "-I", "-S", "-c", _COMPILER]
        self._workers = [subprocess.Popen(argv, bufsize=0, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for _ in range(min(os.cpu_count() or 1, _COMPILERS))]
        self._turn = 0

    def add(self, path: str) -> None:
        """``path`` is complete: compile it if it is a module."""
        if path.endswith(".py"):
            worker = self._workers[self._turn % len(self._workers)]
            self._turn += 1
            assert worker.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # a worker gone: no .pyc for it
                worker.stdin.write(os.fsencode(path) + b"\0")

    def finish(self) -> None:
        """Wait until every module given is compiled (or BUILD_TIMEOUT has passed: the
        set is whole without its ``.pyc``, only slower to start)."""
        deadline = time.monotonic() + BUILD_TIMEOUT
        for worker in self._workers:
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in self._workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(max(0.0, deadline - time.monotonic()))
        self.stop()

    def stop(self) -> None:
        """End the workers still running, and wait for them."""
        for worker in self._workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
            if worker.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    worker.stdin.close()


class Reuse:
    """What the node's other layers hold, by path and RECORD hash: a file of a new set
    that one of them has (same path, bytes and mode) is made a hard link to it, and so
    is its ``.pyc`` (the same inode: the source's mtime and size the ``.pyc`` records
    still hold), instead of being written and compiled again. A new version of one
    package then costs the node that package's files only; the files the client left
    out of the stream, knowing the node has them in ``base``, are taken the same way
    (``fill``). Layers are root's and never change once in place; a link only adds a
    name, so pruning one layer leaves the other whole. ``base`` and the newest
    ``_REUSE_LAYERS`` layers are read (their RECORDs)."""

    def __init__(self, layers: list[Path], compile_: Callable[[str], None],
                 base: Path | None = None) -> None:
        self._known: dict[str, tuple[str, str, Path]] = {}
        self._compile = compile_
        self.linked = 0
        newest = sorted(layers, key=_mtime, reverse=True)[:_REUSE_LAYERS]
        if base is not None:        # the one the client left files out for: first
            newest = [base, *(n for n in newest if n != base)]
        for layer in newest:
            for path, (digest, size) in depset.records(layer).items():
                self._known.setdefault(path, (digest, size, layer))

    def __call__(self, path: str, target: str, digest: str, size: int, mode: int) -> bool:
        """Whether ``target`` (``path`` in the new set) was made a link to the same file
        of another layer."""
        known = self._known.get(path)
        if known is None or known[:2] != (digest, str(size)):
            return False
        source = known[2] / path
        try:
            st = os.lstat(source)
            if not (stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_size == size
                    and stat.S_IMODE(st.st_mode) == mode):
                return False
            os.link(source, target, follow_symlinks=False)
        except FileExistsError:
            raise                   # the set names it twice: refused by ``unpack``
        except OSError:             # gone meanwhile (pruned), or too many links
            return False
        self._linked(path, source, target)
        return True

    def fill(self, site: Path, files: dict[str, tuple[str, int]]) -> None:
        """The files the new set's RECORDs list that its stream left out (the client
        knew this node had them: ``base``), linked from the layer that holds them and
        added to ``files`` for the check against the fingerprint; one no layer here
        holds stays missing (and the set is refused for it)."""
        for path, (digest, size) in depset.records(site).items():
            known = self._known.get(path)
            if path in files or known is None or known[:2] != (digest, size):
                continue
            source, target = known[2] / path, site / path
            try:
                if not stat.S_ISREG(os.lstat(source).st_mode):
                    continue
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.link(source, target, follow_symlinks=False)
            except OSError:
                continue
            files[path] = (digest, int(size))
            self._linked(path, source, str(target))

    def _linked(self, path: str, source: Path, target: str) -> None:
        """``target`` was made a link to ``source``: so is its ``.pyc``, or it is
        compiled here when ``source`` has none."""
        self.linked += 1
        if path.endswith(".py"):
            pyc = Path(importlib.util.cache_from_source(target))
            try:
                pyc.parent.mkdir(mode=0o755, exist_ok=True)
                os.link(importlib.util.cache_from_source(str(source)), pyc,
                        follow_symlinks=False)
            except OSError:         # none there (it did not compile): compiled here
                self._compile(target)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def byte_compile(folder: Path) -> None:
    """The ``.pyc`` of every module in ``folder`` not compiled yet, for this Python, on
    all CPUs (its own process: compileall's workers start anew from the main module).
    A file that is not Python 3 makes compileall fail and stays as it is."""
    with contextlib.suppress(NodeError):
        run([sys.executable, "-I", "-m", "compileall", "-qq", "-j", "0", str(folder)],
            what="byte-compiling the dependency set", timeout=BUILD_TIMEOUT)


def _copy_in(source: Path, dest: Path, what: str) -> None:
    """Copy files someone else owns (the build user's output) as root's own, read-only
    to others, never setuid or setgid (a build's program would run as root), links
    that leave ``source`` and special files left out."""
    run(["rsync", "-a", "--no-D", "--safe-links", "--chown=0:0", "--chmod=go-w,a+rX,ug-s",
         f"--exclude=/{SDISTS}/", f"{source}/", f"{dest}/"], what=what)


def build_user() -> tuple[int, int]:
    """``BUILD_USER``, a system user that owns nothing but a build's output."""
    try:
        entry = pwd.getpwnam(paths.BUILD_USER)
    except KeyError:
        say(f"creating system user {paths.BUILD_USER}")
        with node_lock("build-user", 60, f"creating {paths.BUILD_USER}"):
            if not _user_exists(paths.BUILD_USER):      # another deploy's, meanwhile
                run(["useradd", "--system", "--user-group", "--no-create-home",
                     "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                     paths.BUILD_USER], what=f"useradd {paths.BUILD_USER}")
        entry = pwd.getpwnam(paths.BUILD_USER)
    return entry.pw_uid, entry.pw_gid


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def build_here(packages: dict, sources: Path, layer_dir: Path) -> None:
    """Compile ``packages`` (name -> version, sdist, sha256) from their uploaded sources
    for this node's Python and add them to ``layer_dir``. A failure raises NodeError
    with the compiler's last lines; the layer is then never made."""
    names = " ".join(f"{name} {info['version']}" for name, info in sorted(packages.items()))
    apt_install(BUILD_TOOLS, why="build_on_node")
    uid, gid = build_user()
    make_dir(paths.DEPS_BUILD, 0, 0, 0o755)
    # one a reboot cut short may be there, with what another app's build wrote in out/
    shutil.rmtree(paths.DEPS_BUILD / str(os.getpid()), ignore_errors=True)
    work = make_dir(paths.DEPS_BUILD / str(os.getpid()), 0, 0, 0o755)
    try:
        src = make_dir(work / "src", 0, 0, 0o755)
        out = make_dir(work / "out", uid, gid, 0o755)
        files = []
        for name, info in sorted(packages.items()):
            filename = str(info.get("sdist", ""))
            if not _SDIST_NAME_RE.match(filename):
                raise NodeError(f"{name}: bad source distribution name {filename!r}")
            run(["rsync", "--no-D", "--safe-links", "--chown=0:0", "--chmod=a+r",
                 f"{sources / filename}", f"{src}/"], what=f"copying the source of {name}")
            if not (src / filename).is_file() or hashlib.sha256((src / filename).read_bytes()).hexdigest() != info.get("sha256"):
                raise NodeError(f"the uploaded source of {name} does not match its hash: "
                                "run silver update again")
            files.append(str(src / filename))
        say(f"building {names} for this node (as {paths.BUILD_USER}, without network)")
        _sandboxed(names, ["/bin/sh", "-c", _BUILD_SCRIPT, "sh", str(out), *files], out)
        _copy_in(out / "site", layer_dir, f"installing {names}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sandboxed(names: str, argv: list[str], out: Path) -> None:
    """Run ``argv`` as BUILD_USER in a transient unit: no network, the file system
    read-only but for ``out``, every process it starts ended with it. Its output
    streams back as progress; a failure ends in one line and the last lines."""
    unit = ["systemd-run", "--quiet", "--wait", "--pipe", "--collect",
            "--service-type=exec", f"--working-directory={out}", f"--setenv=HOME={out}",
            "-p", f"User={paths.BUILD_USER}", "-p", f"Group={paths.BUILD_USER}",
            "-p", "PrivateNetwork=yes", "-p", "PrivateTmp=yes", "-p", "NoNewPrivileges=yes",
            "-p", "RestrictSUIDSGID=yes", "-p", "ProtectSystem=strict", "-p", "ProtectHome=yes",
            "-p", f"ReadWritePaths={out}", "-p", f"RuntimeMaxSec={BUILD_TIMEOUT}", "--", *argv]
    proc = subprocess.Popen(unit, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        line = line.rstrip()
        if line:
            say(f"  {line}")
            lines = (lines + [line])[-400:]
    if proc.wait() != 0:
        # the compiler's own last lines: pip's notes after its "[end of output]" left out
        ends = [i for i, ln in enumerate(lines) if ln.strip() == "[end of output]"]
        last = lines[:ends[-1]][-12:] if ends else lines[-12:]
        tail = "\n".join(f"  {ln}" for ln in last)
        raise NodeError(f"building {names} on this node failed (status {proc.returncode}); "
                        f"the previous version keeps serving. Last lines:\n{tail}")


def summary(fingerprint: str) -> dict:
    """What a version records of its layer: shown by ``silver query`` and ``diff``."""
    try:
        manifest = json.loads((layer(fingerprint) / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    packages = manifest.get("packages", {})
    return {"fingerprint": fingerprint, "count": len(packages), "packages": packages,
            "target": manifest.get("target")}


def in_use() -> set[str]:
    """Layers some kept version of some app names."""
    used = set()
    for app in all_apps():
        for meta in AppState.load(app).versions.values():
            if fp := (meta.get("deps") or {}).get("fingerprint"):
                used.add(fp)
    return used


def sweep_work() -> None:
    """Remove the work directories ``receive`` left when it was killed outright (its
    cleanup never ran): each is named after its process, and goes once no process has
    that pid."""
    try:
        names = os.listdir(paths.DEPS)
    except FileNotFoundError:
        return
    for name in names:
        found = _WORK_RE.match(name)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            shutil.rmtree(paths.DEPS / name, ignore_errors=True)


def prune(dry_run: bool = False, grace: float = 3600) -> list[str]:
    """Remove the layers no kept version uses (``silver clean-node``), except those
    installed within ``grace`` seconds: a deploy still on its way to recording one;
    and what killed installs left."""
    if not dry_run:
        sweep_work()
    used = in_use()
    removed = []
    for name in present():
        try:
            fresh = time.time() - (paths.DEPS / name).stat().st_mtime < grace
        except FileNotFoundError:
            continue
        if name not in used and not fresh:
            removed.append(name)
            if not dry_run:
                shutil.rmtree(paths.DEPS / name, ignore_errors=True)
    return removed
