"""``service.mysql``: a MariaDB database per app (``CONFIG_MYSQL_*``).

On a node the server is the OS's MariaDB; root administers it through the
unix socket (``unix_socket`` authentication, no password). Each app gets a
database and a user ``sl_APP`` (at ``localhost`` and ``127.0.0.1``) whose
password reaches the server only as a ``mysql_native_password`` hash.
Restores run as the app's maintenance user, so a dump can touch nothing else.

Each of the app's accounts has ``MAX_USER_CONNECTIONS`` (app.ini
``limits.mysql_connections``; MariaDB counts per account, and the app has one
at ``localhost`` and one at ``127.0.0.1``), so an app holding every
connection it can get leaves the server's others to the other apps. silver's
own work still gets through when the app is at its limit: backups and clear
run as root (no per-user limit, and one connection beyond ``max_connections``
is kept for it), and restores and ``silver run`` use a maintenance user
``slrun_APP`` with the same grants, a few connections of its own and a
password in a root-only file the app's processes never see.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

from silverlining.errors import SilverError
from silverlining.services.base import Service, sqlalchemy_url

KEYS = ("dbname", "user", "password", "host", "port")
HOSTS = ("localhost", "127.0.0.1")
RUN_CONNECTIONS = 3          # of the maintenance user (silver run, restore)


class MysqlService(Service):
    name = "mysql"
    dev_keys = KEYS
    packages = ("mariadb-server", "mariadb-client")

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        return mysql_env({
            "dbname": self.setting(settings, "dbname", app.app_name),
            "user": self.setting(settings, "user", getpass.getuser()),
            "password": self.setting(settings, "password"),
            "host": self.setting(settings, "host"),
            "port": self.setting(settings, "port"),
        })

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        return mysql_env({k: creds.get(k, "") for k in KEYS})

    def run_env(self, app: Any, node_paths: Any) -> dict[str, str]:
        """``silver run``'s login: the maintenance user, when the app has one yet."""
        if not self.run_credentials_path(app, node_paths).is_file():
            return {}
        creds = self.read_credentials(app, node_paths)
        return mysql_env({**{k: creds.get(k, "") for k in KEYS},
                          **self.read_run_credentials(app, node_paths)})

    # --- node -------------------------------------------------------------------

    def install(self, app: Any, node_paths: Any) -> None:
        if self._ready(app, node_paths):
            return
        from silverlining.services._system import server_lock
        with server_lock("mysql"):
            self._install(app, node_paths)

    def _install(self, app: Any, node_paths: Any) -> None:
        from silverlining.services._system import (apt_install, db_name, mysql_native_hash,
                                                   new_password, systemctl_start, wait_until)
        apt_install(self.packages)
        systemctl_start("mariadb")
        wait_until(self._up, "MariaDB", timeout=90)
        name = db_name(app.app_name)
        path = self.credentials_path(app, node_paths)
        creds = self.read_credentials(app, node_paths) if path.is_file() else {}
        # an existing password stays: kept versions (rollback) were started with it
        password = creds.get("password") or new_password()
        run_path = self.run_credentials_path(app, node_paths)
        run_password = (self.read_run_credentials(app, node_paths).get("password")
                        if run_path.is_file() else None) or new_password()
        sql = self._create_sql(name)
        for user, secret, limit in ((name, password, app.limits.mysql_connections),
                                    (run_user(name), run_password, RUN_CONNECTIONS)):
            digest = mysql_native_hash(secret)
            users = ", ".join(f"'{user}'@'{host}'" for host in HOSTS)
            sql += "".join(f"CREATE USER IF NOT EXISTS '{user}'@'{host}';\n"
                           f"ALTER USER '{user}'@'{host}' IDENTIFIED BY PASSWORD '{digest}' "
                           f"WITH MAX_USER_CONNECTIONS {limit:d};\n" for host in HOSTS)
            sql += f"GRANT ALL PRIVILEGES ON `{grant_pattern(name)}`.* TO {users};\n"
        mariadb(sql)
        self.write_run_credentials(app, node_paths, {"user": run_user(name),
                                                     "password": run_password})
        self.write_credentials(app, node_paths, {
            "dbname": name, "user": name, "password": password,
            "host": "127.0.0.1", "port": "3306"})

    def _ready(self, app: Any, node_paths: Any) -> bool:
        """Cheap check (the credentials, one query) that nothing needs doing."""
        if not self.credentials_path(app, node_paths).is_file():
            return False
        if not self.run_credentials_path(app, node_paths).is_file():
            return False
        name = self.read_credentials(app, node_paths).get("user", "")
        try:
            found = mariadb(f"SELECT (SELECT COUNT(*) FROM mysql.user WHERE User = '{name}' "
                            f"AND max_user_connections = {app.limits.mysql_connections:d}), "
                            f"(SELECT COUNT(*) FROM mysql.user WHERE User = '{run_user(name)}'), "
                            f"(SELECT COUNT(*) FROM information_schema.SCHEMATA "
                            f"WHERE SCHEMA_NAME = '{name}');")
        except SilverError:
            return False
        return found.split() == [str(len(HOSTS)), str(len(HOSTS)), "1"]

    def _up(self) -> bool:
        try:
            mariadb("SELECT 1;")
        except SilverError:
            return False
        return True

    @staticmethod
    def _create_sql(name: str) -> str:
        return (f"CREATE DATABASE IF NOT EXISTS `{name}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n")

    def clear(self, app: Any, node_paths: Any) -> None:
        from silverlining.services._system import say
        self.install(app, node_paths)
        name = self.read_credentials(app, node_paths)["dbname"]
        say(f"mysql: dropping and re-creating database {name}")
        mariadb(f"DROP DATABASE IF EXISTS `{name}`;\n" + self._create_sql(name))

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        from silverlining.services._system import command
        self.install(app, node_paths)
        name = self.read_credentials(app, node_paths)["dbname"]
        with open(dest_dir / "database.sql", "wb") as out:
            command(["mariadb-dump", "--single-transaction", "--routines", "--triggers",
                     "--skip-lock-tables", name], stdout=out, what="mariadb-dump", timeout=7200)

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        from silverlining.services._system import command
        self.clear(app, node_paths)
        creds = {**self.read_credentials(app, node_paths),
                 **self.read_run_credentials(app, node_paths)}
        # the maintenance login, from a root-only file: never on the command line
        options = src_dir / "client.cnf"
        fd = os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[client]\nuser={creds['user']}\npassword={creds['password']}\n"
                     "host=localhost\n")
        with open(src_dir / "database.sql", "rb") as dump:
            command(["mariadb", f"--defaults-extra-file={options}", "--batch", creds["dbname"]],
                    stdin=dump, what="restoring the database", timeout=7200)


def run_user(name: str) -> str:
    """The maintenance user of the app's ``sl_APP``: ``slrun_APP``. Every app's user
    starts with ``sl_``, so no app (not one named ``APP_run``) can be given it."""
    return "slrun_" + name.removeprefix("sl_")


def grant_pattern(name: str) -> str:
    """A database name in GRANT, where ``_`` and ``%`` are wildcards: escaped, so
    ``sl_a_b`` cannot also mean another app's ``sl_axb``."""
    return name.replace("_", "\\_").replace("%", "\\%")


def mariadb(sql: str) -> str:
    """Run SQL (on stdin) as MariaDB's root through the unix socket; tab-separated rows."""
    from silverlining.services._system import command
    return command(["mariadb", "--batch", "--skip-column-names"], input=sql, what="mariadb")


def mysql_env(values: dict[str, str]) -> dict[str, str]:
    """The CONFIG_MYSQL_* variables; host empty = local socket, port empty = default."""
    env = {f"CONFIG_MYSQL_{k.upper()}": values[k] for k in KEYS}
    env["CONFIG_MYSQL_SQLALCHEMY"] = sqlalchemy_url(
        "mysql", values["user"], values["password"], values["host"], values["port"],
        values["dbname"])
    return env


SERVICE = MysqlService()
