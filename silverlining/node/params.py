"""An app's deploy-time parameters on the node: stored, changed, and listed (``params``).

Values belong to the app, not to a version: ``ENV/APP/params.json``,
``root:sl-APP 0640`` (the app reads its own, nobody else; only root writes).
New values only ever arrive on the SSH channel's stdin as JSON
(``{"set": {NAME: VALUE}, "unset": [NAME]}``), never as arguments, and are
never printed: listings say ``set``/``unset`` for hidden ones, errors name
the parameter, not the value.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from silverlining import protocol
from silverlining.appconfig import AppConfig
from silverlining.errors import SilverError
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node._state import instance_dir, location_key, served
from silverlining.node.base import write_atomic


def params_path(app: str) -> Path:
    return paths.ENV / app / "params.json"


def load(app: str) -> dict[str, str]:
    try:
        data = json.loads(params_path(app).read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise NodeError(f"{params_path(app)} is corrupt: {exc}") from None
    return {str(k): str(v) for k, v in data.items()}


def save(app: str, values: dict[str, str], gid: int) -> None:
    write_atomic(params_path(app), json.dumps(values, sort_keys=True) + "\n", mode=0o640, gid=gid)


UPLOADED = "uploaded"
"""The line ``silver update`` sends a ``deploy --wait-upload`` once the upload is complete."""
DEPS_INSTALLED = "deps-installed"
"""The line after it when the version's dependency set was sent meanwhile (``deps-install``)
and is now a layer."""


def wait_line(line: str, failed: str) -> None:
    """Until the CLI says ``line`` on stdin; its input ending first (the client failed
    or went away) raises ``failed``."""
    if sys.stdin.readline().strip() != line:
        raise NodeError(failed)


def read_changes(wait_upload: bool = False) -> dict:
    """``{"set": {...}, "unset": [...]}`` from stdin (what the CLI sends). With
    ``wait_upload`` they are the first line, and the call returns only when the
    ``UPLOADED`` line follows: the deploy starts while its files are still coming."""
    text = sys.stdin.readline() if wait_upload else sys.stdin.read()
    if wait_upload:
        wait_line(UPLOADED, "the upload did not finish: nothing was deployed")
    try:
        data = json.loads(text or "{}")
    except ValueError:
        raise NodeError("the parameter changes on stdin are not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("set", {}), dict) \
            or not isinstance(data.get("unset", []), list):
        raise NodeError("the parameter changes on stdin are malformed")
    return {"set": {str(k): str(v) for k, v in data.get("set", {}).items()},
            "unset": [str(n) for n in data.get("unset", [])]}


def merged(config: AppConfig, stored: dict[str, str], changes: dict) -> dict[str, str]:
    """The stored values with ``changes`` applied, checked against app.ini's declarations."""
    values = dict(stored)
    for name in [*changes.get("set", {}), *changes.get("unset", [])]:
        if name not in config.parameters:
            known = ", ".join(sorted(config.parameters)) or "none"
            raise NodeError(f"app {config.app_name} has no parameter {name!r} (declared: "
                            f"{known})")
    for name, value in changes.get("set", {}).items():
        if problem := config.parameters[name].check(value):
            raise NodeError(problem)
        values[name] = value
    for name in changes.get("unset", []):
        values.pop(name, None)
    return values


def environment(config: AppConfig, values: dict[str, str]) -> dict[str, str]:
    """``NAME`` -> value (or default) for every declared parameter; one without either
    is an error naming it."""
    env = {}
    for name, param in sorted(config.parameters.items()):
        value = values.get(name, param.default)
        if value is None:
            raise NodeError(f"parameter {name} has no value: give --param {name}=VALUE "
                            f"(or silver params LOCATION --set {name}=VALUE)")
        env[param.env_name] = value
    return env


def listing(config: AppConfig, values: dict[str, str]) -> list[dict]:
    """What ``silver params`` shows: hidden values never leave the node."""
    rows = []
    for name, param in sorted(config.parameters.items()):
        state = "set" if name in values else "default" if param.default is not None \
            else "unset"
        row = {"name": name, "env": param.env_name, "state": state, "hidden": param.hidden,
               "description": param.description}
        if not param.hidden:
            row["value"] = values.get(name, param.default)
        rows.append(row)
    return rows


def live_config(app: str, version: str) -> AppConfig:
    """The app.ini of a deployed version (what declares its parameters)."""
    try:
        config = AppConfig.load(instance_dir(app, version), check_files=False)
    except SilverError as exc:
        raise NodeError(exc.message) from None
    return dataclasses.replace(config, app_name=app)


def show(args: protocol.Params) -> protocol.ParamsResult:
    app, version = served(location_key(args.location))
    return {"app": app, "version": version,
            "params": listing(live_config(app, version), load(app))}
