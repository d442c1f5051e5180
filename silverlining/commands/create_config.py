"""``silver create-config APP_DIR OUT [VAR=VALUE...] [--info]``: a deployment config
from the app's template (``config.template`` in app.ini).

Every file of the template is copied to OUT with ``${var}`` (``string.Template``)
filled in; ``$$`` is a literal ``$``. A variable the template uses and that is
not given, or one given that the template never uses, is an error, so a typo
never yields a config with a hole in it. ``--info`` lists the variables.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

from silverlining.appconfig import AppConfig
from silverlining.commands._params import parse_assignments
from silverlining.console import Console
from silverlining.errors import UsageError


def template_files(root: Path) -> list[Path]:
    """The template's files, relative to it, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found += [Path(dirpath, n).relative_to(root) for n in sorted(filenames)]
    return found


def _template(path: Path) -> string.Template | None:
    """The file as a template, or None for a binary file (copied as it is)."""
    try:
        return string.Template(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None


def variables(root: Path) -> dict[str, list[str]]:
    """Each variable the template uses -> the files that use it."""
    used: dict[str, list[str]] = {}
    for rel in template_files(root):
        tpl = _template(root / rel)
        if tpl is None:
            continue
        if not tpl.is_valid():
            raise UsageError(f"{root / rel}: a '$' that is neither ${{name}} nor $$")
        for name in tpl.get_identifiers():
            used.setdefault(name, []).append(str(rel))
    return used


def run(console: Console, app_dir: str, out: str, assignments: tuple[str, ...],
        info: bool) -> int:
    config = AppConfig.load(app_dir)
    if not config.config_template:
        raise UsageError(f"{config.ini_path} has no config.template")
    root = config.app_dir / config.config_template
    used = variables(root)
    if info:
        for name in sorted(used):
            console.out(f"{name}  ({', '.join(used[name])})")
        return 0
    values = parse_assignments(assignments, "VAR=VALUE")
    missing = sorted(set(used) - set(values))
    unknown = sorted(set(values) - set(used))
    if missing:
        raise UsageError(f"the template {root} needs {', '.join(missing)}: give "
                         + " ".join(f"{n}=VALUE" for n in missing))
    if unknown:
        raise UsageError(f"the template {root} does not use {', '.join(unknown)} (it uses: "
                         f"{', '.join(sorted(used)) or 'nothing'})")
    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} already exists and is not an empty directory")
    for rel in template_files(root):
        target = dest / rel
        tpl = _template(root / rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if tpl is None:
                shutil.copyfile(root / rel, target)
            else:
                target.write_text(tpl.substitute(values), encoding="utf-8")
            shutil.copymode(root / rel, target)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    console.out(f"wrote {len(template_files(root))} files to {dest}")
    return 0
