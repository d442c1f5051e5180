"""The bench's private world: its own SILVER_HOME, key and local nodes.

Everything goes through the public CLI (``python -m silverlining`` from this
checkout) and plain SSH, so the suite measures whatever the code of the day
does and keeps working while the deploy path changes underneath it.
Traffic goes only to the bench nodes' 10.213.N.2 addresses: locations are
reached with Host headers, never through a resolver.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "examples" / "hello"
DEFAULT_CACHE = "/var/cache/silverlining-test/images"

# Appended to the copy of examples/hello: /bench-marker answers the MARKER line,
# which each one-file redeploy rewrites, so "new content served" is exact.
MARKER_CODE = '''

MARKER = "{marker}"
_hello_application = application


def application(environ, start_response):
    """The bench's probe: answers the marker of the deployed version."""
    if environ.get("PATH_INFO") == "/bench-marker":
        return respond(start_response, "200 OK", MARKER, "text/plain; charset=utf-8")
    return _hello_application(environ, start_response)
'''


class BenchError(Exception):
    """A step of the bench failed: the run stops (nodes are still destroyed)."""


def private_environment(root: Path, comment: str,
                        image: str | None = None) -> dict[str, str]:
    """SILVER_* variables for a run of its own in ``root``: state, a ``[provider:local]``
    config, a fresh ed25519 key (comment ``comment``), an /etc/hosts and the shared image
    cache, and an empty ssh config (SILVER_SSH_CONFIG). ``image`` (a local image id
    such as ``debian-12``) replaces the driver's default image. The node tests'
    ``node_env`` uses it too."""
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(key)], check=True)
    cache = os.environ.get("SILVER_LOCAL_CACHE") or DEFAULT_CACHE
    config = root / "silverlining.conf"
    config.write_text(f"[provider:local]\ndriver = local\ncache_dir = {cache}\n"
                      f"ssh_public_key = {key}.pub\n"
                      + (f"image = id {image}\n" if image else ""))
    hosts = root / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    ssh_config = root / "ssh_config"        # not the user's: ~/.ssh/config stays out of it
    ssh_config.write_text("")
    return {"SILVER_HOME": str(root / "state"), "SILVER_CONFIG": str(config),
            "SILVER_SSH_CONFIG": str(ssh_config),
            "SILVER_SSH_KEY": str(key), "SILVER_LOCAL_CACHE": cache,
            "SILVER_ETC_HOSTS": str(hosts)}


class BenchEnv:
    """A temp SILVER_HOME/SILVER_CONFIG with ``[provider:local]`` and a fresh key,
    like the node tests' ``node_env``, plus the nodes this run created."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = root / "id_ed25519"
        self.env = {**os.environ, **private_environment(root, "silver-bench"),
                    "PYTHONPATH": str(REPO)}
        # measured as installed: with its bytecode cached, not compiled on each run
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.nodes: dict[str, str] = {}         # name -> address, every node made here
        self._ssh: dict[str, paramiko.SSHClient] = {}

    # --- the CLI ------------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "silverlining", *args]

    def silver(self, *args: str, check: bool = True,
               timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
        """Run the CLI to its end; (seconds, process). A failure stops the bench."""
        start = time.monotonic()
        proc = subprocess.run(self.argv(*args), env=self.env, cwd=REPO, text=True,
                              capture_output=True, timeout=timeout)
        seconds = time.monotonic() - start
        if check and proc.returncode != 0:
            raise BenchError(f"silver {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}{proc.stderr}")
        return seconds, proc

    def help_text(self, *command: str) -> str:
        return self.silver(*command, "--help")[1].stdout

    def supports(self, option: str, *command: str) -> bool:
        """Whether today's CLI has ``option`` (so a case can say "not supported")."""
        return option in self.help_text(*command)

    def update_args(self, app: Path, location: str, nodes: list[str],
                    *extra: str) -> list[str]:
        args = ["-v", "-y", "update", str(app), location, "--noetchosts", *extra]
        for node in nodes:
            args += ["--node", node]
        return args

    def timed_until(self, args: list[str], address: str, host: str,
                    marker: str) -> tuple[float, str]:
        """Start ``silver ARGS``; seconds from its start until the node serves ``marker``
        at /bench-marker for ``host`` (polled over HTTP); and the command's output."""
        with tempfile.TemporaryFile("w+") as output:     # a pipe could fill up and block it
            start = time.monotonic()
            proc = subprocess.Popen(self.argv(*args), env=self.env, cwd=REPO, text=True,
                                    stdout=output, stderr=subprocess.STDOUT)
            served = deadline = None
            while served is None:
                if probe(address, host) == marker:
                    served = time.monotonic() - start
                elif deadline is None and proc.poll() is not None:
                    deadline = time.monotonic() + 10    # ended: the marker comes now or never
                elif deadline is not None and time.monotonic() > deadline:
                    break
                else:
                    time.sleep(0.01)
            proc.wait(timeout=300)
            output.seek(0)
            out = output.read()
        if proc.returncode != 0 or served is None:
            raise BenchError(f"silver {' '.join(args)}: exit {proc.returncode}, marker "
                             f"{marker!r} {'served' if served else 'never served'}:\n{out}")
        return served, out

    # --- nodes --------------------------------------------------------------------

    def create_nodes(self, names: list[str]) -> None:
        for name in names:
            self.nodes[name] = ""
            _, proc = self.silver("create-node", name, "--wait", "--no-etc-hosts")
            listed = self.silver("list-nodes")[1].stdout.splitlines()
            self.nodes[name] = next(line.split()[2] for line in listed
                                    if line.split()[:1] == [name])
            print(f"  created {name} at {self.nodes[name]}", flush=True)

    def destroy_nodes(self) -> None:
        """Destroy every node this run made; goes on past failures, reports them."""
        for client in self._ssh.values():
            client.close()
        self._ssh.clear()
        # one command a node: destroy-node stops at a name it does not know (a node whose
        # creation failed and cleaned up after itself), which would leave the others running
        for name in self.nodes:
            _, proc = self.silver("-y", "destroy-node", name, check=False)
            if proc.returncode != 0 and "unknown node" not in proc.stderr:
                print(f"destroying {name} failed:\n{proc.stderr}", file=sys.stderr)
        self.nodes.clear()

    def connect(self, name: str, user: str = "root") -> paramiko.SSHClient:
        """A fresh paramiko connection with the bench key (host keys: our own
        just-made nodes, not checked)."""
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(self.nodes[name], username=user, key_filename=str(self.key),
                       allow_agent=False, look_for_keys=False, timeout=10)
        return client

    def as_root(self, name: str, command: str, stdin: str = "", timeout: float = 300) -> str:
        """A shell command as root on a node, on one kept-open connection."""
        if name not in self._ssh:
            self._ssh[name] = self.connect(name)
        chan_in, chan_out, chan_err = self._ssh[name].exec_command(command, timeout=timeout)
        if stdin:
            chan_in.write(stdin)
        chan_in.channel.shutdown_write()
        out = chan_out.read().decode()
        status = chan_out.channel.recv_exit_status()
        if status != 0:
            raise BenchError(f"on {name}: {command}: exit {status}: {chan_err.read().decode()}")
        return out

    def ssh_argv(self) -> list[str]:
        """OpenSSH as rsync uses it, with the bench key."""
        return ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]

    # --- apps ---------------------------------------------------------------------

    def hello_copy(self, name: str, several_nodes: bool = False) -> Path:
        """A copy of examples/hello as app ``name``, with the /bench-marker probe;
        ``several_nodes``: without its files service (refused on several nodes, whose
        disks would diverge) and the update_fetch that resets the counter kept there."""
        dest = self.root / "apps" / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(HELLO, dest)
        ini = dest / "app.ini"
        text = ini.read_text().replace("app_name = hello", f"app_name = {name}")
        if several_nodes:
            text = text.replace("service.files =\n", "").replace("update_fetch =\n    /update\n",
                                                                   "")
        ini.write_text(text)
        set_marker(dest, "start")
        return dest


def set_marker(app: Path, marker: str) -> None:
    """Rewrite the one file a one-file redeploy changes: main.py with a new marker."""
    (app / "main.py").write_text((HELLO / "main.py").read_text()
                                 + MARKER_CODE.format(marker=marker))


def probe(address: str, host: str, timeout: float = 5) -> str | None:
    """The body of /bench-marker on the node's nginx for ``host``; None if it fails."""
    conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    try:
        conn.request("GET", "/bench-marker", headers={"Host": host})
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return body if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
