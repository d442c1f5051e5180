"""``silver update``: deploy an app to one or more nodes with zero downtime.

Locally: validate app.ini, make lib/python relocatable. Per node (in
parallel): learn the node's Python and reserve a version in one call, build the
declared dependencies for that Python (``silverlining.deps``; a node that has
the set already gets nothing), refuse compiled files in the upload that the
node cannot load, rsync only what changed, and let the node build, start,
check and switch (``silver-node deploy``). A failure on a node leaves its old
version serving.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from silverlining import appfiles, depset, deps, etchosts, protocol, serverfiles, topology
from silverlining.appconfig import NAME_RE, AppConfig
from silverlining.commands import _balanced, _https, _move, _services
from silverlining.commands._params import (changes_input, check_given, complete,
                                           parse_assignments, read_param_files)
from silverlining.commands._remote import NodeSession, node_for, open_node, who
from silverlining.console import Console, human
from silverlining.devserver.environ import app_config_dir
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location, parse_location
from silverlining.node import paths
from silverlining.node.params import DEPS_INSTALLED, UPLOADED
from silverlining.nodes import node_dns
from silverlining.state import NodeRegistry, state_dir
from silverlining.transport import RsyncStats, rsync

T = TypeVar("T")

# compiled files: extensions (.so, .pyd) and the libraries wheels bundle (libfoo.so.6)
_BINARY_RE = re.compile(r"\.(so|pyd|dylib)(\.[0-9.]+)?$")
_CPYTHON_RE = re.compile(r"\.cpython-(\d)(\d+)[^/]*\.so$")
_ELF_MACHINES = {3: "i686", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64",
                 21: "ppc64le", 22: "s390x"}
_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
          b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


@dataclass
class Plan:
    """What is deployed where, decided once before touching any node."""

    app_dir: Path
    app: str
    location: Location
    config_dir: Path | None
    clear: bool
    excludes: list[str]
    binaries: list[str]                 # app-relative paths of compiled files uploaded
    lock_wait: float              # for the app's lock on the node (another deploy)
    who: str
    source: str
    config: AppConfig
    params: dict[str, str]
    fingerprint: str              # of the upload and the server files (see ``prepare``)
    size: int = 0                 # bytes uploaded: the node refuses what its disk cannot hold
    backup: bool = False          # keep the live version's data (remote:before-vN) first
    force: bool = False           # deploy even when the live version has these files
    refresh_deps: bool = False    # resolve the declared dependencies again (--refresh-deps)
    https: _https.HttpsRequest | None = None     # None: HTTP only
    deps: deps.Declared | None = None   # None: lib/python is all the app has
    local_installs: dict[str, str] = field(default_factory=dict)  # bin/pip's, left out
    deps_seconds: float = 0.0           # what finding them took here (shown with -v)

    @property
    def may_skip(self) -> bool:
        """Whether an upload equal to the live version may end the deploy early: not
        when parameters, data or a forced restart were asked for."""
        return not (self.force or self.clear or self.backup or self.params
                    or self.refresh_deps)


@dataclass
class Outcome:
    node: str
    version: str
    previous: str | None
    sent: int
    files: int
    seconds: float
    unchanged: bool = False       # the live version already had these files


def find_binaries(files: list[str]) -> list[str]:
    """The compiled files among those uploaded."""
    return [rel for rel in files if _BINARY_RE.search(rel)]


def binary_mismatch(path: Path, target: deps.Target) -> str | None:
    """What ``path`` was compiled for when the node cannot load it, else None: read
    from the file itself (ELF, Mach-O, PE), then the Python its name says."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return None
    if head[:4] == b"\x7fELF" and len(head) == 20:
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        arch = _ELF_MACHINES.get(machine, f"machine {machine}")
        if arch != target.machine:
            return f"compiled for Linux {arch}"
        if "-linux-musl" in path.name:
            return "compiled for musl Linux"
    elif head[:4] in _MACHO:
        return "compiled for macOS"
    elif head[:2] == b"MZ":
        return "compiled for Windows"
    else:
        return None
    if (m := _CPYTHON_RE.search(path.name)) and f"{m.group(1)}.{m.group(2)}" != target.minor:
        return f"a compiled extension for Python {m.group(1)}.{m.group(2)}"
    return None


def check_binaries(plan: Plan, node: str, target: deps.Target) -> None:
    """Refuse an upload holding compiled files the node cannot load: they would fail
    at import there, after the upload."""
    for rel in plan.binaries:
        if what := binary_mismatch(plan.app_dir / rel, target):
            declared = plan.deps.path.name if plan.deps else deps.REQUIREMENTS
            raise SilverError(
                f"{plan.app_dir / rel} is {what}, but {node} runs {target.describe()}: "
                f"list the package it comes from in {declared} (silver update then "
                "builds it for each node and leaves what bin/pip installed here out of "
                "the upload), or remove the file")


def check_config(app_dir: Path, config_dir: Path) -> None:
    """app.ini's config.checker on the deployment config, in its own process."""
    proc = subprocess.run([sys.executable, "-m", "silverlining.apploader", "check-config",
                           str(app_dir), str(config_dir)], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
        raise UsageError(lines[-1].removeprefix("silver: error: "))


def source_of(app_dir: Path) -> str:
    """Where a deploy came from: host, directory, and the git revision when there is one."""
    source = f"{socket.gethostname()}:{app_dir}"
    try:
        rev = subprocess.run(["git", "-C", str(app_dir), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return source
    return f"{source}@{rev.stdout.strip()}" if rev.returncode == 0 and rev.stdout.strip() \
        else source


def _load_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: not found (config.schema checks config.json)") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON: {exc}") from None


def check_schema(config: AppConfig, config_dir: Path) -> None:
    """``config.json`` of the deployment config against app.ini's ``config.schema``;
    the error points at the failing field."""
    import jsonschema

    schema_path = config.app_dir / (config.config_schema or "")
    schema, data_path = _load_json(schema_path), config_dir / "config.json"
    data = _load_json(data_path)
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UsageError(f"{schema_path}: not a valid JSON Schema: {exc.message}") from None
    errors = sorted(validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        pointer = "/" + "/".join(str(p) for p in first.absolute_path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UsageError(f"{data_path}: {pointer}: {first.message}{more}")


# services that keep the app's data on the node's own disk
NODE_DISK_SERVICES = ("files", "writable_root")
NODE_DATA_SERVICES = ("postgresql", "postgis", "mysql", "redis")


def check_node_disk(config: AppConfig, nodes: list[str], balanced: bool = False,
                    services_node: str | None = None) -> str | None:
    """Refuse node-local data where several nodes would each keep a diverging copy.

    Files on a node's disk are refused on any several nodes. A database or Redis is
    each node's own too, unless a services node holds it for all of them
    (``--services-node``): refused on a balanced location, whose members share one
    app's traffic; on plain several nodes, where each node is its own installation,
    the returned line says so."""
    if len(nodes) < 2:
        return None
    data = [f"service.{name}" for name in NODE_DATA_SERVICES if name in config.services
            and not (services_node and name in _services.HOSTABLE)]
    used = [f"service.{name}" for name in NODE_DISK_SERVICES if name in config.services]
    if balanced:
        used += data
    if used:
        what = "its own files" if not balanced else "its own copy of the data"
        raise UsageError(f"{', '.join(used)} in {config.ini_path} cannot be used on "
                         f"several nodes ({', '.join(nodes)}): each node would keep {what} "
                         "and the copies would diverge; deploy to one node, or keep the data "
                         "outside the nodes (a services node, --services-node NAME, for "
                         "PostgreSQL, MariaDB and Redis; object storage the app reaches "
                         "through its own settings for files)")
    if data:
        return (f"{', '.join(data)}: each of {', '.join(nodes)} gets a database of its own "
                "(nothing is shared between them)")
    return None


def moves_dir() -> Path:
    """Where a database moving to a services node is kept meanwhile (0700)."""
    path = state_dir() / "moves"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def make_plan(app_dir: str, location: str | None, host: str | None, name: str | None,
              config_dir: str | None, clear: bool, lock_wait: float | None,
              console: Console, params: dict[str, str] | None = None) -> Plan:
    if location and host:
        raise UsageError("give the location once: either LOCATION or --host")
    config = AppConfig.load(app_dir)
    check_given(config, params or {})
    app = name or config.app_name
    if not NAME_RE.match(app):
        raise UsageError(f"bad --name {app!r}: use lowercase letters, digits, '-' and '_'")
    text = location or host or config.default_location
    if config.runner is None:            # workers, crons, scripts: known on the node as @APP
        if text and text != f"@{app}":
            raise UsageError(f"{config.ini_path} has no runner, so the app has no web "
                             f"location: deploy it with --node NODE and no LOCATION (it is "
                             f"then @{app})")
        text = f"@{app}"
    elif not text:
        raise UsageError(f"no location: give LOCATION (HOST[/PATH]) or set default_location "
                         f"in {config.ini_path}")
    elif text.startswith("@"):
        raise UsageError(f"{text}: only an app without a runner is deployed as @APP")
    cfg = Path(config_dir).resolve() if config_dir else None
    checked = app_config_dir(config, config_dir)       # --config, else config.default
    if checked and config.config_checker:
        check_config(config.app_dir, checked)
    if checked and config.config_schema:
        check_schema(config, checked)
    fixed = appfiles.make_paths_relative(config.app_dir / "lib" / "python", config.app_dir)
    for path in fixed.changed:
        console.info(f"made paths relative in {path}")
    for path, target in fixed.outside:
        console.warn(f"{path} points outside the app ({target}); it will be missing on the node")
    # with declared dependencies the node gets its own build of what bin/pip put here
    started = time.monotonic()
    declared, excludes, local = deps.upload_excludes(config.app_dir, config.build_on_node)
    deps_seconds = time.monotonic() - started
    scan = appfiles.scan_app_files(config.app_dir, appfiles.Ignore(excludes))
    if scan.outside:
        path, target = scan.outside[0]
        raise UsageError(f"{config.app_dir / path} is a symlink to {target}, outside the app: "
                         "links may only point inside the app directory (copy the file in, "
                         "or list it in .silverignore)")
    for path in scan.special:
        console.warn(f"skipping {config.app_dir / path}: not a regular file (FIFO, socket "
                     "or device)")
    stamps = [serverfiles.version(), *scan.stamps]
    size = scan.size
    if cfg:
        config_files = appfiles.scan_app_files(cfg)
        stamps += ["config", *config_files.stamps]
        size += config_files.size
    return Plan(app_dir=config.app_dir, app=app, location=parse_location(text), config_dir=cfg,
                clear=clear, excludes=excludes, binaries=find_binaries(scan.files),
                who=who(),
                lock_wait=protocol.DEFAULT_LOCK_WAIT if lock_wait is None else lock_wait,
                source=source_of(config.app_dir),
                config=config, params=dict(params or {}),
                fingerprint=appfiles.AppFiles(stamps=stamps).fingerprint(), deps=declared,
                local_installs=local, deps_seconds=deps_seconds, size=size)


def build_deps(session: NodeSession, plan: Plan, answer: dict) -> deps.Build | None:
    """The declared dependencies built for this node's Python (cached: a file read
    when made before; None when nothing is declared); warns about what bin/pip
    installed locally that the node will not have."""
    assert plan.deps is not None
    target = deps.Target.from_node(answer.get("target") or {})
    build = None
    if not plan.deps.empty:
        build = None if plan.refresh_deps else deps.cached(plan.deps, target)
        if build is None:
            with session.console.ticking(session.name, f"installing {plan.deps.path.name} "
                                         f"for {target.describe()}"):
                build = deps.build(plan.deps, target, session.name, refresh=plan.refresh_deps)
    have = {deps.normalize(n) for n in (build.packages if build else {})}
    for name, version in sorted(plan.local_installs.items()):
        if deps.normalize(name) not in have:
            session.console.warn(f"{name} {version} is installed in lib/python but not "
                                 f"declared in {plan.deps.path.name}: {session.name} will "
                                 "not have it (declare it there)")
    return build


def upload(session: NodeSession, plan: Plan, reserved: dict) -> RsyncStats:
    """rsync the app (and deployment config) into the version's upload directory."""
    basis = reserved.get("basis")
    dest = reserved["upload_dir"]

    def show(_name: str, line: str) -> None:
        session.console.detail(f"[{session.name}] {line}")

    with session.upload_progress() as progress:
        stats = rsync(f"{plan.app_dir}/", session.address, f"{dest}/app/",
                      user=paths.DEPLOY_USER, excludes=plan.excludes,
                      link_dest=f"{basis}/app" if basis else None, label=session.name,
                      stream=show, progress=progress)
    if plan.config_dir:
        with session.upload_progress() as progress:
            more = rsync(f"{plan.config_dir}/", session.address, f"{dest}/config/",
                         user=paths.DEPLOY_USER,
                         link_dest=f"{basis}/config" if basis else None,
                         label=session.name, stream=show, progress=progress)
        stats.bytes_sent += more.bytes_sent
        stats.files_transferred += more.files_transferred
        stats.changed += [f"config/{p}" for p in more.changed]
    return stats


def send_deps(session: NodeSession, build: deps.Build, present: list[str]
              ) -> tuple[int, int]:
    """Stream the dependency set the node lacks to ``deps-install``, which checks it
    against its fingerprint and makes the layer of it; returns bytes and files sent.
    The files one of the node's layers (``present``) holds the same, as this machine's
    cached build of that set says, are left out: the node links them from there. A
    node that no longer has that layer (cleaned meanwhile) is sent the whole set."""
    base = deps.base_for(build, present)
    skip = depset.shared_files(build.site, base.site) if base else frozenset()
    session.console.step(session.name, f"sending dependency set {build.fingerprint} "
                         f"({build.count} packages)" + (
                             f"; {len(skip)} of its files are in {base.fingerprint} "
                             "there: not sent" if base and skip else ""))
    stream = depset.TarStream(build.site, skip)
    try:
        answer = session.send(protocol.DepsInstall(
            fingerprint=build.fingerprint, base=base.fingerprint if base and skip else None),
            input=stream)     # type: ignore[arg-type]
    except SilverError as exc:
        if not skip or "missing from the set" not in exc.message:
            raise
        session.console.step(session.name, f"{base.fingerprint if base else 'its base'} "
                             "is gone from the node: sending the whole set")
        stream = depset.TarStream(build.site)
        answer = session.send(protocol.DepsInstall(fingerprint=build.fingerprint),
                              input=stream)     # type: ignore[arg-type]
    session.console.detail(f"[{session.name}] dependency set: {stream.sent} bytes sent")
    return stream.sent, answer["files"]


def prepare(session: NodeSession, plan: Plan, ask: bool) -> tuple[dict, dict[str, str]]:
    """One round trip before the upload (``silver-node prepare``, which also checks the
    node's server version): the node's Python and stored parameters, and a reserved
    version, or the live version when it already has these files. Returns the node's
    answer and the parameter values."""
    needs = tuple(n for n, p in sorted(plan.config.parameters.items())
                  if n not in plan.params and p.default is None)
    reserve = protocol.Reserve(app=plan.app, who=plan.who, source=plan.source,
                               lock_wait=plan.lock_wait)
    answer = session.send(protocol.Prepare(
        **vars(reserve), needs=needs, fingerprint=plan.fingerprint if plan.may_skip else None,
        location=str(plan.location) if plan.may_skip else None, size=plan.size), quiet=True)
    check_binaries(plan, session.name, deps.Target.from_node(answer.get("target") or {}))
    values = complete(plan.config, plan.params, set(answer.get("params_set", [])),
                      session.name, ask)
    if "missing" in answer:         # given just now (prompted): reserve after all
        answer.update(session.send(reserve, quiet=True))
    return answer, values


class _DeployInput:
    """The stdin of ``deploy --wait-upload``: the parameter changes at once, then the
    ``UPLOADED`` line when the upload is over (and ``DEPS_INSTALLED`` when a dependency
    set was sent meanwhile); then it stays open until the node's answer (its end before
    then tells the node the client is gone: see ``node/base.client_gone``), or ends at
    once when a step failed."""

    def __init__(self, changes: str) -> None:
        self._parts: queue.Queue[bytes] = queue.Queue()
        self._parts.put(changes.encode())

    def read1(self, _size: int = -1) -> bytes:
        return self._parts.get()

    def say(self, line: str) -> None:
        self._parts.put(f"{line}\n".encode())

    def end(self) -> None:
        self._parts.put(b"")


def upload_and_deploy(session: NodeSession, plan: Plan, reserved: dict,
                      values: dict[str, str], build: deps.Build | None = None
                      ) -> tuple[RsyncStats, dict]:
    """Upload the version while ``silver-node deploy`` already starts on the node: it
    waits for the line saying the upload is complete, and gives up, deploying
    nothing, when its input ends without it. A dependency set the node lacks is sent
    at the same time (``send_deps``); the deploy waits for it only where it needs the
    layer."""
    console, version = session.console, reserved["version"]
    present = reserved.get("deps", [])
    sending = build is not None and build.fingerprint not in present
    command = protocol.Deploy(app=plan.app, version=version, location=str(plan.location),
                              who=plan.who, lock_wait=plan.lock_wait, clear=plan.clear,
                              backup=plan.backup, params_stdin=True, wait_upload=True,
                              fingerprint=plan.fingerprint,
                              deps=build.fingerprint if build else None,
                              deps_sent=sending)
    feed = _DeployInput(changes_input(values) + "\n")
    # daemons: Ctrl-C must not wait for them (the master holds a call's output pipes
    # until the node's command ends; the end of its input is what stops the node)
    deploying = _in_background(lambda: session.send(command, input=feed))
    try:
        try:
            # a set the node lacks travels next to the app's files, into its layer; the
            # deploy's first steps (the app's user, its database) overlap it
            layer = _in_background(lambda: send_deps(session, build, present)) \
                if sending and build is not None else None
            if build is not None and not sending:
                console.step(session.name, f"dependency set {build.fingerprint} "
                             f"({build.count} packages): already there")
            console.step(session.name, f"uploading {plan.app_dir} as {plan.app}.{version}")
            stats = upload(session, plan, reserved)
            if plan.https:          # certificates before the deploy may switch
                _https.prepare(console, session, plan.app, version, plan.location,
                               plan.https, plan.lock_wait)
            feed.say(UPLOADED)
            if layer is not None:
                with console.ticking(session.name, "sending the dependency set"):
                    sent, files = layer.result()
                stats.bytes_sent += sent
                stats.files_transferred += files
                feed.say(DEPS_INSTALLED)
        except BaseException:
            feed.end()
            with contextlib.suppress(SilverError):
                deploying.result()
            session.close()         # a set still on its way stops; the node keeps none of it
            raise
        console.detail(f"[{session.name}] rsync: {stats.bytes_sent} bytes sent, "
                       f"{stats.files_transferred} files transferred")
        console.step(session.name, f"sent {human(stats.bytes_sent)} "
                     f"({stats.files_transferred} changed files)")
        try:
            with console.ticking(session.name, f"installing {plan.app}.{version}"):
                return stats, deploying.result()
        except BaseException:
            # Ctrl-C while the node deploys: end the call's ssh; with the end of its
            # input (below) the node stops before the switch
            session.close()
            raise
    finally:
        feed.end()


def _in_background(call: Callable[[], T]) -> Future[T]:
    """``call`` in a daemon thread, its result or exception in the future returned."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(call())
        except BaseException as exc:   # handed to the waiting thread
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def deploy_to(console: Console, node: str, plan: Plan, ask: bool = False) -> Outcome:
    started = time.monotonic()
    session = open_node(console, node, check=False)
    registry = NodeRegistry()
    try:
        reserved, values = prepare(session, plan, ask)
        if live := reserved.get("unchanged"):
            console.step(session.name, f"nothing changed: {plan.app}.{live} stays live at "
                         f"{plan.location} (--force deploys these files again)")
            registry.add_location(session.name, str(plan.location))
            return Outcome(session.name, live, None, 0, 0, time.monotonic() - started,
                           unchanged=True)
        version = reserved["version"]
        build = None
        if plan.deps:
            started = time.monotonic()
            build = build_deps(session, plan, reserved)
            console.detail(f"[{session.name}] dependency step: "
                           f"{(plan.deps_seconds + time.monotonic() - started) * 1000:.1f} ms")
        stats, result = upload_and_deploy(session, plan, reserved, values, build)
    finally:
        session.close()
    console.step(session.name, f"{plan.app}.{version} is live at {plan.location}")
    registry.add_location(session.name, str(plan.location))
    return Outcome(session.name, version, result.get("previous"), stats.bytes_sent,
                   stats.files_transferred, time.monotonic() - started)


def offer_etc_hosts(console: Console, location: Location, node: str) -> None:
    """Offer to map the location's host to the node in /etc/hosts (unless it already is)."""
    from silverlining.nodes import resolve

    if not location.is_exact_host:
        return
    address = resolve(node, start=False).address
    if etchosts.lookup(location.host) == address:
        return
    if not (console.yes or sys.stdin.isatty()):
        console.info(f"{location.host} does not point to {address}: pass -y to add it to "
                     f"{etchosts.hosts_path()}, or --noetchosts")
        return
    if console.confirm(f"Map {location.host} to {address} in {etchosts.hosts_path()}?",
                       default=True):
        status = etchosts.add(location.host, address)
        if status == "foreign":
            console.warn(f"{etchosts.hosts_path()} already has a line for {location.host} "
                         "that silver did not write: left alone")


def run(console: Console, app_dir: str, location: str | None, host: str | None,
        nodes: tuple[str, ...], name: str | None, config_dir: str | None, clear: bool,
        noetchosts: bool, lock_wait: float | None = None, params: tuple[str, ...] = (),
        param_files: tuple[str, ...] = (), dns: bool | None = None,
        backup: bool = False, force: bool = False, refresh_deps: bool = False,
        https: str | None = None, cert: str | None = None, key: str | None = None,
        balancer: str | None = None, batch: str | None = None,
        remove_nodes: tuple[str, ...] = (), services_node: str | None = None) -> int:
    values = {**parse_assignments(params, "--param"), **read_param_files(param_files)}
    plan = make_plan(app_dir, location, host, name, config_dir, clear, lock_wait, console,
                     values)
    # an HTTPS mode or a certificate given here is a change even to the same files
    plan.backup, plan.force = backup, force or https is not None or cert is not None
    plan.refresh_deps = refresh_deps
    if refresh_deps and (plan.deps is None or plan.deps.empty):
        console.warn(f"--refresh-deps: {plan.app_dir} declares no dependencies")
    plan.https = _https.request_for(plan.config, plan.location, https, cert, key)
    plain_remove: tuple[str, ...] = ()
    first_services = topology.services_node(str(plan.location)) is None
    if (remove_nodes and not balancer and topology.get(str(plan.location)) is None
            and _services.resolve(plan.location, services_node)):
        plain_remove, remove_nodes = remove_nodes, ()      # members of a services node only
    topo = _balanced.resolve(console, plan.location, nodes, balancer, batch, remove_nodes)
    services = _services.resolve(plan.location, services_node)
    if services:
        _services.check(plan.config, services)
        # a version started before knows the database where it was: start anew
        plan.force = plan.force or first_services
    if topo is not None:
        if services == topo.balancer:
            raise UsageError(f"{services} is {plan.location}'s balancer: it cannot be its "
                             "services node too")
        check_node_disk(plan.config, [m for m in topo.members if m not in remove_nodes],
                        balanced=True, services_node=services)
        provider = _balanced.is_provider(topo.balancer)
        if provider and plan.https:
            raise UsageError(f"{plan.location}: HTTPS at a provider's balancer "
                             f"({topo.balancer}) is not built yet: use https = off, or an "
                             "HAProxy node as the balancer (--balancer NODE), where TLS ends")
        code = balanced_update(console, plan, topo, remove_nodes, services)
        if provider:            # its address was shown: the name is pointed there by you
            return code
        on_dns = False          # the name points at the balancer, where TLS ends too
        if plan.location.is_exact_host and node_dns(topo.balancer) is not None:
            from silverlining.providers import dns as providers_dns
            on_dns = providers_dns.offer_location(console, plan.location.host,
                                                  topo.balancer, dns)
        if not (noetchosts or on_dns):
            offer_etc_hosts(console, plan.location, topo.balancer)
        return code
    targets = list(dict.fromkeys(nodes)) or [node_for(plan.location, None)]
    separate = check_node_disk(plan.config, targets, services_node=services)
    if separate:
        console.warn(separate)
    moving = None
    if services:
        if plan.backup:         # the databases' part is on the services node
            _services.backup_before(console, services, plan.location, targets[0])
            plan.backup = False
        if first_services and len(targets) == 1:    # its database moves there
            moving = _move.take(console, targets[0], plan.location, moves_dir())
        elif first_services:
            console.warn(f"{services} starts {plan.app}'s database empty: a database each "
                         f"of {', '.join(targets)} may hold is not moved (restore the one "
                         "you keep with 'silver restore' afterwards)")
        restore = called_off = None
        if moving:      # the location is recorded against the services node once restored
            restore = functools.partial(_move.put, console, services, plan.location, moving)
            called_off = functools.partial(_move.called_off, console, services,
                                           plan.location, moving)
        _services.host(console, services, plan.config, plan.app, plan.location, targets,
                       add=True, drop=plain_remove, then=restore, refused=called_off)
        for m in plain_remove:
            _balanced.release(console, m, str(plan.location))
            console.out(f"{m}: removed from {plan.location} (no longer serves it; "
                        f"{services} no longer admits it)")
    if len(targets) == 1:
        try:
            outcome = deploy_to(console, targets[0], plan, ask=True)
        except BaseException:
            if moving:
                _move.back_on(console, plan.location, moving, deployed=False)
            raise
        report(console, plan, [outcome], {})
        if moving:
            _move.back_on(console, plan.location, moving, deployed=True)
        on_dns = False
        if plan.location.is_exact_host and node_dns(targets[0]) is not None:
            from silverlining.providers import dns as providers_dns
            on_dns = providers_dns.offer_location(console, plan.location.host, targets[0], dns)
        if not (noetchosts or on_dns):
            offer_etc_hosts(console, plan.location, targets[0])
        return 0
    outcomes: list[Outcome] = []
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        futures = {node: pool.submit(deploy_to, console, node, plan) for node in targets}
        for node, future in futures.items():
            try:
                outcomes.append(future.result())
            except SilverError as exc:
                failures[node] = exc.message
    report(console, plan, outcomes, failures)
    return 1 if failures else 0


def balanced_update(console: Console, plan: Plan, topo: topology.Topology,
                    removed: tuple[str, ...], services: str | None = None) -> int:
    """The rolling deploy to a balanced location (``silverlining.commands._balanced``):
    the members it had roll batch by batch; new members get the version the rollout
    left live, out of rotation until their gate passed; removed members are drained,
    taken out of the balancer, and stop serving the location (and the services node
    stops admitting them)."""
    location = str(plan.location)
    # TLS ends at the balancer: the members serve the location in plain HTTP; the
    # databases' --backup is the services node's
    member_plan = dataclasses.replace(plan, https=None, backup=plan.backup and not services)

    def change(node: str) -> _balanced.Change:
        o = deploy_to(console, node, member_plan)
        text = (f"{node}: nothing changed, {plan.app}.{o.version} stays live at {location}"
                if o.unchanged else
                f"{node}: {plan.app}.{o.version} live at {location} (was "
                f"{o.previous or 'nothing'}; sent {human(o.sent)}, {o.seconds:.1f}s)")
        return _balanced.Change(node, o.version, o.previous, not o.unchanged, text)

    with _balanced.balancer(console, topo) as lb:
        here = lb.members_here()
        keep = [m for m in topo.members if m not in removed]
        if not keep:
            raise UsageError(f"{location} would have no member left: keep at least one "
                             "(or 'silver deactivate' it)")
        new = [m for m in keep if m not in here]
        old = [m for m in keep if m in here]
        going = [m for m in removed if m in here]
        if services:
            if plan.backup and old:
                _services.backup_before(console, services, plan.location, old[0])
            _services.host(console, services, plan.config, plan.app, plan.location,
                           [*old, *new, *going])
        lb.apply([*old, *new, *going], maint=new, app=plan.app,
                 https=plan.https.mode if plan.https else "off", services=services or "")
        if plan.https:
            assert isinstance(lb, _balanced.NodeFront)      # refused in run() otherwise
            _https.prepare_at_balancer(console, lb.session, plan.location, plan.https)
        lb.guard(keep)
        topology.put(topology.Topology(location, topo.balancer, [*old, *going, *new],
                                       topo.batch, plan.app))
        rollout = _balanced.roll(console, lb, old, change, _balanced.undo_on(console, location))
        code = _balanced.report_rollout(console, location, rollout)
        if code:
            if new:
                console.out(f"not added (the rollout stopped): {', '.join(new)}")
            return code
        added = _balanced.parallel(change, new)
        ready = [m for m in new if isinstance(added[m], _balanced.Change)]
        lb.ready(ready)
        for m in new:
            r = added[m]
            console.out(f"{r.text} (added)" if isinstance(r, _balanced.Change) else
                        f"{m}: FAILED: {r.message}; not added (out of rotation)")
        if going:
            lb.drain(going)
            lb.apply(keep, maint=[], app=plan.app)
            for m in going:
                _balanced.release(console, m, location)
                console.out(f"{m}: removed from {location} (drained, no longer serves it)")
            if services:
                _services.host(console, services, plan.config, plan.app, plan.location, [],
                               add=True, drop=tuple(going))
        topology.put(topology.Topology(location, topo.balancer, keep, topo.batch, plan.app))
    return 0 if len(ready) == len(new) else 1


def report(console: Console, plan: Plan, outcomes: list[Outcome], failures: dict[str, str]) -> None:
    for o in outcomes:
        if o.unchanged:
            console.out(f"{o.node}: nothing changed, {plan.app}.{o.version} stays live at "
                        f"{plan.location} ({o.seconds:.1f}s)")
            continue
        was = f"was {o.previous}" if o.previous else "first version there"
        console.out(f"{o.node}: {plan.app}.{o.version} live at {plan.location} ({was}; "
                    f"sent {human(o.sent)}, {o.seconds:.1f}s)")
    for node, message in failures.items():
        console.out(f"{node}: FAILED: {message}")
    if failures:
        console.out(f"{len(outcomes)} of {len(outcomes) + len(failures)} nodes updated; "
                    "the others keep their old version")
