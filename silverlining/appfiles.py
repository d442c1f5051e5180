"""Which files of an app are uploaded, and making ``lib/python`` relocatable.

Stdlib only: the deploy code (rsync excludes) and ``silver init`` / ``silver
serve`` share it, so what is served locally is what gets uploaded.

``.silverignore`` holds one rsync-style exclude pattern a line (``#``
comments): a pattern without ``/`` matches a name at any depth, a leading
``/`` anchors it at the app directory, a trailing ``/`` matches directories
only, ``*`` and ``?`` stay within one path segment and ``**`` crosses them.
When the file exists it is the whole list (``silver init`` writes the
defaults into it); when it does not, ``DEFAULT_EXCLUDES`` apply.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

IGNORE_FILE = ".silverignore"

# The local virtualenv made by `silver init` (bin/python symlinks to this
# machine's interpreter) and its hook in lib/python are never uploaded. In
# bin/ only what the virtualenv made is left out: the app's own scripts there
# (bin/manage.py, ...) are uploaded. Scripts pip installed into bin/ are found
# by their #! line (see ``venv_scripts``).
VENV_EXCLUDES = (
    "/bin/activate*",
    "/bin/Activate.ps1",
    "/bin/deactivate*",
    "/bin/python",
    "/bin/python[0-9]*",
    "/bin/pip",
    "/bin/pip[0-9]*",
    "/include/",
    "/lib/python3.*/",
    "/lib64",
    "/pyvenv.cfg",
    "/CACHEDIR.TAG",
    "/lib/python/zz_silverlining_venv.pth",
)

DEFAULT_EXCLUDES = (
    ".git/", ".hg/", ".svn/", ".bzr/", "_darcs/", "CVS/",
    "__pycache__/", "*.pyc", "*.pyo",
    "*~", ".#*", "[#]*#", "*.swp", "*.swo", ".DS_Store",
    "/silver-logs/",
    *VENV_EXCLUDES,
)


def read_silverignore(app_dir: Path | str) -> list[str]:
    """The app's exclude patterns: ``.silverignore`` if present, else the defaults;
    plus the files of ``bin/`` the local virtualenv made (``venv_scripts``)."""
    path = Path(app_dir) / IGNORE_FILE
    try:
        patterns = parse_silverignore(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        patterns = list(DEFAULT_EXCLUDES)
    return patterns + [f"/bin/{name}" for name in venv_scripts(app_dir)]


def venv_scripts(app_dir: Path | str) -> list[str]:
    """Names in ``bin/`` that belong to the local virtualenv, not to the app: links
    to an interpreter, and scripts whose ``#!`` runs this app's ``bin/python``
    (console scripts pip wrote, such as ``pip`` or ``django-admin``). They work only here."""
    bin_dir = Path(app_dir) / "bin"
    if not bin_dir.is_dir():
        return []
    venv_python = str(bin_dir.resolve() / "python").encode()
    found = []
    for path in sorted(bin_dir.iterdir()):
        if path.is_symlink():
            if os.path.basename(os.readlink(path)).startswith("python"):
                found.append(path.name)
            continue
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as fh:
                head = fh.read(1024)            # '#!/bin/sh' + exec line for long paths
        except OSError:
            continue
        if head.startswith(b"#!") and venv_python in head:
            found.append(path.name)
    return found


def parse_silverignore(text: str) -> list[str]:
    """Patterns from the text of a ``.silverignore`` (blank lines and comments dropped)."""
    return [ln.strip() for ln in text.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def default_silverignore_text() -> str:
    """What ``silver init`` writes: the defaults, explained."""
    lines = ["# Never uploaded by `silver update` (rsync exclude patterns, one a line).",
             "# NAME matches at any depth, /NAME only at the top, NAME/ only directories.",
             "", "# version control, caches, editor backups"]
    lines += [p for p in DEFAULT_EXCLUDES if p not in VENV_EXCLUDES]
    lines += ["", "# the local virtualenv made by `silver init` (bin/python works only here)"]
    lines += list(VENV_EXCLUDES)
    return "\n".join(lines) + "\n"


def rsync_exclude_args(patterns: Iterable[str]) -> list[str]:
    """``--exclude=PATTERN`` arguments for rsync, same meaning as ``Ignore``."""
    return [f"--exclude={p}" for p in patterns]


def _glob_to_regex(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := glob.find("]", i + 1)) > i:
            body = glob[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = end + 1
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    dir_only: bool
    whole_path: bool


@dataclass
class Ignore:
    """Matches app-relative paths (``a/b/c``) against exclude patterns, like rsync."""

    patterns: list[str]
    _rules: list[_Rule] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rules = []
        for pattern in self.patterns:
            dir_only = pattern.endswith("/")
            body = pattern.rstrip("/")
            anchored = body.startswith("/")
            body = body.lstrip("/")
            whole = anchored or "/" in body or "**" in body
            rx = _glob_to_regex(body)
            if anchored:
                rx = f"^{rx}$"
            elif whole:
                rx = f"^(?:.*/)?{rx}$"
            else:
                rx = f"^{rx}$"
            self._rules.append(_Rule(re.compile(rx), dir_only, whole))

    @classmethod
    def for_app(cls, app_dir: Path | str) -> "Ignore":
        return cls(read_silverignore(app_dir))

    def matches(self, relpath: str, is_dir: bool) -> bool:
        """Whether this one path is excluded (its parents are not looked at)."""
        relpath = relpath.strip("/")
        name = relpath.rsplit("/", 1)[-1]
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(relpath if rule.whole_path else name):
                return True
        return False

    def ignored(self, relpath: str, is_dir: bool = False) -> bool:
        """Whether the path or any directory above it is excluded."""
        parts = relpath.strip("/").split("/")
        for n in range(1, len(parts)):
            if self.matches("/".join(parts[:n]), True):
                return True
        return self.matches("/".join(parts), is_dir)


def iter_app_files(app_dir: Path | str, ignore: Ignore | None = None) -> Iterator[str]:
    """App-relative paths of the files that would be uploaded, ignored dirs pruned.

    Regular files and symlinks only: FIFOs, sockets and devices are never
    uploaded (reading a FIFO would hang); ``scan_app_files`` lists them.
    """
    yield from scan_app_files(app_dir, ignore).files


@dataclass
class AppFiles:
    """What an upload would contain, and what it must not."""

    files: list[str] = field(default_factory=list)     # regular files and symlinks
    special: list[str] = field(default_factory=list)   # FIFOs, sockets, devices: skipped
    outside: list[tuple[str, str]] = field(default_factory=list)   # (symlink, its target)
    stamps: list[str] = field(default_factory=list)    # what rsync's quick check compares
    size: int = 0                                      # bytes of the regular files

    def fingerprint(self) -> str:
        """Changes whenever rsync would send something (a path, type, mode, size, mtime
        or link target differs), so an equal fingerprint means an identical upload."""
        return hashlib.sha256("\0".join(self.stamps).encode("utf-8", "surrogateescape")
                              ).hexdigest()


def _leaves_app(root: Path, rel: str) -> str | None:
    """The target of symlink ``rel`` if it leads outside the app (absolute, or
    through ``..`` past the top), else None."""
    target = os.readlink(root / rel)
    resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if os.path.isabs(target) or resolved == ".." or resolved.startswith("../"):
        return target
    return None


def scan_app_files(app_dir: Path | str, ignore: Ignore | None = None) -> AppFiles:
    """Walk the app like an upload does (``.silverignore`` applied, ignored dirs pruned)."""
    root = Path(app_dir)
    ignore = ignore or Ignore.for_app(root)
    found = AppFiles()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        dirnames[:] = sorted(d for d in dirnames
                             if not ignore.matches(prefix + d, is_dir=True))
        names = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        names += [n for n in filenames if not ignore.matches(prefix + n, is_dir=False)]
        found.stamps += [f"d {prefix}{d}" for d in dirnames]
        for name in sorted(names):
            path = prefix + name
            st = os.lstat(root / path)
            mode = st.st_mode
            if stat.S_ISLNK(mode):
                target = _leaves_app(root, path)
                if target is not None:
                    found.outside.append((path, target))
                elif name in filenames:
                    found.files.append(path)
                found.stamps.append(f"l {path} {os.readlink(root / path)}")
            elif stat.S_ISREG(mode):
                found.files.append(path)
                found.size += st.st_size
                found.stamps.append(f"f {path} {mode:o} {st.st_size} {st.st_mtime_ns}")
            else:
                found.special.append(path)
    return found


# --- lib/python made relocatable ---------------------------------------------

_FINDER_RE = re.compile(r"^__editable___.*_finder\.py\Z")


@dataclass
class RelativizeResult:
    """What ``make_paths_relative`` did: files rewritten, and paths it could not
    make relative because they point outside the app (they will not exist
    after an upload)."""

    changed: list[Path] = field(default_factory=list)
    outside: list[tuple[Path, str]] = field(default_factory=list)


def _inside(path: str, app_dir: Path) -> bool:
    try:
        Path(os.path.normpath(path)).relative_to(app_dir)
        return True
    except ValueError:
        return False


def make_paths_relative(lib_dir: Path | str, app_dir: Path | str | None = None) -> RelativizeResult:
    """Rewrite absolute paths in ``.pth``, ``.egg-link`` and setuptools editable
    finder files of ``lib_dir`` so they are relative to ``lib_dir``.

    ``site.addsitedir`` joins relative ``.pth`` lines with the site dir, so an
    app uploaded elsewhere finds its libraries and ``src/`` checkouts.
    ``app_dir`` defaults to ``lib_dir/../..`` (``APP/lib/python``). Idempotent.
    """
    lib = Path(lib_dir).absolute()
    app = Path(app_dir).absolute() if app_dir else lib.parent.parent
    result = RelativizeResult()
    if not lib.is_dir():
        return result
    for entry in sorted(lib.iterdir()):
        if not entry.is_file():
            continue
        if entry.suffix == ".pth":
            _fix_pth(entry, lib, app, result)
        elif entry.suffix == ".egg-link":
            _fix_egg_link(entry, lib, app, result)
        elif _FINDER_RE.match(entry.name):
            _fix_finder(entry, lib, app, result)
    return result


def _rel(path: str, lib: Path) -> str:
    return os.path.relpath(os.path.normpath(path), lib)


def _fix_pth(path: Path, lib: Path, app: Path, result: RelativizeResult) -> None:
    text = path.read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("/") and not stripped.startswith("#"):
            if _inside(stripped, app):
                line = _rel(stripped, lib)
            else:
                result.outside.append((path, stripped))
        elif stripped.startswith(("import ", "import\t")):
            line = _fix_literals(line, lib, app, path, result, in_pth=True)
        out.append(line)
    new = "\n".join(out) + ("\n" if text.endswith("\n") else "")
    if new != text:
        path.write_text(new, encoding="utf-8")
        result.changed.append(path)


def _fix_egg_link(path: Path, lib: Path, app: Path, result: RelativizeResult) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and lines[0].startswith("/"):
        if _inside(lines[0], app):
            lines[0] = _rel(lines[0], lib)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
            result.changed.append(path)
        else:
            result.outside.append((path, lines[0]))


_ABS_LITERAL = re.compile(r"""(['"])(/[^'"\n]*)\1""")


def _fix_literals(text: str, lib: Path, app: Path, path: Path,
                  result: RelativizeResult, in_pth: bool = False) -> str:
    """Replace absolute path string literals inside the app with expressions
    relative to this file's directory (the site dir)."""
    # realpath: bin/python reaches lib/python through a symlink one level deeper
    here = "__import__('os').path.dirname(__import__('os').path.realpath(__file__))"

    def repl(m: re.Match[str]) -> str:
        value = m.group(2)
        if not _inside(value, app):
            result.outside.append((path, value))
            return m.group(0)
        rel = _rel(value, lib)
        if in_pth:  # .pth lines run with sitedir in the caller's locals
            return f"__import__('os').path.join(__import__('os').path.realpath(sitedir), {rel!r})"
        return f"__import__('os').path.normpath(__import__('os').path.join({here}, {rel!r}))"

    return _ABS_LITERAL.sub(repl, text)


def _fix_finder(path: Path, lib: Path, app: Path, result: RelativizeResult) -> None:
    text = path.read_text(encoding="utf-8")
    out = []
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith(("MAPPING", "NAMESPACES")):
            line = _fix_literals(line, lib, app, path, result)
        out.append(line)
    new = "".join(out)
    if new != text:
        path.write_text(new, encoding="utf-8")
        result.changed.append(path)
