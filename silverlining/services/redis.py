"""``service.redis``: Redis keys of one app (``CONFIG_REDIS_*``).

On a node the server is the OS's redis-server with an ACL file we own: the
``default`` user is off, an admin user (password in a root-only file) is
what the node uses, and each app has a user ``sl-APP`` whose password is
stored only as a sha256 hash and who may touch only keys and channels
starting with ``APP:``. So apps share database 0 and cannot read each
other's keys. The node talks RESP itself (no password in an argv).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

from silverlining.errors import SilverError
from silverlining.node.base import apt_install, run, say, wait_until, write_atomic
from silverlining.services.base import Service
from silverlining.services._system import new_password, server_lock, systemctl_start

KEYS = ("host", "port", "db", "password", "user")
HOST, PORT = "127.0.0.1", 6379
REDIS_CONF = Path("/etc/redis/redis.conf")
ACL_FILE = Path("/etc/redis/silverlining-users.acl")
ADMIN = "silver-admin"
# what an app may run: everything on its own keys, nothing that manages the server
# or reaches every key at once (KEYS, FLUSHALL, ...), nor SCAN and RANDOMKEY, which
# would show other apps' key names (a session id can be one)
APP_RULES = "+@all -@admin -@dangerous -scan -randomkey"


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
        return redis_env({
            "host": creds.get("host") or "127.0.0.1",
            "port": creds.get("port") or "6379",
            "db": creds.get("db") or "0",
            "password": creds.get("password", ""),
            "user": creds.get("user", ""),
            "prefix": creds.get("prefix", ""),
        })

    # --- node -------------------------------------------------------------------

    def install(self, app: Any, node_paths: Any) -> None:
        path = self.credentials_path(app, node_paths)
        if path.is_file() and self.read_credentials(app, node_paths).get("rules") == APP_RULES:
            try:                    # ready: the server knows the app's user, current rules
                with admin(node_paths) as r:
                    if r.call("ACL", "GETUSER", app_user(app.app_name)) is not None:
                        return
            except (OSError, SilverError):
                pass
        with server_lock("redis"):
            self._install(app, node_paths)

    def _install(self, app: Any, node_paths: Any) -> None:
        self._setup_server(node_paths)
        path = self.credentials_path(app, node_paths)
        creds = self.read_credentials(app, node_paths) if path.is_file() else {}
        # an existing password stays: kept versions (rollback) were started with it
        password = creds.get("password") or new_password()
        set_acl_user(app_user(app.app_name),
                     f"on #{sha256(password)} resetkeys ~{app.app_name}:* "
                     f"resetchannels &{app.app_name}:* {APP_RULES}")
        with admin(node_paths) as r:
            r.call("ACL", "LOAD")
        self.write_credentials(app, node_paths, {
            "host": HOST, "port": str(PORT), "db": "0", "user": app_user(app.app_name),
            "password": password, "prefix": f"{app.app_name}:", "rules": APP_RULES})

    def _setup_server(self, node_paths: Any) -> None:
        """redis-server installed, reading our ACL file, with the admin user."""
        apt_install(self.packages)
        secret = admin_secret_path(node_paths)
        if not secret.is_file():
            write_atomic(secret, new_password() + "\n", mode=0o600)
        set_acl_user("default", "off resetkeys resetchannels -@all")
        set_acl_user(ADMIN, f"on #{sha256(read_secret(secret))} ~* &* +@all")
        conf = REDIS_CONF.read_text()
        line = f"aclfile {ACL_FILE}"
        if line not in conf.splitlines():
            say("redis: per-app users (ACL file), the default user off")
            with open(REDIS_CONF, "a") as fh:
                fh.write(f"\n# silverlining: users per app\n{line}\n")
            systemctl_start("redis-server")
            run(["systemctl", "restart", "redis-server"], what="restarting redis-server")
        else:
            systemctl_start("redis-server")

        def up() -> bool:
            try:
                with admin(node_paths) as r:
                    r.call("PING")
            except (OSError, SilverError):
                return False
            return True
        wait_until(up, 60, failed="redis-server did not come up")

    def clear(self, app: Any, node_paths: Any) -> None:
        self.install(app, node_paths)
        with admin(node_paths) as r:
            keys = list(app_keys(r, app.app_name))
            for start in range(0, len(keys), 500):
                r.call("UNLINK", *keys[start:start + 500])
        say(f"redis: {len(keys)} keys of {app.app_name} deleted")

    def backup(self, app: Any, node_paths: Any, dest_dir: Path) -> None:
        """One JSON line per key: its name without the app's prefix (so the backup
        can go back into another app with ``--force-app``), its remaining time
        to live, and the DUMP payload."""
        self.install(app, node_paths)
        prefix = len(f"{app.app_name}:")
        with admin(node_paths) as r, open(dest_dir / "keys.jsonl", "w") as out:
            for key in app_keys(r, app.app_name):
                payload = r.call("DUMP", key)
                if payload is None:          # expired meanwhile
                    continue
                ttl = r.call("PTTL", key)
                out.write(json.dumps({"key": b64(key[prefix:]), "ttl": max(int(ttl), 0),
                                      "dump": b64(payload)}) + "\n")

    def restore(self, app: Any, node_paths: Any, src_dir: Path) -> None:
        self.clear(app, node_paths)
        prefix = f"{app.app_name}:".encode()
        with admin(node_paths) as r, open(src_dir / "keys.jsonl") as dump:
            for line in dump:
                item = json.loads(line)
                r.call("RESTORE", prefix + base64.b64decode(item["key"]),
                       str(int(item["ttl"])), base64.b64decode(item["dump"]), "REPLACE")


def app_user(app: str) -> str:
    return f"sl-{app}"


def app_keys(r: "Resp", app: str):
    """Every key of the app (``APP:*``), by SCAN, so the server is never blocked."""
    cursor = b"0"
    while True:
        cursor, batch = r.call("SCAN", cursor, "MATCH", f"{app}:*", "COUNT", "1000")
        yield from batch
        if cursor == b"0":
            return


def admin_secret_path(node_paths: Any) -> Path:
    return Path(node_paths.ETC) / "redis-admin.secret"


def read_secret(path: Path) -> str:
    return path.read_text().strip()


def set_acl_user(user: str, rules: str) -> None:
    """Put ``user USER RULES`` into our ACL file (replacing that user's line);
    root-owned, readable by the redis group only, since it holds password hashes."""
    lines = ACL_FILE.read_text().splitlines() if ACL_FILE.is_file() else []
    lines = [ln for ln in lines if ln.split()[:2] != ["user", user]] + [f"user {user} {rules}"]
    write_atomic(ACL_FILE, "\n".join(lines) + "\n", mode=0o640, gid=grp.getgrnam("redis").gr_gid)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Resp:
    """A minimal Redis client (RESP2 over TCP): commands in, Python values out."""

    def __init__(self, host: str = HOST, port: int = PORT, timeout: float = 30) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> "Resp":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str | bytes) -> Any:
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        self.sock.sendall(b"*%d\r\n" % len(parts)
                          + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
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


def admin(node_paths: Any) -> Resp:
    """A connection logged in as the admin user."""
    conn = Resp()
    try:
        conn.call("AUTH", ADMIN, read_secret(admin_secret_path(node_paths)))
    except BaseException:
        conn.__exit__()
        raise
    return conn


def redis_env(values: dict[str, str]) -> dict[str, str]:
    """CONFIG_REDIS_HOST/PORT/DB/URL, plus CONFIG_REDIS_USER, _PASSWORD and _PREFIX
    when set (on a node: the app's ACL user, whose keys must start with the prefix)."""
    auth = ""
    if values["password"]:
        auth = f"{quote(values['user'], safe='')}:{quote(values['password'], safe='')}@"
    env = {
        "CONFIG_REDIS_HOST": values["host"],
        "CONFIG_REDIS_PORT": values["port"],
        "CONFIG_REDIS_DB": values["db"],
        "CONFIG_REDIS_URL": f"redis://{auth}{values['host']}:{values['port']}/{values['db']}",
    }
    for key in ("user", "prefix"):
        if values.get(key):
            env[f"CONFIG_REDIS_{key.upper()}"] = values[key]
    if values["password"]:
        env["CONFIG_REDIS_PASSWORD"] = values["password"]
    return env


SERVICE = RedisService()
