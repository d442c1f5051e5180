"""Parameters on the command line (``--param``, ``--param-file``, ``--set``/``--unset``):
parsed and checked against app.ini locally, before any upload, and sent to the
node only as JSON on the SSH channel's stdin (never as arguments, never printed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from silverlining.appconfig import AppConfig
from silverlining.errors import UsageError


def parse_assignments(items: tuple[str, ...], option: str) -> dict[str, str]:
    """``NAME=VALUE`` items; the value is never quoted back in an error."""
    values = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"{option} expects NAME=VALUE (got an item without '=' or name)")
        values[name.strip()] = value
    return values


def read_param_files(items: tuple[str, ...]) -> dict[str, str]:
    """``NAME=PATH``: the file's content (one trailing newline dropped) is the value."""
    values = {}
    for name, path in parse_assignments(items, "--param-file").items():
        try:
            text = Path(path).expanduser().read_text()
        except OSError as exc:
            raise UsageError(f"--param-file {name}={path}: {exc.strerror}") from None
        values[name] = text[:-1] if text.endswith("\n") else text
    return values


def check_given(config: AppConfig, values: dict[str, str], unset: tuple[str, ...] = ()) -> None:
    """Every name is declared in app.ini and every value matches its pattern."""
    for name in [*values, *unset]:
        if name not in config.parameters:
            known = ", ".join(sorted(config.parameters)) or "none"
            raise UsageError(f"{config.ini_path} declares no parameter {name!r} "
                             f"(declared: {known})")
    for name, value in values.items():
        if problem := config.parameters[name].check(value):
            raise UsageError(f"{config.ini_path}: {problem}")


def complete(config: AppConfig, given: dict[str, str],
             on_node: set[str], node: str, ask: bool) -> dict[str, str]:
    """``given`` plus prompted hidden values; a parameter with no value anywhere (given,
    stored on the node, or a default) is an error naming it."""
    values = dict(given)
    for name, param in sorted(config.parameters.items()):
        if name in values or name in on_node or param.default is not None:
            continue
        if param.hidden and ask and sys.stdin.isatty():
            value = click.prompt(f"{name} ({param.description or 'hidden parameter'})",
                                 hide_input=True, err=True)
            if problem := param.check(value):
                raise UsageError(problem)
            values[name] = value
            continue
        raise UsageError(f"parameter {name} has no value on {node}: give --param {name}=VALUE"
                         + (" (or --param-file)" if param.hidden else ""))
    return values


def changes_input(values: dict[str, str], unset: tuple[str, ...] = ()) -> str:
    return json.dumps({"set": values, "unset": list(unset)})
