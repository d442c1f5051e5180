"""``service.mysql``: a MariaDB database per app (``CONFIG_MYSQL_*``).

On a node the server is the OS's MariaDB; root administers it through the
unix socket (``unix_socket`` authentication, no password). Each app gets a
database and a user ``sl_APP`` (at ``localhost`` and ``127.0.0.1``) whose
password reaches the server only as a ``mysql_native_password`` hash.
Restores run as the app's maintenance user, so a dump can touch nothing else,
with the client sandboxed (no shell, no file of the node, from a dump's lines).

Each of the app's accounts has ``MAX_USER_CONNECTIONS`` (app.ini
``limits.mysql_connections``; MariaDB counts per account, and the app has one
at ``localhost`` and one at ``127.0.0.1``), so an app holding every
connection it can get leaves the server's others to the other apps. silver's
own work still gets through when the app is at its limit: backups and clear
run as root (no per-user limit, and one connection beyond ``max_connections``
is kept for it), and restores and ``silver run`` use a maintenance user
``slrun_APP`` with the same grants, a few connections of its own and a
password in a root-only file the app's processes never see.

On a services node (docs/services-node.md) the same database and users serve a
location's members over the nodes' network: ``host`` gives MariaDB the node's
certificate from silver's CA and listens beyond 127.0.0.1, and ``admit`` gives
each member address accounts of its own (``'sl_APP'@'ADDRESS'`` and
``'slrun_APP'@'ADDRESS'``, copies of the local ones' password hash and limit,
``REQUIRE SSL``): a plain connection is refused, a removed member's accounts are
dropped. A member records the services node in its credentials (``use_remote``)
and installs nothing itself; ``CONFIG_MYSQL_SSL_CA`` names the CA to verify with.
"""

from __future__ import annotations

import getpass
import os
import pwd
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from silverlining.errors import SilverError
from silverlining.node.base import apt_install, make_dir, run, say, wait_until, write_atomic
from silverlining.services.base import Service, sqlalchemy_url
from silverlining.services._system import (db_name, mysql_native_hash, new_password,
                                          server_lock, systemctl_start)

KEYS = ("dbname", "user", "password", "host", "port")
TLS_KEYS = ("ssl_ca",)       # set when the database is on a services node
HOSTS = ("localhost", "127.0.0.1")
RUN_CONNECTIONS = 3          # of the maintenance user (silver run, restore)
SECRET_PREFIX = "mysql:"     # the derived passwords' keys ("mysql:sl_APP"): not PostgreSQL's
SERVICES_CNF = Path("/etc/mysql/mariadb.conf.d/90-silverlining-services.cnf")
PORT = "3306"
# root's and silver's own logins go through the unix socket, where TLS adds nothing; the
# 11.4+ client would try it and refuse a services node's certificate (silver's CA)
NO_TLS = "--skip-ssl"


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
        return mysql_env({k: creds.get(k, "") for k in KEYS + TLS_KEYS})

    def run_env(self, app: Any, node_paths: Any) -> dict[str, str]:
        """``silver run``'s login: the maintenance user, when the app has one yet."""
        if not self.run_credentials_path(app, node_paths).is_file():
            return {}
        creds = self.read_credentials(app, node_paths)
        return mysql_env({**{k: creds.get(k, "") for k in KEYS + TLS_KEYS},
                          **self.read_run_credentials(app, node_paths)})

    # --- node -------------------------------------------------------------------

    def install(self, app: Any, node_paths: Any) -> None:
        if self.remote_node(app, node_paths) or self._ready(app, node_paths):
            return          # a services node's database is set up by services-host
        with server_lock("mysql"):
            self._install(app, node_paths)

    def _install(self, app: Any, node_paths: Any, password: str | None = None,
                 run_password: str | None = None) -> None:
        """The server, the app's users and database; ``password``/``run_password``
        given (a services node's, from the client) replace the recorded ones."""
        apt_install(self.packages)
        systemctl_start("mariadb")
        wait_until(self._up, 90, failed="MariaDB did not come up")
        name = db_name(app.app_name)
        path = self.credentials_path(app, node_paths)
        creds = self.read_credentials(app, node_paths) if path.is_file() else {}
        # an existing password stays: kept versions (rollback) were started with it
        password = password or creds.get("password") or new_password()
        run_path = self.run_credentials_path(app, node_paths)
        run_password = run_password or (self.read_run_credentials(app, node_paths).get("password")
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
            "host": "127.0.0.1", "port": PORT})

    def _ready(self, app: Any, node_paths: Any) -> bool:
        """Cheap check (the credentials, one query) that nothing needs doing."""
        if not self.credentials_path(app, node_paths).is_file():
            return False
        if not self.run_credentials_path(app, node_paths).is_file():
            return False
        name = self.read_credentials(app, node_paths).get("user", "")
        try:
            local = "Host IN (" + ", ".join(f"'{h}'" for h in HOSTS) + ")"
            found = mariadb(f"SELECT (SELECT COUNT(*) FROM mysql.user WHERE User = '{name}' "
                            f"AND {local} "
                            f"AND max_user_connections = {app.limits.mysql_connections:d}), "
                            f"(SELECT COUNT(*) FROM mysql.user WHERE User = '{run_user(name)}' "
                            f"AND {local}), "
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

    # --- on a services node -------------------------------------------------------

    hostable = True
    family = "mysql"
    env_marker, env_prefixes = "CONFIG_MYSQL_SQLALCHEMY", ("CONFIG_MYSQL_",)

    def host(self, app: Any, node_paths: Any, passwords: dict[str, str],
             tls: Any) -> dict[str, str]:
        name = db_name(app.app_name)
        with server_lock("mysql"):
            self._install(app, node_paths, passwords[SECRET_PREFIX + name],
                          passwords[SECRET_PREFIX + run_user(name)])
            self.serve_tls(node_paths, tls["cert"], tls["key"])
        return {"dbname": name, "user": name, "run_user": run_user(name), "port": PORT}

    def serve_tls(self, node_paths: Any, cert: str, key: str) -> None:
        """TLS with the node's certificate, listening on every address (the firewall
        and the members' accounts say who gets in); a restart only when the
        configuration changes, else the certificate is reloaded (``FLUSH SSL``)."""
        my = pwd.getpwnam("mysql")
        root = make_dir(Path(node_paths.SERVICES_TLS) / "mysql", my.pw_uid, my.pw_gid, 0o700)
        write_atomic(root / "server.crt", cert, mode=0o644, uid=my.pw_uid, gid=my.pw_gid)
        write_atomic(root / "server.key", key, mode=0o600, uid=my.pw_uid, gid=my.pw_gid)
        text = ("# silverlining: a services node (docs/services-node.md)\n"
                "[mysqld]\n"
                "bind-address = 0.0.0.0\n"
                "skip-name-resolve\n"      # accounts by address: no reverse DNS per login
                f"ssl-cert = {root}/server.crt\n"
                f"ssl-key = {root}/server.key\n"
                "tls-version = TLSv1.2,TLSv1.3\n")
        if not SERVICES_CNF.is_file() or SERVICES_CNF.read_text() != text:
            say("MariaDB: listening on the nodes' network (TLS for the members)")
            write_atomic(SERVICES_CNF, text, mode=0o644)
            run(["systemctl", "restart", "mariadb"], what="restarting MariaDB")
            wait_until(self._up, 90, failed="MariaDB did not come back")
        else:
            mariadb("FLUSH SSL;")        # a new certificate

    def admit(self, peers: dict[str, list[str]],
              replicas: list[str]) -> set[tuple[str, int]]:
        """Each member address gets the app's two accounts, copied from the local ones
        (password hash, connection limit) with ``REQUIRE SSL``; every other remote
        account of an app is dropped. MariaDB has no replica here (refused before)."""
        wanted: dict[tuple[str, str], str] = {}
        for app, addresses in peers.items():
            name = db_name(app)
            for user in (name, run_user(name)):
                for address in addresses:
                    wanted[(user, address)] = name
        with server_lock("mysql"):
            local = {}
            for line in mariadb("SELECT User, authentication_string, max_user_connections "
                                "FROM mysql.user WHERE Host = 'localhost' AND "
                                "(User LIKE 'sl\\_%' OR User LIKE 'slrun\\_%');").splitlines():
                user, digest, limit = line.split("\t")
                local[user] = (digest, int(limit))
            have = {tuple(line.split("\t")) for line in mariadb(
                "SELECT User, Host FROM mysql.user WHERE Host NOT IN ('localhost', '127.0.0.1') "
                "AND (User LIKE 'sl\\_%' OR User LIKE 'slrun\\_%');").splitlines()}
            sql = "".join(f"DROP USER '{u}'@'{h}';\n" for u, h in sorted(have)
                          if (u, h) not in wanted)
            for (user, address), database in sorted(wanted.items()):
                digest, limit = local[user]
                account = f"'{user}'@'{address}'"
                sql += (f"CREATE USER IF NOT EXISTS {account};\n"
                        f"ALTER USER {account} IDENTIFIED BY PASSWORD '{digest}' REQUIRE SSL "
                        f"WITH MAX_USER_CONNECTIONS {limit:d};\n"
                        f"GRANT ALL PRIVILEGES ON `{grant_pattern(database)}`.* "
                        f"TO {account};\n")
            if sql:
                mariadb(sql)
        return self.everyone(peers, [], int(PORT))

    def use_remote(self, app: Any, node_paths: Any, values: dict[str, str], ca: Path) -> None:
        """On a member: the app's database is on services node ``values["node"]``."""
        creds = {k: values[k] for k in KEYS}
        creds.update(ssl_ca=str(ca), remote=values["node"])
        self.write_run_credentials(app, node_paths, {"user": values["run_user"],
                                                     "password": values["run_password"]})
        self.write_credentials(app, node_paths, creds)

    def clear(self, app: Any, node_paths: Any) -> None:
        self.install(app, node_paths)
        name = self.read_credentials(app, node_paths)["dbname"]
        say(f"mysql: dropping and re-creating database {name}")
        mariadb(f"DROP DATABASE IF EXISTS `{name}`;\n" + self._create_sql(name))

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        self.install(app, node_paths)
        name = self.read_credentials(app, node_paths)["dbname"]
        with open(dest_dir / "database.sql", "wb") as out:
            run(["mariadb-dump", NO_TLS, "--single-transaction", "--routines", "--triggers",
                     "--skip-lock-tables", name], stdout=out, what="mariadb-dump", timeout=7200)

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        self.clear(app, node_paths)
        creds = {**self.read_credentials(app, node_paths),
                 **self.read_run_credentials(app, node_paths)}
        # the maintenance login, from a root-only file: never on the command line
        options = src_dir / "client.cnf"
        fd = os.open(options, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"[client]\nuser={creds['user']}\npassword={creds['password']}\n"
                     f"host=localhost\n{NO_TLS.removeprefix('--')}\n")
        # the client runs as root: --sandbox, so a client command in the dump (\! runs a
        # shell) is refused, not run, whatever mariadb-dump made it
        with open(src_dir / "database.sql", "rb") as dump:
            run(["mariadb", f"--defaults-extra-file={options}", "--sandbox", "--batch",
                 creds["dbname"]], stdin=dump, what="restoring the database", timeout=7200)


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
    return run(["mariadb", NO_TLS, "--batch", "--skip-column-names"], input=sql,
               what="mariadb")


def mysql_env(values: dict[str, str]) -> dict[str, str]:
    """The CONFIG_MYSQL_* variables; host empty = local socket, port empty = default.
    On a services node's database ``CONFIG_MYSQL_SSL_CA`` names the CA the server's
    certificate is from, and the SQLAlchemy URL says ``ssl_ca`` (PyMySQL and
    mysqlclient then use TLS and verify the chain)."""
    env = {f"CONFIG_MYSQL_{k.upper()}": values[k] for k in KEYS}
    env["CONFIG_MYSQL_SQLALCHEMY"] = sqlalchemy_url(
        "mysql", values["user"], values["password"], values["host"], values["port"],
        values["dbname"])
    if values.get("ssl_ca"):
        env["CONFIG_MYSQL_SSL_CA"] = values["ssl_ca"]
        env["CONFIG_MYSQL_SQLALCHEMY"] += "?" + urlencode({"ssl_ca": values["ssl_ca"]}, safe="/")
    return env


SERVICE = MysqlService()
