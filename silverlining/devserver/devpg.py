"""A private development PostgreSQL for ``silver serve``, so a newcomer needs no
database set-up.

Used when the app asks for ``postgresql``/``postgis``, the user config gives
no ``[devel]`` settings for it, and PostgreSQL's server programs (``initdb``,
``pg_ctl``) are installed. The cluster lives in ``SILVER_HOME/devel/APP/postgresql``
(initdb once), listens only on a unix socket in that directory (mode 0700,
no TCP), and runs while ``silver serve`` runs. Trust authentication is safe
there: only the directory's owner (and root) can reach the socket.
PostgreSQL refuses to run as root: under root the server runs as the owner
of the app directory, and is not started if that is root too.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from silverlining.errors import SilverError

SERVICES = ("postgresql", "postgis")
PORT = "5432"                      # only names the socket file: there is no TCP listener


def server_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's newest version."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def wanted(settings: dict[str, str]) -> bool:
    """For an app using PostgreSQL: nothing in ``[devel]`` says where its database
    is, and we can run one."""
    if any(key.partition(".")[0] in SERVICES for key in settings):
        return False
    return server_bin_dir() is not None


def cluster_dir(devel_dir: Path) -> Path:
    return devel_dir / "postgresql"


def dev_values(app_name: str, devel_dir: Path) -> dict[str, str]:
    """What the app connects with (the socket directory is the host)."""
    return {"dbname": app_name, "user": getpass.getuser(), "password": "",
            "host": str(cluster_dir(devel_dir)), "port": PORT}


class DevPostgres:
    """One app's development cluster: ``start`` (initdb the first time) and ``stop``."""

    def __init__(self, app_name: str, app_dir: Path, devel_dir: Path) -> None:
        self.app_name, self.root = app_name, cluster_dir(devel_dir)
        self.data, self.log = self.root / "data", self.root / "server.log"
        bin_dir = server_bin_dir()
        if bin_dir is None:
            raise SilverError("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
        self.bin = bin_dir
        self.role = getpass.getuser()
        self.user = None                     # run as this user (root only)
        if os.geteuid() == 0:
            owner = app_dir.stat().st_uid
            if owner == 0:
                raise SilverError("the development PostgreSQL cannot run as root and the app "
                                  "directory is root's: set [devel] postgresql.* settings")
            self.user = pwd.getpwuid(owner).pw_name

    def _run(self, tool: str, *args: str, what: str) -> str:
        kwargs = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid,
                  "extra_groups": []} if self.user else {}
        proc = subprocess.run([str(self.bin / tool), *args], capture_output=True, text=True,
                              cwd=self.root, timeout=120, **kwargs)
        if proc.returncode != 0:
            tail = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()][-2:]
            raise SilverError(f"development PostgreSQL: {what} failed: {' | '.join(tail)}")
        return proc.stdout

    def start(self) -> None:
        """Running, with the app's database (idempotent: a running cluster is reused)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        if not (self.data / "PG_VERSION").is_file():
            self._run("initdb", "-D", str(self.data), "-U", self.role, "--auth=trust",
                      "--encoding=UTF8", "--no-sync", what="initdb")
        if subprocess.run([str(self.bin / "pg_ctl"), "status", "-D", str(self.data)],
                          capture_output=True, user=self.user).returncode != 0:
            options = f"-k {self.root} -c listen_addresses= -p {PORT}"
            self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log),
                      "-o", options, what="starting the server")
        psql = self.bin / "psql" if (self.bin / "psql").exists() else Path("psql")
        sql = ("SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS "
               "(SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec\n")
        proc = subprocess.run([str(psql), "-X", "-q", "-h", str(self.root), "-p", PORT,
                               "-U", self.role, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                               "-v", f"db={self.app_name}"], input=sql, text=True,
                              capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise SilverError(f"development PostgreSQL: creating database {self.app_name} "
                              f"failed: {proc.stderr.strip()}")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", what="stopping")
