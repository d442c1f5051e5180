"""SSH and rsync to nodes: the one place that connects to a server.

Everything goes through OpenSSH, one multiplexed connection per node and login
(``ControlMaster``): the first command to a node logs in and leaves a master
connection behind for ``CONTROL_PERSIST`` idle seconds; every later command and
rsync to that node runs as a new channel of it, with no handshake. The control
sockets live in a private (0700) directory under the state dir
(``control_dir()``); ``disconnect(address)`` closes a node's masters.

The user's ssh config is honoured (``~/.ssh/config``, or ``SILVER_SSH_CONFIG``
instead of it): Port, ProxyJump, IdentityAgent, IdentityFile... We set only
what our guarantees need: the login user (root or the deploy user), host keys
checked against silverlining's own known_hosts (``state.known_hosts_path()``)
and nothing else, batch mode, the control options, and the timeouts that turn a
dead node into an error (``ConnectTimeout``, ``ServerAlive*``). A key is
recorded only by ``silver create-node --wait``, so a node that changes its key,
or one we never created, is refused rather than trusted silently.
Every remote command is an argv list; this module quotes it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import pwd
import re
import selectors
import shlex
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from silverlining import state
from silverlining.errors import SilverError
from silverlining.node.base import listening

Stream = Callable[[str, str], None]
"""``stream(name, line)``: called with "stdout"/"stderr" and each complete line."""

SSH_PORT = 22
CONTROL_PERSIST = 60          # seconds a master stays open after its last command
ALIVE_INTERVAL, ALIVE_COUNT = 5, 3   # a silent node is given up after about 15 s
_STDERR_TAIL = 3
# ssh binds "PATH.XXXXXXXXXXXXXXXX" before renaming it to PATH; sun_path holds
# 104 bytes on the BSDs and macOS (108 on Linux).
_SOCKET_PATH_MAX = 104 - 18


class RemoteCommandError(SilverError):
    """A remote command exited non-zero; names host, command, status and stderr's tail."""

    def __init__(self, label: str, argv: list[str], result: "Result") -> None:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        tail = lines[-_STDERR_TAIL:]
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(f"[{label}] {argv[0] if argv else '?'} exited with status "
                         f"{result.status}{detail}")
        self.label, self.argv, self.result = label, argv, result


class LoginRefused(SilverError):
    """The node answered but refused our keys."""


class HostKeyError(SilverError):
    """The node's host key is unknown or differs from the recorded one."""


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


@dataclass
class RsyncStats:
    bytes_sent: int = 0
    files_transferred: int = 0
    changed: list[str] = field(default_factory=list)   # paths rsync itemized (incl. deletions)


# --- known_hosts ---------------------------------------------------------------

def _host_entry(address: str, port: int = SSH_PORT) -> str:
    return address if port == SSH_PORT else f"[{address}]:{port}"


def fingerprint(blob: bytes) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key blob, so users can
    compare with ``ssh-keygen -l``."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _names(hosts: str, entry: str) -> bool:
    """Whether a known_hosts line's host field names ``entry``, hashed names included
    (``|1|salt|hash``, as ``ssh-keygen -H`` writes them)."""
    for name in hosts.split(","):
        if name == entry:
            return True
        if name.startswith("|1|"):
            from paramiko.hostkeys import HostKeys
            if HostKeys.hash_host(entry, name) == name:
                return True
    return False


def _forget_lines(lines: Iterable[str], entry: str) -> list[str]:
    kept = []
    for line in lines:
        fields = line.split()
        if fields and not line.lstrip().startswith("#") and _names(fields[0], entry):
            continue
        kept.append(line)
    return kept


def has_host_key(address: str) -> bool:
    """Whether a key for ``address`` is recorded in our known_hosts."""
    try:
        lines = state.known_hosts_path().read_text().splitlines()
    except FileNotFoundError:
        return False
    return len(_forget_lines(lines, _host_entry(address))) != len(lines)


def forget_host_key(address: str) -> bool:
    """Remove the node's recorded host key(s), and close its connections (they were
    made with the key); True if there was one."""
    disconnect(address)
    path = state.known_hosts_path()
    with state.locked(path.with_name(path.name + ".lock")):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return False
        kept = _forget_lines(lines, _host_entry(address))
        if len(kept) != len(lines):
            _write_known_hosts(path, kept)
        return len(kept) != len(lines)


def _write_known_hosts(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def move_host_key(old: str, new: str) -> None:
    """Re-file the key recorded for ``old`` under ``new`` (a node we own changed address)."""
    disconnect(old)
    path = state.known_hosts_path()
    with state.locked(path.with_name(path.name + ".lock")):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return
        moved = [f"{_host_entry(new)} {' '.join(line.split()[1:])}" for line in lines
                 if line not in _forget_lines([line], _host_entry(old))]
        if moved:
            kept = _forget_lines(_forget_lines(lines, _host_entry(old)), _host_entry(new))
            _write_known_hosts(path, kept + moved)


def fetch_host_keys(address: str, timeout: float = 10) -> list[str]:
    """The keys the server presents now (``TYPE BASE64`` lines, ``ssh-keyscan``:
    no authentication, nothing recorded)."""
    host, port = endpoint(address) or (address, SSH_PORT)
    try:
        proc = subprocess.run(["ssh-keyscan", "-T", f"{max(1, round(timeout))}", "-p",
                               str(port), host], capture_output=True, text=True,
                              timeout=timeout * 4 + 5)
    except FileNotFoundError:
        raise SilverError("ssh-keyscan is not installed on this machine "
                          "(apt install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SilverError(f"[{address}] cannot read the SSH host key: timed out") from None
    keys = [" ".join(line.split()[1:3]) for line in proc.stdout.splitlines()
            if line.strip() and not line.startswith("#") and len(line.split()) >= 3]
    if not keys:
        reason = _last_line(proc.stderr.splitlines(), "no answer")
        raise SilverError(f"[{address}] cannot read the SSH host key: {reason}")
    return keys


def trust_host_key(address: str, timeout: float = 10) -> str:
    """Trust on first use: record the node's current keys, replacing any old one.

    Only ``create-node --wait`` calls this, right after the provider made the
    node, which is the one moment the key can be taken on trust.
    Returns the fingerprint (of its ed25519 key, if it has one).
    """
    keys = fetch_host_keys(address, timeout)
    record_host_keys(address, keys)
    shown = next((k for k in keys if k.startswith("ssh-ed25519 ")), keys[0])
    return fingerprint(base64.b64decode(shown.split()[1]))


def record_host_keys(address: str, keys: list[str]) -> None:
    """Record ``keys`` (``TYPE BASE64`` lines) as the node's only known keys."""
    disconnect(address)
    path = state.known_hosts_path()
    with state.locked(path.with_name(path.name + ".lock")):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        lines = _forget_lines(lines, _host_entry(address))
        lines += [f"{_host_entry(address)} {key}" for key in keys]
        _write_known_hosts(path, lines)


# --- OpenSSH options and control sockets ------------------------------------------

def ssh_key_path() -> str | None:
    """``SILVER_SSH_KEY``: an extra private key to log in with (tests use it)."""
    key = os.environ.get("SILVER_SSH_KEY")
    if key and not Path(key).expanduser().is_file():
        raise SilverError(f"SILVER_SSH_KEY: file {key!r} not found")
    return str(Path(key).expanduser()) if key else None


def ssh_config_path() -> str | None:
    """``SILVER_SSH_CONFIG``: an ssh config file read instead of ``~/.ssh/config`` and
    the system's (``ssh -F``); tests and the bench use their own."""
    config = os.environ.get("SILVER_SSH_CONFIG")
    return str(Path(config).expanduser()) if config else None


def _private_dir(path: Path) -> Path:
    """``path`` as a directory only we can use (0700, ours, not a link), made if missing."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SilverError(f"{path} is not a directory of yours: move it away "
                          "(silverlining keeps its SSH connections there)")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def control_dir() -> Path:
    """Where the control sockets live: ``STATE/ssh``, or a private directory in the
    temp directory when the state dir's path is too long for a socket path."""
    preferred = state.state_dir() / "ssh"
    if len(str(preferred)) + 22 <= _SOCKET_PATH_MAX:
        return _private_dir(preferred)
    tag = hashlib.sha256(str(state.state_dir()).encode()).hexdigest()[:10]
    return _private_dir(Path(tempfile.gettempdir()) / f"silver-ssh-{os.getuid()}-{tag}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def control_path(user: str, address: str) -> Path:
    """The master's socket for ``user@address``: named by the address (so
    ``disconnect`` finds them all) and by what the login used (a login with
    another key or ssh config gets a master of its own)."""
    login = f"{user}\0{ssh_key_path()}\0{ssh_config_path()}"
    return control_dir() / f"{_digest(address)}-{_digest(login)}"


def _option_value(text: str) -> str:
    """A path as an ``-o`` value: ``%`` is a token there, blanks split words."""
    text = text.replace("%", "%%")
    return f'"{text}"' if re.search(r"\s", text) else text


def ssh_options(user: str, address: str, timeout: float = 10) -> list[str]:
    """What every ssh and rsync to a node adds to the user's ssh config.

    ``HostKeyAlias``: our known_hosts names a node by the address we were given,
    whatever HostName or Port the user's config sends it to."""
    argv = ["-o", f"UserKnownHostsFile={_option_value(str(state.known_hosts_path()))}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", f"HostKeyAlias={_option_value(address)}",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={max(1, round(timeout))}",
            "-o", f"ServerAliveInterval={ALIVE_INTERVAL}",
            "-o", f"ServerAliveCountMax={ALIVE_COUNT}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={_option_value(str(control_path(user, address)))}",
            "-o", f"ControlPersist={CONTROL_PERSIST}"]
    config = ssh_config_path()
    if config:
        argv += ["-F", config]
    key = ssh_key_path()
    if key:
        argv += ["-i", key]
    for home_key in _home_keys():
        argv += ["-i", home_key]
    return argv


@functools.lru_cache(maxsize=1)
def _home_keys() -> tuple[str, ...]:
    """The default keys under ``$HOME/.ssh`` when ``$HOME`` is not the passwd home.

    OpenSSH looks for its default keys in the passwd home only, while new nodes
    are given ``$HOME``'s public key (``UserConfig.public_key_path``): without this,
    a run with another ``$HOME`` installs one key and logs in with another."""
    try:
        passwd_home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ()
    home = Path.home()
    if home.resolve() == Path(passwd_home).resolve():
        return ()
    return tuple(str(home / ".ssh" / name) for name in ("id_ed25519", "id_rsa")
                 if (home / ".ssh" / name).is_file())


def ssh_command(user: str, address: str, timeout: float = 10) -> list[str]:
    """``ssh`` with our options, as rsync runs it (``-e``); it adds ``-l USER HOST``."""
    return ["ssh", *ssh_options(user, address, timeout)]


def _control_sockets(address: str) -> list[Path]:
    """The control sockets of every master to ``address`` (each login has its own)."""
    try:
        found = control_dir().glob(f"{_digest(address)}-*")
        return [path for path in found if not path.name.endswith(".lock")]
    except (OSError, SilverError):
        return []


def disconnect(address: str) -> None:
    """Close every master to ``address`` (its key changed, or the node is gone):
    the next command logs in again."""
    for path in _control_sockets(address):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["ssh", "-F", "/dev/null", "-o",
                            f"ControlPath={_option_value(str(path))}", "-O", "exit", address],
                           capture_output=True, timeout=5)
        with contextlib.suppress(OSError):
            path.unlink()


@functools.lru_cache(maxsize=64)
def _ssh_g(address: str, config: str | None) -> tuple[tuple[str, str], ...]:
    """The user's ssh config as it applies to ``address`` (``ssh -G``), in order."""
    argv = ["ssh", "-G", *(["-F", config] if config else []), address]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple((k, v) for k, _, v in (line.partition(" ") for line in out.splitlines()) if v)


def endpoint(address: str) -> tuple[str, int] | None:
    """Where ssh connects for ``address`` under the user's config (``ssh -G``):
    (host, port), or None when it goes through a ProxyJump/ProxyCommand."""
    conf: dict[str, str] = {}
    for key, value in _ssh_g(address, ssh_config_path()):
        conf.setdefault(key, value)
    if conf.get("proxyjump", "none") != "none" or conf.get("proxycommand", "none") != "none":
        return None
    try:
        return conf.get("hostname", address), int(conf.get("port", SSH_PORT))
    except ValueError:
        return address, SSH_PORT


def wait_for_ssh(address: str, timeout: float = 300,
                 progress: Callable[[str], None] | None = None,
                 interval: float = 2, label: str | None = None) -> float:
    """Poll until the node's SSH server sends its banner; returns seconds waited.

    The port is the one the user's ssh config gives; behind a jump host there is
    nothing to poll from here, and the login's own ConnectTimeout does the waiting.
    """
    target = endpoint(address)
    if target is None:
        return 0.0
    host, port = target
    start = time.monotonic()
    last_report = start
    reason = "no answer"
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(5, timeout)) as sock:
                sock.settimeout(min(5, timeout))
                if sock.recv(64).startswith(b"SSH-"):
                    return time.monotonic() - start
                reason = "not an SSH server"
        except OSError as exc:
            reason = _reason(exc)
        now = time.monotonic()
        if now - start >= timeout:
            where = host if port == SSH_PORT else f"{host} port {port}"
            raise SilverError(f"[{label or address}] SSH on {where} did not answer within "
                              f"{timeout:.0f}s (last: {reason})")
        if progress and now - last_report >= 10:
            progress(f"waiting for SSH on {host} ({now - start:.0f}s: {reason})")
            last_report = now
        time.sleep(min(interval, max(0.1, timeout - (now - start))))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


_DEFAULT_KEYS = {f"~/.ssh/id_{kind}" for kind in
                 ("rsa", "ecdsa", "ecdsa_sk", "ed25519", "ed25519_sk", "xmss", "dsa")}


def login_keys() -> list[str]:
    """Which keys an SSH login would offer, described for ``silver doctor``:
    ``SILVER_SSH_KEY``, the ssh agent's keys, then the identity files of the
    user's ssh config (or ssh's defaults) that exist."""
    found = []
    extra = ssh_key_path()
    if extra:
        found.append(f"{extra} (SILVER_SSH_KEY)")
    if os.environ.get("SSH_AUTH_SOCK"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            listed = subprocess.run(["ssh-add", "-l"], capture_output=True, text=True,
                                    timeout=5).stdout
            found += [f"{line.split()[1]} (ssh agent)" for line in listed.splitlines()
                      if line.split()[1:2] and line.split()[1].startswith("SHA256:")]
    for key, value in _ssh_g("localhost", ssh_config_path()):
        path = Path(value).expanduser()
        if key == "identityfile" and path.is_file():
            found.append(f"{path} ({'default key' if value in _DEFAULT_KEYS else 'ssh config'})")
    return found


# --- children that end with us ------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _end_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent SIGTERM when the thread that started it
    ends (Linux ``PR_SET_PDEATHSIG``), so an ssh or rsync we started never outlives
    a killed silver and keeps a remote command (``logs -f``) running; None elsewhere."""
    if not os.uname().sysname == "Linux":
        return None
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)
    return preexec


def _spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    trace(f"start {_brief(argv)}")
    return subprocess.Popen(argv, preexec_fn=_end_with_parent(), **kwargs)


# --- SILVER_TRACE: where a command's time goes -----------------------------------------

TRACING = bool(os.environ.get("SILVER_TRACE"))


def _process_start() -> float:
    """When this process started, on the ``time.monotonic`` clock (Linux: from
    /proc, so the interpreter's start and the imports count; elsewhere: now)."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        started = ticks / os.sysconf("SC_CLK_TCK")
        return time.monotonic() - (time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()


_STARTED = _process_start() if TRACING else 0.0


def trace(message: str) -> None:
    """With ``SILVER_TRACE`` set: ``silver-trace: SECONDS MESSAGE`` on stderr, the seconds
    since this process started. Every ssh, rsync and node progress line is traced,
    which shows how a command's time divides between here, the wire and the node."""
    if TRACING:
        print(f"silver-trace: {time.monotonic() - _STARTED:7.3f} {message}", file=sys.stderr,
              flush=True)


def _traced(stream: Stream | None, label: str) -> Stream:
    """``stream`` with each line traced as it arrives (the node's progress shows
    when each of its steps happened)."""
    def each(name: str, line: str) -> None:
        trace(f"[{label}] {name}: {line[:160]}")
        if stream is not None:
            stream(name, line)
    return each


def _brief(argv: list[str]) -> str:
    """A command line without ssh's options, for a trace line."""
    if argv[:1] == ["ssh"]:
        words = [w for i, w in enumerate(argv[1:], 1)
                 if not w.startswith("-") and argv[i - 1] not in ("-o", "-F", "-i", "-l")]
        return "ssh " + " ".join(words)[:160]
    return " ".join(argv[:2] + argv[-2:])[:160]


# --- what ssh's own errors mean ------------------------------------------------------

_LOST = ("Timeout, server", "Connection to ", "client_loop:", "Broken pipe",
         "Connection reset", "mux_client", "Control socket connect")


def _last_line(lines: list[str], default: str = "") -> str:
    text = [line.strip() for line in lines if line.strip()]
    return text[-1] if text else default


def _ssh_failure(label: str, user: str, address: str, lines: list[str],
                 via: str = "") -> SilverError | None:
    """The one-line error for what ssh printed when it failed (exit 255), or None
    when nothing in ``lines`` is ssh's own complaint."""
    text = [line.strip() for line in lines if line.strip()]
    kh = state.known_hosts_path()
    if any("Host key verification failed" in line for line in text):
        if any("host key is known for" in line for line in text):
            return HostKeyError(f"[{label}] host key of {address} unknown: it is recorded "
                                f"only by 'silver create-node --wait' (known hosts: {kh})")
        return HostKeyError(f"[{label}] host key of {address} CHANGED (possible impostor); if "
                            f"you know the node was re-installed, forget the old key with "
                            f"'silver forget-host {label}' (it is in {kh})")
    where = f"{user}@{address}"
    if any("Permission denied" in line for line in text):
        return LoginRefused(f"[{label}] SSH login as {where} refused{via}; is your key in the "
                           "node's authorized_keys? (ssh agent, ~/.ssh keys or SILVER_SSH_KEY)")
    for line in text:
        if line.startswith(("ssh: ", "kex_exchange_identification:", "Connection closed by",
                            "Connection timed out during banner")):
            reason = line.rsplit(": ", 1)[-1] if ": " in line else line
            return SilverError(f"[{label}] cannot connect to {where}{via}: {reason}")
    for line in text:
        if line.startswith(_LOST) or "not responding" in line:
            return SilverError(f"[{label}] SSH connection to {address} lost{via}: {line}")
    return None


# --- SSH sessions ----------------------------------------------------------------

class SSH:
    """Commands on a node as ``user``, through the node's shared OpenSSH connection.

    Making one makes sure the master connection is up (logging in if needed), so
    a refused key or login fails here; ``close`` leaves the master to other
    commands until it has been idle for ``CONTROL_PERSIST`` seconds.
    """

    def __init__(self, address: str, user: str = "root", label: str | None = None,
                 timeout: float = 10) -> None:
        self.address, self.user, self.timeout = address, user, timeout
        self.label = label or address
        self.control = control_path(user, address)
        self._ssh = ["ssh", *ssh_options(user, address, timeout), "-l", user]
        self._running: set[subprocess.Popen] = set()      # ends with ``close``
        self._connect()

    def _connect(self) -> None:
        """Start the master unless one is up (one at a time per socket: a lock)."""
        if listening(self.control):
            return
        lock = self.control.with_name(self.control.name + ".lock")
        with open(lock, "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            if listening(self.control):
                return
            with contextlib.suppress(FileNotFoundError):
                self.control.unlink()       # a master that died left its socket
            trace(f"logging in to {self.user}@{self.address} (master connection)")
            # stderr to a file: the master, once in the background, keeps no pipe open.
            with tempfile.TemporaryFile() as err:
                try:
                    proc = subprocess.run([*self._ssh, "-o", "ControlMaster=yes", "-f", "-N",
                                           self.address], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err,
                                          timeout=self.timeout * 3 + 10)
                except FileNotFoundError:
                    raise SilverError("the OpenSSH client is not installed on this machine "
                                      "(apt install openssh-client)") from None
                except subprocess.TimeoutExpired:
                    raise SilverError(f"[{self.label}] cannot connect to "
                                      f"{self.user}@{self.address}: timed out") from None
                err.seek(0)
                lines = err.read().decode("utf-8", "replace").splitlines()
            if proc.returncode != 0:
                raise (_ssh_failure(self.label, self.user, self.address, lines)
                       or SilverError(f"[{self.label}] cannot connect to {self.user}@"
                                      f"{self.address}: {_last_line(lines, 'ssh failed')}"))

    def __enter__(self) -> "SSH":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """End the commands still running through this object (Ctrl-C during a deploy):
        their ssh goes, so the master closes their input (the node's deploy takes that
        for its client's end, see ``node/base.client_gone``). The master outlives us,
        for the next command."""
        for proc in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

    def argv(self, argv: list[str], pty: bool = False) -> list[str]:
        """The local ``ssh`` command line that runs ``argv`` (each element quoted)."""
        if not argv:
            raise ValueError("empty argv")
        return ["ssh", *self._ssh[1:], *(["-tt"] if pty else []), self.address,
                shlex.join(str(a) for a in argv)]

    def run(self, argv: list[str], *, input: bytes | str | BinaryIO | None = None,
            stream: Stream | None = None, timeout: float | None = None,
            check: bool = True, pty: bool = False) -> Result:
        """Run ``argv`` (each element quoted) and collect its output.

        stdout and stderr are read together as they arrive, so ``stream`` gets
        live lines (in this thread) and a chatty command never blocks on a full
        pipe; ``input`` is fed from a thread. ``pty`` gives the command a
        terminal, so it ends (SIGHUP) when we go away. Without one, killing its ssh
        ends its input only: the master still reads what it writes.
        """
        command = self.argv(argv, pty)
        data = input.encode() if isinstance(input, str) else input
        if TRACING:
            stream = _traced(stream, self.label)
        try:
            proc = _spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL if data is None
                                    else subprocess.PIPE)
        except FileNotFoundError:
            raise SilverError("the OpenSSH client is not installed on this machine "
                              "(apt install openssh-client)") from None
        self._running.add(proc)
        try:
            if data is not None:
                threading.Thread(target=_send_all, args=(proc.stdin, data), daemon=True).start()
            out = _LineSplitter("stdout", stream)
            err = _LineSplitter("stderr", stream)
            finished = _drain(proc, {proc.stdout: out, proc.stderr: err}, timeout)
        finally:
            self._running.discard(proc)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not finished:
            raise SilverError(f"[{self.label}] {argv[0]} timed out after {timeout:g}s")
        result = Result(proc.returncode, out.finish(), err.finish())
        trace(f"end ssh {argv[:4]}: exit {result.status}")
        if result.status == 255:
            failure = _ssh_failure(self.label, self.user, self.address,
                                   result.stderr.splitlines()[-_STDERR_TAIL:])
            if failure is None and not listening(self.control):
                failure = SilverError(f"[{self.label}] SSH connection to {self.address} "
                                      f"lost while {argv[0]} ran")
            if failure is not None:
                raise failure
        if check and result.status != 0:
            raise RemoteCommandError(self.label, list(map(str, argv)), result)
        return result

    def run_json(self, argv: list[str], *, input: bytes | str | BinaryIO | None = None,
                 stream: Stream | None = None, timeout: float | None = None) -> dict:
        """Run a node-side command and return the JSON object on its last stdout line.

        The node prints ``{"error": msg}`` and exits 1 on failure; that becomes
        ``SilverError("[label] msg")``. The result line itself is not streamed.
        """
        held: list[str] = []

        def hold_last(name: str, line: str) -> None:
            if name == "stdout":
                held.append(line)
                if len(held) > 1 and stream:
                    stream(name, held.pop(0))
                elif len(held) > 1:
                    held.pop(0)
            elif stream:
                stream(name, line)

        result = self.run(argv, input=input, stream=hold_last, timeout=timeout, check=False)
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        parsed: object = None
        if lines:
            try:
                parsed = json.loads(lines[-1])
            except ValueError:
                parsed = None
        if isinstance(parsed, dict) and "error" in parsed and result.status != 0:
            raise SilverError(f"[{self.label}] {parsed['error']}")
        if result.status != 0:
            raise RemoteCommandError(self.label, list(map(str, argv)), result)
        if not isinstance(parsed, dict):
            raise SilverError(f"[{self.label}] {argv[0]} printed no JSON result "
                              f"(last line: {lines[-1][:200] if lines else 'none'!r})")
        return parsed

    def put_file(self, remote_path: str, data: bytes, mode: int = 0o600) -> None:
        """Write a file from stdin (secrets never travel on a command line).

        Written to a temporary name created with no access for others (umask),
        given ``mode``, then renamed into place, so readers never see a partial
        or too-open file.
        """
        script = ('umask 077; t="$1.silver-tmp"; cat > "$t" && chmod "$2" "$t" && '
                  'mv -f "$t" "$1" || { rm -f "$t"; exit 1; }')
        result = self.run(["sh", "-c", script, "sh", remote_path, f"{mode:o}"], input=data,
                          check=False)
        if result.status != 0:
            raise SilverError(f"[{self.label}] cannot write {remote_path}: "
                              f"{_last_line(result.stderr.splitlines(), 'failed')}")

    def interactive(self, argv: list[str]) -> int:
        """Run ``argv`` on a pty wired to this terminal (``silver run -i``); returns its
        status. ssh itself puts the terminal in raw mode and forwards its size."""
        try:
            with _spawn(self.argv(argv, pty=True)) as proc:
                return proc.wait()
        except FileNotFoundError:
            raise SilverError("the OpenSSH client is not installed on this machine "
                              "(apt install openssh-client)") from None


def _drain(proc: subprocess.Popen, pipes: dict, timeout: float | None) -> bool:
    """Read ``pipes`` (pipe -> splitter) to their end and wait for ``proc``;
    False if ``timeout`` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for pipe, splitter in pipes.items():
            selector.register(pipe, selectors.EVENT_READ, splitter)
        while selector.get_map():
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return False
            for key, _ in selector.select(wait):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    key.data.feed(chunk)
                else:
                    selector.unregister(key.fileobj)
    try:
        proc.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True


def _send_all(pipe: BinaryIO, data: bytes | BinaryIO) -> None:
    """Feed stdin from a thread so a command that talks before reading cannot deadlock.

    ``data`` may be a stream (our own stdin piped to ``silver run``): it is
    sent as it arrives, until its end. A stream with a file descriptor is read at
    the descriptor: the thread may still wait on a pipe that never ends when the
    command is over, and waiting inside the stream's buffer would hold its lock, which
    Python's exit then cannot take (a "Fatal Python error", exit status -6, after a
    command that succeeded). Nothing reads our stdin through its buffer before this.
    """
    try:
        if isinstance(data, bytes):
            pipe.write(data)
            return
        try:
            fd = data.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        while chunk := os.read(fd, 65536) if fd is not None else data.read1(65536):
            pipe.write(chunk)
            pipe.flush()
    except (OSError, ValueError):
        pass  # the command exited without reading all of it; its status says what happened
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


class _LineSplitter:
    """Collects a byte stream; hands each complete decoded line to ``stream``."""

    def __init__(self, name: str, stream: Stream | None) -> None:
        self.name, self.stream = name, stream
        self.buf = bytearray()
        self.pending = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        if self.stream is None:
            return
        self.pending += chunk
        while (i := self.pending.find(b"\n")) >= 0:
            line = bytes(self.pending[:i]).decode("utf-8", "replace").rstrip("\r")
            del self.pending[:i + 1]
            self.stream(self.name, line)

    def text(self) -> str:
        return bytes(self.buf).decode("utf-8", "replace")

    def finish(self) -> str:
        if self.stream is not None and self.pending:
            self.stream(self.name, bytes(self.pending).decode("utf-8", "replace").rstrip("\r"))
            self.pending.clear()
        return self.text()


# --- rsync ---------------------------------------------------------------------------

_ITEM_RE = re.compile(r"^(?:[<>ch.*][fdLDS][^ ]{9}|\*deleting  ) (.+)$")


Progress = Callable[[int, int, str], None]
"""``progress(bytes_so_far, percent, rate)``, rate as rsync prints it (``1.23MB/s``)."""

_PROGRESS_RE = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+(\S+/s)\s")


def output_records(pipe: BinaryIO) -> Iterator[str]:
    """A program's output split at ``\n`` and ``\r`` (progress output redraws its
    line with ``\r``), as each piece arrives."""
    pending = b""
    while chunk := pipe.read1(65536):
        *records, pending = re.split(rb"[\r\n]", pending + chunk)
        for record in records:
            yield record.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


@functools.lru_cache(maxsize=1)
def _nanosecond_times() -> tuple[str, ...]:
    """``--modify-window=-1`` where this rsync has it (3.1.3 and later): by default rsync
    takes a file whose size and whole second of mtime are unchanged for unchanged, so a
    second save of the same size within a second was never deployed."""
    try:
        first = subprocess.run(["rsync", "--version"], capture_output=True, text=True,
                               timeout=10).stdout.split("\n", 1)[0]
    except (OSError, subprocess.SubprocessError):
        return ()
    found = re.search(r"version\s+(\d+)\.(\d+)\.(\d+)", first)
    if found and tuple(int(n) for n in found.groups()) >= (3, 1, 3):
        return ("--modify-window=-1",)
    return ()


def rsync(src: str, address: str, dest: str, *, user: str = "root",
          excludes: Iterable[str] = (), exclude_from: Path | None = None,
          link_dest: str | None = None, delete: bool = False, label: str | None = None,
          stream: Stream | None = None, dry_run: bool = False,
          checksum: bool = False, pull: bool = False,
          progress: Progress | None = None) -> RsyncStats:
    """``rsync -a SRC user@address:DEST`` over verified SSH; returns what changed.

    It runs through the node's shared connection (``-e`` is our ssh with the
    control options), logging in only if no master is up.

    Special files (FIFOs, sockets, devices) are never sent.

    ``pull`` copies the other way: SRC is on the node, DEST here (a backup).

    ``link_dest`` (relative to DEST on the node, or absolute) hard-links unchanged
    files from a previous copy, so only differences are sent. ``progress`` is
    called as the transfer goes (rsync's ``--info=progress2``).
    """
    label = label or address
    argv = ["rsync", "-a", "--no-D", "--stats", "--out-format=%i %n%L",
            *_nanosecond_times(), "-e", shlex.join(ssh_command(user, address))]
    argv += [f"--exclude={pattern}" for pattern in excludes]
    if exclude_from is not None:
        argv.append(f"--exclude-from={exclude_from}")
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    if delete:
        argv.append("--delete")
    if dry_run:
        argv.append("--dry-run")
    if checksum:
        argv.append("--checksum")
    if pull:
        argv += ["--no-owner", "--no-group"]      # ours, not the node's deploy user's
    if progress:
        # the whole file list first, so the percentage is of the whole transfer
        argv += ["--info=progress2", "--no-inc-recursive"]
    remote = f"{user}@{address}:{src if pull else dest}"
    argv += ["--", remote, dest] if pull else ["--", src, remote]
    env = {**os.environ, "LC_ALL": "C"}
    try:
        proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        raise SilverError("rsync is not installed on this machine (apt install rsync)") from None
    stderr_lines: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            stderr_lines.append(line)
            if stream:
                stream("stderr", line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    stats = RsyncStats()
    assert proc.stdout is not None
    for line in output_records(proc.stdout):
        if progress and (m := _PROGRESS_RE.match(line)):
            progress(int(m.group(1).replace(",", "")), int(m.group(2)), m.group(3))
        elif m := _ITEM_RE.match(line):
            stats.changed.append(m.group(1))
            if stream:
                stream("stdout", line)
        elif m := re.match(r"^Total bytes sent: ([\d,]+)", line):
            stats.bytes_sent = int(m.group(1).replace(",", ""))
        elif m := re.match(r"^Number of regular files transferred: ([\d,]+)", line):
            stats.files_transferred = int(m.group(1).replace(",", ""))
    status = proc.wait()
    reader.join()
    trace(f"end rsync to {address}: exit {status}, {stats.bytes_sent} bytes sent")
    if status != 0:
        text = [line.strip() for line in stderr_lines if line.strip()]
        failure = _ssh_failure(label, user, address, text, via=" (rsync)")
        if failure is not None:
            raise failure
        tail = " | ".join(text[-_STDERR_TAIL:]) or "no message"
        where = f"from {address}:{src}" if pull else f"to {address}:{dest}"
        raise SilverError(f"[{label}] rsync {where} failed (status {status}): {tail}")
    return stats
