"""The app's declared dependencies, built on this machine for each node's interpreter.

An app declares what it needs the standard ways: a lock (``uv.lock``,
``pylock.toml``), else ``requirements.txt``, else ``pyproject.toml``'s
``[project] dependencies``. ``silver update`` learns each node's Python
(exact version, implementation, ABI), glibc and architecture from its first
call, and has uv resolve and install the set for that target into a directory
of its own (``uv pip install --target --python-version --python-platform``):
markers such as ``python_full_version`` are evaluated for the node, and only
wheels the node can load are chosen. uv is the resolver and the tag matcher;
nothing here second-guesses it beyond refusing what was compiled here.

Builds are cached in ``SILVER_HOME/deps`` by (what was declared, the node's
target); each has a *fingerprint* of its contents, which names its layer on
the node (``/var/lib/silverlining/deps/FINGERPRINT``): a node that already
has it receives nothing.

What ``bin/pip`` installed into ``lib/python`` for the developer's own Python
(``silver serve``) is left out of the upload when dependencies are declared
(a declaration with nothing in it, as ``silver init`` writes, declares
nothing): the node gets its own build (``pip_installed``).

A package named in app.ini's ``build_on_node`` is resolved with the rest, but
only its source distribution goes into the build (``SDISTS``), fetched here
from where uv found it; the node compiles it for itself (``node/deps.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from silverlining import depset, state
from silverlining.depset import MANIFEST, SDISTS
from silverlining.errors import SilverError, UsageError

_SDIST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*\.(?:tar\.gz|zip)\Z")
# requirements-file options that say where packages come from (kept for the split install)
_SOURCE_OPTIONS = ("--index-url", "-i", "--extra-index-url", "--find-links", "-f",
                   "--no-index")
REQUIREMENTS = "requirements.txt"
# the highest glibc uv names in --python-platform today; a newer node is given this one
# (manylinux wheels for a newer glibc are rare; uv is asked for the exact one first)
_UV_MAX_GLIBC_MINOR = 40
_CREDENTIALS_RE = re.compile(r"://[^/\s:@]+:[^/\s@$]+@")
_BUILD_LOCKS: dict[str, threading.Lock] = {}
_REFRESHED: set[str] = set()        # keys resolved again by this process (--refresh-deps)
_LOCKS_LOCK = threading.Lock()


@dataclass(frozen=True)
class Target:
    """A node's interpreter and platform, as it reports them in ``prepare``."""

    implementation: str     # "cpython"
    python: str             # "3.11.2": python_full_version markers see this
    abi: str                # "cp311"
    glibc: str              # "2.36"
    machine: str            # "x86_64"

    @classmethod
    def from_node(cls, facts: dict) -> "Target":
        try:
            return cls(**{k: str(facts[k]) for k in
                          ("implementation", "python", "abi", "glibc", "machine")})
        except KeyError as exc:
            raise SilverError(f"the node did not report its {exc.args[0]}: run silver "
                              "setup-node") from None

    @property
    def minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    @property
    def platform(self) -> str:
        """The wheel platform a manylinux wheel needs to run there."""
        major, _, minor = self.glibc.partition(".")
        return f"manylinux_{major}_{minor}_{self.machine}"

    def describe(self) -> str:
        impl = {"cpython": "CPython"}.get(self.implementation, self.implementation)
        return f"{impl} {self.python}, {self.platform}"

    def key(self) -> str:
        return depset.target_key(self.implementation, self.python, self.abi, self.glibc,
                                 self.machine)


@dataclass
class Declared:
    """Where the app declares its dependencies, and what identifies them."""

    app_dir: Path
    kind: str               # "uv.lock", "pylock.toml", "requirements.txt", "pyproject.toml"
    path: Path
    inputs: bytes           # the declaring files' contents: part of the cache key
    local: list[str] = field(default_factory=list)    # local projects it names (by name)
    on_node: tuple[str, ...] = ()   # app.ini build_on_node: compiled by the node, normalized

    @functools.cached_property
    def empty(self) -> bool:
        """Nothing to install: a requirements file of comments and options only (what
        ``silver init`` writes), or ``dependencies = []``."""
        if self.kind == REQUIREMENTS:
            lines = (ln.split("#", 1)[0].strip() for ln in
                     self.path.read_text(encoding="utf-8", errors="replace").splitlines())
            return all(not ln or ln.startswith("-") and not ln.startswith(("-r", "-e", "-c"))
                       for ln in lines)
        if self.kind == "pyproject.toml":
            return not (_pyproject(self.app_dir) or {}).get("project", {}).get("dependencies")
        return False

    def key(self, target: Target) -> str:
        on_node = b"\0on-node:" + " ".join(self.on_node).encode() if self.on_node else b""
        digest = hashlib.sha256(self.kind.encode() + b"\0" + self.inputs + b"\0"
                                + target.key().encode() + on_node)
        return digest.hexdigest()[:32]


@dataclass
class Build:
    """One dependency set built for one target, in the local cache."""

    fingerprint: str        # of the installed files: the node layer's name
    site: Path              # what goes on the node's sys.path
    packages: dict[str, str] = field(default_factory=dict)   # name -> version

    @property
    def count(self) -> int:
        return len(self.packages)


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _pyproject(app_dir: Path) -> dict | None:
    path = app_dir / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def declared(app_dir: Path | str, on_node: tuple[str, ...] = ()) -> Declared | None:
    """The app's declaration, lock first; None when it declares nothing (the 2010
    layout: lib/python is all there is). ``on_node``: app.ini's ``build_on_node``."""
    app_dir = Path(app_dir)
    decl = _declared(app_dir)
    if on_node and (decl is None or decl.empty):
        raise UsageError(f"{app_dir / 'app.ini'}: build_on_node names {on_node[0]}, but the "
                         "app declares no dependencies (requirements.txt, pyproject.toml "
                         "or a lock)")
    if decl is not None:
        decl.on_node = tuple(on_node)
    return decl


def _declared(app_dir: Path) -> Declared | None:
    project = _pyproject(app_dir)
    pyproject, local = b"", []
    if project is not None:
        # local path sources ([tool.uv.sources] NAME = { path = ... }) are built here
        # from their files: those are part of the key, as the files of the project
        stamps, local = _local_projects(app_dir, _uv_source_paths(project))
        pyproject = _read(app_dir / "pyproject.toml") + b"\0" + stamps
    if (app_dir / "uv.lock").is_file() and project is not None:
        return Declared(app_dir, "uv.lock", app_dir / "uv.lock",
                        _read(app_dir / "uv.lock") + b"\0" + pyproject, local)
    if (app_dir / "pylock.toml").is_file():
        return Declared(app_dir, "pylock.toml", app_dir / "pylock.toml",
                        _read(app_dir / "pylock.toml") + b"\0" + pyproject, local)
    if (app_dir / REQUIREMENTS).is_file():
        path = app_dir / REQUIREMENTS
        text = _read(path)
        stamps, named = _local_projects(app_dir, _requirement_paths(text))
        return Declared(app_dir, REQUIREMENTS, path, text + b"\0" + pyproject + stamps,
                        local + named)
    if project is not None and "dependencies" in project.get("project", {}):
        return Declared(app_dir, "pyproject.toml", app_dir / "pyproject.toml", pyproject,
                        local)
    return None


def _uv_source_paths(project: dict) -> list[str]:
    """The local paths ``[tool.uv.sources]`` names (``{ path = "../lib" }``, alone or in
    a list of alternatives)."""
    sources = ((project.get("tool") or {}).get("uv") or {}).get("sources") or {}
    found = []
    for entries in sources.values() if isinstance(sources, dict) else ():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                found.append(entry["path"])
    return found


def _requirement_paths(text: bytes) -> list[str]:
    """The local projects and files requirement lines name (``./vendor/pkg``,
    ``file:...``)."""
    found = []
    for line in text.decode("utf-8", "replace").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("file:"):
            line = line.removeprefix("file://").removeprefix("file:")
        if line.startswith((".", "/")):
            found.append(line.split(";", 1)[0].split("[", 1)[0].strip())
    return found


def _local_projects(app_dir: Path, refs: list[str]) -> tuple[bytes, list[str]]:
    """What changes when a local project or file the declaration names is edited, so
    the cached build is not used for the old code; and the names of those projects
    (uv's own cache must be refreshed for them too)."""
    from silverlining import appfiles

    stamps, names = [], []
    for ref in refs:
        path = app_dir / ref
        if path.is_dir():
            ignore = appfiles.Ignore(list(appfiles.DEFAULT_EXCLUDES) + ["build/", "*.egg-info/"])
            stamps += [ref, *appfiles.scan_app_files(path, ignore).stamps]
            name = ((_pyproject(path) or {}).get("project") or {}).get("name")
            names += [name] if name else []
        elif path.is_file():
            st = path.stat()
            stamps.append(f"{ref} {st.st_size} {st.st_mtime_ns}")
    return "\0".join(stamps).encode("utf-8", "surrogateescape"), names


def check_no_credentials(decl: Declared) -> None:
    """The declaring files travel with the app; a password in one of them would too."""
    for path in (decl.path, decl.app_dir / "pyproject.toml"):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8",
                                                     errors="replace").splitlines(), 1):
            if _CREDENTIALS_RE.search(line):
                raise UsageError(
                    f"{path}:{number} has a password in a URL, and this file is uploaded "
                    "with the app: write ${VARIABLE} there instead (uv expands it from "
                    "your environment), or keep the credentials in ~/.netrc or a "
                    "keyring; see docs/dependencies.md")


def cache_root() -> Path:
    return state.state_dir() / "deps"


def cached(decl: Declared, target: Target) -> Build | None:
    """The build for this declaration and target, if one was made before: a file read."""
    try:
        data = json.loads((cache_root() / decl.key(target) / "site" / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return Build(data["fingerprint"], cache_root() / decl.key(target) / "site",
                 data["packages"])


def base_for(build: Build, present: list[str]) -> Build | None:
    """Of the sets built here before that the node has (``present``: its layers), the
    one sharing the most packages (same versions) with ``build``: what it need not be
    sent again. Their fingerprints name the target too, so it is one built for it."""
    best: tuple[int, Build] | None = None
    wanted = set(build.packages.items())
    for manifest in sorted(cache_root().glob(f"*/site/{MANIFEST}")):
        try:
            data = json.loads(manifest.read_text())
            found = Build(data["fingerprint"], manifest.parent, data["packages"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if found.fingerprint == build.fingerprint or found.fingerprint not in present:
            continue
        shared = len(wanted & set(found.packages.items()))
        if shared and (best is None or shared > best[0]):
            best = (shared, found)
    return best[1] if best else None


_UV_LOCK = threading.Lock()


@functools.cache
def _uv_bin() -> str:
    try:
        import uv
    except ImportError:
        raise SilverError("uv is not installed with silverlining (pip install uv)") from None
    return uv.find_uv_bin()


def uv_bin() -> str:
    """uv's executable, looked up once per process under a lock: an update to several
    nodes builds their sets in threads, and uv's lookup reads ``sysconfig``, whose
    first use is not thread-safe (a thread saw ``EXE`` as None and the update failed
    with a traceback)."""
    with _UV_LOCK:
        return _uv_bin()


def _uv_platforms(target: Target) -> list[str]:
    """``--python-platform`` values to try, the node's exact glibc first."""
    major, _, minor = target.glibc.partition(".")
    exact = f"{target.machine}-manylinux_{major}_{minor}"
    if major == "2" and minor.isdigit() and int(minor) > _UV_MAX_GLIBC_MINOR:
        return [exact, f"{target.machine}-manylinux_2_{_UV_MAX_GLIBC_MINOR}"]
    return [exact]


def _install_args(decl: Declared, work: Path) -> list[str]:
    """What uv installs for each kind of declaration (run in the app directory, so
    relative paths and ``[tool.uv]`` settings are the app's)."""
    if decl.kind == "uv.lock":
        exported = work / "uv-lock-requirements.txt"
        proc = subprocess.run([uv_bin(), "export", "--frozen", "--no-dev", "--no-emit-project",
                               "--no-header", "--quiet", "-o", str(exported)],
                              cwd=decl.app_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SilverError(f"{decl.path}: uv export failed: {_uv_error(proc.stderr)}")
        return ["--no-deps", "-r", str(exported)]
    return ["-r", str(decl.path)]


def _uv_error(stderr: str) -> str:
    """uv's message in one line: its error and causes (uv wraps them over several
    lines), its hint and progress lines left out."""
    parts: list[str] = []
    for line in stderr.splitlines():
        text = line.strip()
        head = text.split(":", 1)[0]
        if head in ("error", "cause", "Caused by", "hint", "warning"):
            parts.append(text)
        elif text and parts and not line.startswith(("Using ", "Resolved ", "Prepared ")):
            parts[-1] += " " + text
    kept = [p.split(":", 1)[1].strip() for p in parts
            if p.split(":", 1)[0] in ("error", "cause", "Caused by")]
    return "; ".join(kept) or "uv failed"


_BUILT_RE = re.compile(r"(?:Failed to (?:download and )?build|built wheel) `([^`=]+)")
_NO_WHEEL_RE = re.compile(r"Because ([A-Za-z0-9_.\-]+)(?:==\S+)? has no usable wheels")


def no_wheel_error(package: str, target: Target, where: str) -> SilverError:
    return SilverError(
        f"{package} has compiled code and no wheel for {where} ({target.describe()}): "
        f"pin a version of {package} that publishes {target.platform} wheels, or have "
        f"the node build it (build_on_node = {package} in app.ini)")


def _run_uv(decl: Declared, target: Target, site: Path, work: Path, where: str,
            args: list[str] | None = None, command: str = "install",
            refresh: bool = False) -> None:
    """uv for the node's target: ``install`` into ``site`` (by default what the
    declaration names), or ``compile`` (``args`` then name the output). ``refresh``:
    nothing from uv's cache (``--refresh-deps``)."""
    args = _install_args(decl, work) if args is None else args
    for platform in _uv_platforms(target):
        shutil.rmtree(site, ignore_errors=True)
        into = ["--target", str(site), "--no-installer-metadata", "--no-compile",
                "--link-mode", "copy"] if command == "install" else []
        argv = [uv_bin(), "pip", command, "--quiet", *into,
                "--python-version", target.python, "--python-platform", platform,
                *(["--refresh"] if refresh else
                  [a for name in decl.local for a in ("--refresh-package", name)]), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
        proc = subprocess.run(argv, cwd=decl.app_dir, capture_output=True, text=True, env=env)
        if proc.returncode == 0:
            return
        flat = " ".join(proc.stderr.split())        # uv wraps long lines
        if "invalid value" in flat and "--python-platform" in flat:
            continue                        # this uv does not know that glibc yet
        if "is not compatible with the target" in flat and (m := _BUILT_RE.search(flat)):
            raise no_wheel_error(m.group(1), target, where)
        if m := _NO_WHEEL_RE.search(flat):
            raise no_wheel_error(m.group(1), target, where)
        raise SilverError(f"installing {decl.path.name} for {where} ({target.describe()}) "
                          f"failed: {_uv_error(proc.stderr)}")
    raise SilverError(f"uv does not know glibc {target.glibc} ({where}): upgrade uv")


def _source_options(decl: Declared) -> list[str]:
    """The options of a requirements file that say where packages come from, relative
    paths made absolute (the split install reads them from files of its own)."""
    if decl.kind != REQUIREMENTS:
        return []               # pyproject's [tool.uv] applies anyway (uv runs in the app)
    lines = []
    for line in decl.path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split(" #", 1)[0].replace("=", " ", 1).split() \
            if line.lstrip().startswith("-") else []
        if not words or words[0] not in _SOURCE_OPTIONS:
            continue
        if words[0] in ("--find-links", "-f") and len(words) > 1 and "://" not in words[1]:
            words[1] = str(decl.path.parent / words[1])
        lines.append(" ".join(words))
    return lines


def _requirement_name(line: str) -> str | None:
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line.strip())
    return normalize(m.group(1)) if m and not line.lstrip().startswith("-") else None


def _fetch_sdist(package: dict, lock: Path, into: Path, where: str) -> dict:
    """The source distribution uv resolved for ``package`` (a pylock.toml entry),
    copied or downloaded into ``into`` and checked against its hash."""
    name, version = package["name"], package.get("version", "")
    sdist = package.get("sdist")
    if not sdist:
        raise SilverError(f"{name} {version}: build_on_node needs its source distribution "
                          f"(.tar.gz), and uv found none for {where} (only wheels, or a "
                          "local directory or VCS link): name a version published as an "
                          "sdist, or list the sdist with --find-links")
    if "url" in sdist:
        url = sdist["url"]
        parsed = urllib.parse.urlsplit(url)
        filename = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
    else:
        url = (lock.parent / sdist["path"]).resolve().as_uri()
        filename = Path(sdist["path"]).name
    if not _SDIST_NAME_RE.match(filename):
        raise SilverError(f"{name} {version}: unexpected source distribution name "
                          f"{filename!r}")
    from urllib.request import urlopen     # here only: it slows every update's start

    into.mkdir(parents=True, exist_ok=True)
    try:
        with urlopen(url, timeout=120) as src, open(into / filename, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, ValueError) as exc:
        raise SilverError(f"cannot fetch the source of {name} {version} ({url}): {exc}; "
                          "an index that needs credentials: list the sdist with "
                          "--find-links instead") from None
    digest = hashlib.sha256((into / filename).read_bytes()).hexdigest()
    wanted = (sdist.get("hashes") or {}).get("sha256")
    if wanted and wanted != digest:
        raise SilverError(f"the source of {name} {version} ({url}) does not match the "
                          "hash its index gave")
    return {"version": version, "sdist": filename, "sha256": digest}


def _split_for_node(decl: Declared, target: Target, site: Path, work: Path,
                    where: str, refresh: bool = False) -> dict[str, dict]:
    """Resolve for the node, install all but ``decl.on_node`` into ``site`` as usual,
    and put the sources of those into ``site/SDISTS``. Returns what the node builds:
    name -> version, sdist file name, sha256."""
    if decl.kind == "pylock.toml":
        raise UsageError(f"build_on_node in {decl.app_dir / 'app.ini'} needs the "
                         "dependencies in requirements.txt, pyproject.toml or uv.lock: uv "
                         "cannot re-resolve a pylock.toml")
    given = [a for a in _install_args(decl, work) if a not in ("-r", "--no-deps")]
    resolved = work / "resolved.txt"
    _run_uv(decl, target, work / "unused", work, where, command="compile", refresh=refresh,
            args=["--no-header", "--no-annotate", "-o", str(resolved), *given])
    options = _source_options(decl)
    rest, named = list(options), list(options)
    found = set()
    for line in resolved.read_text().splitlines():
        name = _requirement_name(line)
        if name is None:
            continue
        (named if name in decl.on_node else rest).append(line)
        found.add(name)
    if missing := [n for n in decl.on_node if n not in found]:
        raise UsageError(f"{decl.app_dir / 'app.ini'}: build_on_node names {missing[0]}, "
                         f"which {decl.path.name} does not install for {where}")
    (work / "rest.txt").write_text("\n".join(rest) + "\n")
    if len(rest) > len(options):
        _run_uv(decl, target, site, work, where,
                args=["--no-deps", "-r", str(work / "rest.txt")])
    (work / "named.txt").write_text("\n".join(named) + "\n")
    lock = work / "lock" / "pylock.toml"
    lock.parent.mkdir()
    _run_uv(decl, target, work / "unused", work, where, command="compile",
            args=["--no-header", "--no-deps", "-o", str(lock), str(work / "named.txt")])
    packages = tomllib.loads(lock.read_text()).get("packages", [])
    return {normalize(p["name"]): _fetch_sdist(p, lock, site / SDISTS, where)
            for p in packages}


def _dist_infos(site: Path) -> list[Path]:
    return sorted(p for p in site.iterdir() if p.name.endswith(".dist-info") and p.is_dir())


def _metadata(dist: Path) -> tuple[str, str]:
    name = version = ""
    for line in (dist / "METADATA").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version:"):
            version = line.split(":", 1)[1].strip()
        elif not line.strip():
            break
    return name, version


def wheel_tags(dist: Path) -> list[str]:
    """The ``Tag:`` lines of a dist-info's WHEEL file."""
    try:
        text = (dist / "WHEEL").read_text(encoding="utf-8")
    except OSError:
        return []
    return [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Tag:")]


def _built_here(dist: Path) -> bool:
    """A wheel with compiled code whose platform is this machine's (``linux_x86_64``,
    ``macosx_...``) was built here from source: it would not load on the node, or
    only by luck."""
    return any(not tag.rsplit("-", 1)[-1].startswith(("manylinux", "any"))
               for tag in wheel_tags(dist))


def build(decl: Declared, target: Target, where: str, refresh: bool = False) -> Build:
    """The dependency set for ``target``, from the cache or made now with uv.
    ``refresh``: resolved again, indexes and uv's cache asked anew (once per target
    in one ``silver update``), replacing the cached build."""
    key = decl.key(target)
    with _LOCKS_LOCK:
        lock = _BUILD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if refresh and key not in _REFRESHED:
            _REFRESHED.add(key)
        elif found := cached(decl, target):
            return found
        check_no_credentials(decl)
        root = cache_root()
        work = root / f".{key}.{os.getpid()}.{threading.get_ident()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            site = work / "site"
            on_node = {}
            if decl.on_node:
                on_node = _split_for_node(decl, target, site, work, where, refresh)
            else:
                _run_uv(decl, target, site, work, where, refresh=refresh)
            site.mkdir(exist_ok=True)
            (site / ".lock").unlink(missing_ok=True)        # uv's, while it installed
            for pth in sorted(site.glob("__editable__*.pth")):
                name = pth.name.removeprefix("__editable__.").rsplit("-", 1)[0]
                raise UsageError(
                    f"{decl.path.name} installs {name} editable (-e): that points into "
                    "this machine; drop the -e (it is then built for the node), or "
                    "install it into lib/python with bin/pip install -e (uploaded with "
                    "the app)")
            packages, records = {}, []
            for dist in _dist_infos(site):
                name, version = _metadata(dist)
                if _built_here(dist):
                    raise no_wheel_error(name, target, where)
                packages[name] = version
                record = dist / "RECORD"
                records.append((dist.name, record.read_bytes() if record.is_file() else b""))
            for name, built in on_node.items():       # built there, from this source
                packages[name] = built["version"]
            fingerprint = depset.fingerprint(target.key(), records, on_node)
            manifest = {"fingerprint": fingerprint, "packages": packages,
                        "target": target.describe(), "from": decl.kind}
            if on_node:
                manifest["build_on_node"] = on_node
            (site / MANIFEST).write_text(json.dumps(manifest, sort_keys=True) + "\n")
            final = root / key
            shutil.rmtree(final, ignore_errors=True)
            work.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Build(fingerprint, final / "site", packages)


def package_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Dependency changes as package versions: ``+ name 1.0``, ``- name 1.0``,
    ``~ name 1.0 -> 1.1`` (sorted by name)."""
    olds = {normalize(n): (n, v) for n, v in old.items()}
    news = {normalize(n): (n, v) for n, v in new.items()}
    lines = []
    for key in sorted(olds.keys() | news.keys()):
        if key not in olds:
            lines.append(f"+ {news[key][0]} {news[key][1]}")
        elif key not in news:
            lines.append(f"- {olds[key][0]} {olds[key][1]}")
        elif olds[key][1] != news[key][1]:
            lines.append(f"~ {news[key][0]} {olds[key][1]} -> {news[key][1]}")
    return lines


def upload_excludes(app_dir: Path, on_node: tuple[str, ...] = ()
                    ) -> tuple[Declared | None, list[str], dict[str, str]]:
    """The app's declaration, the exclude patterns of its upload (``.silverignore``,
    and with a declaration what bin/pip installed into lib/python), and those
    locally installed distributions (name -> version)."""
    from silverlining import appfiles

    decl = declared(app_dir, on_node)
    excludes = appfiles.read_silverignore(app_dir)
    if decl is None or decl.empty:      # nothing declared: lib/python is uploaded as is
        return decl, excludes, {}
    installs = pip_installed(app_dir)
    return decl, excludes + installs.excludes, installs.names


# --- what bin/pip put into lib/python ---------------------------------------------

def _editable(dist: Path) -> bool:
    try:
        data = json.loads((dist / "direct_url.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("dir_info", {}).get("editable"))


def _record_paths(dist: Path) -> list[str]:
    try:
        text = (dist / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.rsplit(",", 2)[0].strip('"') for line in text.splitlines() if line.strip()]


@dataclass
class LocalInstalls:
    """Distributions an installer (bin/pip, uv) put into lib/python, and what of
    lib/python they own."""

    names: dict[str, str] = field(default_factory=dict)    # name -> version
    excludes: list[str] = field(default_factory=list)      # rsync patterns, /lib/python/...


def pip_installed(app_dir: Path | str) -> LocalInstalls:
    """What ``bin/pip install`` (or any installer leaving an ``INSTALLER`` file) put
    into lib/python, editable installs of the app's own code (``-e src/x``) excepted:
    their ``.pth`` and finder files stay, as does everything put there by hand."""
    lib = Path(app_dir) / "lib" / "python"
    found = LocalInstalls()
    if not lib.is_dir():
        return found
    dropped: set[str] = set()
    kept: set[str] = set()
    for dist in sorted(lib.glob("*.dist-info")):
        if not (dist / "INSTALLER").is_file():
            continue
        paths = [p for p in _record_paths(dist) if not p.startswith("..")]
        if _editable(dist):
            kept.update(p.split("/", 1)[0] for p in paths)
            continue
        name, version = _metadata(dist)
        found.names[name] = version
        dropped.update(p.split("/", 1)[0] for p in paths)
        dropped.add(dist.name)
    for top in sorted(dropped - kept):
        found.excludes.append(f"/lib/python/{top}")
    return found
