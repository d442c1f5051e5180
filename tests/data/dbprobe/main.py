"""Reads and writes the app's services over HTTP, answering JSON, for the
service tests: PostgreSQL rows (and the connection's TLS: ``/pg/tls``), files,
MariaDB values (and the connection's TLS: ``/mysql/tls``), Redis values (and how its
URL connects: ``/redis/tls``), PostGIS,
and hogs for test_limits: connections (``/hog/pg``, ``/hog/mysql``, ``/hog/redis``)
and Redis memory (``/redis/fill``), and a try at another app's Redis socket
(``/redis/socket``). ``/pg/add`` and ``/pg/list`` take ``kept=1`` (the worker's
persistent connection) and ``/pg/add`` ``hold=SECONDS`` (a slow request), for the
fault tests of test_services_node.
Each database client is imported only by the requests that use it (the app
asks the node for the Debian package of the ones its app.ini names)."""

import contextlib
import json
import os
import socket
from urllib.parse import parse_qs

KEPT = {}       # the worker's persistent PostgreSQL connection (gunicorn: one per process)


def pg_connect(dbname=None):
    import psycopg2
    return psycopg2.connect(
        dbname=dbname or os.environ["CONFIG_PG_DBNAME"], user=os.environ["CONFIG_PG_USER"],
        password=os.environ["CONFIG_PG_PASSWORD"], host=os.environ["CONFIG_PG_HOST"],
        port=os.environ["CONFIG_PG_PORT"], connect_timeout=5)


@contextlib.contextmanager
def pg_transaction(q):
    """A cursor in a transaction on a new connection, or (``kept=1``) on the worker's
    persistent one, checked before it is used again as Django's ``CONN_HEALTH_CHECKS``
    and SQLAlchemy's ``pool_pre_ping`` do: one the services node's restart broke is
    replaced instead of failing the request."""
    if q.get("kept") != "1":
        with pg_connect() as conn, conn.cursor() as cur:
            yield cur
        return
    import psycopg2
    conn = KEPT.get("conn")
    if conn is not None:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.rollback()
        except psycopg2.Error:
            conn.close()
            conn = None
    if conn is None:
        conn = KEPT["conn"] = pg_connect()
    with conn, conn.cursor() as cur:
        yield cur


def pg(path, q):
    if path == "/pg/add":
        with pg_transaction(q) as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, v text)")
            cur.execute("INSERT INTO items (v) VALUES (%s)", (q["v"],))
            if "hold" in q:     # in flight, not yet committed, for that long
                cur.execute("SELECT pg_sleep(%s)", (float(q["hold"]),))
        return {"added": q["v"], "node": socket.gethostname()}
    if path == "/pg/list":
        with pg_transaction(q) as cur:
            cur.execute("SELECT to_regclass('items') IS NOT NULL")
            if not cur.fetchone()[0]:
                return {"rows": []}
            cur.execute("SELECT v FROM items ORDER BY id")
            return {"rows": [r[0] for r in cur.fetchall()], "node": socket.gethostname()}
    if path == "/pg/url":
        import psycopg2
        with psycopg2.connect(os.environ["CONFIG_PG_URL"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            return {"user": cur.fetchone()[0]}
    if path == "/pg/tls":
        import psycopg2
        with psycopg2.connect(os.environ["CONFIG_PG_URL"], connect_timeout=5) as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            on, version = cur.fetchone()
            return {"ssl": on, "version": version,
                    "sslmode": conn.get_dsn_parameters().get("sslmode")}
    if path == "/pg/other":
        try:
            pg_connect(q["dbname"]).close()
        except Exception as exc:
            return {"connected": False, "error": str(exc).strip()}
        return {"connected": True}
    if path == "/pg/postgis":
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            row = cur.fetchone()
            cur.execute("SELECT ST_AsText(ST_MakePoint(1, 2))")
            return {"postgis": row and row[0], "point": cur.fetchone()[0]}
    return None


def files(path, q):
    root = os.environ["CONFIG_FILES"]
    if path == "/files/write":
        with open(os.path.join(root, q["name"]), "w") as fh:
            fh.write(q["v"])
        return {"written": q["name"]}
    if path == "/files/list":
        return {"files": {n: open(os.path.join(root, n)).read() for n in sorted(os.listdir(root))}}
    return None


def mysql(path, q):
    import pymysql
    # on a services node: TLS, the server's certificate checked against silver's CA
    ca = os.environ.get("CONFIG_MYSQL_SSL_CA")
    tls = {"ssl_ca": ca, "ssl_verify_cert": True, "ssl_verify_identity": True} if ca else {}
    conn = pymysql.connect(
        host=os.environ["CONFIG_MYSQL_HOST"], port=int(os.environ["CONFIG_MYSQL_PORT"]),
        user=os.environ["CONFIG_MYSQL_USER"], password=os.environ["CONFIG_MYSQL_PASSWORD"],
        database=os.environ["CONFIG_MYSQL_DBNAME"], autocommit=True, **tls)
    with conn, conn.cursor() as cur:
        if path == "/mysql/tls":
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            return {"version": cur.fetchone()[1]}
        cur.execute("CREATE TABLE IF NOT EXISTS kv (k VARCHAR(100) PRIMARY KEY, v TEXT)")
        if path == "/mysql/set":
            cur.execute("REPLACE INTO kv VALUES (%s, %s)", (q["k"], q["v"]))
        cur.execute("SELECT v FROM kv WHERE k = %s", (q["k"],))
        row = cur.fetchone()
        return {"value": row and row[0]}


def redis(path, q):
    import redis as redis_lib
    client = redis_lib.Redis.from_url(os.environ["CONFIG_REDIS_URL"], socket_timeout=5)
    try:
        if path == "/redis/config":       # an admin command: refused
            return {"value": client.config_get("dir")}
        if path == "/redis/tls":          # how CONFIG_REDIS_URL connects (a services node)
            client.ping()
            kwargs = client.connection_pool.connection_kwargs
            return {"class": client.connection_pool.connection_class.__name__,
                    **{k: str(kwargs.get(k)) for k in ("ssl_cert_reqs", "ssl_ca_certs",
                                                       "ssl_check_hostname")}}
        if path == "/redis/scan":
            return {"keys": sorted(k.decode() for k in client.scan_iter(count=1000))}
        if path == "/redis/set":
            client.set(q["k"], q["v"])
        if path == "/redis/fill":           # 1 MB values until the server refuses one
            written, error = 0, None
            while written < int(q.get("max", "4096")):
                try:
                    client.set(f"fill:{written}", b"x" * (1 << 20))
                except redis_lib.exceptions.ResponseError as exc:
                    error = f"{type(exc).__name__}: {exc}"      # redis-py drops "OOM"
                    break
                written += 1
            return {"megabytes": written, "error": error}
        if path == "/redis/unfill":
            keys = list(client.scan_iter("fill:*", count=1000))
            return {"deleted": client.delete(*keys) if keys else 0}
        return {"value": (client.get(q["k"]) or b"").decode() or None}
    except redis_lib.exceptions.RedisError as exc:
        return {"error": str(exc)}


def redis_socket(q):
    """Connect to any unix socket (another app's Redis) and send PING."""
    import socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    try:
        sock.connect(q["sock"])
        try:
            sock.sendall(b"PING\r\n")
        except OSError:
            pass            # a full server says why, and closes: read that
        return {"connected": True, "answer": sock.recv(100).decode(errors="replace")}
    except OSError as exc:
        return {"connected": False, "error": str(exc)}
    finally:
        sock.close()


def hog(path, q):
    """Open connections as the app's own login until the server refuses one; a thread
    holds them for ``hold`` seconds (the connection-hog attack of test_limits)."""
    import threading
    import time
    held, error = [], None
    while len(held) < 1000:
        try:
            if path == "/hog/pg":
                held.append(pg_connect())
            elif path == "/hog/redis":
                import redis as redis_lib
                client = redis_lib.Redis.from_url(os.environ["CONFIG_REDIS_URL"],
                                                  single_connection_client=True,
                                                  socket_timeout=5)
                client.ping()
                held.append(client)
            else:
                import pymysql
                held.append(pymysql.connect(
                    host=os.environ["CONFIG_MYSQL_HOST"],
                    port=int(os.environ["CONFIG_MYSQL_PORT"]),
                    user=os.environ["CONFIG_MYSQL_USER"],
                    password=os.environ["CONFIG_MYSQL_PASSWORD"],
                    database=os.environ["CONFIG_MYSQL_DBNAME"], connect_timeout=5))
        except Exception as exc:
            error = str(exc).strip()
            break

    def release():
        time.sleep(float(q.get("hold", "60")))
        for conn in held:
            conn.close()
    threading.Thread(target=release, daemon=True).start()
    return {"held": len(held), "error": error}


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/health":
        body = {"ok": True}
    elif path == "/secret":
        from silverlining.secret import get_secret
        body = {"default": get_secret(), "other": get_secret("other")}
    elif path == "/env":
        body = {k: v for k, v in os.environ.items() if k.startswith("CONFIG_")}
    elif path.startswith("/pg/"):
        body = pg(path, q)
    elif path.startswith("/files/"):
        body = files(path, q)
    elif path.startswith("/mysql/"):
        body = mysql(path, q)
    elif path == "/redis/socket":
        body = redis_socket(q)
    elif path.startswith("/redis/"):
        body = redis(path, q)
    elif path in ("/hog/pg", "/hog/mysql", "/hog/redis"):
        body = hog(path, q)
    else:
        body = None
    status = "200 OK" if body is not None else "404 Not Found"
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
