"""``silver setup-node HOST...``: push the server files and run the setup script.

Per host, in parallel: the script fed on stdin with the server version, who ran
it and the digest of the server files (``serverfiles.pushed_digest``). It checks
root and the OS first, so nothing is pushed to a node that cannot take it; if the
node's pushed copy has that digest, it sets the node up at once: a re-run is one
round trip, no rsync. Otherwise it installs rsync if missing and asks for the
push: one rsync of the staged server files and node code, then the pushed copy of
the script. The script's output streams back prefixed by host; a summary lists
each host's result, time and changes. A failing host does not stop the others;
the command fails if any host did.
"""

from __future__ import annotations

import getpass
import json
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from silverlining import nodes, serverfiles, transport
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.node import paths

MAX_PARALLEL = 16


@dataclass
class HostResult:
    host: str
    ok: bool = False
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)
    changes: int | None = None      # the script's own count (None if it did not finish)
    push_needed: bool = False       # the node's pushed copy differs: push, then run it
    error: str = ""


class _ScriptOutput:
    """Streams a script's lines as ``[host] line`` and keeps what the summary needs."""

    def __init__(self, console: Console, label: str, result: HostResult) -> None:
        self.console, self.label, self.result = console, label, result
        self.error = ""

    def __call__(self, name: str, line: str) -> None:
        if line.startswith("{"):
            try:
                said = json.loads(line)
                if said.get("push") == "needed":
                    self.result.push_needed = True
                else:
                    self.result.changes = int(said["changes"])
                return
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        if line.startswith("changed: "):
            self.result.changed.append(line[len("changed: "):])
        elif name == "stderr" and line.startswith("error: "):
            self.error = line[len("error: "):]
        if line.strip():
            self.console.step(self.label, line)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def script_on_stdin(*args: str) -> list[str]:
    """The command that runs the setup script fed on its stdin, with ``args``: bash
    reads it whole first (``bash -s`` would read it a byte at a time, and whatever the
    script runs could read the rest), with no process but bash."""
    return ["bash", "-c", 'eval "$(</dev/stdin)"', serverfiles.SCRIPT_NAME, *args]


def _run_script(ssh: transport.SSH, argv: list[str], out: _ScriptOutput,
                what: str, input: str | None = None) -> None:
    result = ssh.run(argv, input=input, stream=out, check=False)
    if result.status != 0:
        raise SilverError(out.error or f"{what} failed with status {result.status}")


class Staged:
    """The pushed tree, copied into a temporary directory when a node first needs it
    (a re-run on set-up nodes needs none)."""

    def __init__(self, tmp: Path) -> None:
        self._dest = tmp / "server-files"
        self._lock = threading.Lock()
        self._done = False

    def path(self) -> Path:
        with self._lock:
            if not self._done:
                serverfiles.stage(self._dest)
                self._done = True
        return self._dest


def setup_host(console: Console, host: str, staged: Staged, version: str, digest: str,
               who: str) -> HostResult:
    """Set up one node; every failure ends up in the result, never raised."""
    result = HostResult(host)
    start = time.monotonic()
    try:
        node = nodes.resolve(host)
        label = result.host = node.name
        out = _ScriptOutput(console, label, result)
        args = ["--version", version, "--by", who]
        with transport.SSH(node.address, label=label) as ssh:
            with console.ticking(label, "running the setup script"):
                _run_script(ssh, script_on_stdin(*args, "--pushed", digest), out,
                            "setup script", input=serverfiles.script_text())
            if result.push_needed:
                stats = transport.rsync(f"{staged.path()}/", node.address,
                                        f"{paths.SERVER_FILES}/", delete=True, checksum=True,
                                        label=label)
                console.step(label, f"pushed server files {version} ({len(stats.changed)} "
                                    f"paths changed, {stats.bytes_sent} bytes)")
                with console.ticking(label, "running the setup script"):
                    _run_script(ssh, ["bash", str(paths.SETUP_SCRIPT), *args], out,
                                "setup script")
            else:
                console.detail(f"[{label}] server files {version} already there")
        result.ok = True
    except SilverError as exc:
        prefix = f"[{result.host}] "
        result.error = exc.message[len(prefix):] if exc.message.startswith(prefix) else exc.message
    result.seconds = time.monotonic() - start
    return result


def print_summary(console: Console, results: list[HostResult]) -> None:
    failed = [r for r in results if not r.ok]
    console.out(f"setup-node: {len(results) - len(failed)} ok, {len(failed)} failed")
    width = max(len(r.host) for r in results)
    for r in results:
        if r.ok:
            count = r.changes if r.changes is not None else len(r.changed)
            what = f"{count} change{'' if count == 1 else 's'}"
            console.out(f"  {r.host:<{width}}  ok      {r.seconds:6.1f}s  {what}")
            if console.verbose:
                for item in r.changed:
                    console.out(f"  {'':<{width}}    - {item}")
        else:
            console.out(f"  {r.host:<{width}}  FAILED  {r.seconds:6.1f}s  {r.error}")


def run(console: Console, hosts: tuple[str, ...]) -> int | None:
    hosts = tuple(dict.fromkeys(h.strip() for h in hosts if h.strip()))
    version, digest = serverfiles.version(), serverfiles.pushed_digest()
    who = _who()
    console.info(f"setting up {len(hosts)} node{'s' if len(hosts) != 1 else ''} "
                 f"with server files {version}")
    with tempfile.TemporaryDirectory(prefix="silver-setup-") as tmp:
        staged = Staged(Path(tmp))
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(hosts))) as pool:
            results = list(pool.map(
                lambda h: setup_host(console, h, staged, version, digest, who), hosts))
    print_summary(console, results)
    failed = [r.host for r in results if not r.ok]
    if failed:
        raise SilverError(f"setup-node failed on {len(failed)} of {len(results)} "
                          f"node{'s' if len(results) != 1 else ''}: {', '.join(failed)}")
    return 0
