"""The node-side pieces of services that need no server: names, password hashes,
credentials files, backup archives and their checks, and which bin/ files upload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import stat
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from silverlining.appfiles import iter_app_files, read_silverignore, venv_scripts
from silverlining.backups import BackupError, check_name, verify, write_archive
from silverlining.errors import SilverError
from silverlining.services import get_service
from silverlining.services._system import db_name, mysql_native_hash, scram_verifier
from silverlining.services.mysql import grant_pattern
from silverlining.services.redis import instance_env, redis_env

APP = SimpleNamespace(app_name="shop")


def test_db_names_are_prefixed_and_never_collide():
    assert db_name("shop") == "sl_shop"
    assert db_name("a-b") != db_name("a_b") and db_name("a-b").startswith("sl_a_b_")
    long = db_name("x" * 63)
    assert len(long) <= 63 and long != db_name("x" * 62)


def test_scram_verifier_is_what_a_client_proves():
    verifier = scram_verifier("secret")
    head, keys = verifier.split("$", 1)[1].split("$")
    iterations, salt = head.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", b"secret", base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    assert hashlib.sha256(client_key).digest() == stored
    assert hmac.new(salted, b"Server Key", hashlib.sha256).digest() == server
    assert scram_verifier("secret") != verifier                   # salted


def test_mysql_hash_and_grant_pattern():
    assert mysql_native_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert grant_pattern("sl_a_b") == "sl\\_a\\_b"


def test_redis_env_with_an_acl_user():
    env = redis_env({"host": "127.0.0.1", "port": "6379", "db": "0", "password": "p w",
                     "user": "sl-shop"})
    assert env["CONFIG_REDIS_URL"] == "redis://sl-shop:p%20w@127.0.0.1:6379/0"
    assert env["CONFIG_REDIS_USER"] == "sl-shop" and "CONFIG_REDIS_PREFIX" not in env


def test_redis_env_of_an_apps_own_instance():
    """A unix:// URL as redis-py reads it: login in the netloc, the socket as the path."""
    from urllib.parse import parse_qs, unquote, urlparse
    env = instance_env({"socket": "/run/silverlining/redis/shop/redis.sock", "db": "0",
                        "user": "sl-shop", "password": "p w@x"})
    url = urlparse(env["CONFIG_REDIS_URL"])
    assert url.scheme == "unix" and url.path == "/run/silverlining/redis/shop/redis.sock"
    assert (unquote(url.username), unquote(url.password)) == ("sl-shop", "p w@x")
    assert parse_qs(url.query) == {"db": ["0"]}
    assert env["CONFIG_REDIS_SOCKET"] == url.path and env["CONFIG_REDIS_PREFIX"] == ""
    assert "CONFIG_REDIS_HOST" not in env and "CONFIG_REDIS_PORT" not in env


def test_credentials_replace_atomically_and_never_follow_a_link(tmp_path):
    node = SimpleNamespace(DATA=tmp_path)
    pg = get_service("postgresql")
    path = pg.write_credentials(APP, node, {"password": "one"})
    os.symlink("/etc/passwd-never", path.with_name(".postgresql.credentials.planted.tmp"))
    pg.write_credentials(APP, node, {"password": "two"})
    assert pg.read_credentials(APP, node) == {"password": "two"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert get_service("postgis").credentials_path(APP, node) == path   # one database


def make_staging(root: Path) -> Path:
    (root / "postgresql").mkdir(parents=True)
    (root / "postgresql" / "database.dump").write_bytes(b"dump" * 1000)
    (root / "files").mkdir()
    (root / "files" / "files.tar").write_bytes(b"tar")
    return root


def test_archive_round_trip_and_every_kind_of_damage(tmp_path):
    archive = tmp_path / "a.tar.gz"
    made = write_archive(make_staging(tmp_path / "s"), archive, "shop", "v3",
                         ["files", "postgresql"])
    out = tmp_path / "out"
    out.mkdir()
    got = verify(archive, extract_to=out)
    assert got == made and (out / "postgresql" / "database.dump").read_bytes() == b"dump" * 1000

    def rewrite(name: str, change) -> Path:
        dest = tmp_path / f"{name}.tar.gz"
        with tarfile.open(archive) as tin, tarfile.open(dest, "w:gz") as tout:
            for info in tin.getmembers():
                data = change(info, tin.extractfile(info).read())
                if data is not None:
                    info.size = len(data)
                    tout.addfile(info, io.BytesIO(data))
        return dest

    flipped = rewrite("flip", lambda i, d: b"x" + d[1:] if i.name == "files/files.tar" else d)
    with pytest.raises(BackupError, match="files/files.tar is corrupted"):
        verify(flipped)
    dropped = rewrite("drop", lambda i, d: None if i.name == "files/files.tar" else d)
    with pytest.raises(BackupError, match="parts missing: files/files.tar"):
        verify(dropped)
    bad_manifest = rewrite("manifest", lambda i, d: b"{" if i.name == "manifest.json" else d)
    with pytest.raises(BackupError, match="bad manifest"):
        verify(bad_manifest)
    truncated = tmp_path / "short.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(BackupError, match="damaged archive"):
        verify(truncated)
    (tmp_path / "plain.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BackupError):
        verify(tmp_path / "plain.tar.gz")


def test_backup_names():
    assert check_name("before-upgrade_1") == "before-upgrade_1"
    for bad in ("../x", "a/b", "", "x.tar.gz", "-x"):
        with pytest.raises(SilverError):
            check_name(bad)


def test_bin_uploads_the_apps_own_scripts_only(tmp_path):
    app = tmp_path / "app"
    (app / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/python3", app / "bin" / "python")
    os.symlink("python", app / "bin" / "python3")
    for name in ("activate", "activate.fish", "pip", "pip3.11"):
        (app / "bin" / name).write_text("venv\n")
    (app / "bin" / "django-admin").write_text(
        f"#!/bin/sh\n'''exec' \"{app.resolve()}/bin/python\" \"$0\" \"$@\"\n")
    (app / "bin" / "tool").write_text(f"#!{app.resolve()}/bin/python\n")
    (app / "bin" / "manage.py").write_text("#!/usr/bin/env python3\n")
    (app / "bin" / "cron.sh").write_text("#!/bin/sh\n")
    assert venv_scripts(app) == ["django-admin", "python", "python3", "tool"]
    assert "/bin/tool" in read_silverignore(app)
    assert [f for f in iter_app_files(app)] == ["bin/cron.sh", "bin/manage.py"]


def test_a_service_value_is_refused_in_one_line(tmp_path):
    from silverlining.appconfig import AppConfig
    from silverlining.errors import ConfigError
    (tmp_path / "app.ini").write_text("[production]\napp_name = shop\nrunner = main.py\n"
                                      "service.postgresql = 15\n")
    with pytest.raises(ConfigError, match=r"service.postgresql takes no value \(got '15'\)"):
        AppConfig.load(tmp_path, check_files=False)


def test_get_secret_per_purpose_from_the_file_named_in_the_environment(tmp_path, monkeypatch):
    from silverlining.secret import ENV_VAR, derive, dev_secret_file, get_secret
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(RuntimeError, match=ENV_VAR):
        get_secret()
    path = dev_secret_file(tmp_path / "devel")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dev_secret_file(tmp_path / "devel").read_text() == path.read_text()     # made once
    monkeypatch.setenv(ENV_VAR, str(path))
    assert get_secret() == get_secret("default") != get_secret("sessions")
    assert len(get_secret()) == 64
    assert derive(b"node", "a") != derive(b"node", "b") and len(derive(b"node", "a")) == 64


def test_query_shows_services_and_backups_never_credentials():
    from silverlining.commands.query import format_query
    lines = format_query({"apps": [{
        "app": "shop", "disabled": False, "services": ["files", "postgresql"],
        "backups": [{"name": "before-v3", "time": "2026-11-23T06:00:00Z", "size": 1234}],
        "versions": [{"version": "v3", "time": "t", "who": "me", "running": True,
                      "live_at": ["shop.test"], "prev_at": []}]}]})
    assert lines[:3] == ["shop", "  services: files, postgresql",
                         "  backup remote:before-v3  2026-11-23T06:00:00Z  1234 bytes"]
