"""What the app's ``bin/python`` runs at start-up (stdlib only).

``silver init`` leaves a small module in the virtualenv that loads this one
from the silverlining installation that made it. It gives the interpreter the
variables the app gets under ``silver serve`` (existing ones win) and imports
``silvercustomize``, so scripts and tests run locally see their services.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from pathlib import Path

from silverlining.appconfig import AppConfig
from silverlining.appfiles import make_paths_relative
from silverlining.devserver.environ import app_environ
from silverlining.errors import SilverError


def _warn(message: str) -> None:
    print(f"silverlining: {message}", file=sys.stderr)


def activate(app_dir: str) -> None:
    """Set the app's development environment; never stops the interpreter."""
    try:
        config = AppConfig.load(app_dir, check_files=False)
        try:
            env = app_environ(config)
        except SilverError as exc:  # e.g. config.required without a config dir
            if "config" not in exc.message:
                raise
            _warn(f"no SILVER_APP_CONFIG: {exc.message}")
            env = app_environ(dataclasses.replace(config, config_required=False,
                                                  config_default=None))
    except SilverError as exc:
        _warn(f"bin/python runs without the app's environment: {exc.message}")
        return
    for key, value in env.items():
        os.environ.setdefault(key, value)
    fix_relative_pth_paths(app_dir)
    lib = Path(app_dir) / "lib" / "python"
    if (lib / "silvercustomize.py").is_file() or (lib / "silvercustomize" / "__init__.py").is_file():
        try:
            importlib.import_module("silvercustomize")
        except Exception as exc:
            _warn(f"lib/python/silvercustomize failed: {exc!r}")


def fix_relative_pth_paths(app_dir: str) -> None:
    """bin/python reads lib/python as ``lib/pythonX.Y/site-packages`` (a symlink one
    level deeper), so site joined relative ``.pth`` lines to the wrong base;
    point those ``sys.path`` entries where they resolve from ``lib/python``."""
    lib = os.path.join(app_dir, "lib", "python")
    link = os.path.join(app_dir, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    try:
        names = sorted(n for n in os.listdir(lib) if n.endswith(".pth"))
    except OSError:
        return
    for name in names:
        try:
            with open(os.path.join(lib, name), encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")) or os.path.isabs(line):
                continue
            wrong = os.path.abspath(os.path.join(link, line))
            right = os.path.abspath(os.path.join(lib, line))
            if wrong == right:
                continue
            at = sys.path.index(wrong) if wrong in sys.path else len(sys.path)
            if wrong in sys.path:
                sys.path.remove(wrong)
            if os.path.exists(right) and right not in sys.path:
                sys.path.insert(at, right)


def relativize(app_dir: str) -> None:
    """After pip: make lib/python's .pth/.egg-link paths relative (uploadable)."""
    result = make_paths_relative(Path(app_dir) / "lib" / "python", app_dir)
    for path, target in result.outside:
        _warn(f"{path.name} points outside the app ({target}); it will be missing "
              "after an upload (put the code under src/)")
