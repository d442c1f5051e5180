"""``service.redis``: the Redis of one app (``CONFIG_REDIS_*``).

On a node each app has its own redis-server, an instance of Debian's
``redis-server@.service`` template (``redis-server@APP``, configured by
``/etc/redis/redis-APP.conf``): its own ``maxmemory`` (``limits.redis_memory``,
``noeviction``: a full instance refuses writes with "OOM command not allowed"
rather than silently dropping a queued job) and ``maxclients``
(``limits.redis_connections``), its data in ``/var/lib/redis/APP``, and no TCP
port: a unix socket in ``/run/silverlining/redis/APP``, a directory
``redis:sl-APP 2750`` that no other app can enter. The instance runs in the
app's slice. Inside, the ``default`` user is off; the app logs in as ``sl-APP``
(any key, no admin commands) and the node as an admin user whose password is in
a root-only file. The node talks RESP itself (no password in an argv).

Redis keeps no connections in reserve, so when the app holds every one silver's
backup, restore or clear locks the app out of the socket directory (mode 2700),
restarts the instance (its data is saved and loaded again; the app's clients
are dropped) and works alone, then lets the app in again.

Apps deployed before this shared one redis-server, keys apart by an ACL prefix
``APP:`` in database 0; the next deploy moves the app's keys into its own
instance without the prefix (``CONFIG_REDIS_PREFIX`` is now empty).

On a services node (docs/services-node.md) the app's instance is the same, with
a TLS port of its own besides the socket (``tls-port``, still ``port 0``: no
plain TCP), the node's certificate from silver's CA, TLS 1.2 or newer, and the
password the client derives. ``admit`` opens that port in the firewall to the
app's members only. A member records the services node in its credentials
(``use_remote``) and runs no Redis: its ``CONFIG_REDIS_URL`` is ``rediss://``
with the CA to verify against.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from silverlining.appconfig import size_bytes
from silverlining.errors import SilverError
from silverlining.node.base import apt_install, make_dir, run, say, wait_until, write_atomic
from silverlining.services.base import Service
from silverlining.services._system import new_password, server_lock

KEYS = ("host", "port", "db", "password", "user")
ADMIN = "silver-admin"
DATABASES = 16
# what an app may run in its own instance: any key, nothing that manages the server
# (CONFIG, SHUTDOWN, MONITOR, DEBUG, REPLICAOF, MODULE, ACL, CLIENT KILL ...), nor
# MIGRATE (it connects anywhere) and RESTORE (it loads raw payloads)
APP_RULES = ("~* &* +@all -@admin -@dangerous +keys +flushdb +flushall +sort +sort_ro "
             "+info +swapdb")
EVICTION = "noeviction"
CONF_DIR = Path("/etc/redis")
DATA_ROOT = Path("/var/lib/redis")
SYSTEMD = Path("/etc/systemd/system")
# the redis-server all apps shared before (port 6379), and its users' file
SHARED_UNIT = "redis-server"
SHARED_ACL = Path("/etc/redis/silverlining-users.acl")
SHARED_ADDRESS = ("127.0.0.1", 6379)
MAX_CLIENTS_ERROR = "max number of clients reached"
SECRET_PREFIX = "redis:"     # the derived passwords' keys ("redis:sl-APP")
FIRST_TLS_PORT = 6380        # a services node's instances: one TLS port each, from here


class RedisService(Service):
    name = "redis"
    dev_keys = KEYS
    packages = ("redis-server",)

    def dev_env(self, app: Any, settings: dict[str, str], state_dir: Path) -> dict[str, str]:
        return redis_env({
            "host": self.setting(settings, "host", "127.0.0.1"),
            "port": self.setting(settings, "port", "6379"),
            "db": self.setting(settings, "db", "0"),
            "password": self.setting(settings, "password"),
            "user": self.setting(settings, "user"),
        })

    def env(self, app: Any, node_paths: Any) -> dict[str, str]:
        creds = self.read_credentials(app, node_paths)
        if creds.get("remote"):
            return remote_env(creds)
        if not creds.get("socket"):
            raise SilverError(f"{app.app_name} still uses the shared redis-server: redeploy it")
        return instance_env(creds)

    # --- node -------------------------------------------------------------------

    def install(self, app: Any, node_paths: Any) -> None:
        if self.remote_node(app, node_paths):
            return          # a services node's instance is set up by services-host
        name = app.app_name
        path = self.credentials_path(app, node_paths)
        creds = self.read_credentials(app, node_paths) if path.is_file() else {}
        port = int(creds.get("tls_port") or 0)
        if (creds.get("socket") and creds.get("rules") == APP_RULES
                and conf_path(name).is_file()
                and conf_path(name).read_text() == conf_text(
                    name, app.limits, creds["password"], admin_password(node_paths),
                    tls_conf(port, node_paths))
                and is_active(name)):
            return                  # ready: the instance runs with the current settings
        with server_lock("redis"):
            self._install(app, node_paths, creds)

    def _install(self, app: Any, node_paths: Any, creds: dict[str, str],
                 password: str | None = None, port: int = 0) -> None:
        """The app's instance; ``password`` and the TLS ``port`` given (a services
        node's) replace the recorded ones (a services node's port stays once given)."""
        name = app.app_name
        apt_install(self.packages)
        retire_shared_server()
        # an existing password stays: kept versions (rollback) were started with it
        password = password or creds.get("password") or new_password()
        port = port or int(creds.get("tls_port") or 0)
        start_instance(app, node_paths, password, port)
        new = {"socket": str(socket_path(name)), "db": "0", "user": app_user(name),
               "password": password, "rules": APP_RULES}
        if port:
            new["tls_port"] = str(port)
        if not creds.get("socket") and creds:           # the app used the shared server
            moved = migrate_shared_keys(name, node_paths)
            self.write_credentials(app, node_paths, new)
            repoint_versions(name, instance_env(new))
            say(f"redis: {moved} keys of {name} moved from the shared server to its own "
                "instance")
            retire_shared_server()
        else:
            self.write_credentials(app, node_paths, new)

    # --- on a services node -------------------------------------------------------

    hostable = True
    family = "redis"
    env_marker, env_prefixes = "CONFIG_REDIS_URL", ("CONFIG_REDIS_",)

    def host(self, app: Any, node_paths: Any, passwords: dict[str, str],
             tls: Any) -> dict[str, str]:
        """The app's instance with a TLS port of its own (kept once chosen); a new
        certificate is loaded by every instance here (they share it)."""
        name = app.app_name
        path = self.credentials_path(app, node_paths)
        with server_lock("redis"):
            apt_install(self.packages)
            changed = write_tls(node_paths, tls["cert"], tls["key"])
            creds = self.read_credentials(app, node_paths) if path.is_file() else {}
            port = int(creds.get("tls_port") or 0) or free_tls_port(name)
            self._install(app, node_paths, creds, passwords[SECRET_PREFIX + app_user(name)],
                          port)
            if changed:
                reload_tls(node_paths)
        return {"user": app_user(name), "port": str(port), "db": "0"}

    def admit(self, peers: dict[str, list[str]],
              replicas: list[str]) -> set[tuple[str, int]]:
        """Each app's members to its own instance's TLS port, nobody else (the ACL
        user and its password are the app's alone; Redis has no replica here)."""
        ports = {app: tls_port(app) for app in peers}
        return {(address, ports[app]) for app, addresses in peers.items()
                for address in addresses if ports[app]}

    def disconnect_others(self, node_paths: Any, peers: dict[str, list[str]]) -> None:
        """A node let in no more loses the connections it has open: the firewall lets
        those through, and Redis never asks for the password again. One holding all
        the app's connections (silver's login refused) is ended by a restart."""
        for app, addresses in peers.items():
            if tls_port(app) and is_active(app):
                as_admin_or_restart(app, node_paths,
                                    lambda r: drop_clients(r, app, set(addresses)))

    def use_remote(self, app: Any, node_paths: Any, values: dict[str, str], ca: Path) -> None:
        """On a member: the app's Redis is on services node ``values["node"]``."""
        self.write_credentials(app, node_paths, {
            "host": values["host"], "port": values["port"], "db": values["db"],
            "user": values["user"], "password": values["password"], "ssl_ca": str(ca),
            "remote": values["node"]})

    def clear(self, app: Any, node_paths: Any) -> None:
        self.install(app, node_paths)
        with admin(app, node_paths) as r:
            count = 0
            for db in range(DATABASES):
                r.call("SELECT", str(db))
                count += r.call("DBSIZE")
            r.call("FLUSHALL")
        say(f"redis: {count} keys of {app.app_name} deleted")

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        """One JSON line per key: its database (when not 0), its name, its remaining
        time to live and the DUMP payload. Backups of the shared server (before each
        app had its own) hold names without the ``APP:`` prefix and no database: they
        restore the same way."""
        self.install(app, node_paths)
        with admin(app, node_paths) as r, open(dest_dir / "keys.jsonl", "w") as out:
            for db in range(DATABASES):
                r.call("SELECT", str(db))
                for key in scan_keys(r):
                    payload = r.call("DUMP", key)
                    if payload is None:          # expired meanwhile
                        continue
                    ttl = r.call("PTTL", key)
                    item = {"key": b64(key), "ttl": max(int(ttl), 0), "dump": b64(payload)}
                    out.write(json.dumps({**item, "db": db} if db else item) + "\n")

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        self.install(app, node_paths)
        with admin(app, node_paths) as r, open(src_dir / "keys.jsonl") as dump:
            r.call("FLUSHALL")
            selected = None
            for line in dump:
                item = json.loads(line)
                db = str(int(item.get("db", 0)))
                if db != selected:
                    r.call("SELECT", db)
                    selected = db
                r.call("RESTORE", base64.b64decode(item["key"]), str(int(item["ttl"])),
                       base64.b64decode(item["dump"]), "REPLACE")


# --- the app's instance -------------------------------------------------------------

def app_user(app: str) -> str:
    return f"sl-{app}"


def unit(app: str) -> str:
    return f"redis-server@{app}.service"


def conf_path(app: str) -> Path:
    return CONF_DIR / f"redis-{app}.conf"


def socket_dir(app: str) -> Path:
    return Path("/run/silverlining/redis") / app


def socket_path(app: str) -> Path:
    return socket_dir(app) / "redis.sock"


def data_dir(app: str) -> Path:
    return DATA_ROOT / app


def conf_text(app: str, limits: Any, password: str, admin_pw: str, tls: str = "") -> str:
    """The instance's configuration; ``tls`` (``tls_conf``): a services node's port."""
    return f"""# Generated by silver-node: the Redis of app {app} (app.ini limits.redis_*)
port 0
{tls}unixsocket {socket_path(app)}
unixsocketperm 770
pidfile /run/redis-{app}/redis-server.pid
logfile ""
dir {data_dir(app)}
dbfilename dump.rdb
save 3600 1 300 100 60 10000
appendonly no
databases {DATABASES}
maxmemory {size_bytes(limits.redis_memory)}
maxmemory-policy {EVICTION}
maxclients {limits.redis_connections}
user default off resetkeys resetchannels -@all
user {ADMIN} on #{sha256(admin_pw)} ~* &* +@all
user {app_user(app)} on #{sha256(password)} {APP_RULES}
"""


def tls_dir(node_paths: Any) -> Path:
    return Path(node_paths.SERVICES_TLS) / "redis"


def tls_conf(port: int, node_paths: Any) -> str:
    """A services node's: TLS alone on ``port``, on every address (the firewall says
    who gets in), with the node's certificate; clients present none (the ACL
    password authenticates them)."""
    if not port:
        return ""
    root = tls_dir(node_paths)
    return (f"tls-port {port:d}\n"
            "bind 0.0.0.0\n"
            f"tls-cert-file {root}/server.crt\n"
            f"tls-key-file {root}/server.key\n"
            "tls-auth-clients no\n"
            'tls-protocols "TLSv1.2 TLSv1.3"\n')


def tls_port(app: str) -> int:
    """The TLS port the app's instance is configured with (0: none, one node's)."""
    try:
        text = conf_path(app).read_text()
    except FileNotFoundError:
        return 0
    found = re.search(r"^tls-port (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def instances() -> list[str]:
    """The apps with an instance on this node (their configuration files)."""
    return sorted(p.name[len("redis-"):-len(".conf")] for p in CONF_DIR.glob("redis-*.conf"))


def free_tls_port(app: str) -> int:
    """The lowest port from ``FIRST_TLS_PORT`` no other instance has (caller holds the
    server lock)."""
    taken = {tls_port(other) for other in instances() if other != app}
    port = FIRST_TLS_PORT
    while port in taken:
        port += 1
    return port


def write_tls(node_paths: Any, cert: str, key: str) -> bool:
    """The node's certificate and key, redis' alone; True when they changed."""
    redis = pwd.getpwnam("redis")
    root = make_dir(tls_dir(node_paths), redis.pw_uid, redis.pw_gid, 0o700)
    files = {root / "server.crt": (cert, 0o644), root / "server.key": (key, 0o600)}
    if all(p.is_file() and p.read_text() == text for p, (text, _) in files.items()):
        return False
    for path, (text, mode) in files.items():
        write_atomic(path, text, mode=mode, uid=redis.pw_uid, gid=redis.pw_gid)
    return True


def reload_tls(node_paths: Any) -> None:
    """Every running instance with a TLS port loads the certificate again (CONFIG SET
    of the same file reloads it); one holding all its connections is restarted."""
    root = tls_dir(node_paths)
    for app in instances():
        if tls_port(app) and is_active(app):
            as_admin_or_restart(app, node_paths, lambda r: r.call(
                "CONFIG", "SET", "tls-cert-file", f"{root}/server.crt",
                "tls-key-file", f"{root}/server.key"))


def as_admin_or_restart(app: str, node_paths: Any, work: Callable[["Resp"], Any]) -> None:
    """``work`` on the app's instance as the admin user; when the app holds all its
    connections, a restart instead, which does what ``reload_tls`` and
    ``drop_clients`` do (the certificate read again, every connection ended)."""
    try:
        with login(app, node_paths) as r:
            work(r)
    except SilverError as exc:
        if MAX_CLIENTS_ERROR not in exc.message:
            raise
        say(f"redis: {app} holds all its connections: restarting its instance")
        run(["systemctl", "restart", unit(app)], what=f"restarting {unit(app)}")


def drop_clients(r: "Resp", app: str, admitted: set[str]) -> None:
    """End the connections to the app's instance from TCP addresses not in ``admitted``
    (its unix socket's are silver's own)."""
    for line in r.call("CLIENT", "LIST").decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        host = fields.get("addr", "").rpartition(":")[0]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue                    # the unix socket
        if host not in admitted:
            r.call("CLIENT", "KILL", "ID", fields["id"])
            say(f"redis: {app}'s connection from {host} ended (not admitted)")


def dropin_text(app: str) -> str:
    """The template's unit, in the app's slice, writing only its own directories."""
    from silverlining.node import slices
    return f"""# Generated by silver-node: the Redis of app {app}
[Service]
Slice={slices.slice_name(app)}
ReadWritePaths=
ReadWritePaths={data_dir(app)} {socket_dir(app)} -/run/redis-{app}
"""


def is_active(app: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", unit(app)]).returncode == 0


def start_instance(app: Any, node_paths: Any, password: str, port: int = 0) -> None:
    """The app's redis-server running with its current limits (restarted when they
    changed: its data is saved and loaded again), on a services node with its TLS
    port too."""
    from silverlining.node import slices
    name = app.app_name
    gid = grp.getgrnam(app_user(name)).gr_gid
    redis_gid = grp.getgrnam("redis").gr_gid
    redis_uid = pwd.getpwnam("redis").pw_uid
    make_dir(data_dir(name), redis_uid, redis_gid, 0o750)
    make_dir(socket_dir(name).parent, 0, 0, 0o755)
    make_dir(socket_dir(name), redis_uid, gid, 0o2750)
    tmpfiles = Path(node_paths.TMPFILES) / f"silverlining-redis-{name}.conf"
    entry = (f"# Managed by silver-node: the Redis socket directory of app {name}\n"
             f"d {socket_dir(name)} 2750 redis {app_user(name)} -\n")
    if not tmpfiles.is_file() or tmpfiles.read_text() != entry:
        write_atomic(tmpfiles, entry)
    changed = slices.install(name, app.limits)
    text = conf_text(name, app.limits, password, admin_password(node_paths),
                     tls_conf(port, node_paths))
    path = conf_path(name)
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text, mode=0o640, gid=redis_gid)
        changed = True
    dropin = SYSTEMD / f"{unit(name)}.d" / "silverlining.conf"
    if not dropin.is_file() or dropin.read_text() != dropin_text(name):
        make_dir(dropin.parent, 0, 0, 0o755)
        write_atomic(dropin, dropin_text(name))
        changed = True
    if changed:
        run(["systemctl", "daemon-reload"], what="reloading systemd")
    if changed and is_active(name):
        say(f"redis: restarting {unit(name)} with its new settings")
        run(["systemctl", "restart", unit(name)], what=f"restarting {unit(name)}")
    else:
        run(["systemctl", "enable", "--now", "--quiet", unit(name)],
            what=f"starting {unit(name)}")
    wait_until(lambda: socket_path(name).exists(), 60,
               failed=f"{unit(name)} did not make its socket")


@contextlib.contextmanager
def locked_out(app: str) -> Iterator[None]:
    """The app's processes cannot open its socket meanwhile (root still can). The
    directory stays setgid: a socket made meanwhile is the app's group's, for later."""
    os.chmod(socket_dir(app), 0o2700)
    try:
        yield
    finally:
        os.chmod(socket_dir(app), 0o2750)


@contextlib.contextmanager
def admin(app: Any, node_paths: Any) -> Iterator["Resp"]:
    """A connection to the app's instance as the admin user; when the app holds all its
    connections, the instance is restarted with the app locked out."""
    name = app.app_name
    try:
        conn = login(name, node_paths)
    except SilverError as exc:
        if MAX_CLIENTS_ERROR not in exc.message:
            raise
        say(f"redis: {name} holds all its {app.limits.redis_connections} connections: "
            "restarting its instance with the app kept out meanwhile")
        with locked_out(name):
            run(["systemctl", "restart", unit(name)], what=f"restarting {unit(name)}")
            with login(name, node_paths) as conn:
                yield conn
        return
    with conn:
        yield conn


def login(app: str, node_paths: Any) -> "Resp":
    conn = Resp(path=str(socket_path(app)))
    try:
        conn.call("AUTH", ADMIN, admin_password(node_paths))
    except BaseException:
        conn.__exit__()
        raise
    return conn


def scan_keys(r: "Resp", match: str = "*") -> Iterator[bytes]:
    """The selected database's keys, by SCAN, so the server is never blocked."""
    cursor = b"0"
    while True:
        cursor, batch = r.call("SCAN", cursor, "MATCH", match, "COUNT", "1000")
        yield from batch
        if cursor == b"0":
            return


def admin_secret_path(node_paths: Any) -> Path:
    return Path(node_paths.ETC) / "redis-admin.secret"


def admin_password(node_paths: Any) -> str:
    """The node's Redis admin password (made once, root's alone)."""
    secret = admin_secret_path(node_paths)
    if not secret.is_file():
        write_atomic(secret, new_password() + "\n", mode=0o600)
    return secret.read_text().strip()


# --- the shared server apps used before ------------------------------------------------

def shared_users() -> list[str]:
    """The apps' users left in the shared server's ACL file."""
    lines = SHARED_ACL.read_text().splitlines() if SHARED_ACL.is_file() else []
    return [ln.split()[1] for ln in lines if ln.split()[:1] == ["user"]
            and ln.split()[1].startswith("sl-")]


def retire_shared_server() -> None:
    """The package's own redis-server (port 6379, open to every local user on a fresh
    install) stays stopped once no app's keys are left in it."""
    if shared_users():
        return
    if subprocess.run(["systemctl", "is-enabled", "--quiet", SHARED_UNIT]).returncode == 0 \
            or subprocess.run(["systemctl", "is-active", "--quiet", SHARED_UNIT]).returncode == 0:
        say("redis: the shared redis-server is not used by any app: stopped and disabled")
        run(["systemctl", "disable", "--now", "--quiet", SHARED_UNIT],
            what=f"stopping {SHARED_UNIT}")


def migrate_shared_keys(app: str, node_paths: Any) -> int:
    """Move the app's keys (``APP:*``, database 0) from the shared server into its own
    instance without the prefix. The app's user there goes first (its connections
    are closed), so nothing the running version writes meanwhile is lost silently."""
    if app_user(app) not in shared_users():
        return 0
    run(["systemctl", "start", SHARED_UNIT], what=f"starting {SHARED_UNIT}")
    prefix = f"{app}:".encode()
    moved = 0
    with Resp(address=SHARED_ADDRESS) as old, login(app, node_paths) as new:
        old.call("AUTH", ADMIN, admin_password(node_paths))
        old.call("ACL", "DELUSER", app_user(app))
        lines = [ln for ln in SHARED_ACL.read_text().splitlines()
                 if ln.split()[:2] != ["user", app_user(app)]]
        write_atomic(SHARED_ACL, "\n".join(lines) + "\n", mode=0o640,
                     gid=grp.getgrnam("redis").gr_gid)
        keys = list(scan_keys(old, f"{app}:*"))
        for key in keys:
            payload = old.call("DUMP", key)
            if payload is None:
                continue
            ttl = old.call("PTTL", key)
            new.call("RESTORE", key[len(prefix):], str(max(int(ttl), 0)), payload, "REPLACE")
            moved += 1
        for start in range(0, len(keys), 500):
            old.call("UNLINK", *keys[start:start + 500])
    return moved


def repoint_versions(app: str, env: dict[str, str]) -> None:
    """Every kept version's environment names the app's own instance, and its running
    units are restarted to read it: a rollback, or the old version when this deploy
    fails its gate, finds its keys."""
    from silverlining.node._env import repoint_versions as repoint
    gid = grp.getgrnam(app_user(app)).gr_gid
    units = []
    for version in repoint(app, "CONFIG_REDIS_URL", ("CONFIG_REDIS_",), env, gid):
        units += [f"silver-{app}-{version}.service", f"silver-{app}-{version}.process-*"]
    if units:
        run(["systemctl", "try-restart", *units], what="restarting the app's running units")


# --- wire and environment -----------------------------------------------------------

def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Resp:
    """A minimal Redis client (RESP2 over a unix socket or TCP): commands in, Python
    values out."""

    def __init__(self, path: str | None = None, address: tuple[str, int] | None = None,
                 timeout: float = 30) -> None:
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            try:
                self.sock.connect(path)
            except BaseException:
                self.sock.close()
                raise
        else:
            self.sock = socket.create_connection(address or SHARED_ADDRESS, timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> "Resp":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str | bytes) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        try:
            self.sock.sendall(b"*%d\r\n" % len(parts)
                              + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        except OSError:
            pass            # closed on us: its reason (max clients) is waiting to be read
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise SilverError(f"redis: {rest.decode(errors='replace')}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise OSError(f"unexpected reply from redis: {line[:40]!r}")


def instance_env(creds: dict[str, str]) -> dict[str, str]:
    """CONFIG_REDIS_* of the app's own instance: its socket, URL, login, database 0,
    and an empty prefix (apps written for the shared server prefixed their keys)."""
    path, user, password = creds["socket"], creds["user"], creds["password"]
    return {
        "CONFIG_REDIS_SOCKET": path,
        "CONFIG_REDIS_DB": creds.get("db") or "0",
        "CONFIG_REDIS_URL": (f"unix://{quote(user, safe='')}:{quote(password, safe='')}@"
                             f"{path}?db={creds.get('db') or '0'}"),
        "CONFIG_REDIS_USER": user,
        "CONFIG_REDIS_PASSWORD": password,
        "CONFIG_REDIS_PREFIX": "",
    }


def remote_env(creds: dict[str, str]) -> dict[str, str]:
    """CONFIG_REDIS_* of an instance on a services node: a ``rediss://`` URL that makes
    redis-py (and what reads its URLs) verify the server against silver's CA, the
    certificate naming the address connected to; the CA's path alone too."""
    user, password, ca = creds["user"], creds["password"], creds["ssl_ca"]
    query = urlencode({"ssl_cert_reqs": "required", "ssl_ca_certs": ca,
                       "ssl_check_hostname": "true"}, safe="/")
    return {
        "CONFIG_REDIS_HOST": creds["host"],
        "CONFIG_REDIS_PORT": creds["port"],
        "CONFIG_REDIS_DB": creds["db"],
        "CONFIG_REDIS_URL": (f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@"
                             f"{creds['host']}:{creds['port']}/{creds['db']}?{query}"),
        "CONFIG_REDIS_USER": user,
        "CONFIG_REDIS_PASSWORD": password,
        "CONFIG_REDIS_SSL_CA": ca,
        "CONFIG_REDIS_PREFIX": "",
    }


def redis_env(values: dict[str, str]) -> dict[str, str]:
    """CONFIG_REDIS_HOST/PORT/DB/URL, plus CONFIG_REDIS_USER and _PASSWORD when set:
    a server reached over TCP (development)."""
    auth = ""
    if values["password"]:
        auth = f"{quote(values['user'], safe='')}:{quote(values['password'], safe='')}@"
    env = {
        "CONFIG_REDIS_HOST": values["host"],
        "CONFIG_REDIS_PORT": values["port"],
        "CONFIG_REDIS_DB": values["db"],
        "CONFIG_REDIS_URL": f"redis://{auth}{values['host']}:{values['port']}/{values['db']}",
    }
    if values.get("user"):
        env["CONFIG_REDIS_USER"] = values["user"]
    if values["password"]:
        env["CONFIG_REDIS_PASSWORD"] = values["password"]
    return env


SERVICE = RedisService()
