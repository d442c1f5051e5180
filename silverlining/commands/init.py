"""``silver init DIR``: an app layout with app.ini and a virtualenv on lib/python."""

from __future__ import annotations

import re
import string
from pathlib import Path

from silverlining import deps
from silverlining.appconfig import MAX_NAME_LEN, NAME_RE
from silverlining.appfiles import IGNORE_FILE, default_silverignore_text, iter_app_files
from silverlining.console import Console
from silverlining.devserver import venv
from silverlining.errors import UsageError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
DIRS = ("src", "static", "lib/python")
# an app that declares its dependencies one of these ways gets no requirements.txt
DECLARATIONS = (deps.REQUIREMENTS, "pyproject.toml", "uv.lock", "pylock.toml")
REQUIREMENTS_TEXT = """\
# What the app needs from PyPI, one requirement a line (pip's format, e.g.
# Django>=5.1,<6). `silver update` installs them for each node's own Python;
# for `silver serve` install them here too: bin/pip install -r requirements.txt
# See docs/dependencies.md.
"""


def app_name_for(app_dir: Path) -> str:
    """A valid app_name guessed from the directory name."""
    name = re.sub(r"[^a-z0-9_-]+", "-", app_dir.name.lower()).strip("-_")
    name = name[:MAX_NAME_LEN].rstrip("-_") or "app"
    return name if NAME_RE.match(name) else "app"


def _write(path: Path, text: str, force: bool, console: Console) -> None:
    if path.exists() and not force:
        console.info(f"kept {path.name} (exists; --force rewrites it)")
        return
    path.write_text(text, encoding="utf-8")
    console.info(f"wrote {path}")


# Files that usually hold a WSGI app, in the order a runner is guessed from them.
RUNNER_CANDIDATES = ("main.py", "app.py", "wsgi.py")
_APPLICATION_RE = re.compile(r"^(application\s*=|def application\b)", re.M)
_APP_RE = re.compile(r"^(app\s*=|def app\b)", re.M)


def has_code(root: Path) -> bool:
    """Whether the directory already holds Python code of its own (libraries in
    lib/ and the local virtualenv do not count)."""
    return any(rel.endswith(".py") and not rel.startswith("lib/")
               for rel in iter_app_files(root))


def guess_runner(root: Path) -> str | None:
    """``FILE`` or ``FILE#app`` for the first candidate file that exists."""
    for name in RUNNER_CANDIDATES:
        path = root / name
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if not _APPLICATION_RE.search(text) and _APP_RE.search(text):
                return f"{name}#app"
            return name
    return None


def run(console: Console, app_dir: str, force: bool, main_py: bool | None) -> int:
    """``main_py``: True writes the sample main.py, False never does, None (default)
    writes it when the directory has no code yet, so a new app serves at once."""
    root = Path(app_dir).absolute()
    if root.exists() and not root.is_dir():
        raise UsageError(f"{app_dir} exists and is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {app_dir}: {exc.strerror}") from None
    name = app_name_for(root)
    if main_py is None:
        main_py = not has_code(root)
    runner = "main.py" if main_py else guess_runner(root)
    ini = root / "app.ini"
    if ini.exists():
        console.info("kept app.ini (never overwritten)")
        if main_py:
            console.info("app.ini kept: point its runner at main.py yourself if needed")
    else:
        template = string.Template((TEMPLATES / "app.ini").read_text(encoding="utf-8"))
        ini.write_text(template.substitute(app_name=name, runner=runner or "main.py"),
                       encoding="utf-8")
        console.info(f"wrote {ini} (app_name = {name}, runner = {runner or 'main.py'})")
        if runner is None:
            console.warn(f"no {', '.join(RUNNER_CANDIDATES)} here: set runner in {ini} "
                         "to where your app object is (or drop it: an app without a web "
                         "part)")
        elif runner != "main.py" or not main_py:
            console.info(f"runner = {runner} guessed from your code: check it in {ini}")
    for sub in DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    _write(root / IGNORE_FILE, default_silverignore_text(), force, console)
    if not any((root / name).is_file() for name in DECLARATIONS):
        _write(root / deps.REQUIREMENTS, REQUIREMENTS_TEXT, force, console)
    if main_py:
        _write(root / "main.py", (TEMPLATES / "main.py").read_text(encoding="utf-8"),
               force, console)
    if (root / "bin" / "python").exists() and not force:
        console.info("kept the virtualenv (bin/python exists; --force re-creates it)")
    else:
        venv.remove_venv(root)
        console.info(f"creating the virtualenv in {root} ...")
        venv.create_venv(root, name)
        console.info(f"{root}/bin/pip installs into lib/python (for silver serve; "
                     f"nodes get their own build of {deps.REQUIREMENTS})")
    console.out(f"app {name} ready in {root}: edit app.ini, then `silver serve {app_dir}`")
    return 0
