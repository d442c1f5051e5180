"""Host-side plumbing shared by the local provider: checks, commands, host-global locks.

Local nodes use host-global resources (node numbers, network namespaces, the
apt proxy) that several state dirs and test runs share, so their locks and
run-time files live in one fixed place, ``/run/silverlining-local``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from silverlining.errors import SilverError
from silverlining.nodes import pid_alive  # noqa: F401 (here for the local provider)

RUN_DIR = Path("/run/silverlining-local")
NETNS_DIR = Path("/run/netns")

# Executable -> Debian package that provides it (named in the error when missing).
REQUIRED_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "apt-cacher-ng": "apt-cacher-ng",
    "ip": "iproute2",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
}
HOST_SETUP_HINT = "run scripts/host-setup.sh or apt-get install"


def find_tool(name: str) -> str | None:
    """``shutil.which`` that also looks in sbin dirs, which a non-login PATH may lack."""
    extra = os.pathsep.join(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + extra)


def check_host() -> None:
    """Fail with one line when this machine cannot run local nodes at all."""
    if not sys.platform.startswith("linux"):
        raise SilverError(f"local nodes need Linux (systemd-nspawn); this is {sys.platform}")
    if os.geteuid() != 0:
        raise SilverError("local nodes need root (network namespaces, mounts, "
                          "systemd-nspawn): run as root or with sudo")
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not find_tool(tool)})
    if missing:
        tools = [t for t, p in REQUIRED_TOOLS.items() if p in missing]
        raise SilverError(f"local nodes need {', '.join(tools)}: {HOST_SETUP_HINT} "
                          f"{' '.join(missing)}")


def run(argv: Sequence[str], check: bool = True, timeout: float = 120,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a host command (argv list, never a shell); failures become one-line errors."""
    tool = find_tool(argv[0]) or argv[0]
    try:
        proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True,
                              timeout=timeout, input=input)
    except FileNotFoundError:
        raise SilverError(f"{argv[0]} not found: {HOST_SETUP_HINT} "
                          f"{REQUIRED_TOOLS.get(argv[0], argv[0])}") from None
    except subprocess.TimeoutExpired:
        raise SilverError(f"{' '.join(argv)} did not finish in {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise SilverError(f"{' '.join(argv)} failed: {msg[-1] if msg else proc.returncode}")
    return proc


@contextlib.contextmanager
def flocked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created): serialises across processes.

    ``on_wait`` is called once if another process holds the lock (to say why we wait).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def host_lock() -> contextlib.AbstractContextManager[None]:
    """The host-global lock for node numbers, namespaces and the apt proxy."""
    return flocked(RUN_DIR / "host.lock")


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point in our mount namespace (reads mountinfo)."""
    target = str(path)
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                return True
    return False


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")

