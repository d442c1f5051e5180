"""The ``local`` provider: real Debian servers on this machine as systemd-nspawn containers.

Each node boots a full systemd (so services are managed as on a rented
server) on an overlayfs over a cached base image, in its own network
namespace at 10.213.N.2 (and at 10.213.0.N on the nodes' private network,
see local_net). Nodes outlive the command that made them; their state
is one JSON file per node under ``STATE_DIR/nodes/NAME/``, so any process can
list, restart or destroy them. Needs Linux and root (see local_host).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libcloud.compute.base import (Node, NodeAuthSSHKey, NodeDriver, NodeImage,
                                   NodeLocation, NodeSize)
from libcloud.compute.types import NodeState

from silverlining import state
from silverlining.errors import SilverError
from silverlining.providers import local_apt, local_image, local_net
from silverlining.providers.local_host import (check_host, find_tool, flocked, host_lock,
                                               is_mounted, pid_alive, run)

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?\Z")
SIZES = {"small": 512, "medium": 1024, "large": 2048}   # nominal MB, not enforced
DEFAULT_SIZE = "small"
SUPERVISOR = Path(__file__).with_name("local_supervise.py")
STOP_TIMEOUT = 20.0
NSPAWN_RUN = Path("/run/systemd/nspawn")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LocalNodeDriver(NodeDriver):
    """libcloud driver for local systemd-nspawn nodes (``driver = local``)."""

    name = "Local systemd-nspawn nodes"
    website = "https://www.freedesktop.org/software/systemd/man/systemd-nspawn.html"
    type = "local"
    features = {"create_node": ["ssh_key"]}

    def __init__(self, key: str | None = None, secret: str | None = None,
                 state_dir: str | None = None, cache_dir: str | None = None,
                 mirror: str | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise SilverError(f"unknown setting(s) for the local provider: "
                              f"{', '.join(sorted(kwargs))} (known: state_dir, cache_dir, "
                              "mirror)", exit_code=2)
        super().__init__(key=key or "", secret=secret)
        self.state_dir = Path(state_dir).expanduser() if state_dir else \
            state.state_dir() / "local"
        env_cache = os.environ.get("SILVER_LOCAL_CACHE")
        self.cache_dir = (Path(cache_dir).expanduser() if cache_dir
                          else Path(env_cache) if env_cache else self.state_dir / "images")
        self.mirror = mirror or None
        self.progress: Callable[[str], None] = _stderr
        # transient progress (the image build's phase): the CLI draws it on its status line
        self.status: Callable[[str], None] = lambda _text: None

    # ---- catalogue -------------------------------------------------------------------

    def list_images(self, location: NodeLocation | None = None) -> list[NodeImage]:
        return [NodeImage(spec.id, spec.name, self, extra={
            "cached": local_image.is_cached(self.cache_dir, spec),
            "default": spec.id == local_image.DEFAULT_IMAGE,
            "path": str(local_image.image_root(self.cache_dir, spec)),
            "suite": spec.suite, "packages": list(spec.packages)})
            for spec in local_image.IMAGES.values()]

    def list_sizes(self, location: NodeLocation | None = None) -> list[NodeSize]:
        return [NodeSize(sid, f"{sid} ({mb} MB)", mb, 0, None, 0.0, self,
                         extra={"enforced": False, "default": sid == DEFAULT_SIZE})
                for sid, mb in SIZES.items()]

    def list_locations(self) -> list[NodeLocation]:
        return [NodeLocation("local", "local", "", self)]

    def ex_build_image(self, image: NodeImage | str | None = None) -> Path:
        """Build (or find) the base image now; returns its root dir."""
        check_host()
        spec = local_image.image_spec(getattr(image, "id", image))
        return local_image.ensure_image(self.cache_dir, spec, self._sources(spec),
                                        self.progress, self.status)

    # ---- nodes -----------------------------------------------------------------------

    def list_nodes(self) -> list[Node]:
        nodes_dir = self.state_dir / "nodes"
        if not nodes_dir.is_dir():
            return []
        return [self._node(rec) for rec in
                (self._read(d.name) for d in sorted(nodes_dir.iterdir())
                 if d.is_dir() and not d.name.startswith("."))
                if rec]

    def ex_get_node(self, name: str) -> Node | None:
        rec = self._read(name)
        return self._node(rec) if rec else None

    def create_node(self, name: str, size: NodeSize | str | None = None,
                    image: NodeImage | str | None = None,
                    location: NodeLocation | str | None = None,
                    auth: NodeAuthSSHKey | None = None, ex_pubkey: str | None = None,
                    ex_wait: bool | str = False) -> Node:
        """Boot a new node; returns once its container runs (``ex_wait``: and sshd listens).

        Arguments may come from ``create.*`` config keys, so they may be strings; no
        ``**kwargs``, so the CLI can name an unknown ``create.*`` key before calling.
        """
        if not NAME_RE.match(name or ""):
            raise SilverError(f"bad local node name {name!r}: use a hostname of lowercase "
                              "letters, digits, '-' and '.' (at most 63)", exit_code=2)
        size_id = getattr(size, "id", size) or DEFAULT_SIZE
        if size_id not in SIZES:
            raise SilverError(f"unknown local size {size_id!r} (sizes: {', '.join(SIZES)})",
                              exit_code=2)
        loc_id = getattr(location, "id", location) or "local"
        if loc_id != "local":
            raise SilverError(f"unknown local location {loc_id!r} (only: local)", exit_code=2)
        pubkey = (auth.pubkey if isinstance(auth, NodeAuthSSHKey) else None) or ex_pubkey
        if not pubkey or not pubkey.strip():
            raise SilverError("creating a local node needs an SSH public key", exit_code=2)
        check_host()
        spec = local_image.image_spec(getattr(image, "id", image))
        sources = self._sources(spec)
        base = local_image.ensure_image(self.cache_dir, spec, sources, self.progress,
                                        self.status)
        node_dir = self._dir(name)
        with self._node_lock(name):
            old = self._read(name)
            if old and self._running(old):
                raise SilverError(f"node {name} exists (running, at "
                                  f"{local_net.node_addr(old['number'])})")
            if node_dir.exists() or old:
                self._remove(name)
            node_dir.mkdir(parents=True, mode=0o700)
            rec: dict[str, Any] = {"name": name, "image": spec.id, "image_root": str(base),
                                   "size": size_id, "created_at": time.time(), "pid": None,
                                   "supervisor_pid": None, "number": None}
            try:
                self._write(rec)
                with host_lock():
                    rec["number"] = local_net.allocate(node_dir, self._live_claim)
                    self._write(rec)
                self._mount(rec)
                self._customize(rec, pubkey.strip(), sources)
                self.progress(f"booting {spec.name} at {local_net.node_addr(rec['number'])}")
                self._start(rec)
            except BaseException:
                try:
                    self._remove(name)  # a failed create leaves nothing behind
                except SilverError:
                    pass                # the first error is the one to report
                raise
        if _truthy(ex_wait):
            _wait_ssh(name, local_net.node_addr(rec["number"]))
        return self._node(rec)

    def reboot_node(self, node: Node) -> bool:
        """Restart the container; the upper layer (what was installed) is kept."""
        check_host()
        with self._node_lock(node.name):
            rec = self._require(node.name)
            self._stop(rec)
            self._start(rec)
        return True

    def start_node(self, node: Node) -> bool:
        self.ex_start_node(node)
        return True

    def stop_node(self, node: Node) -> bool:
        check_host()
        with self._node_lock(node.name):
            self._stop(self._require(node.name))
        return True

    def ex_start_node(self, node: Node | str) -> Node:
        """Start a stopped node (no-op when it runs with its apt proxy forwarder)."""
        name = getattr(node, "name", node)
        with self._node_lock(name):
            rec = self._require(name)
            if not (self._running(rec) and self._supervised(rec)):
                check_host()
                self._stop(rec)            # a container without its supervisor, if any
                self._start(rec)
        return self._node(rec)

    def ex_host_keys(self, name: str) -> list[str]:
        """The node's SSH host keys (``TYPE BASE64``), read from its own disk: a local
        node's key is known for certain, with no trust on first use."""
        rec = self._require(name)
        keys = []
        for pub in sorted((self._rootfs(rec) / "etc" / "ssh").glob("ssh_host_*_key.pub")):
            fields = pub.read_text().split()
            if len(fields) >= 2:
                keys.append(f"{fields[0]} {fields[1]}")
        if not keys:
            raise SilverError(f"[{name}] the node has no SSH host keys in its root filesystem")
        return keys

    def ex_ensure_running(self, name: str) -> Node:
        """The node, restarted first if its container is gone (e.g. after a host reboot)."""
        return self.ex_start_node(name)

    def destroy_node(self, node: Node | str) -> bool:
        """Stop and remove a node and every trace of it; works on half-made and stale nodes."""
        name = getattr(node, "name", node)
        check_host()
        with self._node_lock(name):
            if not self._dir(name).exists():
                return False
            self._remove(name)
        return True

    # ---- internals -------------------------------------------------------------------

    def _sources(self, spec: local_image.ImageSpec) -> list[local_apt.AptSource]:
        return local_apt.sources_for(spec.suite, self.mirror)

    def _dir(self, name: str) -> Path:
        return self.state_dir / "nodes" / name

    def _node_lock(self, name: str):
        return flocked(self.state_dir / "nodes" / ".locks" / f"{name}.lock")

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._dir(name) / "node.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None

    def _require(self, name: str) -> dict[str, Any]:
        rec = self._read(name)
        if rec is None or rec.get("number") is None:
            raise SilverError(f"no local node {name} in {self.state_dir / 'nodes'}")
        return rec

    def _write(self, rec: dict[str, Any]) -> None:
        state.write_json_atomic(self._dir(rec["name"]) / "node.json", rec)

    def _live_claim(self, owner: Path, number: int) -> bool:
        try:
            rec = json.loads((owner / "node.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return False
        return rec.get("number") == number

    def _rootfs(self, rec: dict[str, Any]) -> Path:
        return self._dir(rec["name"]) / "rootfs"

    def _running(self, rec: dict[str, Any]) -> bool:
        return pid_alive(rec.get("pid"), "systemd-nspawn", str(self._rootfs(rec)))

    def _supervised(self, rec: dict[str, Any]) -> bool:
        return pid_alive(rec.get("supervisor_pid"), SUPERVISOR.name,
                         str(self._dir(rec["name"])))

    def _node(self, rec: dict[str, Any]) -> Node:
        number = rec.get("number")
        running = self._running(rec)
        node_state = (NodeState.RUNNING if running else
                      NodeState.PENDING if rec.get("pid") is None else NodeState.STOPPED)
        node_dir = self._dir(rec["name"])
        size = rec.get("size", DEFAULT_SIZE)
        return Node(id=rec["name"], name=rec["name"], state=node_state,
                    public_ips=[local_net.node_addr(number)] if number else [],
                    private_ips=[local_net.private_addr(number)] if number else [],
                    driver=self,
                    size=NodeSize(size, size, SIZES.get(size, 0), 0, None, 0.0, self),
                    image=NodeImage(rec.get("image", ""), rec.get("image", ""), self),
                    created_at=None, extra={
                        "pid": rec.get("pid") if running else None,
                        "number": number,
                        "root_dir": str(node_dir),
                        "rootfs": str(self._rootfs(rec)),
                        "image_root": rec.get("image_root"),
                        "netns": local_net.netns_name(number) if number else None,
                        "host_link": local_net.link_name(number) if number else None,
                        "lan_link": local_net.lan_link_name(number) if number else None,
                        "host_address": local_net.host_addr(number) if number else None,
                        "apt_proxy": (f"http://{local_net.host_addr(number)}:"
                                      f"{local_apt.NODE_PROXY_PORT}") if number else None,
                        "console_log": str(node_dir / "console.log"),
                        "created_at": rec.get("created_at"),
                    })

    def _mount(self, rec: dict[str, Any]) -> None:
        node_dir, root = self._dir(rec["name"]), self._rootfs(rec)
        if is_mounted(root):
            return
        base = Path(rec["image_root"])
        if not (base / "etc" / "os-release").exists():
            raise SilverError(f"base image of node {rec['name']} is gone ({base}): "
                              "destroy the node and create it again")
        for sub in ("upper", "work", "rootfs"):
            (node_dir / sub).mkdir(exist_ok=True)
        paths = [str(base), str(node_dir)]
        if any(c in p for p in paths for c in ",:"):
            raise SilverError(f"local node paths must not contain ',' or ':' ({paths})")
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={node_dir / 'upper'},workdir={node_dir / 'work'}",
             str(root)])

    def _customize(self, rec: dict[str, Any], pubkey: str,
                   sources: list[local_apt.AptSource]) -> None:
        """What makes the node its own server: identity, host keys, root's key, apt."""
        root, name = self._rootfs(rec), rec["name"]
        files = {
            "etc/hostname": f"{name}\n",
            "etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"
                         "::1\tlocalhost ip6-localhost ip6-loopback\n",
            "etc/machine-id": secrets.token_hex(16) + "\n",
            **local_apt.node_apt_files(sources, local_net.host_addr(rec["number"])),
            **_sshd_files(root, local_net.host_addr(rec["number"])),
        }
        for rel, content in files.items():
            path = root / rel
            path.unlink(missing_ok=True)
            path.write_text(content)
            path.chmod(0o644)
        ssh_dir = root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        auth = ssh_dir / "authorized_keys"
        auth.write_text(pubkey + "\n")
        auth.chmod(0o600)
        for key in (root / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        run(["ssh-keygen", "-A", "-f", str(root)])

    def _start(self, rec: dict[str, Any]) -> None:
        name, number = rec["name"], rec["number"]
        node_dir = self._dir(name)
        with host_lock():
            owner = local_net.claim_owner(number)
            if owner not in (None, node_dir) and self._live_claim(owner, number):
                # Our number went to another node (e.g. after a host reboot): take a new one.
                rec["number"] = number = local_net.allocate(node_dir, self._live_claim)
                self._write(rec)
                self._rewrite_proxy(rec)
            elif owner is None:
                (local_net.CLAIMS / str(number)).parent.mkdir(parents=True, exist_ok=True)
                (local_net.CLAIMS / str(number)).write_text(f"{node_dir}\n")
            local_net.setup(number)
        self._mount(rec)
        local_apt.ensure_proxy()
        nspawn = find_tool("systemd-nspawn") or "systemd-nspawn"
        argv = [sys.executable, str(SUPERVISOR), str(node_dir), local_net.host_addr(number),
                str(local_apt.NODE_PROXY_PORT), local_apt.ACNG_HOST, str(local_apt.ACNG_PORT),
                "--", nspawn, "--boot", "--directory", str(self._rootfs(rec)),
                "--machine", name, "--register=no", "--keep-unit", "--console=read-only",
                # the node's own firewall (setup-node's nftables) needs it; the
                # node has its own network namespace, so it touches nothing else
                "--capability=CAP_NET_ADMIN",
                # a copy, not a bind mount: tzdata's postinst replaces /etc/localtime,
                # and PostgreSQL depends on tzdata
                "--timezone=copy",
                f"--network-namespace-path={local_net.netns_path(number)}"]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
        out = proc.stdout.strip()
        if proc.returncode != 0 or not out.startswith("ok "):
            detail = (proc.stderr.strip() or out or f"exit {proc.returncode}").splitlines()[-1]
            raise SilverError(f"starting local node {name} failed: {detail}")
        rec["pid"] = int(out.split()[1])
        rec["supervisor_pid"] = _parent_pid(rec["pid"])
        root_stat = os.stat(self._rootfs(rec))
        rec["nspawn_lock"] = f"inode-{root_stat.st_dev}:{root_stat.st_ino}"
        rec["started_at"] = time.time()
        self._write(rec)
        time.sleep(0.2)
        if not self._running(rec):
            raise SilverError(f"local node {name} stopped right after starting "
                              f"(see {node_dir / 'console.log'})")

    def _rewrite_proxy(self, rec: dict[str, Any]) -> None:
        self._mount(rec)
        root, host = self._rootfs(rec), local_net.host_addr(rec["number"])
        proxy = "etc/apt/apt.conf.d/01silverlining-proxy"
        files = {proxy: local_apt.node_apt_files([], host)[proxy], **_sshd_files(root, host)}
        for rel, content in files.items():
            (root / rel).unlink(missing_ok=True)        # a link there is not followed
            (root / rel).write_text(content)

    def _stop(self, rec: dict[str, Any]) -> None:
        """Halt the container (SIGTERM: clean shutdown), SIGKILL if it hangs."""
        pid = rec.get("pid")
        if self._running(rec):
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(lambda: self._running(rec), STOP_TIMEOUT):
                _signal(pid, signal.SIGKILL)
                _wait_gone(lambda: self._running(rec), 10)
        if rec.get("number"):
            _kill_orphans(rec["number"])
        if self._supervised(rec):
            if not _wait_gone(lambda: self._supervised(rec), 3):
                _signal(rec["supervisor_pid"], signal.SIGKILL)
                _wait_gone(lambda: self._supervised(rec), 5)
        _clean_nspawn_run_files(rec)

    def _remove(self, name: str) -> None:
        """Tear down whatever exists of node ``name`` (running, stopped or half-made)."""
        node_dir = self._dir(name)
        rec = self._read(name) or {"name": name}
        self._stop(rec)
        root = node_dir / "rootfs"
        if is_mounted(root):
            if run(["umount", str(root)], check=False).returncode != 0:
                run(["umount", "--lazy", str(root)])
        with host_lock():
            numbers = {n for n in [rec.get("number")] if n}
            if local_net.CLAIMS.is_dir():
                numbers |= {int(p.name) for p in local_net.CLAIMS.iterdir()
                            if p.name.isdigit() and local_net.claim_owner(int(p.name)) == node_dir}
            for number in numbers:
                owner = local_net.claim_owner(number)
                if owner in (None, node_dir):
                    local_net.teardown(number)
                    local_net.release(number, node_dir)
        if node_dir.exists():
            if is_mounted(root):
                raise SilverError(f"cannot remove {node_dir}: {root} is still mounted")
            shutil.rmtree(node_dir)


def _clean_nspawn_run_files(rec: dict[str, Any]) -> None:
    """What a killed nspawn leaves in /run/systemd/nspawn (a clean exit removes it)."""
    lock = rec.get("nspawn_lock")
    if lock:
        (NSPAWN_RUN / "locks" / lock).unlink(missing_ok=True)
    propagate = NSPAWN_RUN / "propagate" / rec["name"]
    if propagate.is_dir() and not _nspawn_runs_machine(rec["name"]):
        try:
            propagate.rmdir()
        except OSError:
            pass            # not empty: not ours to judge


def _nspawn_runs_machine(name: str) -> bool:
    """Whether any nspawn on the host (any state dir) runs a machine called ``name``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn"):
            words = [a.decode(errors="replace") for a in argv]
            if f"--machine={name}" in words or any(
                    a in ("-M", "--machine") and b == name for a, b in zip(words, words[1:])):
                return True
    return False


def _kill_orphans(number: int) -> None:
    """Halt a container left running without its nspawn: poweroff to its init, then kill."""
    pids = local_net.netns_pids(number)
    for pid in pids:
        if _is_ns_init(pid):
            _signal(pid, signal.SIGRTMIN + 4)      # systemd: clean poweroff
    if pids and not _wait_gone(lambda: bool(local_net.netns_pids(number)), STOP_TIMEOUT):
        for pid in local_net.netns_pids(number):
            _signal(pid, signal.SIGKILL)
        _wait_gone(lambda: bool(local_net.netns_pids(number)), 10)


def _is_ns_init(pid: int) -> bool:
    """Whether ``pid`` is PID 1 of its own PID namespace (a container's init)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                return len(ids) > 1 and ids[-1] == "1"
    except FileNotFoundError:
        pass
    return False


def _truthy(value: bool | str | None) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _wait_ssh(name: str, addr: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((addr, 22), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise SilverError(f"local node {name} started but {addr}:22 did not answer "
                                  f"in {timeout:.0f} s") from None
            time.sleep(0.1)


def _parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _signal(pid: int | None, sig: int) -> None:
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _sshd_files(root: Path, host: str) -> dict[str, str]:
    """The host exempt from sshd's PerSourcePenalties (OpenSSH 9.8+, Debian 13): it is
    the node's only client, and each command's wait for the SSH banner is a connection
    that does not log in, so a quick run of commands got the host refused for a while."""
    sshd = root / "usr/sbin/sshd"
    if not sshd.is_file() or b"persourcepenaltyexemptlist" not in sshd.read_bytes():
        return {}
    return {"etc/ssh/sshd_config.d/silverlining-local.conf":
            "# written by silver's local provider: this host is the node's only client\n"
            f"PerSourcePenaltyExemptList {host}\n"}
