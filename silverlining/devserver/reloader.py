"""The ``silver serve`` parent: owns the listening socket and restarts the app
process whenever the app's code, app.ini, the runner or the user config
changes. Holding the socket here means requests made during a restart wait
instead of failing, and a crashing app never takes the server down."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from silverlining import state
from silverlining.appconfig import AppConfig
from silverlining.appfiles import make_paths_relative
from silverlining.console import Console
from silverlining.devserver import fetch, watch
from silverlining.devserver.child import TOKEN_VAR
from silverlining.devserver.environ import app_environ
from silverlining.errors import SilverError, UsageError
from silverlining.userconfig import UserConfig

POLL_SECONDS = 0.3


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SilverError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class Reloader:
    """Runs the app in a child process and restarts it on changes."""

    def __init__(self, config: AppConfig, host: str, port: int, config_dir: str | None,
                 console: Console) -> None:
        self.config, self.console = config, console
        self.config_dir = config_dir
        self.sock = bind(host, port)
        self.url = url_for(self.sock, host)
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        extra = [state.config_path()]
        if config.runner and config.runner.path:
            extra.append(config.app_dir / config.runner.path)
        self.watcher = watch.Watcher(config.app_dir, extra)

    def start_child(self) -> None:
        cmd = [sys.executable, "-m", "silverlining.devserver.child", str(self.config.app_dir),
               "--fd", str(self.sock.fileno())]
        if self.config_dir:
            cmd += ["--config", self.config_dir]
        env = {**os.environ, TOKEN_VAR: self.token}
        self.proc = subprocess.Popen(cmd, pass_fds=(self.sock.fileno(),), env=env)

    def stop_child(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def run_update_fetch(self, env: dict[str, str]) -> None:
        try:
            fetch.run_update_fetch(self.config, env, self.url, self.token, self.console)
        except Exception as exc:  # a report, never the reason the server stops
            self.console.warn(f"update_fetch failed: {exc}")

    def serve_forever(self, env: dict[str, str]) -> None:
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            last = self.watcher.snapshot()
            self.start_child()
            self.console.out(f"Serving {self.config.app_name} on {self.url} "
                             "(reloads on changes; Ctrl-C to stop)")
            if self.config.update_fetch:
                threading.Thread(target=self.run_update_fetch, args=(env,),
                                 daemon=True).start()
            exited_reported = False
            while True:
                time.sleep(POLL_SECONDS)
                now = self.watcher.snapshot()
                diff = watch.changed(last, now)
                if diff:
                    last = now
                    shown = ", ".join(os.path.relpath(p, self.config.app_dir) for p in diff[:3])
                    more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
                    self.console.info(f"changed: {shown}{more}; reloading")
                    self.stop_child()
                    self.start_child()
                    exited_reported = False
                elif self.proc and self.proc.poll() is not None and not exited_reported:
                    self.console.warn(f"the app process exited ({self.proc.returncode}); "
                                      "waiting for a change to restart it")
                    exited_reported = True
        finally:
            self.stop_child()
            self.sock.close()
            signal.signal(signal.SIGTERM, previous)


def check_config(config: AppConfig, env: dict[str, str]) -> None:
    """Run app.ini's config.checker on the deployment config, in its own process
    with the app's libraries and environment, as the deploy does."""
    proc = subprocess.run([sys.executable, "-m", "silverlining.apploader", "check-config",
                           str(config.app_dir), env["SILVER_APP_CONFIG"]],
                          env={**os.environ, **env}, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"]
        raise SilverError(lines[-1].removeprefix("silver: error: "), exit_code=2)


def serve(app_dir: Path | str, host: str, port: int, config_dir: str | None,
          console: Console) -> None:
    """Check the app, then serve it until interrupted."""
    config = AppConfig.load(app_dir)
    if config.runner is None:
        raise UsageError(f"{config.ini_path} has no runner: nothing to serve (run its scripts "
                         "with bin/python)")
    env = app_environ(config, UserConfig.load(), config_dir)
    make_paths_relative(config.app_dir / "lib" / "python", config.app_dir)
    if config.config_checker and "SILVER_APP_CONFIG" in env:
        check_config(config, env)
    Reloader(config, host, port, config_dir, console).serve_forever(env)
