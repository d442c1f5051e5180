"""The environment an app sees in development: ``SILVER_*`` and services' ``CONFIG_*``.

Stdlib only: ``silver serve`` and the app's ``bin/python`` both use it, so
scripts run locally see the same variables as the served app.
"""

from __future__ import annotations

import socket
from pathlib import Path

from silverlining import __version__, state
from silverlining.appconfig import AppConfig
from silverlining.errors import ConfigError, UsageError
from silverlining.inifile import suggest
from silverlining.secret import ENV_VAR, dev_secret_file
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
        ENV_VAR: str(dev_secret_file(base)),
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


# where the database services listen when no host is given (Debian/Ubuntu first)
DEFAULT_SOCKETS = {
    "postgresql": ("/var/run/postgresql/.s.PGSQL.{port}", "/tmp/.s.PGSQL.{port}"),
    "mysql": ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock"),
}
DEFAULT_PORTS = {"postgresql": "5432", "mysql": "3306", "redis": "6379"}


def _connects(family: int, address: str | tuple[str, int]) -> bool:
    with socket.socket(family) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


def _answers(host: str, port: str, kind: str) -> tuple[bool, str]:
    """(whether something accepts connections, where we looked). An empty host is
    the usual local socket (and, for MariaDB clients such as PyMySQL, TCP
    localhost); a host starting with '/' is PostgreSQL's socket directory."""
    if host and not host.startswith("/"):
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return True, f"{host}:{port}"
        except (OSError, ValueError):
            return False, f"{host}:{port}"
    if host:
        sockets = [f"{host}/.s.PGSQL.{port}"]
    else:
        sockets = [path.format(port=port) for path in DEFAULT_SOCKETS[kind]]
    if any(_connects(socket.AF_UNIX, path) for path in sockets):
        return True, sockets[0]
    if not host and kind == "mysql" and _connects(socket.AF_INET, ("127.0.0.1", int(port))):
        return True, f"127.0.0.1:{port}"
    return False, " or ".join(sockets)


def unreachable_services(app: AppConfig, env: dict[str, str]) -> list[str]:
    """A warning for each database service nothing answers for in development, so
    a newcomer learns why the app cannot connect before it tries."""
    warnings = []
    for name in sorted(app.services):
        kind = "postgresql" if name == "postgis" else name
        prefix = {"postgresql": "CONFIG_PG", "mysql": "CONFIG_MYSQL",
                  "redis": "CONFIG_REDIS"}.get(kind)
        if prefix is None:
            continue
        port = env.get(f"{prefix}_PORT") or DEFAULT_PORTS[kind]
        ok, where = _answers(env.get(f"{prefix}_HOST", ""), port, kind)
        if not ok:
            warnings.append(f"service {name}: nothing answers at {where}; start the server "
                            f"or set {name}.host/{name}.port in [devel] of your user config")
    return warnings
