"""Services: development variables from [devel] settings, node variables from
node paths and credential files, and the node-side methods left to the node."""

from __future__ import annotations

import getpass
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from silverlining.appconfig import AppConfig
from silverlining.devserver.environ import app_environ, check_devel_settings
from silverlining.errors import ConfigError, SilverError
from silverlining.inifile import read_ini
from silverlining.services import SERVICE_NAMES, get_service
from silverlining.services.base import Service, sqlalchemy_url
from silverlining.userconfig import UserConfig, parse_user_config

APP = SimpleNamespace(app_name="shop")


def user_config(tmp_path: Path, text: str) -> UserConfig:
    path = tmp_path / "user.conf"
    path.write_text(text)
    return parse_user_config(read_ini(path))


def test_every_service_has_one_interface():
    for name in SERVICE_NAMES:
        service = get_service(name)
        assert isinstance(service, Service) and service.name == name
        for method in ("env", "install", "clear", "backup", "restore"):
            assert getattr(type(service), method) is not getattr(Service, method), (name, method)


def test_files_and_writable_root(tmp_path):
    files = get_service("files").dev_env(APP, {}, tmp_path / "dev")
    assert files == {"CONFIG_FILES": str(tmp_path / "dev" / "files")}
    assert Path(files["CONFIG_FILES"]).is_dir()
    root = get_service("writable_root").dev_env(APP, {"writable_root.dir": str(tmp_path / "w")},
                                                tmp_path / "dev")
    assert root == {"CONFIG_WRITABLE_ROOT": str(tmp_path / "w")}
    node = SimpleNamespace(DATA=Path("/var/lib/silverlining/data"))
    assert get_service("files").env(APP, node) == {
        "CONFIG_FILES": "/var/lib/silverlining/data/shop/files"}
    assert get_service("writable_root").env(APP, node) == {
        "CONFIG_WRITABLE_ROOT": "/var/lib/silverlining/data/shop/writable_root"}


def test_postgresql_defaults_and_settings(tmp_path, monkeypatch):
    from silverlining.devserver import devpg
    pg = get_service("postgresql")
    if devpg.server_bin_dir() is not None:        # then the default is the private cluster
        env = pg.dev_env(APP, {}, tmp_path)
        assert env["CONFIG_PG_HOST"] == str(tmp_path / "postgresql")
        assert env["CONFIG_PG_PORT"] == "5432" and env["CONFIG_PG_DBNAME"] == "shop"
    monkeypatch.setattr(devpg, "server_bin_dir", lambda: None)
    env = pg.dev_env(APP, {}, tmp_path)
    assert env == {"CONFIG_PG_DBNAME": "shop", "CONFIG_PG_USER": getpass.getuser(),
                   "CONFIG_PG_PASSWORD": "", "CONFIG_PG_HOST": "", "CONFIG_PG_PORT": "",
                   "CONFIG_PG_SQLALCHEMY": f"postgresql://{getpass.getuser()}@/shop",
                   "CONFIG_PG_URL": f"postgresql://{getpass.getuser()}@/shop"}
    env = pg.dev_env(APP, {"postgresql.user": "u", "postgresql.password": "p@ss/w",
                           "postgresql.host": "db", "postgresql.port": "5433",
                           "postgresql.dbname": "test_shop"}, tmp_path)
    assert env["CONFIG_PG_SQLALCHEMY"] == "postgresql://u:p%40ss%2Fw@db:5433/test_shop"


def test_postgis_falls_back_to_postgresql_settings(tmp_path):
    settings = {"postgresql.dbname": "pgdb", "postgresql.user": "pguser",
                "postgis.dbname": "gisdb"}
    env = get_service("postgis").dev_env(APP, settings, tmp_path)
    assert env["CONFIG_PG_DBNAME"] == "gisdb" and env["CONFIG_PG_USER"] == "pguser"


def test_mysql_and_redis(tmp_path):
    env = get_service("mysql").dev_env(APP, {"mysql.user": "me", "mysql.host": "h"}, tmp_path)
    assert env["CONFIG_MYSQL_DBNAME"] == "shop" and env["CONFIG_MYSQL_USER"] == "me"
    assert env["CONFIG_MYSQL_SQLALCHEMY"] == "mysql://me@h/shop"
    env = get_service("redis").dev_env(APP, {}, tmp_path)
    assert env == {"CONFIG_REDIS_HOST": "127.0.0.1", "CONFIG_REDIS_PORT": "6379",
                   "CONFIG_REDIS_DB": "0", "CONFIG_REDIS_URL": "redis://127.0.0.1:6379/0"}
    env = get_service("redis").dev_env(APP, {"redis.db": "4", "redis.password": "s"}, tmp_path)
    assert env["CONFIG_REDIS_URL"] == "redis://:s@127.0.0.1:6379/4"
    assert env["CONFIG_REDIS_PASSWORD"] == "s"


def test_node_env_reads_credentials_written_0640(tmp_path):
    node = SimpleNamespace(DATA=tmp_path / "data")
    pg = get_service("postgresql")
    with pytest.raises(SilverError, match="not installed for shop"):
        pg.env(APP, node)
    path = pg.write_credentials(APP, node, {"dbname": "shop", "user": "sl-shop",
                                            "password": "secret", "host": "", "port": ""})
    assert path == tmp_path / "data" / "shop" / "postgresql.credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == [path.name]      # no temp file left
    env = pg.env(APP, node)
    assert env["CONFIG_PG_USER"] == "sl-shop" and env["CONFIG_PG_PASSWORD"] == "secret"
    assert env["CONFIG_PG_SQLALCHEMY"] == "postgresql://sl-shop:secret@/shop"
    redis = get_service("redis")
    redis.write_credentials(APP, node, {"db": "2"})          # the shared server's
    with pytest.raises(SilverError, match="still uses the shared redis-server"):
        redis.env(APP, node)
    redis.write_credentials(APP, node, {"socket": "/run/r/shop/redis.sock", "db": "0",
                                        "user": "sl-shop", "password": "p w"})
    assert redis.env(APP, node)["CONFIG_REDIS_URL"] == \
        "unix://sl-shop:p%20w@/run/r/shop/redis.sock?db=0"
    with pytest.raises(ValueError):
        pg.write_credentials(APP, node, {"user": "a\nb"})


def test_sqlalchemy_url():
    assert sqlalchemy_url("postgresql", "", "", "", "", "db") == "postgresql:///db"
    assert sqlalchemy_url("mysql", "u", "", "", "3306", "d") == "mysql://u@:3306/d"


def test_devel_sections_app_name_and_misspelt_keys(tmp_path):
    user = user_config(tmp_path, "[devel]\npostgis.dbname = test_APP_NAME\n\n"
                                 "[devel:shop]\nredis.db = 9\n\n[devel:other]\nredis.db = 1\n")
    assert check_devel_settings(user, "shop") == {"postgis.dbname": "test_shop", "redis.db": "9"}
    bad = user_config(tmp_path, "[devel]\npostgresql.dbnme = x\n")
    with pytest.raises(ConfigError, match=r"did you mean 'postgresql.dbname'"):
        check_devel_settings(bad, "shop")
    bad = user_config(tmp_path, "[devel]\nredis.port = six\n")
    with pytest.raises(ConfigError, match="not a port number"):
        check_devel_settings(bad, "shop")


def test_app_environ_uses_each_declared_service(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "app.ini").write_text(
        "[production]\napp_name = shop\nrunner = main.py\nservice.files =\n"
        "service.mysql =\nconfig.default = conf\n")
    (tmp_path / "app" / "conf").mkdir()
    config = AppConfig.load(tmp_path / "app", check_files=False)
    env = app_environ(config, user_config(tmp_path, "[devel]\nmysql.password = pw\n"))
    assert env["SILVER_APP_CONFIG"] == str(tmp_path / "app" / "conf")
    assert env["CONFIG_MYSQL_PASSWORD"] == "pw" and "CONFIG_FILES" in env
    assert not any(k.startswith(("CONFIG_PG", "CONFIG_REDIS")) for k in env)
