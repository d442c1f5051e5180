"""One definition of each node command: its name, its typed parameters and its result.

Shared by both sides. The CLI builds a call from a definition
(``NodeSession.send(protocol.Deploy(app=..., ...))``): the parameters travel as
one JSON argument of ``silver-node NAME``, which the transport quotes like any
other. The node (``silverlining.node.__main__``) finds the name in ``COMMANDS``,
decodes and checks the JSON into the same class, imports only the module named
by ``HANDLER`` and calls the handler with it; the handler's answer (a JSON object,
the command's ``Result``) is the last line of stdout. Secrets never travel as
parameters: a command that needs them says what it reads on stdin (``STDIN``).

A raw command (``RAW``: ``run``, ``logs``, ``job-attach``) owns stdout instead;
its exit status is its result.

Standard library only: this module ships to nodes and is imported by every call.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

DEFAULT_LOCK_WAIT = 300.0
"""Seconds a command waits for an app's lock (another deploy) before it gives up."""
RENEW_WITHIN_DAYS = 30.0
"""A certificate this close to its expiry is renewed (and never kept by a deploy)."""

COMMANDS: dict[str, type["Command"]] = {}


class ProtocolError(ValueError):
    """Parameters that do not fit a command's definition."""


_SEALED = dict(init=False, repr=False, eq=False, kw_only=True)
"""Dataclasses whose ``__init__``, ``__repr__`` and ``__eq__`` are ``Command``'s own:
the ones ``dataclass`` writes are compiled per class, which was most of the time
every process on both sides spent importing this module."""


@dataclass(**_SEALED)
class Command:
    """A node command's parameters; the class says what the command is.

    A call is a value: once made it cannot be changed (``dataclasses.replace`` makes
    another). Sealed here rather than by frozen dataclasses, whose generated methods
    cost even more to create."""

    NAME: ClassVar[str]
    HANDLER: ClassVar[str]        # "MODULE:FUNCTION" in silverlining.node
    Result: ClassVar[type]        # a TypedDict: the keys of the JSON answer
    RAW: ClassVar[bool] = False   # owns stdout; its exit status is the result
    STDIN: ClassVar[str] = ""     # what it reads on stdin (secrets travel there)

    def __init__(self, **values: Any) -> None:
        """Keyword arguments only, one per field; a field left out takes its default."""
        fields = dataclasses.fields(self)
        unknown = sorted(set(values) - {f.name for f in fields})
        if unknown:
            raise TypeError(f"{type(self).__name__}: no parameter {', '.join(unknown)}")
        for f in fields:
            name = f.name
            if name in values:
                value = values[name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                raise TypeError(f"{type(self).__name__}: missing parameter {name}")
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __setattr__(self, name: str, value: Any) -> None:
        """Each field is set once, by ``__init__``."""
        if name in self.__dict__ or name not in self.__dataclass_fields__:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def encode(self) -> str:
        """The parameters that differ from their defaults, as one JSON object."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.default is dataclasses.MISSING or getattr(self, f.name) != f.default}
        return json.dumps(values, separators=(",", ":"), sort_keys=True)

    @classmethod
    def decode(cls, text: str | None) -> "Command":
        """The parameters of a call (no text: every one at its default), checked."""
        try:
            values = json.loads(text) if text else {}
        except ValueError:
            raise ProtocolError(f"{cls.NAME}: the parameters are not JSON") from None
        if not isinstance(values, dict):
            raise ProtocolError(f"{cls.NAME}: the parameters are not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ProtocolError(f"{cls.NAME}: no parameter {', '.join(unknown)}")
        missing = sorted(name for name, f in fields.items() if name not in values
                         and f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ProtocolError(f"{cls.NAME}: missing {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        return cls(**{name: _checked(cls.NAME, name, value, hints[name])
                      for name, value in values.items()})


def _checked(command: str, name: str, value: Any, kind: Any) -> Any:
    """``value`` if JSON gave it the declared type (an int stands for a float)."""
    if isinstance(kind, types.UnionType):
        if value is None and type(None) in kind.__args__:
            return None
        kind = next(k for k in kind.__args__ if k is not type(None))
    if typing.get_origin(kind) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, kind):
        return value
    raise ProtocolError(f"{command}: {name} must be {getattr(kind, '__name__', kind)}, "
                        f"not {json.dumps(value)}")


def command(cls: type[Command]) -> type[Command]:
    """Declare a command: a keyword-only dataclass (sealed), listed in ``COMMANDS``."""
    cls = dataclass(**_SEALED)(cls)
    assert cls.NAME not in COMMANDS, cls.NAME
    COMMANDS[cls.NAME] = cls
    return cls


@dataclass(**_SEALED)
class Audited(Command):
    """A command that changes something: recorded in the node's audit log with who
    asked (``user@host`` of the CLI, filled in by ``NodeSession.send``)."""

    who: str | None = None


@dataclass(**_SEALED)
class Locked(Audited):
    """A change made under the app's lock, waiting for it up to ``lock_wait`` seconds."""

    lock_wait: float = DEFAULT_LOCK_WAIT


class Nothing(TypedDict):
    """An answer with nothing in it."""


# --- before an upload -------------------------------------------------------------

class InfoResult(TypedDict, total=False):
    python: str
    python_full: str
    machine: str
    hostname: str
    silverlining: str
    params_set: list[str]
    target: dict[str, str]            # what dependency builds are for (node/deps.py)
    deps: list[str]                   # the dependency sets the node has


@command
class Info(Command):
    """The node's Python and platform; with ``app``, the names of its stored parameters."""

    NAME = "info"
    HANDLER = "apps:info"
    Result = InfoResult
    app: str | None = None


class ReserveResult(TypedDict):
    version: str
    upload_dir: str
    basis: str | None


@command
class Reserve(Locked):
    """Allocate an app's next version and its upload directory."""

    NAME = "reserve"
    HANDLER = "apps:reserve"
    Result = ReserveResult
    app: str
    source: str | None = None


class PrepareResult(InfoResult, total=False):
    missing: list[str]
    unchanged: str
    version: str
    upload_dir: str
    basis: str | None


@command
class Prepare(Reserve):
    """``info``, the no-change check and ``reserve`` in one round trip."""

    NAME = "prepare"
    HANDLER = "apps:prepare"
    Result = PrepareResult
    needs: tuple[str, ...] = ()       # parameters the upload does not set itself
    size: int | None = None           # bytes to upload: refused if the disk cannot hold them
    fingerprint: str | None = None    # of the upload; with location, nothing is reserved
    location: str | None = None       # when the live version has the same


# --- deploying --------------------------------------------------------------------

class DepsInstallResult(TypedDict):
    fingerprint: str
    installed: bool                   # False: the node had it already
    files: int


@command
class DepsInstall(Command):
    """Make a dependency layer from the set on stdin, checked against its fingerprint."""

    NAME = "deps-install"
    HANDLER = "deps:receive"
    Result = DepsInstallResult
    STDIN = "the dependency set as a tar stream (silverlining/depset.py)"
    fingerprint: str
    base: str | None = None           # a layer here whose files the stream leaves out


class DeployResult(TypedDict):
    app: str
    version: str
    location: str
    previous: str | None
    instance: str
    host: str


@command
class Deploy(Locked):
    """Build, start, check and switch to an uploaded version."""

    NAME = "deploy"
    HANDLER = "deploy:deploy"
    Result = DeployResult
    STDIN = ("with params_stdin: the parameter changes as JSON ({\"set\": {...}, \"unset\": "
             "[...]}); with wait_upload that is the first line, and the deploy goes on "
             "only when the line 'uploaded' follows; with deps_sent, it takes the "
             "dependency layer only once the line 'deps-installed' follows that; the "
             "client then keeps stdin open until the answer: its end before the switch "
             "stops the deploy")
    app: str
    version: str
    location: str
    clear: bool = False
    backup: bool = False              # keep the live version's data as remote:before-VERSION
    params_stdin: bool = False
    fingerprint: str | None = None    # of the uploaded files, kept with the version
    wait_upload: bool = False
    deps: str | None = None           # the dependency set (node/deps.py) the version uses
    deps_sent: bool = False           # that set is on its way (deps-install) meanwhile


@command
class Redeploy(Locked):
    """The live version again as a new version, with parameter changes (nothing uploaded)."""

    NAME = "redeploy"
    HANDLER = "deploy:redeploy"
    Result = DeployResult
    STDIN = "the parameter changes as JSON ({\"set\": {...}, \"unset\": [...]})"
    location: str


class CertsPrepareResult(TypedDict):
    hosts: dict[str, dict]


@command
class CertsPrepare(Command):
    """Certificates for a location before its switch; records the version's HTTPS mode."""

    NAME = "certs-prepare"
    HANDLER = "certs:prepare"
    Result = CertsPrepareResult
    STDIN = "with stdin: JSON with ca (PEM), and cert and key (PEM) of the user's own"
    app: str
    version: str
    location: str
    mode: str
    directory: str | None = None      # ACME directory URL (none: only a given certificate)
    email: str | None = None
    www: bool = False                 # also try www.HOST (best effort)
    stdin: bool = False
    lock_wait: float = DEFAULT_LOCK_WAIT


class CertsListResult(TypedDict):
    certs: dict[str, dict]


@command
class CertsList(Command):
    """Certificates: issuer, expiry, last renewal."""

    NAME = "certs-list"
    HANDLER = "certs:certs_list"
    Result = CertsListResult
    hosts: tuple[str, ...] = ()


class CertsRenewResult(TypedDict):
    renewed: list[str]
    failed: dict[str, str]
    checked: list[str]


@command
class CertsRenew(Command):
    """Renew the ACME certificates that expire within ``renew_within`` days."""

    NAME = "certs-renew"
    HANDLER = "renewal:certs_renew"
    Result = CertsRenewResult
    renew_within: float = RENEW_WITHIN_DAYS
    hosts: tuple[str, ...] = ()


# --- what is live -----------------------------------------------------------------

class ActivateResult(TypedDict, total=False):
    app: str
    version: str
    location: str
    previous: str | None
    unchanged: bool
    restored: str


@command
class Activate(Locked):
    """Point a location at a kept version (``prev``, ``vN``, ``N`` or ``APP.vN``)."""

    NAME = "activate"
    HANDLER = "activate:activate"
    Result = ActivateResult
    location: str
    version: str
    restore_data: bool = False        # bring back the data this version left (update --backup)


class DeactivateResult(TypedDict):
    removed: list[dict]


@command
class Deactivate(Audited):
    """Stop serving locations."""

    NAME = "deactivate"
    HANDLER = "activate:deactivate"
    Result = DeactivateResult
    locations: tuple[str, ...]
    keep_prev: bool = False


class DisableResult(TypedDict):
    app: str
    disabled: bool
    changed: bool


@command
class Disable(Locked):
    """Answer an app's requests with the 503 page (the app at ``location``, or ``app``)."""

    NAME = "disable"
    HANDLER = "disable:disable"
    Result = DisableResult
    location: str | None = None
    app: str | None = None


@command
class Enable(Disable):
    """Serve a disabled app again."""

    NAME = "enable"
    HANDLER = "disable:enable"


class ServedResult(TypedDict):
    app: str
    version: str


@command
class Served(Command):
    """The app version live at a location."""

    NAME = "served"
    HANDLER = "live:served_cmd"
    Result = ServedResult
    location: str


class ManifestResult(TypedDict):
    app: str
    version: str
    files: dict[str, str]
    deps: dict | None                 # the version's dependency set (node/deps.py)
    target: dict[str, str]


@command
class Manifest(Command):
    """sha256 of each file of the version live at a location."""

    NAME = "manifest"
    HANDLER = "live:manifest"
    Result = ManifestResult
    location: str


class CatResult(TypedDict):
    files: dict[str, str | None]


@command
class Cat(Command):
    """The contents of files of an app version (base64; None: too big to show)."""

    NAME = "cat"
    HANDLER = "live:cat"
    Result = CatResult
    app: str
    version: str
    paths: tuple[str, ...]


@command
class Logs(Command):
    """The end of an app version's log (raw: the log is our output)."""

    NAME = "logs"
    HANDLER = "live:logs"
    Result = Nothing
    RAW = True
    app: str
    version: str
    lines: int = 50
    follow: bool = False
    process: str | None = None        # a worker's log ([process:NAME])
    cron: str | None = None           # a cron job's log ([cron:NAME])
    journal: bool = False             # systemd's lines on the version's units
    job: str | None = None            # a detached run's output (silver run --detach)


class ParamsResult(TypedDict):
    app: str
    version: str
    params: list[dict]


@command
class Params(Command):
    """The parameters of the app live at a location (hidden values never leave the node)."""

    NAME = "params"
    HANDLER = "params:show"
    Result = ParamsResult
    location: str


class QueryResult(TypedDict, total=False):
    node: str
    apps: list[dict]
    routes: dict[str, dict]
    health: dict[str, dict]
    certs: dict[str, dict]            # as CertsListResult's
    balancer: dict[str, dict]         # on a balancer node: what balancer-query answers


@command
class Query(Command):
    """Apps (all, or those matching ``globs``), their versions and where they are live,
    and the certificates of the hosts they are live at."""

    NAME = "query"
    HANDLER = "query:query"
    Result = QueryResult
    globs: tuple[str, ...] = ()
    health: bool = False              # what each live location's /.silver/health says
    all_certs: bool = False           # every certificate on the node, not only those


class AuditResult(TypedDict):
    entries: list[dict]


@command
class Audit(Command):
    """The last entries of the audit log."""

    NAME = "audit"
    HANDLER = "audit:listing"
    Result = AuditResult
    app: str | None = None
    n: int = 50


class CleanResult(TypedDict):
    removed: list[str]
    dry_run: bool


@command
class Clean(Locked):
    """Delete versions nothing points to, beyond the newest ``keep`` of each app."""

    NAME = "clean"
    HANDLER = "clean:clean"
    Result = CleanResult
    keep: int = 3
    dry_run: bool = False


# --- data -------------------------------------------------------------------------

class BackupResult(TypedDict, total=False):
    app: str
    version: str
    services: list[str]
    time: str
    size: int
    path: str
    name: str
    token: str


@command
class Backup(Locked):
    """Dump the services of the app at a location (``remote``: kept on the node)."""

    NAME = "backup"
    HANDLER = "data:backup"
    Result = BackupResult
    location: str
    remote: str | None = None
    of_version: str | None = None     # the live version whose data this is (update --backup)


@command
class BackupDiscard(Command):
    """Remove the node's copy of a fetched backup."""

    NAME = "backup-discard"
    HANDLER = "data:discard"
    Result = Nothing
    app: str
    token: str


class RestorePrepareResult(TypedDict):
    app: str
    token: str
    upload_dir: str


@command
class RestorePrepare(Command):
    """An upload directory for an archive to restore."""

    NAME = "restore-prepare"
    HANDLER = "data:restore_prepare"
    Result = RestorePrepareResult
    location: str


class RestoreResult(TypedDict):
    app: str
    version: str
    services: list[str]
    backup: dict


@command
class Restore(Locked):
    """Replace the app's data with a checked backup (``upload`` token or ``remote`` name)."""

    NAME = "restore"
    HANDLER = "data:restore"
    Result = RestoreResult
    location: str
    upload: str | None = None
    remote: str | None = None
    data_of: str | None = None        # the newest backup of this version's data (services node)
    force_app: bool = False


class ClearResult(TypedDict):
    app: str
    version: str
    services: list[str]


@command
class Clear(Locked):
    """Empty the app's service data, then run its update_fetch."""

    NAME = "clear"
    HANDLER = "data:clear"
    Result = ClearResult
    location: str


# --- scripts and jobs -------------------------------------------------------------

class RestartProcessResult(TypedDict):
    app: str
    version: str
    units: list[str]


@command
class RestartProcess(Audited):
    """Restart a worker of the app live at a location."""

    NAME = "restart-process"
    HANDLER = "jobs:restart_process"
    Result = RestartProcessResult
    location: str
    process: str


class RunPrepareResult(TypedDict, total=False):
    app: str
    version: str
    token: str
    upload_dir: str
    run_dir: str
    params: str


@command
class RunPrepare(Command):
    """Check a script of a live app before running it; an upload dir for local files."""

    NAME = "run-prepare"
    HANDLER = "scripts:prepare"
    Result = RunPrepareResult
    STDIN = "with params_stdin: parameter values for this run only, as JSON"
    location: str
    script: str
    upload: bool = False
    params_stdin: bool = False


@command
class Run(Command):
    """Run a script of an app version in its environment (raw: its output is ours)."""

    NAME = "run"
    HANDLER = "scripts:run"
    Result = Nothing
    RAW = True
    STDIN = "the script's own"
    app: str
    version: str
    script: str
    args: tuple[str, ...] = ()
    user: str = "app"                 # or "root"
    upload: str | None = None         # files uploaded after run-prepare's upload
    params: str | None = None         # parameters stored by run-prepare


class RunDetachResult(TypedDict):
    app: str
    version: str
    id: str


@command
class RunDetach(Audited):
    """Start a script of a live app in the background."""

    NAME = "run-detach"
    HANDLER = "detached:start"
    Result = RunDetachResult
    location: str
    script: str
    args: tuple[str, ...] = ()


class JobsResult(TypedDict):
    app: str
    jobs: list[dict]


@command
class Jobs(Command):
    """An app's detached runs."""

    NAME = "jobs"
    HANDLER = "detached:listing"
    Result = JobsResult
    location: str


class JobStopResult(TypedDict):
    app: str
    id: str


@command
class JobStop(Audited):
    """Stop a detached run."""

    NAME = "job-stop"
    HANDLER = "detached:stop"
    Result = JobStopResult
    location: str
    id: str


@command
class JobAttach(Command):
    """Follow a detached run until it ends (raw: its exit status is ours)."""

    NAME = "job-attach"
    HANDLER = "detached:attach"
    Result = Nothing
    RAW = True
    app: str
    id: str


# --- the node itself --------------------------------------------------------------

class ServerVersionResult(TypedDict):
    version: str | None
    setup_runs: list[str]


@command
class ServerVersion(Command):
    """The server files' version this node has, and the last setup-node runs."""

    NAME = "server-version"
    HANDLER = "setup:server_version"
    Result = ServerVersionResult


class CheckVersionResult(TypedDict):
    version: str


@command
class CheckVersion(Command):
    """Fail unless the node was set up with exactly these server files."""

    NAME = "check-version"
    HANDLER = "setup:check_version"
    Result = CheckVersionResult
    expected: str


class RoutingApplyResult(TypedDict):
    changed: bool


@command
class RoutingApply(Command):
    """Regenerate the nginx routing from the routing table."""

    NAME = "routing-apply"
    HANDLER = "routing:apply_table"
    Result = RoutingApplyResult


# --- balancing a location over several nodes (docs/balancer.md) ------------------------

class BalancedResult(TypedDict):
    changed: bool


@command
class Balanced(Audited):
    """On a member: serve a location only to its balancer (and take the client's address
    from it); without via, serve it directly again."""

    NAME = "balanced"
    HANDLER = "routing:balanced"
    Result = BalancedResult
    location: str
    via: str | None = None            # the balancer's address on the nodes' network, or the
    #                                   network (CIDR) a provider's balancer connects from


class BalancerResult(TypedDict):
    sites: dict[str, dict]            # location -> {app, batch, members: [{name, address, state, ...}]}


@command
class BalancerApply(Audited):
    """On a balancer: install HAProxy if needed and front a location by these members
    (NAME=ADDRESS; those in ``maint`` take no traffic yet); ``remove`` drops it."""

    NAME = "balancer-apply"
    HANDLER = "balancer:apply"
    Result = BalancerResult
    location: str
    app: str = ""
    members: tuple[str, ...] = ()
    maint: tuple[str, ...] = ()       # members that start out of rotation (not deployed yet)
    batch: str = ""
    remove: bool = False
    https: str = ""                   # off, auto, required (empty: as recorded)
    services: str = ""                # the location's services node (empty: as recorded)


@command
class BalancerCerts(Audited):
    """On a balancer: the certificate of a location's host, where TLS ends (ACME
    HTTP-01, or the user's own), then HAProxy serves it."""

    NAME = "balancer-certs"
    HANDLER = "balancer:certs"
    Result = CertsPrepareResult
    STDIN = "with stdin: JSON with ca (PEM), and cert and key (PEM) of the user's own"
    location: str
    directory: str | None = None
    email: str | None = None
    stdin: bool = False


@command
class BalancerState(Audited):
    """On a balancer: put members of a location in rotation (ready), drain them (no new
    requests; waits for those in flight up to ``wait`` seconds) or take them out (maint)."""

    NAME = "balancer-state"
    HANDLER = "balancer:set_state"
    Result = BalancerResult
    location: str
    members: tuple[str, ...]
    state: str
    wait: float = 10.0


@command
class BalancerQuery(Command):
    """On a balancer: each location it fronts (or one), its members, their state and
    health as HAProxy sees them."""

    NAME = "balancer-query"
    HANDLER = "balancer:query"
    Result = BalancerResult
    location: str | None = None


# --- services nodes (docs/services-node.md) ------------------------------------------

class ServicesHostResult(TypedDict):
    app: str
    location: str
    services: list[str]
    members: dict[str, str]           # name -> address admitted
    postgresql: dict[str, str]        # dbname, user, run_user, port (no secrets); {}: none
    mysql: dict[str, str]             # the same for MariaDB; {}: none


@command
class ServicesHost(Locked):
    """On a services node: serve an app's databases to a location's members over TLS
    (the server installed and given its certificate first); only the members get in
    (pg_hba.conf or MariaDB's accounts, and the node firewall)."""

    NAME = "services-host"
    HANDLER = "hosting:host"
    Result = ServicesHostResult
    STDIN = ("JSON: app_ini (the app's app.ini), cert and key (PEM: this node's server "
             "certificate), passwords ({ROLE: password})")
    app: str
    location: str
    members: tuple[str, ...] = ()     # NAME=ADDRESS, as this node sees them
    add: bool = False                 # added to the members recorded (else: these only)
    drop: tuple[str, ...] = ()        # member names no longer admitted


@command
class ServicesUse(Locked):
    """On a member: the app's databases are on a services node; record how to reach
    them (verified TLS) and the CA that signs the services node's certificate."""

    NAME = "services-use"
    HANDLER = "hosting:use"
    Result = Nothing
    STDIN = ("JSON: ca (PEM), services, and for each of their servers (postgresql, "
             "mysql): node, host, port, dbname, user, password, run_user, run_password")
    app: str


class ServicesMembersResult(TypedDict):
    app: str
    members: list[str]


@command
class ServicesLeave(Locked):
    """On a services node: ``drop`` no longer serve the location (``silver deactivate``):
    admit them no more (access lists and firewall); the databases stay."""

    NAME = "services-leave"
    HANDLER = "hosting:leave"
    Result = ServicesMembersResult
    location: str
    drop: tuple[str, ...] = ()        # the members (names) that stopped serving it


@command
class ServicesMembers(Command):
    """On a services node: the app it holds databases for at a location, and the
    members it admits."""

    NAME = "services-members"
    HANDLER = "hosting:members_cmd"
    Result = ServicesMembersResult
    location: str


class ReplicaPrimaryResult(TypedDict):
    port: str
    slot: str
    hosted: dict[str, dict]           # app -> {app_ini, record}: what the replica will hold


@command
class ReplicaPrimary(Audited):
    """On a services node: let a streaming replica in (its replication role, a slot,
    pg_hba.conf and the firewall for its address)."""

    NAME = "replica-primary"
    HANDLER = "replica:primary"
    Result = ReplicaPrimaryResult
    STDIN = "JSON: password (the replication role's), cert and key (PEM: this node's)"
    replica: str
    address: str                      # the replica's, as this node sees it


class ReplicaFollowResult(TypedDict):
    primary: str
    state: str


@command
class ReplicaFollow(Audited):
    """On a node of its own: become a streaming replica of a services node's PostgreSQL
    (pg_basebackup over verified TLS), holding the same apps' databases."""

    NAME = "replica-follow"
    HANDLER = "replica:follow"
    Result = ReplicaFollowResult
    STDIN = ("JSON: password (the replication role's), ca, cert and key (PEM: this "
             "node's), hosted (the primary's records)")
    primary: str
    address: str                      # the primary's, as this node sees it
    port: str
    slot: str


class ReplicaPromoteResult(TypedDict):
    was_replica_of: str
    hosted: dict[str, ServicesHostResult]


@command
class ReplicaPromote(Audited):
    """On a replica: once it has replayed ``wait_lsn`` (the fenced primary's last
    write), become the primary and serve its apps' databases to their members."""

    NAME = "replica-promote"
    HANDLER = "replica:promote"
    Result = ReplicaPromoteResult
    STDIN = "JSON: passwords ({ROLE: password}), cert and key (PEM: this node's)"
    wait_lsn: str | None = None


class ServicesFenceResult(TypedDict):
    lsn: str


@command
class ServicesFence(Audited):
    """On a services node whose replica takes over: admit no member any more, end the
    apps' sessions, and say where its write-ahead log ends."""

    NAME = "services-fence"
    HANDLER = "replica:fence"
    Result = ServicesFenceResult


class ReplicaStatusResult(TypedDict, total=False):
    role: str                         # primary, replica (absent: no PostgreSQL here)
    primary: str                      # a replica's primary; a promoted one's former primary
    state: str
    lag_bytes: int
    lag_seconds: float
    replicas: list[dict]


@command
class ReplicaStatus(Command):
    """This node's PostgreSQL replication: its replicas and their lag, or its primary
    and how far behind it is."""

    NAME = "replica-status"
    HANDLER = "replica:status_cmd"
    Result = ReplicaStatusResult
