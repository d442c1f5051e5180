"""``service.postgresql``: a PostgreSQL database per app (``CONFIG_PG_*``).

On a node the server comes from the OS packages; each app gets a database
and a role of its own (``sl_APP``), reached over 127.0.0.1 with a
scram-sha-256 password. The server's ``pg_hba.conf`` is replaced by one that
trusts nobody: ``postgres`` by peer on the socket, everyone else by password.
Administration runs as the ``postgres`` user with SQL on stdin; the
password reaches the server only as a SCRAM verifier computed here.

The app's role has a ``CONNECTION LIMIT`` (app.ini ``limits.postgresql_connections``),
so an app holding every connection it can get leaves the server's others to the
other apps. silver's own work still gets through when the app is at its limit:
backups, restores and clear connect as ``postgres`` (a superuser, not counted
against any role, with the server's reserved slots), and ``silver run`` connects
as a maintenance role ``slrun_APP``: a member of the app's role that becomes it
at login (``ALTER ROLE ... SET role``, so what a migration creates is the app's),
with a few connections of its own and a password in a root-only file the app's
processes never see.

On a services node (docs/services-node.md) the same database and roles serve a
location's members over the nodes' network: ``host`` adds TLS (the node's
certificate from silver's CA) and listens beyond 127.0.0.1, and ``admit`` lets
each member address in to its own app's database only, over TLS only
(``hostssl``; a plain connection matches no line and is refused). A member
records the services node in its credentials (``use_remote``) and installs
nothing itself; its ``CONFIG_PG_*`` say ``sslmode=verify-full`` with the CA.
"""

from __future__ import annotations

import getpass
import pwd
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from silverlining.errors import SilverError
from silverlining.node.base import apt_install, make_dir, run, say, wait_until, write_atomic
from silverlining.services.base import Service, sqlalchemy_url
from silverlining.services._system import (db_name, new_password, scram_verifier,
                                          server_lock, systemctl_start)

KEYS = ("dbname", "user", "password", "host", "port")
PG_LIB = "/usr/lib/postgresql"       # VERSION/bin/ of each version installed
PG_CONF = "/etc/postgresql"         # VERSION/CLUSTER/postgresql.conf of each cluster
DEFAULT_PORT = 5432
_PORT_RE = re.compile(r"^\s*port\s*=\s*(\d+)", re.M)
TLS_KEYS = ("sslmode", "sslrootcert")     # set when the database is on a services node
CONNECT_TIMEOUT = "10"      # seconds libpq waits for a services node (PGCONNECT_TIMEOUT)
HBA_MARK = "# silverlining: passwords only (scram-sha-256), no trust"
HBA = f"""{HBA_MARK}
local   all   postgres                  peer
local   all   all                       scram-sha-256
host    all   all     127.0.0.1/32      scram-sha-256
host    all   all     ::1/128           scram-sha-256
"""
# Entries of a dump that belong to the server (extensions and their catalog
# tables): the restore re-creates them itself and as the app's role could not.
SERVER_ENTRIES = (" EXTENSION ", " spatial_ref_sys ")
RUN_CONNECTIONS = 3          # of the maintenance role (silver run)
SERVICES_CONF = "silverlining-services.conf"     # in the cluster's conf.d: TLS, listening
REPLICATION_ROLE = "silver_replica"              # a streaming replica's login (node/replica.py)


class PostgresqlService(Service):
    name = "postgresql"
    dev_keys = KEYS
    #: sections of the devel settings looked at, in order
    setting_prefixes: tuple[str, ...] = ("postgresql",)
    packages: tuple[str, ...] = ("postgresql", "postgresql-client")
    #: extensions created in the app's database (as the server's superuser)
    extensions: tuple[str, ...] = ()

    def lookup(self, settings: dict[str, str], key: str, default: str = "") -> str:
        for prefix in self.setting_prefixes:
            if f"{prefix}.{key}" in settings:
                return settings[f"{prefix}.{key}"]
        return default

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        from silverlining.devserver import devpg      # developer's machine only
        if devpg.wanted(settings):
            return pg_env(devpg.dev_values(app.app_name, state_dir))
        values = {
            "dbname": self.lookup(settings, "dbname", app.app_name),
            "user": self.lookup(settings, "user", getpass.getuser()),
            "password": self.lookup(settings, "password"),
            "host": self.lookup(settings, "host"),
            "port": self.lookup(settings, "port"),
        }
        return pg_env(values)

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        return pg_env({k: creds.get(k, "") for k in KEYS + TLS_KEYS})

    def run_env(self, app: Any, node_paths: Any) -> dict[str, str]:
        """``silver run``'s login: the maintenance role, when the app has one yet."""
        if not self.run_credentials_path(app, node_paths).is_file():
            return {}
        creds = {k: v for k, v in self.read_credentials(app, node_paths).items()
                 if k in KEYS + TLS_KEYS}
        return pg_env({**{k: "" for k in KEYS}, **creds,
                       **self.read_run_credentials(app, node_paths)})

    def credentials_path(self, app: Any, node_paths: Any) -> Path:
        """One file for postgresql and postgis: they share the app's database."""
        return Path(node_paths.DATA) / app.app_name / "postgresql.credentials"

    # --- node -------------------------------------------------------------------

    def install(self, app: Any, node_paths: Any) -> None:
        if self.remote_node(app, node_paths) or self._ready(app, node_paths):
            return          # a services node's database is set up by services-host
        with server_lock("postgresql"):
            self._install(app, node_paths)

    def _install(self, app: Any, node_paths: Any, password: str | None = None,
                 run_password: str | None = None) -> None:
        """The server, the app's roles and database; ``password``/``run_password``
        given (a services node's, from the client) replace the recorded ones."""
        apt_install(self.packages)
        self.server_up()
        role = db_name(app.app_name)
        path = self.credentials_path(app, node_paths)
        creds = self.read_credentials(app, node_paths) if path.is_file() else {}
        # an existing password stays: kept versions (rollback) were started with it
        password = password or creds.get("password") or new_password()
        run_path = self.run_credentials_path(app, node_paths)
        run_password = run_password or (self.read_run_credentials(app, node_paths).get(
            "password") if run_path.is_file() else None) or new_password()
        limit = app.limits.postgresql_connections
        psql("postgres", f"\\set verifier '{scram_verifier(password)}'\n"
             f"\\set run_verifier '{scram_verifier(run_password)}'\n"
             "SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY[:'role', :'run']) r "
             "WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \\gexec\n"
             "ALTER ROLE :\"role\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
             f"CONNECTION LIMIT {limit:d} PASSWORD :'verifier';\n"
             "ALTER ROLE :\"run\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
             f"INHERIT CONNECTION LIMIT {RUN_CONNECTIONS:d} PASSWORD :'run_verifier';\n"
             "GRANT :\"role\" TO :\"run\";\n"
             "ALTER ROLE :\"run\" SET role = :'role';\n", role=role, run=run_role(role))
        self._create_database(role)
        port = psql("postgres", "SHOW port;").strip()
        values = {"dbname": role, "user": role, "password": password,
                  "host": "127.0.0.1", "port": port}
        for ext in self.extensions:
            values[ext] = "yes"
        self.write_run_credentials(app, node_paths, {"user": run_role(role),
                                                     "password": run_password})
        self.write_credentials(app, node_paths, {**creds, **values})

    def _ready(self, app: Any, node_paths: Any) -> bool:
        """Cheap check (the credentials, one query: the server answers, the role owns
        its database) that nothing needs doing."""
        if not self.credentials_path(app, node_paths).is_file():
            return False
        creds = self.read_credentials(app, node_paths)
        if any(creds.get(ext) != "yes" for ext in self.extensions):
            return False
        if not self.run_credentials_path(app, node_paths).is_file():
            return False
        role = creds.get("user", "")
        try:
            found = psql("postgres", "SELECT count(*) FROM pg_roles r JOIN pg_database d "
                         "ON d.datdba = r.oid WHERE r.rolname = :'role' "
                         "AND d.datname = :'role' AND r.rolconnlimit = "
                         f"{app.limits.postgresql_connections:d} AND EXISTS "
                         "(SELECT 1 FROM pg_roles WHERE rolname = :'run');",
                         role=role, run=run_role(role))
        except SilverError:
            return False
        return found.strip() == "1"

    def server_up(self) -> None:
        """The cluster running, with our pg_hba.conf."""
        systemctl_start("postgresql")
        wait_until(pg_ready, 90,
                   failed="PostgreSQL did not come up")
        hba = Path(psql("postgres", "SHOW hba_file;").strip())
        if not hba.read_text().startswith(HBA_MARK):
            say("PostgreSQL: password authentication only (pg_hba.conf)")
            self._write_hba(HBA)
        # apps reach their own database only, not the server's maintenance ones
        psql("postgres", "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;\n"
             "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;\n")

    def _write_hba(self, text: str) -> None:
        hba = Path(psql("postgres", "SHOW hba_file;").strip())
        if hba.read_text() != text:
            st = hba.stat()
            write_atomic(hba, text, mode=0o640, uid=st.st_uid, gid=st.st_gid)
            psql("postgres", "SELECT pg_reload_conf();")

    # --- on a services node -------------------------------------------------------

    hostable = True
    family = "postgresql"
    env_marker, env_prefixes = "CONFIG_PG_URL", ("CONFIG_PG_", "PGSSL")

    def host(self, app: Any, node_paths: Any, passwords: dict[str, str], tls: Any) -> dict[str, str]:
        role = db_name(app.app_name)
        with server_lock("postgresql"):
            self._install(app, node_paths, passwords[role], passwords[run_role(role)])
            self.serve_tls(node_paths, tls["cert"], tls["key"])
        return {"dbname": role, "user": role, "run_user": run_role(role),
                "port": psql("postgres", "SHOW port;").strip()}

    def serve_tls(self, node_paths: Any, cert: str, key: str) -> None:
        """TLS with the node's certificate, listening on every address (the firewall
        and pg_hba.conf say who gets in); a restart only when listening changes."""
        pg = pwd.getpwnam("postgres")
        root = make_dir(Path(node_paths.SERVICES_TLS) / "postgresql", pg.pw_uid, pg.pw_gid,
                        0o700)
        write_atomic(root / "server.crt", cert, mode=0o644, uid=pg.pw_uid, gid=pg.pw_gid)
        write_atomic(root / "server.key", key, mode=0o600, uid=pg.pw_uid, gid=pg.pw_gid)
        conf = Path(psql("postgres", "SHOW config_file;").strip()).parent / "conf.d" / SERVICES_CONF
        text = ("# silverlining: a services node (docs/services-node.md)\n"
                "listen_addresses = '*'\n"
                "ssl = on\n"
                f"ssl_cert_file = '{root}/server.crt'\n"
                f"ssl_key_file = '{root}/server.key'\n"
                "ssl_min_protocol_version = 'TLSv1.2'\n")
        if not conf.is_file() or conf.read_text() != text:
            write_atomic(conf, text, mode=0o644)
        if psql("postgres", "SHOW listen_addresses;").strip() != "*":
            say("PostgreSQL: listening on the nodes' network (TLS only)")
            run(["systemctl", "restart", "postgresql"], what="restarting PostgreSQL")
            wait_until(pg_ready, 90,
                       failed="PostgreSQL did not come back")
        else:
            psql("postgres", "SELECT pg_reload_conf();")      # a new certificate

    def admit(self, peers: dict[str, list[str]],
              replicas: list[str]) -> set[tuple[str, int]]:
        lines = [HBA]
        for app, addresses in sorted(peers.items()):
            role = db_name(app)
            for address in addresses:
                lines.append(f"hostssl {role} {role},{run_role(role)} {address}/32 "
                             "scram-sha-256\n")
        lines += [f"hostssl replication {REPLICATION_ROLE} {address}/32 scram-sha-256\n"
                  for address in replicas]
        with server_lock("postgresql"):
            self._write_hba("".join(lines))
        return self.everyone(peers, replicas, int(psql("postgres", "SHOW port;").strip()))

    def use_remote(self, app: Any, node_paths: Any, values: dict[str, str], ca: Path) -> None:
        """On a member: the app's database is on services node ``values["node"]``."""
        creds = {k: values[k] for k in KEYS}
        creds.update(sslmode="verify-full", sslrootcert=str(ca), remote=values["node"])
        for ext in self.extensions:
            creds[ext] = "yes"
        self.write_run_credentials(app, node_paths, {"user": values["run_user"],
                                                     "password": values["run_password"]})
        self.write_credentials(app, node_paths, creds)

    def _create_database(self, role: str) -> None:
        psql("postgres",
             "SELECT format('CREATE DATABASE %I OWNER %I ENCODING ''UTF8'' TEMPLATE template0', "
             ":'role', :'role') WHERE NOT EXISTS "
             "(SELECT 1 FROM pg_database WHERE datname = :'role') \\gexec\n"
             "REVOKE ALL ON DATABASE :\"role\" FROM PUBLIC;\n"
             "GRANT ALL ON DATABASE :\"role\" TO :\"role\";\n", role=role)
        for ext in self.extensions:
            psql(role, f"CREATE EXTENSION IF NOT EXISTS {ext};")

    def clear(self, app: Any, node_paths: Any) -> None:
        self.install(app, node_paths)
        role = self.read_credentials(app, node_paths)["user"]
        say(f"{self.name}: dropping and re-creating database {role}")
        psql("postgres", "DROP DATABASE IF EXISTS :\"role\" WITH (FORCE);", role=role)
        self._create_database(role)

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        self.install(app, node_paths)
        role = self.read_credentials(app, node_paths)["user"]
        with open(dest_dir / "database.dump", "wb") as out:
            run(["pg_dump", "--format=custom", "--no-owner", "--no-acl", "-d", role],
                    user="postgres", stdout=out, what="pg_dump", timeout=7200)

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        """An empty database, then the dump's SQL run as the app's own role (so it
        owns what it gets back and can touch nothing else), in one transaction."""
        self.clear(app, node_paths)
        role = self.read_credentials(app, node_paths)["user"]
        dump = src_dir / "database.dump"
        listing = run(["pg_restore", "--list", str(dump)], what="reading the dump")
        keep = [ln for ln in listing.splitlines()
                if not any(mark in f" {ln} " for mark in SERVER_ENTRIES)]
        (src_dir / "restore.list").write_text("\n".join(keep) + "\n")
        script = subprocess.Popen(
            ["pg_restore", "--no-owner", "--no-acl", "--use-list", str(src_dir / "restore.list"),
             "--file=-", str(dump)], stdout=subprocess.PIPE)
        try:
            run([pg_bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                     "-d", role, "-c", f'SET ROLE "{role}"', "-f", "-"],
                    user="postgres", stdin=script.stdout, stdout=subprocess.DEVNULL,
                    what="restoring the database", timeout=7200)
        finally:
            assert script.stdout is not None
            script.stdout.close()
            if script.wait() != 0:
                raise SilverError(f"pg_restore failed (status {script.returncode})")


def run_role(role: str) -> str:
    """The maintenance role of the app's role ``sl_APP``: ``slrun_APP``. Every app's
    role starts with ``sl_``, so no app (not one named ``APP_run``) can be given it."""
    return "slrun_" + role.removeprefix("sl_")


def pg_bin(name: str) -> str:
    """PostgreSQL's client program ``name`` of the newest version installed, called
    straight. Debian's ``/usr/bin/NAME`` is pg_wrapper, a Perl script that picks that
    same program (clients work with every older server) and costs each call 35 ms,
    three quarters of a ``psql`` (one runs in every deploy of an app with a
    database). Before PostgreSQL is installed: ``name`` as it is."""
    found = [(int(path.parts[-3]), path) for path in Path(PG_LIB).glob(f"*/bin/{name}")
             if path.parts[-3].isdigit()]
    return str(max(found)[1]) if found and _cluster_on_default_port() else name


def _cluster_on_default_port() -> bool:
    """Whether a local cluster is set to port 5432: the one pg_wrapper picks when there
    is one, and the one a client called straight reaches. Otherwise the wrapper stays
    (it finds a node's only cluster on another port)."""
    for conf in Path(PG_CONF).glob("*/*/postgresql.conf"):
        try:
            found = _PORT_RE.search(conf.read_text())
        except OSError:
            continue
        if found is None or int(found.group(1)) == DEFAULT_PORT:
            return True
    return False


def pg_ready() -> bool:
    """Whether the local server takes connections (``pg_isready``)."""
    return subprocess.run([pg_bin("pg_isready"), "-q"]).returncode == 0


def psql(dbname: str, sql: str, **variables: str) -> str:
    """Run SQL (on stdin) as the ``postgres`` superuser; ``variables`` become psql
    variables (use ``:'name'`` / ``:"name"`` to quote them). Unaligned output."""
    if any("'" in v or "\\" in v or "\n" in v for v in variables.values()):
        raise SilverError("bad psql variable")
    head = "".join(f"\\set {key} '{value}'\n" for key, value in variables.items())
    return run([pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dbname],
                   input=head + sql, user="postgres", what="psql")


def pg_env(values: dict[str, str]) -> dict[str, str]:
    """The CONFIG_PG_* variables; host empty = local socket, port empty = default.
    ``CONFIG_PG_URL`` (libpq) and ``CONFIG_PG_SQLALCHEMY`` are the same URL: both
    libraries read ``postgresql://``. On a services node's database the URL says
    ``sslmode=verify-full`` and the CA (``sslrootcert``), and so do
    ``CONFIG_PG_SSLMODE``/``SSLROOTCERT`` and libpq's own ``PGSSLMODE``/``PGSSLROOTCERT``
    (which verify a connection made from the separate variables too), and
    ``PGCONNECT_TIMEOUT``: a services node that reboots on a cloud drops packets, and
    libpq would otherwise wait as long as the OS does (about two minutes) per request."""
    url = sqlalchemy_url("postgresql", values["user"], values["password"], values["host"],
                         values["port"], values["dbname"])
    tls = {k: values[k] for k in TLS_KEYS if values.get(k)}
    if tls:
        url += "?" + urlencode(tls, safe="/")
        return {**_pg_vars(values, url),
                "CONFIG_PG_SSLMODE": tls["sslmode"], "CONFIG_PG_SSLROOTCERT": tls["sslrootcert"],
                "PGSSLMODE": tls["sslmode"], "PGSSLROOTCERT": tls["sslrootcert"],
                "PGCONNECT_TIMEOUT": CONNECT_TIMEOUT}
    return _pg_vars(values, url)


def _pg_vars(values: dict[str, str], url: str) -> dict[str, str]:
    return {
        "CONFIG_PG_DBNAME": values["dbname"],
        "CONFIG_PG_USER": values["user"],
        "CONFIG_PG_PASSWORD": values["password"],
        "CONFIG_PG_HOST": values["host"],
        "CONFIG_PG_PORT": values["port"],
        "CONFIG_PG_SQLALCHEMY": url,
        "CONFIG_PG_URL": url,
    }


SERVICE = PostgresqlService()
