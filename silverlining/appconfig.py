"""``app.ini`` as a validated ``AppConfig``.

Used on the developer's machine and on the node (stdlib only), so an app that
validates locally is read the same way where it runs.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from silverlining.inifile import IniFile, parse_bool, read_ini, split_lines, suggest

SECTION = "production"
# Apps run as node user ``sl-<app_name>``; Linux user names stop at 32 characters.
MAX_NAME_LEN = 28
NAME_RE = re.compile(rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_NAME_LEN - 1}}}\Z")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_MODULE_RUNNER = re.compile(rf"^{_DOTTED}:{_DOTTED}\Z")
_FILE_RUNNER = re.compile(r"^([^#\s]+\.py)(?:#([A-Za-z_][A-Za-z0-9_]*))?\Z")
# Debian package names; a trailing '-' would ask apt to *remove* the package, so
# a name must end in a letter, digit or '+' (g++), and options never pass.
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*[a-z0-9+]\Z")
# distribution names as PEP 508 writes them (compared normalized, PEP 503)
_DIST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_MEMORY_RE = re.compile(r"^[1-9][0-9]*[KMGT]?\Z")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*\Z")
INTERFACES = ("wsgi", "asgi")
# off: HTTP only (what an app.ini without the key gets, so existing apps never
# contact an ACME server); auto: HTTPS where a certificate can be had; required:
# HTTPS or no deploy, and plain HTTP redirects.
HTTPS_MODES = ("off", "auto", "required")
KEYS = ("app_name", "runner", "interface", "update_fetch", "default_location",
        "packages", "build_on_node", "health_check", "config.required", "config.default",
        "config.checker", "config.schema", "config.template", "memory_max", "start_timeout",
        "https", "limits.memory", "limits.tasks", "limits.cpu_weight", "limits.io_weight",
        "limits.postgresql_connections", "limits.mysql_connections", "limits.redis_memory",
        "limits.redis_connections")
_LIMIT_MEMORY_RE = re.compile(r"^(?:[1-9][0-9]*[KMGT]?|[1-9][0-9]?%|100%|infinity)\Z")


@dataclass(frozen=True)
class Limits:
    """What one app may take of the node it shares (``limits.*``): its systemd slice
    (``memory``: ``MemoryMax=``; ``tasks``: ``TasksMax=``, also ``LimitNPROC=`` of each
    unit; the weights), its connections to the shared database servers, and its own
    Redis instance's ``maxmemory`` and ``maxclients``. The
    defaults suit a small node (1-2 GB, a few apps)."""

    memory: str = "50%"
    tasks: int = 512
    cpu_weight: int = 100
    io_weight: int = 100
    postgresql_connections: int = 20
    mysql_connections: int = 20
    redis_memory: str = "64M"
    redis_connections: int = 50


@dataclass(frozen=True)
class Runner:
    """Where the app object lives: a file (relative to the app) or a module."""

    spec: str
    path: str | None = None     # for file runners, relative to the app dir
    module: str | None = None   # for module runners
    attr: str = "application"


@dataclass(frozen=True)
class FetchEntry:
    """One ``update_fetch`` line: a URL path, or a script with arguments."""

    url: str | None = None
    script: str | None = None
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parameter:
    """A ``[parameter:NAME]`` section: a deploy-time value the app gets as ``NAME``
    in upper case (``api_token`` -> ``API_TOKEN``)."""

    name: str
    description: str = ""
    default: str | None = None
    hidden: bool = False
    pattern: str | None = None

    @property
    def env_name(self) -> str:
        return self.name.upper()

    def check(self, value: str) -> str | None:
        """Why ``value`` is not acceptable (never quoting a hidden value), or None."""
        if "\n" in value or "\0" in value:
            return f"parameter {self.name}: the value holds a newline or NUL"
        if self.pattern and not re.fullmatch(self.pattern, value):
            shown = "the value" if self.hidden else repr(value)
            return f"parameter {self.name}: {shown} does not match {self.pattern!r}"
        return None


@dataclass(frozen=True)
class Process:
    """A ``[process:NAME]`` section: a long-running worker of the app."""

    name: str
    command: tuple[str, ...]      # a script of the app (or python) and its arguments
    instances: int = 1
    health_check: str | None = None   # a path the worker answers on 127.0.0.1:$PORT


@dataclass(frozen=True)
class Cron:
    """A ``[cron:NAME]`` section: a scheduled job of the live version."""

    name: str
    schedule: str                 # as written in app.ini
    calendar: str                 # systemd OnCalendar= form
    command: tuple[str, ...]


@dataclass(frozen=True)
class AppConfig:
    """Everything ``app.ini`` says about an app, checked."""

    app_dir: Path
    app_name: str
    runner: Runner | None          # None: no web part (workers, crons or scripts only)
    interface: str = "wsgi"
    update_fetch: tuple[FetchEntry, ...] = ()
    default_location: str | None = None
    services: dict[str, str] = field(default_factory=dict)
    packages: tuple[str, ...] = ()
    build_on_node: tuple[str, ...] = ()   # declared dependencies the node compiles (deps.py)
    health_check: str | None = None
    config_required: bool = False
    config_default: str | None = None
    config_checker: str | None = None
    config_schema: str | None = None
    config_template: str | None = None
    memory_max: str | None = None
    start_timeout: int = 60
    https: str = "off"
    limits: Limits = field(default_factory=Limits)
    parameters: dict[str, Parameter] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    crons: dict[str, Cron] = field(default_factory=dict)

    @property
    def ini_path(self) -> Path:
        return self.app_dir / "app.ini"

    @classmethod
    def load(cls, app_dir: Path | str, check_files: bool = True) -> "AppConfig":
        """Read and validate ``APP_DIR/app.ini``; raises ``ConfigError``."""
        app_dir = Path(app_dir).resolve()
        ini = read_ini(app_dir / "app.ini")
        return parse_app_ini(ini, app_dir, check_files)


def parse_runner(ini: IniFile, value: str, app_dir: Path, check_files: bool) -> Runner:
    if not value:
        raise ini.error("is empty; give path/file.py, path/file.py#name or "
                        "package.module:name", SECTION, "runner")
    if m := _FILE_RUNNER.match(value):
        rel = m.group(1)
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ini.error(f"{rel!r} must be a path inside the app directory",
                            SECTION, "runner")
        if check_files and not (app_dir / rel).is_file():
            raise ini.error(f"file {rel!r} not found in {app_dir}", SECTION, "runner")
        return Runner(value, path=rel, attr=m.group(2) or "application")
    if _MODULE_RUNNER.match(value):
        module, attr = value.split(":")
        return Runner(value, module=module, attr=attr)
    raise ini.error(f"{value!r} is not path/file.py, path/file.py#name or "
                    "package.module:name", SECTION, "runner")


def parse_build_on_node(ini: IniFile, value: str) -> tuple[str, ...]:
    """``build_on_node``: declared dependencies (distribution names) whose source
    the node compiles for itself, normalized as PEP 503 compares them."""
    names: list[str] = []
    for name in value.replace(",", " ").split():
        if not _DIST_RE.match(name):
            raise ini.error(f"{name!r} is not a distribution name (letters, digits, '.', "
                            "'_', '-'; no version or extras: the declaration pins those)",
                            SECTION, "build_on_node")
        normal = re.sub(r"[-_.]+", "-", name).lower()
        if normal in names:
            raise ini.error(f"{name!r} is named twice", SECTION, "build_on_node")
        names.append(normal)
    return tuple(names)


def parse_fetch(ini: IniFile, value: str) -> tuple[FetchEntry, ...]:
    entries = []
    for line in split_lines(value):
        if line.startswith("script:"):
            words = line[len("script:"):].split()
            if not words:
                raise ini.error("'script:' needs a script path", SECTION, "update_fetch")
            entries.append(FetchEntry(script=words[0], args=tuple(words[1:])))
        elif _PATH_RE.match(line):
            entries.append(FetchEntry(url=line))
        else:
            raise ini.error(f"{line!r} is neither a URL path starting with '/' "
                            "nor 'script:PATH ARGS'", SECTION, "update_fetch")
    return tuple(entries)


def parse_app_ini(ini: IniFile, app_dir: Path, check_files: bool = True) -> AppConfig:
    """Validate the parsed file; every error names the file, line and key."""
    from silverlining.services import SERVICE_NAMES

    if SECTION not in ini.sections:
        others = ", ".join(f"[{s}]" for s in ini.sections) or "none"
        raise ini.error(f"no [{SECTION}] section (found: {others})")
    values = ini.sections[SECTION]
    services: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("service."):
            name = key[len("service."):]
            if name not in SERVICE_NAMES:
                raise ini.error(f"unknown service {name!r}{suggest(name, list(SERVICE_NAMES))}; "
                                f"known: {', '.join(SERVICE_NAMES)}", SECTION, key)
            if value:
                raise ini.error(f"service.{name} takes no value (got {value!r}): the node's "
                                "OS packages decide the server version", SECTION, key)
            services[name] = value
        elif key not in KEYS:
            raise ini.error(f"unknown key{suggest(key, list(KEYS) + ['service.NAME'])}",
                            SECTION, key)
    if "app_name" not in values:
        raise ini.error("missing required key 'app_name'", SECTION)
    name = values["app_name"]
    if not NAME_RE.match(name):
        raise ini.error(f"{name!r} is not a safe name: use lowercase letters, digits, "
                        f"'-' and '_', starting with a letter or digit, at most {MAX_NAME_LEN} "
                        "characters", SECTION, "app_name")
    interface = values.get("interface", "wsgi").lower() or "wsgi"
    if interface not in INTERFACES:
        raise ini.error(f"{interface!r} must be one of: {', '.join(INTERFACES)}",
                        SECTION, "interface")
    packages = tuple(values.get("packages", "").replace(",", " ").split())
    for pkg in packages:
        if not _PACKAGE_RE.match(pkg):
            raise ini.error(f"{pkg!r} is not a valid package name (Debian names: lowercase "
                            "letters, digits, '.', '+', '-', not ending in '-')",
                            SECTION, "packages")
    build_on_node = parse_build_on_node(ini, values.get("build_on_node", ""))
    inside = {}
    for key, kind in (("config.schema", "file"), ("config.template", "directory")):
        rel = values.get(key) or None
        if rel and (rel.startswith("/") or ".." in Path(rel).parts):
            raise ini.error(f"{rel!r} must be a path inside the app directory", SECTION, key)
        found = rel and (app_dir / rel).is_file() if kind == "file" else \
            rel and (app_dir / rel).is_dir()
        if rel and check_files and not found:
            raise ini.error(f"{kind} {rel!r} not found in {app_dir}", SECTION, key)
        inside[key] = rel
    start_timeout = values.get("start_timeout") or "60"
    if not start_timeout.isdigit() or not 1 <= int(start_timeout) <= 900:
        raise ini.error(f"{start_timeout!r} must be a number of seconds from 1 to 900",
                        SECTION, "start_timeout")
    memory_max = values.get("memory_max") or None
    if memory_max and not _MEMORY_RE.match(memory_max):
        raise ini.error(f"{memory_max!r} must be a size such as 256M or 1G", SECTION,
                        "memory_max")
    health = values.get("health_check") or None
    if health and not _PATH_RE.match(health):
        raise ini.error(f"{health!r} must be a URL path starting with '/'",
                        SECTION, "health_check")
    config_required = values.get("config.required", "").lower() in ("1", "true", "yes", "on")
    if values.get("config.required", "").lower() not in ("", "0", "1", "true", "false",
                                                        "yes", "no", "on", "off"):
        raise ini.error("expected true or false", SECTION, "config.required")
    checker = values.get("config.checker") or None
    if checker and not _MODULE_RUNNER.match(checker):
        raise ini.error(f"{checker!r} must be module:function", SECTION, "config.checker")
    location = values.get("default_location") or None
    if location:
        from silverlining.locations import parse_location
        from silverlining.errors import UsageError
        try:
            parse_location(location)
        except UsageError as exc:
            raise ini.error(exc.message, SECTION, "default_location") from None
    https = values.get("https", "off").strip().lower() or "off"
    if https not in HTTPS_MODES:
        raise ini.error(f"{values['https']!r} must be one of: {', '.join(HTTPS_MODES)}",
                        SECTION, "https")
    if "runner" not in values:
        check_no_web(ini, values)
    limits = parse_limits(ini, values)
    return AppConfig(
        app_dir=app_dir,
        app_name=name,
        runner=parse_runner(ini, values["runner"], app_dir, check_files)
        if "runner" in values else None,
        interface=interface,
        update_fetch=parse_fetch(ini, values.get("update_fetch", "")),
        default_location=location,
        services=services,
        packages=packages,
        build_on_node=build_on_node,
        health_check=health,
        config_required=config_required,
        config_default=values.get("config.default") or None,
        config_checker=checker,
        config_schema=inside["config.schema"],
        config_template=inside["config.template"],
        memory_max=memory_max,
        start_timeout=int(start_timeout),
        https=https,
        limits=limits,
        parameters=parse_parameters(ini),
        processes=parse_processes(ini),
        crons=parse_crons(ini),
    )


def size_bytes(size: str) -> int:
    """``256M`` -> bytes (a size ``_MEMORY_RE`` accepted)."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(size[:-1]) * scale[size[-1]] if size[-1] in scale else int(size)


# limits.KEY (integer keys): (lowest, highest, what the number is)
_LIMIT_RANGES = {
    "tasks": (16, 100000, "a number of processes and threads"),
    "cpu_weight": (1, 10000, "a CPU weight (systemd CPUWeight=, 100 is an equal share)"),
    "io_weight": (1, 10000, "an IO weight (systemd IOWeight=, 100 is an equal share)"),
    "postgresql_connections": (2, 1000, "a number of PostgreSQL connections"),
    "mysql_connections": (2, 1000, "a number of MariaDB connections"),
    "redis_connections": (4, 10000, "a number of Redis connections"),
}


def parse_limits(ini: IniFile, values: dict[str, str]) -> Limits:
    """``limits.*``: sizes and counts, each in a range that still lets the app run."""
    found: dict[str, object] = {}
    memory = values.get("limits.memory", "").strip()
    if memory:
        if not _LIMIT_MEMORY_RE.match(memory):
            raise ini.error(f"{memory!r} must be a size (512M, 1G), a share of the node's "
                            "memory (50%) or infinity", SECTION, "limits.memory")
        if memory[-1] != "%" and memory != "infinity" and size_bytes(memory) < 32 << 20:
            raise ini.error(f"{memory!r} is below 32M, too little to start the app",
                            SECTION, "limits.memory")
        found["memory"] = memory
    redis_memory = values.get("limits.redis_memory", "").strip()
    if redis_memory:
        if not _MEMORY_RE.match(redis_memory) or size_bytes(redis_memory) < 8 << 20:
            raise ini.error(f"{redis_memory!r} must be a size of at least 8M (64M, 1G)",
                            SECTION, "limits.redis_memory")
        found["redis_memory"] = redis_memory
    for name, (low, high, what) in _LIMIT_RANGES.items():
        text = values.get(f"limits.{name}", "").strip()
        if not text:
            continue
        if not text.isdigit() or not low <= int(text) <= high:
            raise ini.error(f"{text!r} must be {what} from {low} to {high}", SECTION,
                            f"limits.{name}")
        found[name] = int(text)
    return Limits(**found)  # type: ignore[arg-type]


def check_no_web(ini: IniFile, values: dict[str, str]) -> None:
    """Without a runner there is no web part: keys about one are mistakes."""
    for key in ("health_check", "default_location", "interface"):
        if values.get(key):
            raise ini.error(f"the app has no runner (no web part), so {key} means nothing: "
                            "add runner = ... or drop it", SECTION, key)
    if values.get("https", "off").strip().lower() not in ("", "off"):
        raise ini.error("the app has no runner (no web part), so it has nothing to serve "
                        "over HTTPS: drop https or set it to off", SECTION, "https")
    if any(not line.startswith("script:") for line in split_lines(values.get("update_fetch",
                                                                            ""))):
        raise ini.error("the app has no runner: update_fetch can only run scripts "
                        "(script:PATH)", SECTION, "update_fetch")


JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}\Z")


def _job_sections(ini: IniFile, kind: str, keys: tuple[str, ...]):
    """(name, section, values) of each ``[KIND:NAME]``, names and keys checked."""
    for section, values in ini.sections.items():
        if not section.startswith(kind + ":"):
            continue
        name = section[len(kind) + 1:]
        if not JOB_NAME.match(name):
            raise ini.error(f"{name!r} is not a {kind} name: lowercase letters, digits, '-' "
                            "and '_', at most 31", section)
        for key in values:
            if key not in keys:
                raise ini.error(f"unknown key{suggest(key, list(keys))}; valid: "
                                f"{', '.join(keys)}", section, key)
        yield name, section, values


def _command(ini: IniFile, section: str, values: dict[str, str]) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(values.get("command", "")))
    except ValueError as exc:
        raise ini.error(f"cannot be split into words: {exc}", section, "command") from None
    if not words:
        raise ini.error("missing: a script of the app (or python -m MODULE) and its "
                        "arguments", section, "command")
    if words[0].startswith("/") or ".." in Path(words[0]).parts:
        raise ini.error(f"{words[0]!r} must be a script inside the app (or python)",
                        section, "command")
    return words


def parse_processes(ini: IniFile) -> dict[str, Process]:
    found = {}
    keys = ("command", "instances", "health_check")
    for name, section, values in _job_sections(ini, "process", keys):
        count = values.get("instances", "1")
        if not count.isdigit() or not 1 <= int(count) <= 16:
            raise ini.error(f"{count!r} must be a number from 1 to 16", section, "instances")
        health = values.get("health_check") or None
        if health and not _PATH_RE.match(health):
            raise ini.error(f"{health!r} must be a URL path starting with '/'", section,
                            "health_check")
        found[name] = Process(name, _command(ini, section, values), int(count), health)
    return found


def parse_crons(ini: IniFile) -> dict[str, Cron]:
    from silverlining.schedule import to_calendar

    found = {}
    for name, section, values in _job_sections(ini, "cron", ("schedule", "command")):
        schedule = values.get("schedule", "").strip()
        try:
            calendar = to_calendar(schedule)
        except ValueError as exc:
            raise ini.error(str(exc), section, "schedule") from None
        found[name] = Cron(name, schedule, calendar, _command(ini, section, values))
    return found


PARAM_PREFIX = "parameter:"
PARAM_KEYS = ("description", "default", "hidden", "pattern")
_PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
# Names the node sets itself: a parameter may not shadow them.
RESERVED_ENV = re.compile(r"^(SILVER_.*|CONFIG_.*|TEMP|PATH|PYTHON.*|LANG|LC_.*|HOME|USER|"
                          r"LD_.*)$")


def parse_parameters(ini: IniFile) -> dict[str, Parameter]:
    """``[parameter:NAME]`` sections, checked (names, keys, patterns, defaults)."""
    found = {}
    for section, values in ini.sections.items():
        if not section.startswith(PARAM_PREFIX):
            continue
        name = section[len(PARAM_PREFIX):]
        if not _PARAM_NAME.match(name) or RESERVED_ENV.match(name.upper()):
            raise ini.error(f"{name!r} is not a parameter name: lowercase letters, digits "
                            "and '_', starting with a letter, not a name the node sets "
                            "(SILVER_*, CONFIG_*, PATH, ...)", section)
        for key in values:
            if key not in PARAM_KEYS:
                raise ini.error(f"unknown key{suggest(key, list(PARAM_KEYS))}; valid: "
                                f"{', '.join(PARAM_KEYS)}", section, key)
        pattern = values.get("pattern") or None
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ini.error(f"{pattern!r} is not a regular expression: {exc}",
                                section, "pattern") from None
        param = Parameter(name, values.get("description", ""), values.get("default"),
                          parse_bool(ini, section, "hidden", values.get("hidden", "false")),
                          pattern)
        if param.default is not None and (problem := param.check(param.default)):
            raise ini.error(f"default: {problem}", section, "default")
        found[name] = param
    return found
