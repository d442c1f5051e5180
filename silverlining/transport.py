"""SSH and rsync to nodes: the one place that connects to a server.

Host keys are checked against silverlining's own known_hosts
(``state.known_hosts_path()``) and nothing else: a key is recorded only by
``silver create-node --wait`` (``trust_host_key``), so a node that changes
its key, or one we never created, is refused rather than trusted silently.
Every remote command is an argv list; this module quotes it.
"""

from __future__ import annotations

import array
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO
from dataclasses import dataclass, field
from pathlib import Path

# paramiko's config module imports invoke (for ``Match exec`` in ssh_config, which
# we never read) when it is installed: a fifth of silver's start-up time.
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
import paramiko  # noqa: E402

from silverlining import state
from silverlining.errors import SilverError

Stream = Callable[[str, str], None]
"""``stream(name, line)``: called with "stdout"/"stderr" and each complete line."""

SSH_PORT = 22
_STDERR_TAIL = 3

# paramiko logs connection failures from its own thread; without a handler
# Python prints them to stderr. We report every failure ourselves, in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class RemoteCommandError(SilverError):
    """A remote command exited non-zero; names host, command, status and stderr's tail."""

    def __init__(self, label: str, argv: list[str], result: "Result") -> None:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        tail = lines[-_STDERR_TAIL:]
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(f"[{label}] {argv[0] if argv else '?'} exited with status "
                         f"{result.status}{detail}")
        self.label, self.argv, self.result = label, argv, result


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


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint, so users can compare with ssh-keygen -l."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _forget_lines(lines: Iterable[str], entry: str) -> list[str]:
    kept = []
    for line in lines:
        fields = line.split()
        if fields and not line.lstrip().startswith("#") and entry in fields[0].split(","):
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
    """Remove the node's recorded host key(s); True if there was one."""
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


def fetch_host_key(address: str, timeout: float = 10) -> paramiko.PKey:
    """The key the server presents now (no authentication, nothing recorded)."""
    sock = _connect_socket(address, timeout, label=address)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SilverError(f"[{address}] cannot read the SSH host key: {_reason(exc)}") from None
    finally:
        transport.close()
    return key


def trust_host_key(address: str, timeout: float = 10) -> str:
    """Trust on first use: record the node's current key, replacing any old one.

    Only ``create-node --wait`` calls this, right after the provider made the
    node, which is the one moment the key can be taken on trust.
    Returns the fingerprint.
    """
    key = fetch_host_key(address, timeout)
    record_host_keys(address, [f"{key.get_name()} {key.get_base64()}"])
    return fingerprint(key)


def record_host_keys(address: str, keys: list[str]) -> None:
    """Record ``keys`` (``TYPE BASE64`` lines) as the node's only known keys."""
    path = state.known_hosts_path()
    with state.locked(path.with_name(path.name + ".lock")):
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        lines = _forget_lines(lines, _host_entry(address))
        lines += [f"{_host_entry(address)} {key}" for key in keys]
        _write_known_hosts(path, lines)


def wait_for_ssh(address: str, timeout: float = 300,
                 progress: Callable[[str], None] | None = None,
                 interval: float = 2, label: str | None = None) -> float:
    """Poll until the node's SSH server sends its banner; returns seconds waited."""
    start = time.monotonic()
    last_report = start
    reason = "no answer"
    while True:
        try:
            with socket.create_connection((address, SSH_PORT), timeout=min(5, timeout)) as sock:
                sock.settimeout(min(5, timeout))
                if sock.recv(64).startswith(b"SSH-"):
                    return time.monotonic() - start
                reason = "not an SSH server"
        except OSError as exc:
            reason = _reason(exc)
        now = time.monotonic()
        if now - start >= timeout:
            raise SilverError(f"[{label or address}] SSH on {address} did not answer within "
                              f"{timeout:.0f}s "
                              f"(last: {reason})")
        if progress and now - last_report >= 10:
            progress(f"waiting for SSH on {address} ({now - start:.0f}s: {reason})")
            last_report = now
        time.sleep(min(interval, max(0.1, timeout - (now - start))))


# --- SSH sessions ----------------------------------------------------------------

def _reason(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        exc = errors[0] if errors else exc
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _connect_socket(address: str, timeout: float, label: str) -> socket.socket:
    try:
        return socket.create_connection((address, SSH_PORT), timeout=timeout)
    except OSError as exc:
        raise SilverError(f"[{label}] cannot reach {address} port {SSH_PORT}: "
                          f"{_reason(exc)}") from None


def ssh_key_path() -> str | None:
    """``SILVER_SSH_KEY``: an extra private key to log in with (tests use it)."""
    key = os.environ.get("SILVER_SSH_KEY")
    if key and not Path(key).expanduser().is_file():
        raise SilverError(f"SILVER_SSH_KEY: file {key!r} not found")
    return str(Path(key).expanduser()) if key else None


# The private keys paramiko tries by itself (look_for_keys), in its order.
DEFAULT_KEY_NAMES = ("id_rsa", "id_dsa", "id_ecdsa", "id_ed25519")


def login_keys() -> list[str]:
    """Which keys an SSH login would offer, described for ``silver doctor``:
    ``SILVER_SSH_KEY``, the ssh agent's keys, then the default ``~/.ssh`` keys."""
    found = []
    extra = ssh_key_path()
    if extra:
        found.append(f"{extra} (SILVER_SSH_KEY)")
    if os.environ.get("SSH_AUTH_SOCK"):
        agent = paramiko.Agent()
        try:
            agent_keys = agent.get_keys()
        except paramiko.SSHException:
            agent_keys = ()
        finally:
            agent.close()
        found += [f"{fingerprint(k)} (ssh agent)" for k in agent_keys]
    home = Path.home() / ".ssh"
    found += [f"{home / name} (default key)" for name in DEFAULT_KEY_NAMES
              if (home / name).is_file()]
    return found


class _UnknownKeyPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, label: str) -> None:
        self.label = label

    def missing_host_key(self, client, hostname, key) -> None:
        raise HostKeyError(
            f"[{self.label}] host key of {hostname} unknown ({fingerprint(key)}): it is "
            f"recorded only by 'silver create-node --wait' (known hosts: "
            f"{state.known_hosts_path()})")


def _changed_key_message(label: str, address: str) -> str:
    kh = state.known_hosts_path()
    return (f"[{label}] host key of {address} CHANGED (possible impostor); if you know the "
            f"node was re-installed, forget the old key with 'silver forget-host {label}' "
            f"(it is in {kh})")


class SSH:
    """One authenticated SSH connection to a node, verified against our known_hosts."""

    def __init__(self, address: str, user: str = "root", label: str | None = None,
                 timeout: float = 10) -> None:
        self.address, self.user, self.timeout = address, user, timeout
        self.label = label or address
        self.client = paramiko.SSHClient()
        known_hosts = state.known_hosts_path()
        if known_hosts.is_file():
            try:
                self.client.get_host_keys().load(str(known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise SilverError(f"cannot read {known_hosts}: {exc}") from None
        self.client.set_missing_host_key_policy(_UnknownKeyPolicy(self.label))
        self._connect()

    def _connect(self) -> None:
        where = f"{self.user}@{self.address}"
        try:
            self.client.connect(
                self.address, port=SSH_PORT, username=self.user, key_filename=ssh_key_path(),
                timeout=self.timeout, banner_timeout=self.timeout, auth_timeout=self.timeout,
                allow_agent=True, look_for_keys=True)
        except HostKeyError:
            self.client.close()
            raise
        except paramiko.BadHostKeyException:
            self.client.close()
            raise HostKeyError(_changed_key_message(self.label, self.address)) from None
        except paramiko.AuthenticationException as exc:
            self.client.close()
            raise SilverError(f"[{self.label}] SSH login as {where} refused ({_reason(exc)}); "
                              "is your key in the node's authorized_keys? "
                              "(ssh agent, ~/.ssh keys or SILVER_SSH_KEY)") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.client.close()
            raise SilverError(f"[{self.label}] cannot connect to {where}: "
                              f"{_reason(exc)}") from None

    def __enter__(self) -> "SSH":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SilverError(f"[{self.label}] SSH connection to {self.address} was lost")
        return transport

    def run(self, argv: list[str], *, input: bytes | str | BinaryIO | None = None,
            stream: Stream | None = None, timeout: float | None = None,
            check: bool = True, pty: bool = False) -> Result:
        """Run ``argv`` (each element quoted) and collect its output.

        stdout and stderr are read together as they arrive, so ``stream`` gets
        live lines and a chatty command never blocks on a full pipe.
        """
        if not argv:
            raise ValueError("empty argv")
        command = shlex.join(str(a) for a in argv)
        try:
            chan = self._transport().open_session(timeout=self.timeout)
            if pty:
                chan.get_pty()
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SilverError(f"[{self.label}] cannot start {argv[0]}: {_reason(exc)}") from None
        data = input.encode() if isinstance(input, str) else (b"" if input is None else input)
        try:
            status, out, err = self._pump(chan, data, stream, timeout)
        finally:
            chan.close()
        if status is None:
            raise SilverError(f"[{self.label}] {argv[0]} timed out after {timeout:g}s")
        result = Result(status, out, err)
        if check and status != 0:
            raise RemoteCommandError(self.label, list(map(str, argv)), result)
        return result

    def _pump(self, chan: paramiko.Channel, data: bytes | BinaryIO, stream: Stream | None,
              timeout: float | None) -> tuple[int | None, str, str]:
        """Feed stdin and drain stdout/stderr until the command exits (None on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        splitters = {"stdout": _LineSplitter("stdout", stream),
                     "stderr": _LineSplitter("stderr", stream)}
        sender = threading.Thread(target=_send_all, args=(chan, data), daemon=True)
        sender.start()
        exited_at: float | None = None
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                return None, splitters["stdout"].text(), splitters["stderr"].text()
            select.select([chan], [], [], 0.2)
            while chan.recv_ready():
                splitters["stdout"].feed(chan.recv(65536))
                exited_at = None if exited_at is None else now
            while chan.recv_stderr_ready():
                splitters["stderr"].feed(chan.recv_stderr(65536))
                exited_at = None if exited_at is None else now
            if chan.exit_status_ready():
                if chan.eof_received or chan.closed:
                    break
                # A background process may keep the output open after the command
                # exited: stop reading once it has been quiet for a while.
                exited_at = exited_at or now
                if now - exited_at > 3:
                    break
            elif chan.closed:
                raise SilverError(f"[{self.label}] SSH connection closed before the command "
                                  "reported its exit status")
        while chan.recv_ready():
            splitters["stdout"].feed(chan.recv(65536))
        while chan.recv_stderr_ready():
            splitters["stderr"].feed(chan.recv_stderr(65536))
        return (chan.recv_exit_status(), splitters["stdout"].finish(),
                splitters["stderr"].finish())

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
        """Write a file over SFTP (secrets never travel on a command line).

        Written to a temporary name with ``mode`` set before any data, then
        renamed into place, so readers never see a partial or too-open file.
        """
        tmp = f"{remote_path}.silver-tmp"
        try:
            sftp = self.client.open_sftp()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SilverError(f"[{self.label}] cannot open SFTP: {_reason(exc)}") from None
        try:
            with sftp.open(tmp, "wb") as fh:
                sftp.chmod(tmp, mode)
                fh.write(data)
            sftp.posix_rename(tmp, remote_path)
        except (OSError, paramiko.SSHException) as exc:
            try:
                sftp.remove(tmp)
            except (OSError, paramiko.SSHException):
                pass
            raise SilverError(f"[{self.label}] cannot write {remote_path}: "
                              f"{_reason(exc)}") from None
        finally:
            sftp.close()

    def interactive(self, argv: list[str]) -> int:
        """Run ``argv`` on a pty wired to this terminal (``silver run -i``); returns its status."""
        command = shlex.join(str(a) for a in argv)
        try:
            cols, rows = os.get_terminal_size(sys.stdout.fileno())
        except OSError:
            cols, rows = 80, 24
        try:
            chan = self._transport().open_session(timeout=self.timeout)
            chan.get_pty(term=os.environ.get("TERM", "vt100"), width=cols, height=rows)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SilverError(f"[{self.label}] cannot start {argv[0]}: {_reason(exc)}") from None
        try:
            with _raw_terminal(sys.stdin):
                _shuttle(chan)
            return chan.recv_exit_status()
        finally:
            chan.close()


def _send_all(chan: paramiko.Channel, data: bytes | BinaryIO) -> None:
    """Feed stdin from a thread so a command that talks before reading cannot deadlock.

    ``data`` may be a stream (our own stdin piped to ``silver run``): it is
    sent as it arrives, until its end.
    """
    try:
        if isinstance(data, bytes):
            if data:
                chan.sendall(data)
        else:
            while chunk := data.read1(65536):
                chan.sendall(chunk)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the command exited without reading all of it; its status says what happened


class _raw_terminal:
    """Put a tty in raw mode for the duration (no-op when stdin is not a tty)."""

    def __init__(self, stdin) -> None:
        self.fd = stdin.fileno()
        self.saved = None

    def __enter__(self) -> None:
        if os.isatty(self.fd):
            import termios
            import tty
            self.saved = termios.tcgetattr(self.fd)
            tty.setraw(self.fd)

    def __exit__(self, *exc_info: object) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def _shuttle(chan: paramiko.Channel) -> None:
    """Copy stdin to the channel and the channel to stdout until it closes."""
    stdin_fd, stdout_fd = sys.stdin.fileno(), sys.stdout.fileno()
    stdin_open = True
    while True:
        watch = [chan] + ([stdin_fd] if stdin_open else [])
        readable, _, _ = select.select(watch, [], [], 0.5)
        if chan in readable or chan.recv_ready() or chan.recv_stderr_ready():
            while chan.recv_ready():
                os.write(stdout_fd, chan.recv(65536))
            while chan.recv_stderr_ready():
                os.write(stdout_fd, chan.recv_stderr(65536))
            if chan.eof_received and not chan.recv_ready():
                break
        if stdin_open and stdin_fd in readable:
            chunk = os.read(stdin_fd, 4096)
            if chunk:
                chan.sendall(chunk)
            else:
                stdin_open = False
                chan.shutdown_write()
        if chan.exit_status_ready() and not chan.recv_ready() and chan.closed:
            break


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


def ssh_command() -> list[str]:
    """The OpenSSH command rsync uses: our known_hosts only, strict, never prompting."""
    argv = ["ssh", "-o", f"UserKnownHostsFile={state.known_hosts_path()}",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]
    key = ssh_key_path()
    if key:
        argv += ["-i", key]
    return argv


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


# rsync's "remote shell" when it runs through an open connection (``ChannelRsh``):
# hands its stdin/stdout/stderr and the remote command to the CLI's process, which
# runs the command in a channel of that connection, and exits with its status.
# Standard library only, started with -I -S: a few milliseconds, not a login.
_RSH_HELPER = """\
import array, os, socket, sys
args = sys.argv[2:]
if args[:1] == ["-l"]:
    args = args[2:]
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendmsg([chr(0).join(args[1:]).encode()],
          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
for fd in (0, 1, 2):
    os.close(fd)
status = s.recv(1)
os._exit(status[0] if status else 255)
"""


class ChannelRsh:
    """An ``rsync -e`` command that reuses an open ``SSH`` connection: rsync's remote
    side runs in a new channel of it instead of behind a second login, whose
    handshake is most of the time a small upload takes."""

    def __init__(self, ssh: "SSH") -> None:
        self.ssh = ssh
        self._dir = tempfile.mkdtemp(prefix="silver-rsh-")
        self._socket = os.path.join(self._dir, "relay")
        helper = os.path.join(self._dir, "rsh.py")
        with open(helper, "w") as f:
            f.write(_RSH_HELPER)
        self.command = shlex.join([sys.executable, "-I", "-S", helper, self._socket])
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self._socket)
        self._listener.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> "ChannelRsh":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        """Run the command the helper sent; its output goes to the helper's descriptors."""
        fds: list[int] = []
        status = 255
        chan = None
        try:
            msg, ancdata, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(3 * 4))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += array.array("i", data[:len(data) - len(data) % 4]).tolist()
            if len(fds) != 3:
                return
            chan = self.ssh._transport().open_session(timeout=self.ssh.timeout)
            chan.exec_command(" ".join(msg.decode().split("\0")))   # joined as ssh does
            threading.Thread(target=_feed_channel, args=(chan, fds[0]), daemon=True).start()
            while not (chan.exit_status_ready() and (chan.eof_received or chan.closed)
                       and not chan.recv_ready() and not chan.recv_stderr_ready()):
                select.select([chan], [], [], 0.5)
                while chan.recv_ready():
                    _write_all(fds[1], chan.recv(65536))
                while chan.recv_stderr_ready():
                    _write_all(fds[2], chan.recv_stderr(65536))
            status = chan.recv_exit_status()
        except (OSError, EOFError, paramiko.SSHException, SilverError) as exc:
            if len(fds) == 3:
                with contextlib.suppress(OSError):
                    _write_all(fds[2], f"silver: relay to {self.ssh.label} failed: "
                                       f"{_reason(exc)}\n".encode())
        finally:
            if chan is not None:
                chan.close()
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                conn.sendall(bytes([status & 0xFF]))
            conn.close()


def _feed_channel(chan: paramiko.Channel, fd: int) -> None:
    """Copy what rsync writes into the channel, then end the remote side's stdin."""
    try:
        while data := os.read(fd, 65536):
            chan.sendall(data)
        chan.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def rsync(src: str, address: str, dest: str, *, user: str = "root",
          excludes: Iterable[str] = (), exclude_from: Path | None = None,
          link_dest: str | None = None, delete: bool = False, label: str | None = None,
          stream: Stream | None = None, dry_run: bool = False,
          checksum: bool = False, pull: bool = False,
          progress: Progress | None = None, via: ChannelRsh | None = None) -> RsyncStats:
    """``rsync -a SRC user@address:DEST`` over verified SSH; returns what changed.

    ``via`` runs it through an open connection (as that connection's user) instead
    of a new ssh login.

    Special files (FIFOs, sockets, devices) are never sent.

    ``pull`` copies the other way: SRC is on the node, DEST here (a backup).

    ``link_dest`` (relative to DEST on the node, or absolute) hard-links unchanged
    files from a previous copy, so only differences are sent. ``progress`` is
    called as the transfer goes (rsync's ``--info=progress2``).
    """
    label = label or address
    argv = ["rsync", "-a", "--no-D", "--stats", "--out-format=%i %n%L",
            "-e", via.command if via else shlex.join(ssh_command())]
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
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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
    if status != 0:
        text = [line.strip() for line in stderr_lines if line.strip()]
        if any("Host key verification failed" in line for line in text):
            if any("CHANGED" in line or "IDENTIFICATION HAS CHANGED" in line for line in text):
                raise HostKeyError(_changed_key_message(label, address))
            raise HostKeyError(f"[{label}] host key of {address} unknown or changed: keys are "
                               f"recorded only by 'silver create-node --wait' (known hosts: "
                               f"{state.known_hosts_path()})")
        if any("Permission denied" in line for line in text):
            raise SilverError(f"[{label}] SSH login as {user}@{address} refused (rsync); is "
                              "your key in the node's authorized_keys?")
        for line in text:
            if line.startswith("ssh: connect to host"):
                raise SilverError(f"[{label}] cannot connect to {user}@{address} (rsync): "
                                  f"{line.rsplit(':', 1)[-1].strip()}")
        tail = " | ".join(text[-_STDERR_TAIL:]) or "no message"
        where = f"from {address}:{src}" if pull else f"to {address}:{dest}"
        raise SilverError(f"[{label}] rsync {where} failed (status {status}): {tail}")
    return stats
