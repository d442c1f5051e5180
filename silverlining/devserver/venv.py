"""The app's local virtualenv, made by ``silver init``.

``bin/python`` and ``bin/pip`` work on ``lib/python``: the virtualenv's
``site-packages`` is a symlink to ``../python``, so pip installs, upgrades and
uninstalls there with its normal bookkeeping, and ``.pth`` files work. The
virtualenv's own packages (pip, setuptools) move to ``lib/pythonX.Y/silver-venv``
and the development hook lives there too; all of that is local-only and
listed in ``.silverignore``. Only ``lib/python/zz_silverlining_venv.pth``
(inert anywhere but in this virtualenv, and never uploaded) joins them up.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from silverlining import state
from silverlining.errors import SilverError

VENV_PACKAGES = "silver-venv"
HOOK_MODULE = "_silverlining_devenv"
PTH_NAME = "zz_silverlining_venv.pth"

PTH_LINE = (
    "import os, sys, site; "
    "_p = os.path.join(sys.prefix, 'lib', 'python%d.%d' % sys.version_info[:2], "
    f"'{VENV_PACKAGES}'); "
    f"os.path.isfile(os.path.join(_p, '{HOOK_MODULE}.py')) and "
    f"(site.addsitedir(_p) or __import__('{HOOK_MODULE}').activate())\n"
)

HOOK_TEMPLATE = '''\
"""Written by `silver init`: gives bin/python the app's development environment
by loading silverlining from the installation that made this virtualenv.
Local only; re-run `silver init --force` if silverlining moved."""

import importlib.util
import os
import sys

SILVERLINING = {package!r}
APP_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def _call(function, *args):
    """Run silverlining.devserver.venvhook.FUNCTION without leaving silverlining
    (or anything else of the outer installation) importable by the app."""
    init = os.path.join(SILVERLINING, "__init__.py")
    if not os.path.isfile(init):
        print("silverlining: " + SILVERLINING + " is gone; run `silver init --force`",
              file=sys.stderr)
        return
    saved = {{k: v for k, v in sys.modules.items()
             if k == "silverlining" or k.startswith("silverlining.")}}
    spec = importlib.util.spec_from_file_location(
        "silverlining", init, submodule_search_locations=[SILVERLINING])
    module = importlib.util.module_from_spec(spec)
    sys.modules["silverlining"] = module
    try:
        spec.loader.exec_module(module)
        hook = importlib.import_module("silverlining.devserver.venvhook")
        getattr(hook, function)(*args)
    finally:
        for name in [k for k in sys.modules
                     if k == "silverlining" or k.startswith("silverlining.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def activate():
    _call("activate", APP_DIR)


def relativize():
    _call("relativize", APP_DIR)
'''

# /bin/sh first, so an app directory with spaces in its path still works.
PIP_WRAPPER = '''\
#!/bin/sh
\'\'\'exec' "{python}" "$0" "$@"
\' \'\'\'
"""pip for this app: installs into lib/python, then makes paths there relative."""
import sys

from pip._internal.cli.main import main

if __name__ == "__main__":
    try:
        code = main()
    finally:
        import subprocess
        subprocess.run([sys.executable, "-c", "import {hook}; {hook}.relativize()"])
    sys.exit(code)
'''


def pyver() -> str:
    return f"python{sys.version_info[0]}.{sys.version_info[1]}"


def venv_paths(app_dir: Path) -> list[Path]:
    """What the virtualenv adds to the app directory (all local-only)."""
    lib = app_dir / "lib"
    found = [app_dir / "bin", app_dir / "include", app_dir / "lib64", app_dir / "pyvenv.cfg"]
    if lib.is_dir():
        found += sorted(p for p in lib.glob("python3.*"))
    return found


def remove_venv(app_dir: Path) -> None:
    """Delete the virtualenv parts only (never lib/python, src/, app.ini...)."""
    for path in venv_paths(app_dir):
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)


def create_venv(app_dir: Path, prompt: str) -> None:
    """Make the virtualenv in ``app_dir`` and wire it to ``lib/python``."""
    import virtualenv

    app_dir = app_dir.absolute()
    (app_dir / "lib" / "python").mkdir(parents=True, exist_ok=True)
    had_tag = (app_dir / "CACHEDIR.TAG").exists()
    args = [str(app_dir), "--no-vcs-ignore", "--no-venv-redirect", "--no-periodic-update",
            "--no-download", "--quiet", "--prompt", prompt,
            "--app-data", str(state.state_dir() / "virtualenv")]
    try:
        virtualenv.cli_run(args, setup_logging=False)
    except (Exception, SystemExit) as exc:
        raise SilverError(f"creating the virtualenv in {app_dir} failed: {exc}") from None
    if not had_tag and (app_dir / "CACHEDIR.TAG").exists():
        (app_dir / "CACHEDIR.TAG").unlink()
    wire_lib_python(app_dir)


def wire_lib_python(app_dir: Path) -> None:
    pydir = app_dir / "lib" / pyver()
    site_packages = pydir / "site-packages"
    own = pydir / VENV_PACKAGES
    if not site_packages.is_dir() or site_packages.is_symlink():
        raise SilverError(f"unexpected virtualenv layout: {site_packages} is not a directory")
    if own.exists():
        shutil.rmtree(own)
    site_packages.rename(own)
    site_packages.symlink_to(os.path.relpath(app_dir / "lib" / "python", pydir))
    package = Path(__file__).resolve().parent.parent
    (own / f"{HOOK_MODULE}.py").write_text(HOOK_TEMPLATE.format(package=str(package)))
    (app_dir / "lib" / "python" / PTH_NAME).write_text(PTH_LINE)
    bin_dir = app_dir / "bin"
    for pip in bin_dir.glob("pip*"):
        if re.match(r"^pip(-?[0-9.]+)?$", pip.name):
            pip.write_text(PIP_WRAPPER.format(python=bin_dir / "python", hook=HOOK_MODULE))
            pip.chmod(0o755)
