"""The cases of the suite (issue 14's targets, tightened by issue 21 where it set them)
and the floors they are compared with.

Each case runs its measurement ``ctx.runs`` times, interleaving the variants it
compares so they share whatever else loads the machine, and returns figures.
Times are wall-clock from the command's start: for a deploy or a rollback
until the node serves the new marker at /bench-marker (polled over HTTP every
10 ms), otherwise until the command ends.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.env import REPO, BenchEnv, BenchError, probe, set_marker
from bench.load import PacedLoad, WrkResult, parse_wrk, percentile, wrk_command
from bench.report import Figure, Floor

HELLO_HOST = "hello.bench"
BIG_LIB_CACHE = Path("/var/tmp/silverlining-bench/lib-python-200M")
PROXY_PORT = 18080


@dataclass
class Context:
    env: BenchEnv
    runs: int
    nodes: list[str]
    floors: dict[str, Floor] = field(default_factory=dict)
    apps: dict[str, Path] = field(default_factory=dict)     # location -> deployed copy
    results: dict[str, list[float]] = field(default_factory=dict)  # shared between cases
    counter: int = 0

    @property
    def first(self) -> str:
        return self.nodes[0]

    @property
    def address(self) -> str:
        return self.env.nodes[self.first]

    def marker(self) -> str:
        self.counter += 1
        return f"bench-{os.getpid()}-{self.counter}"

    def floor(self, *names: str) -> Floor:
        """One floor, or several added run by run (the bare costs a step adds up)."""
        parts = [self.floors[n] for n in names]
        runs = min(len(p.values) for p in parts)
        return Floor("+".join(names), [sum(p.values[i] for p in parts) for i in range(runs)])

    def deployed(self, location: str, nodes: list[str] | None = None) -> Path:
        """A hello copy live at ``location`` (deployed once, untimed, on first use),
        named after the location's first label (``rollback.bench``: app rollback)."""
        if location not in self.apps:
            app = self.env.hello_copy(location.split(".")[0], several_nodes=bool(nodes))
            self.env.silver(*self.env.update_args(app, location, nodes or [self.first]))
            self.apps[location] = app
        return self.apps[location]

    def redeploy(self, location: str) -> tuple[float, str]:
        """A one-file change (a new marker in main.py) deployed to the first node;
        seconds until it is served there, and the command's output."""
        app = self.deployed(location)
        marker = self.marker()
        set_marker(app, marker)
        return self.env.timed_until(self.env.update_args(app, location, [self.first]),
                                    self.address, location, marker)


def bytes_sent(output: str) -> float:
    """rsync's bytes sent, as ``silver -v update`` reports them (all uploads added)."""
    found = re.findall(r"rsync: (\d+) bytes sent", output)
    if not found:
        raise BenchError(f"no 'rsync: N bytes sent' in the output of silver -v update:\n{output}")
    return float(sum(int(n) for n in found))


# --- floors ---------------------------------------------------------------------------

GUNICORN_START = r"""
import os, socket, subprocess, sys, tempfile, time
d = tempfile.mkdtemp()
open(os.path.join(d, "floorapp.py"), "w").write(
    "def application(e, r):\n    r('200 OK', [('Content-Length', '2')])\n    return [b'ok']\n")
sock = os.path.join(d, "g.sock")
start = time.monotonic()
p = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", "unix:" + sock,
                      "--workers", "2", "floorapp:application"], cwd=d,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while time.monotonic() - start < 30:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            if b" 200 " in s.recv(100)[:16]:
                print(time.monotonic() - start)
                break
        except OSError:
            time.sleep(0.005)
        finally:
            s.close()
    else:
        sys.exit("gunicorn did not answer within 30 s")
finally:
    p.terminate()
    p.wait()
"""


def measure_floors(ctx: Context) -> list[Floor]:
    """The bare costs, measured now: what no deploy can beat on this machine today."""
    env, node = ctx.env, ctx.first
    python, ssh_new, ssh_exec, rsync, gunicorn = ([] for _ in range(5))
    env.as_root(node, "mkdir -p /tmp/bench-floor")
    sample = REPO / "examples" / "hello" / "main.py"
    rsync_argv = ["rsync", "-a", "-e", " ".join(env.ssh_argv()), str(sample),
                  f"root@{ctx.address}:/tmp/bench-floor/"]
    timed_run(rsync_argv)
    client = env.connect(node, "silver")
    try:
        for _ in range(ctx.runs):
            python.append(timed_run([sys.executable, "-c", "pass"]))
            start = time.monotonic()
            fresh = env.connect(node, "silver")
            fresh.exec_command("true")[1].channel.recv_exit_status()
            fresh.close()
            ssh_new.append(time.monotonic() - start)
            start = time.monotonic()
            client.exec_command("true")[1].channel.recv_exit_status()
            ssh_exec.append(time.monotonic() - start)
            rsync.append(timed_run(rsync_argv))
            gunicorn.append(float(env.as_root(node, "python3 -", stdin=GUNICORN_START)))
    finally:
        client.close()
    floors = [Floor("python start", python), Floor("ssh", ssh_new),
              Floor("ssh exec", ssh_exec), Floor("rsync", rsync),
              Floor("gunicorn start", gunicorn)]
    ctx.floors.update((f.name, f) for f in floors)
    return floors


def timed_run(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


# --- cases ----------------------------------------------------------------------------

def case_cli(ctx: Context) -> list[Figure]:
    """CLI start (``silver --help``) and ``silver query NODE`` on a node with an app."""
    ctx.deployed(HELLO_HOST)
    start, query = [], []
    for _ in range(ctx.runs):
        start.append(ctx.env.silver("--help")[0])
        query.append(ctx.env.silver("query", ctx.first)[0])
    return [Figure("cli", "CLI start (silver --help)", start, floor=ctx.floor("python start"),
                   target=0.15),
            Figure("cli", "silver query NODE", query, floor=ctx.floor("ssh"), target=0.3)]


def case_redeploy(ctx: Context) -> list[Figure]:
    """examples/hello redeployed: one file changed (until served), nothing changed,
    and forced (when the CLI has ``update --force``); bytes rsync sent."""
    app = ctx.deployed(HELLO_HOST)
    force = ctx.env.supports("--force", "update")
    one, sent, same, forced = [], [], [], []
    for _ in range(ctx.runs):
        seconds, out = ctx.redeploy(HELLO_HOST)
        one.append(seconds)
        sent.append(bytes_sent(out))
        same.append(ctx.env.silver(*ctx.env.update_args(app, HELLO_HOST, [ctx.first]))[0])
        if force:
            forced.append(ctx.env.silver(*ctx.env.update_args(
                app, HELLO_HOST, [ctx.first], "--force"))[0])
    ctx.results["redeploy"] = one
    size = (app / "main.py").stat().st_size
    return [
        Figure("redeploy", "one-file redeploy, until served", one,
               floor=ctx.floor("ssh", "rsync", "gunicorn start"), target=0.9),
        Figure("redeploy", "bytes sent for it (floor: the file's size)", sent, unit="B",
               floor=Floor("main.py", [float(size)], "B")),
        Figure("redeploy", "no-change redeploy", same, floor=ctx.floor("ssh", "rsync"),
               target=0.3),
        Figure("redeploy", "no-change redeploy with --force", forced,
               floor=ctx.floor("ssh", "rsync", "gunicorn start"),
               unsupported="" if force else "not supported"),
    ]


def prev_state(query: str, location: str) -> str | None:
    """The process state ``silver query`` shows for the version that is ``prev at
    LOCATION`` (``running``, ``ok`` once stopped), None if none is."""
    for line in query.splitlines():
        if f"prev at {location}" in line:
            fields = line.split()
            return fields[3] if len(fields) > 3 else None
    return None


def wait_prev_stopped(ctx: Context, location: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if prev_state(ctx.env.silver("query", ctx.first)[1].stdout, location) != "running":
            return True
        time.sleep(1)
    return False


def case_rollback(ctx: Context) -> list[Figure]:
    """``silver activate LOCATION prev``: warm (right after a deploy, the previous
    version still draining) and cold (after ``silver query`` shows it stopped)."""
    location = "rollback.bench"
    app = ctx.deployed(location)
    activate = ["activate", location, "prev", "--node", ctx.first]
    warm, cold = [], []
    cold_note = ""
    for _ in range(ctx.runs):
        old = ctx.marker()
        set_marker(app, old)
        ctx.env.silver(*ctx.env.update_args(app, location, [ctx.first]))
        ctx.redeploy(location)
        warm.append(ctx.env.timed_until(activate, ctx.address, location, old)[0])
        # now `old` is live; a new deploy makes it prev, and its process stops after the drain
        old = probe(ctx.address, location) or ""
        ctx.redeploy(location)
        if not wait_prev_stopped(ctx, location):
            cold_note = "previous version never stopped"
            continue
        cold.append(ctx.env.timed_until(activate, ctx.address, location, old)[0])
    return [
        Figure("rollback", "activate prev, previous version running (warm)", warm,
               floor=ctx.floor("ssh"), target=0.25),
        Figure("rollback", "activate prev, previous version stopped (cold)", cold,
               floor=ctx.floor("ssh", "gunicorn start"), target=0.8,
               unsupported="" if cold else cold_note),
    ]


def case_setup_node(ctx: Context) -> list[Figure]:
    """``silver setup-node`` again on set-up nodes (0 changes): 1 node, then all at once."""
    one, many = [], []
    for _ in range(ctx.runs):
        one.append(ctx.env.silver("-y", "setup-node", ctx.first)[0])
        if len(ctx.nodes) > 1:
            many.append(ctx.env.silver("-y", "setup-node", *ctx.nodes)[0])
    figures = [Figure("setup-node", "setup-node second run (0 changes), 1 node", one,
                      floor=ctx.floor("ssh"), target=0.6)]
    if many:
        figures.append(Figure("setup-node", f"the same, {len(ctx.nodes)} nodes in parallel",
                              many, floor=Floor("1 node", one), target=1.5,
                              target_on="ratio"))
    return figures


def curve_sizes(most: int) -> list[int]:
    return sorted({n for n in (1, 4, most) if n <= most})


def case_curve(ctx: Context) -> list[Figure]:
    """A one-file redeploy to 1, 4 and N nodes in one ``silver update`` (wall time of
    the command), the app live on all N."""
    location = "curve.bench"
    ctx.deployed(location, ctx.nodes)
    sizes = curve_sizes(len(ctx.nodes))
    times: dict[int, list[float]] = {n: [] for n in sizes}
    app = ctx.apps[location]
    for _ in range(ctx.runs):
        for n in sizes:
            set_marker(app, ctx.marker())
            times[n].append(ctx.env.silver(*ctx.env.update_args(app, location,
                                                                ctx.nodes[:n]))[0])
    one = Floor("1 node", times[1])
    return [Figure("curve", f"update to {n} node{'s' if n > 1 else ''} in parallel",
                   times[n], floor=one if n > 1 else ctx.floor("ssh", "rsync", "gunicorn start"),
                   target=1.5 if n == 8 else None, target_on="ratio" if n > 1 else "value")
            for n in sizes]


def case_soak(ctx: Context, updates: int = 20, limit: float = 120.0) -> list[Figure]:
    """``updates`` consecutive one-file redeploys to all N nodes in one ``silver update``
    each (issue 21: none may hang). An update still running after ``limit`` seconds
    counts as a hang and is killed; a failed one stops the bench."""
    location = "soak.bench"
    ctx.deployed(location, ctx.nodes)
    app = ctx.apps[location]
    times, hangs = [], 0
    for _ in range(updates):
        set_marker(app, ctx.marker())
        try:
            times.append(ctx.env.silver(*ctx.env.update_args(app, location, ctx.nodes),
                                        timeout=limit)[0])
        except subprocess.TimeoutExpired:
            hangs += 1
    n = len(ctx.nodes)
    return [Figure("soak", f"{updates} consecutive updates to {n} nodes: each", times),
            Figure("soak", f"updates to {n} nodes that hung (over {limit:.0f} s, of {updates})",
                   [float(hangs)], unit="count", target=0)]


def live_socket(ctx: Context, app: str, location: str) -> str:
    """The unix socket of the version live at ``location`` (from ``silver query``)."""
    for line in ctx.env.silver("query", ctx.first)[1].stdout.splitlines():
        if f"live at {location}" in line:
            return f"/run/silverlining/apps/{app}/{line.split()[0]}.sock"
    raise BenchError(f"silver query shows nothing live at {location}")


def case_throughput(ctx: Context, seconds: int = 5) -> list[Figure]:
    """wrk inside the node, 8 keep-alive connections: through nginx (127.0.0.1:80,
    Host header) vs straight to the app's socket (systemd's socket proxy from a
    local TCP port). Both clients run at the same place so only the path differs."""
    ctx.deployed(HELLO_HOST)
    env, node = ctx.env, ctx.first
    env.as_root(node, "command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive "
                      "apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1")
    sock = live_socket(ctx, "hello", HELLO_HOST)
    pid = env.as_root(node, f"systemd-socket-activate -l 127.0.0.1:{PROXY_PORT} "
                            f"/lib/systemd/systemd-socket-proxyd {sock} >/dev/null 2>&1 "
                            "& echo $!").strip()
    nginx, direct, host = [], [], []
    try:
        time.sleep(0.5)
        for _ in range(ctx.runs):
            for url, into in (("http://127.0.0.1:80/bench-marker", nginx),
                              (f"http://127.0.0.1:{PROXY_PORT}/bench-marker", direct)):
                into.append(checked(url, env.as_root(node, shlex.join(
                    wrk_command(url, HELLO_HOST, seconds)))))
            url = f"http://{ctx.address}:80/bench-marker"
            host.append(checked(url, subprocess.run(
                wrk_command(url, HELLO_HOST, seconds), check=True, capture_output=True,
                text=True).stdout))
    finally:
        env.as_root(node, f"kill {pid}")
    return [
        Figure("throughput", "requests/s through nginx (floor: to the socket)",
               [r.requests_per_s for r in nginx], unit="req/s",
               floor=Floor("socket", [r.requests_per_s for r in direct], "req/s"),
               target=0.9, target_on="ratio", higher=True),
        Figure("throughput", "p99 latency through nginx (floor: to the socket)",
               [r.p99_ms for r in nginx], unit="ms",
               floor=Floor("socket", [r.p99_ms for r in direct], "ms")),
        Figure("throughput", "requests/s from the host's wrk through nginx",
               [r.requests_per_s for r in host], unit="req/s"),
    ]


def checked(url: str, output: str) -> WrkResult:
    result = parse_wrk(output)
    if result.errors:
        raise BenchError(f"wrk {url}: {result.errors} failed requests")
    return result


def case_load(ctx: Context, redeploys: int = 10, rate: float = 40.0) -> list[Figure]:
    """Failed requests and p99 of a steady paced load (new connection per request)
    during 10 consecutive one-file redeploys; the floor is the p99 of the same load
    for 5 s with nothing deploying."""
    ctx.deployed(HELLO_HOST)
    rest = PacedLoad(ctx.address, HELLO_HOST, rate=rate)
    rest.start()
    time.sleep(5)
    rest.stop()
    busy = PacedLoad(ctx.address, HELLO_HOST, rate=rate)
    busy.start()
    try:
        time.sleep(1)
        for _ in range(redeploys):
            ctx.redeploy(HELLO_HOST)
        time.sleep(1)
    finally:
        busy.stop()
    if not busy.latencies or not rest.latencies:
        raise BenchError(f"the load got no answer: {busy.failures[:3] or rest.failures[:3]}")
    total = len(busy.latencies) + len(busy.failures)
    return [
        Figure("load", f"failed requests over {redeploys} redeploys (of {total})",
               [float(len(busy.failures))], unit="count", target=0),
        Figure("load", f"p99 over {redeploys} redeploys, {rate:.0f} req/s "
                       "(floor: same load, no deploy)",
               [percentile(busy.latencies, 0.99)], unit="ms",
               floor=Floor("at rest", [percentile(rest.latencies, 0.99)], "ms"), target=100),
    ]


def big_lib(size_mb: int = 200) -> Path:
    """~200 MB of libraries as an app's lib/python holds them: 5,000 small modules in
    50 packages and 8 big binary files. Made once, kept in /var/tmp for later runs."""
    done = BIG_LIB_CACHE / ".complete"
    if done.exists():
        return BIG_LIB_CACHE
    shutil.rmtree(BIG_LIB_CACHE, ignore_errors=True)
    small, big = 8 * 1024, (size_mb - 40) * 1024 * 1024 // 8
    for package in range(50):
        pkg = BIG_LIB_CACHE / f"benchlib{package:02d}"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        for module in range(100):
            line = f"VALUE_{package}_{module} = {os.urandom(24).hex()!r}\n"
            (pkg / f"mod{module:03d}.py").write_text(line * (small // len(line)))
    for n in range(8):
        (BIG_LIB_CACHE / "benchlib00" / f"_native{n}.so").write_bytes(os.urandom(big))
    done.touch()
    return BIG_LIB_CACHE


def case_bigapp(ctx: Context) -> list[Figure]:
    """hello with ~200 MB in lib/python: its first deploy (reported, no target) and
    a one-file redeploy until served, against the same redeploy of plain hello."""
    location = "bigapp.bench"
    lib = big_lib()
    app = ctx.env.hello_copy("bigapp")
    shutil.copytree(lib, app / "lib" / "python", copy_function=os.link)
    first, out = ctx.env.timed_until(ctx.env.update_args(app, location, [ctx.first]),
                                     ctx.address, location, "start")
    ctx.apps[location] = app
    once = [bytes_sent(out)]
    times, sent = [], []
    for _ in range(ctx.runs):
        seconds, out = ctx.redeploy(location)
        times.append(seconds)
        sent.append(bytes_sent(out))
    plain = ctx.results.get("redeploy")
    return [
        Figure("bigapp", "first deploy, 200 MB lib/python (until served)", [first]),
        Figure("bigapp", "bytes sent by that first deploy", once, unit="B"),
        Figure("bigapp", "one-file redeploy, 200 MB lib/python, until served", times,
               floor=Floor("hello one-file", plain) if plain
               else ctx.floor("ssh", "rsync", "gunicorn start")),
        Figure("bigapp", "bytes sent for it", sent, unit="B"),
    ]


DEPS_WHEELS = Path(os.environ.get("SILVER_LOCAL_CACHE") or "/var/cache/silverlining-test") \
    / "wheels-deps"


def case_deps(ctx: Context) -> list[Figure]:
    """hello declaring psycopg[binary], pillow and pydantic (from scripts/test's local
    wheels): the dependency step of a one-file redeploy (the set unchanged, as
    ``silver -v update`` times it), and that redeploy until served."""
    if not list(DEPS_WHEELS.glob("pillow-*.whl")):
        raise BenchError(f"no wheels in {DEPS_WHEELS}: scripts/test downloads them")
    location = "deps.bench"
    app = ctx.env.hello_copy("deps")
    (app / "requirements.txt").write_text(f"--no-index\n--find-links {DEPS_WHEELS}\n"
                                          "psycopg[binary]\npillow\npydantic\n")
    ctx.env.silver(*ctx.env.update_args(app, location, [ctx.first]))
    ctx.apps[location] = app
    step, times, sent = [], [], []
    for _ in range(ctx.runs):
        seconds, out = ctx.redeploy(location)
        found = re.findall(r"dependency step: ([0-9.]+) ms", out)
        if not found or "sending dependency set" in out:
            raise BenchError(f"the redeploy did not reuse the dependency set:\n{out}")
        step.append(float(found[0]))
        times.append(seconds)
        sent.append(bytes_sent(out))
    plain = ctx.results.get("redeploy")
    return [
        Figure("deps", "dependency step of a redeploy, requirements unchanged", step,
               unit="ms", target=30),
        Figure("deps", "one-file redeploy with psycopg, pillow, pydantic, until served",
               times, floor=Floor("hello one-file", plain) if plain
               else ctx.floor("ssh", "rsync", "gunicorn start")),
        Figure("deps", "bytes sent for it", sent, unit="B"),
    ]


def case_balancer(ctx: Context, rate: float = 40.0, seconds: float = 5.0) -> list[Figure]:
    """Behind an HAProxy node (docs/balancer.md; the first node balances, the next
    ones up to six are members): a rolling one-file redeploy to 1, 3 and 6 members
    (wall time of ``silver update`` with no flags, one member at a time); latency of
    a paced load through the balancer against straight to a member (p50, p99, taken
    in turns in the same run); failed requests of that load during a rolling
    redeploy to 3 members, and while one of them stops answering for 6 s."""
    if len(ctx.nodes) < 2:
        raise BenchError("the balancer case needs --nodes 2 or more (a balancer, members)")
    env, lb, members = ctx.env, ctx.nodes[0], ctx.nodes[1:7]
    sizes = [n for n in (1, 3, 6) if n <= len(members)]
    apps: dict[int, Path] = {}
    for n in sizes:
        apps[n] = env.hello_copy(f"lb{n}", several_nodes=True)
        env.silver(*env.update_args(apps[n], f"lb{n}.bench", members[:n], "--balancer", lb))
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(ctx.runs):
        for n in sizes:
            set_marker(apps[n], ctx.marker())
            times[n].append(env.silver(*env.update_args(apps[n], f"lb{n}.bench", []))[0])
    figures = [Figure("balancer", f"rolling redeploy to {n} member{'s' if n > 1 else ''}",
                      times[n], floor=Floor("1 member", times[sizes[0]]) if n > 1 else None)
               for n in sizes]
    big = max(sizes[:2])
    location, direct = f"lb{big}.bench", "direct.bench"
    env.silver(*env.update_args(env.hello_copy("direct"), direct, [members[0]]))
    through, straight = [], []
    for _ in range(ctx.runs):
        for address, host, into in ((env.nodes[lb], location, through),
                                    (env.nodes[members[0]], direct, straight)):
            load = PacedLoad(address, host, rate=rate)
            load.start()
            time.sleep(seconds)
            load.stop()
            if load.failures:
                raise BenchError(f"{host} at {address}: {load.failures[:3]}")
            into += load.latencies
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        figures.append(Figure("balancer", f"{name} latency through the balancer "
                                          "(floor: straight to a member)",
                              [percentile(through, fraction)], unit="ms",
                              floor=Floor("member", [percentile(straight, fraction)], "ms")))
    busy = PacedLoad(env.nodes[lb], location, rate=rate)
    busy.start()
    try:
        time.sleep(1)
        set_marker(apps[big], ctx.marker())
        env.silver(*env.update_args(apps[big], location, []))
        time.sleep(1)
    finally:
        busy.stop()
    rollout = (len(busy.failures), len(busy.failures) + len(busy.latencies))
    busy = PacedLoad(env.nodes[lb], location, rate=rate)
    busy.start()
    try:
        time.sleep(1)
        env.as_root(members[0], "systemctl stop nginx")
        time.sleep(6)
    finally:
        env.as_root(members[0], "systemctl start nginx")
        busy.stop()
    failure = (len(busy.failures), len(busy.failures) + len(busy.latencies))
    return figures + [
        Figure("balancer", f"failed requests during a rolling redeploy to {big} members "
                           f"(of {rollout[1]})", [float(rollout[0])], unit="count", target=0),
        Figure("balancer", f"failed requests while a member stops answering for 6 s "
                           f"(of {failure[1]})", [float(failure[0])], unit="count"),
    ]


TEST_CACHE = DEPS_WHEELS.parent
DJANGO_WHEELS = TEST_CACHE / "wheels"       # Django and its dependencies (scripts/test)
DJANGO_REQUIREMENTS = "Django>=5.1,<6\npsycopg[binary]\npillow\n"
DJANGO_FILES = {
    "src/mysite/mysite/__init__.py": "",
    "src/mysite/mysite/marker.py": 'MARKER = "start"\n',
    "src/mysite/mysite/settings.py": """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.auth",
                  "django.contrib.contenttypes", "django.contrib.sessions",
                  "django.contrib.messages", "django.contrib.staticfiles"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware",
              "django.contrib.sessions.middleware.SessionMiddleware",
              "django.middleware.common.CommonMiddleware",
              "django.middleware.csrf.CsrfViewMiddleware",
              "django.contrib.auth.middleware.AuthenticationMiddleware",
              "django.contrib.messages.middleware.MessageMiddleware",
              "django.middleware.clickjacking.XFrameOptionsMiddleware"]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [],
              "APP_DIRS": True, "OPTIONS": {"context_processors": [
                  "django.template.context_processors.request",
                  "django.contrib.auth.context_processors.auth",
                  "django.contrib.messages.context_processors.messages"]}}]
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql",
                         "NAME": os.environ.get("CONFIG_PG_DBNAME", ""),
                         "USER": os.environ.get("CONFIG_PG_USER", ""),
                         "PASSWORD": os.environ.get("CONFIG_PG_PASSWORD", ""),
                         "HOST": os.environ.get("CONFIG_PG_HOST", ""),
                         "PORT": os.environ.get("CONFIG_PG_PORT", "")}}
USE_TZ = True
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
""",
    "src/mysite/mysite/urls.py": """\
import os
from pathlib import Path

from django.contrib import admin
from django.http import HttpResponse, JsonResponse
from django.urls import path

from mysite import marker

urlpatterns = [
    path("admin/", admin.site.urls),
    path("bench-marker", lambda request: HttpResponse(marker.MARKER, "text/plain")),
    path("bench-where", lambda request: JsonResponse(
        {"deps": os.environ.get("SILVER_DEPS"), "app": str(Path(__file__).parents[3])})),
]
""",
    "src/mysite/mysite/wsgi.py": """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
""",
    "lib/python/mysite.pth": "../../src/mysite\n",
    "lib/python/silvercustomize.py": "import os\n\n"
                                     'os.environ.setdefault("DJANGO_SETTINGS_MODULE", '
                                     '"mysite.settings")\n',
}
# On the node: the app's own cold start, what any deploy of it pays at least: a fresh
# interpreter importing Django with the app's settings and answering one request (SSH
# not included). argv: the version's lib/python, its dependency layer.
DJANGO_COLD_CODE = """
import os, site, sys
site.addsitedir(sys.argv[1])
site.addsitedir(sys.argv[2])
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
from mysite.wsgi import application
out = []
application({"REQUEST_METHOD": "GET", "PATH_INFO": "/bench-marker", "SERVER_NAME": "x",
             "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": sys.stdin,
             "wsgi.errors": sys.stderr}, lambda status, headers: out.append(status))
assert out[0].startswith("200"), out
"""
DJANGO_COLD = f"""
import subprocess, sys, time
start = time.monotonic()
subprocess.run([sys.executable, "-c", {DJANGO_COLD_CODE!r}, *sys.argv[1:]], check=True)
print(time.monotonic() - start)
"""
# On the node: writing the set's files, what installing it as files costs at least (each
# file and directory a new inode: on the bench's VM most of the layer's making), timed
# there with GNU tar from a tar of the live layer (its .pyc and marker left out) made
# once. argv: that tar, a new scratch directory beside the layers (the same file system),
# left for the case to remove when its timings are over (see ``case_django``).
UNTAR = """
import subprocess, sys, time
start = time.monotonic()
subprocess.run(["mkdir", sys.argv[2]], check=True)
subprocess.run(["tar", "-C", sys.argv[2], "-xf", sys.argv[1]], check=True)
print(time.monotonic() - start)
"""


# pure-Python wheels in DEPS_WHEELS, added to the Django project's requirements in
# another combination each run (the bits of the run's number): a set the node lacks
ADDED_PACKAGES = ("packaging", "typing_extensions", "annotated_types", "wheel")


def django_app(ctx: Context, name: str) -> Path:
    """A Django project as startproject makes it (admin on, PostgreSQL), under src/
    as docs/django.md lays it out, declaring Django, psycopg and pillow."""
    for wheels, pattern in ((DJANGO_WHEELS, "django-*.whl"), (DEPS_WHEELS, "pillow-*.whl")):
        if not list(wheels.glob(pattern)):
            raise BenchError(f"no {pattern} in {wheels}: scripts/test downloads them")
    app = ctx.env.root / "apps" / name
    shutil.rmtree(app, ignore_errors=True)
    for rel, text in DJANGO_FILES.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(text)
    (app / "app.ini").write_text(f"[production]\napp_name = {name}\n"
                                 "runner = src/mysite/mysite/wsgi.py\n"
                                 "service.postgresql =\nhealth_check = /admin/login/\n")
    (app / "requirements.txt").write_text(
        f"--no-index\n--find-links {DJANGO_WHEELS}\n--find-links {DEPS_WHEELS}\n"
        + DJANGO_REQUIREMENTS)
    return app


def set_django_marker(app: Path, marker: str) -> None:
    """The one file a Django one-file redeploy changes."""
    (app / "src" / "mysite" / "mysite" / "marker.py").write_text(f"MARKER = {marker!r}\n")


def where(ctx: Context, location: str) -> dict:
    """The live version's instance directory and dependency layer, as the app sees them."""
    found = json.loads(probe_path(ctx.address, location, "/bench-where") or "{}")
    if not str(found.get("deps") or "").startswith("/var/lib/silverlining/deps/"):
        raise BenchError(f"{location} names no dependency layer: {found}")
    return found


def case_django(ctx: Context) -> list[Figure]:
    """A Django project (PostgreSQL, admin on; Django, psycopg, pillow declared): its
    one-file redeploy until served, against its own cold start on the node; the
    first deploy of a new app of it to a node without its dependency set, with the
    local dependency cache warm, and with it (and uv's cache) empty, until served,
    against a plain ``pip install --target`` of the same set here; and its redeploy
    with a package added to its requirements, against its one-file redeploy."""
    location = "django.bench"
    app = django_app(ctx, "django")
    ctx.env.silver(*ctx.env.update_args(app, location, [ctx.first]))
    redeploy, cold = [], []
    for _ in range(ctx.runs):
        marker = ctx.marker()
        set_django_marker(app, marker)
        seconds, _ = ctx.env.timed_until(ctx.env.update_args(app, location, [ctx.first]),
                                         ctx.address, location, marker)
        redeploy.append(seconds)
        live = where(ctx, location)
        cold.append(float(ctx.env.as_root(
            ctx.first, f"python3 - {shlex.quote(live['app'] + '/lib/python')} "
                       f"{shlex.quote(live['deps'])}", stdin=DJANGO_COLD)))
    warm, empty, pip, untar, changed = [], [], [], [], []
    home_deps = Path(ctx.env.env["SILVER_HOME"]) / "deps"
    # Nothing is deleted until the timings are over: what a run leaves (the layer it
    # replaced, the floor's files, the caches) goes into a trash, removed at the end. On
    # an ext4 without a journal (this VM's disk) creating a file skips every inode of
    # its block group freed in the last minutes, so the 7,700 files of the previous
    # run's layer, deleted beside the next one's, made its unpacking (and the floor)
    # two to five times slower, by how recent the deletion was. A journaled ext4 (a
    # server's) does not do this.
    trash, local_trash = "/var/lib/silverlining/bench-trash", ctx.env.root / "trash"
    local_trash.mkdir(exist_ok=True)
    set_tar = "/var/lib/silverlining/bench-set.tar"
    live_set = shlex.quote(where(ctx, location)["deps"])
    ctx.env.as_root(ctx.first, f"mkdir -p {trash} && tar -C {live_set} -cf {set_tar} "
                               "--exclude=__pycache__ --exclude=.silver-compiled .")
    try:
        for run in range(ctx.runs):
            untar.append(float(ctx.env.as_root(
                ctx.first, f"python3 - {set_tar} {trash}/untar-{run}", stdin=UNTAR)))
            for variant, times in (("warm", warm), ("empty", empty)):
                name = f"dj{variant}{run}"
                first = django_app(ctx, name)
                marker = ctx.marker()
                set_django_marker(first, marker)
                # the node must receive and install the set: its layer out of the way
                layer = shlex.quote(where(ctx, location)["deps"])
                ctx.env.as_root(ctx.first, f"mv {layer} {trash}/{name}")
                saved = dict(ctx.env.env)
                try:
                    if variant == "empty":
                        if home_deps.exists():
                            home_deps.rename(local_trash / f"deps-{run}")
                        ctx.env.env["UV_CACHE_DIR"] = str(ctx.env.root / f"uv-cache-{run}")
                    seconds, out = ctx.env.timed_until(
                        ctx.env.update_args(first, f"{name}.bench", [ctx.first]),
                        ctx.address, f"{name}.bench", marker)
                finally:
                    ctx.env.env = saved
                if "sending dependency set" not in out:
                    raise BenchError(f"the first deploy did not send the set:\n{out}")
                times.append(seconds)
            target = local_trash / f"pip-target-{run}"
            start = time.monotonic()
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                            "--disable-pip-version-check", "--no-cache-dir",
                            "--root-user-action=ignore", "--find-links",
                            str(DJANGO_WHEELS), "--find-links", str(DEPS_WHEELS), "--target",
                            str(target), *DJANGO_REQUIREMENTS.split()], check=True)
            pip.append(time.monotonic() - start)
        # a package added to its requirements (another set of them each run): only
        # what the node lacks travels and is written, against the one-file redeploy
        requirements = (app / "requirements.txt").read_text()
        for run in range(ctx.runs):
            extra = [name for bit, name in enumerate(ADDED_PACKAGES) if (run + 1) >> bit & 1]
            (app / "requirements.txt").write_text(requirements + "\n".join(extra) + "\n")
            marker = ctx.marker()
            set_django_marker(app, marker)
            seconds, out = ctx.env.timed_until(
                ctx.env.update_args(app, location, [ctx.first]), ctx.address, location, marker)
            if "sending dependency set" not in out:
                raise BenchError(f"the changed requirements sent no set:\n{out}")
            changed.append(seconds)
    finally:
        ctx.env.as_root(ctx.first, f"rm -rf {trash}")
        shutil.rmtree(local_trash, ignore_errors=True)
    return [
        Figure("django", "Django (PostgreSQL, admin) one-file redeploy, until served",
               redeploy, floor=Floor("its cold start on the node", cold), target=0.5,
               target_on="over"),
        Figure("django", "the same with a package added to its requirements, until served",
               changed, floor=Floor("its one-file redeploy", redeploy)),
        Figure("django", "first deploy of Django+psycopg+pillow, warm local cache, "
                         "until served (floor: the set's files written on the node)", warm,
               floor=Floor("tar -x of the set on the node", untar), target=3.0),
        Figure("django", "the same with empty caches (floor: pip install of the set here)",
               empty, floor=Floor("pip install", pip)),
    ]


def probe_path(address: str, host: str, path: str) -> str | None:
    """The body of ``path`` on the node's nginx for ``host``; None if it fails."""
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return body if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


CASES: dict[str, Callable[[Context], list[Figure]]] = {
    "cli": case_cli,
    "redeploy": case_redeploy,
    "rollback": case_rollback,
    "setup-node": case_setup_node,
    "curve": case_curve,
    "soak": case_soak,
    "throughput": case_throughput,
    "load": case_load,
    "bigapp": case_bigapp,
    "deps": case_deps,
    "balancer": case_balancer,
    "django": case_django,
}
MULTI_NODE = ("setup-node", "curve", "soak", "balancer")
