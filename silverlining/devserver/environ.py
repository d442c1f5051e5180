"""The environment an app sees in development: ``SILVER_*`` and services' ``CONFIG_*``.

Stdlib only: ``silver serve`` and the app's ``bin/python`` both use it, so
scripts run locally see the same variables as the served app.
"""

from __future__ import annotations

from pathlib import Path

from silverlining import __version__, state
from silverlining.appconfig import AppConfig
from silverlining.errors import ConfigError, UsageError
from silverlining.inifile import suggest
from silverlining.services import SERVICE_NAMES, get_service
from silverlining.userconfig import UserConfig


def devel_dir(app_name: str) -> Path:
    """``SILVER_HOME/devel/APP``: the app's local data (files, writable_root, TEMP)."""
    return state.state_dir() / "devel" / app_name


def check_devel_settings(user: UserConfig, app_name: str) -> dict[str, str]:
    """The merged ``[devel]`` settings, with misspelt service keys refused."""
    settings = user.devel_settings(app_name)
    for key, value in settings.items():
        service, _, sub = key.partition(".")
        if service not in SERVICE_NAMES:
            continue
        keys = get_service(service).dev_keys
        if sub not in keys:
            valid = [f"{service}.{k}" for k in keys]
            raise ConfigError(str(user.path), f"unknown setting{suggest(key, valid)}; "
                              f"valid: {', '.join(valid)}", key=key, section="devel")
        if sub == "port" and value and not value.isdigit():
            raise ConfigError(str(user.path), f"{value!r} is not a port number",
                              key=key, section="devel")
    return settings


def app_config_dir(app: AppConfig, config_dir: str | Path | None) -> Path | None:
    """The deployment config directory: ``--config``, else ``config.default``."""
    if config_dir:
        path = Path(config_dir).expanduser().absolute()
        if not path.is_dir():
            raise UsageError(f"--config {config_dir}: not a directory")
        return path
    if app.config_default:
        path = (app.app_dir / app.config_default).absolute()
        if not path.is_dir():
            raise ConfigError(str(app.ini_path), f"directory {str(path)!r} not found",
                              line=None, key="config.default", section="production")
        return path
    if app.config_required:
        raise UsageError(f"{app.ini_path}: config.required is true: give --config DIR "
                         "or set config.default")
    return None


def app_environ(app: AppConfig, user: UserConfig | None = None,
                config_dir: str | Path | None = None) -> dict[str, str]:
    """All variables the app gets under ``silver serve`` (creates its local dirs)."""
    user = user or UserConfig.load()
    settings = check_devel_settings(user, app.app_name)
    base = devel_dir(app.app_name)
    temp = base / "tmp"
    logs = app.app_dir / "silver-logs"
    temp.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        "SILVER_VERSION": f"devel/{__version__}",
        "SILVER_APP_NAME": app.app_name,
        "SILVER_INSTANCE_NAME": "localhost",
        "SILVER_CANONICAL_HOSTNAME": "localhost",
        "SILVER_MATCH_PATH": "",
        "SILVER_LOGS": str(logs),
        "TEMP": str(temp),
    }
    conf = app_config_dir(app, config_dir)
    if conf is not None:
        env["SILVER_APP_CONFIG"] = str(conf)
    for name in app.services:
        env.update(get_service(name).dev_env(app, settings, base))
    env.update(param_environ(app, settings, user))
    return env


def param_environ(app: AppConfig, settings: dict[str, str], user: UserConfig) -> dict[str, str]:
    """Parameters in development: ``param.NAME`` in ``[devel]``/``[devel:APP]``, else
    app.ini's default; one with neither stays unset (``get_param`` then says where
    to set it)."""
    env = {}
    for key in settings:
        name = key.removeprefix("param.")
        if key.startswith("param.") and name not in app.parameters:
            raise ConfigError(str(user.path), f"{app.ini_path} declares no parameter "
                              f"{name!r}{suggest(name, list(app.parameters))}",
                              key=key, section="devel")
    for name, param in app.parameters.items():
        value = settings.get(f"param.{name}", param.default)
        if value is None:
            continue
        if problem := param.check(value):
            raise ConfigError(str(user.path), problem, key=f"param.{name}", section="devel")
        env[param.env_name] = value
    return env
