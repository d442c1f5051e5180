"""``update_fetch`` under ``silver serve``: run once the server is up, as after
a deploy. URL entries are internal GETs marked as update requests; scripts run
through the app loader with the app's environment."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

from silverlining.appconfig import AppConfig, FetchEntry
from silverlining.apploader import script_command
from silverlining.console import Console
from silverlining.devserver.wsgiapp import UPDATE_HEADER

MAX_SHOWN = 2000


def fetch_url(base_url: str, entry: FetchEntry, token: str, timeout: float = 120) -> tuple[int, str]:
    """GET the entry's path; (status, body text)."""
    req = urllib.request.Request(base_url.rstrip("/") + (entry.url or "/"),
                                 headers={UPDATE_HEADER: token})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def run_update_fetch(config: AppConfig, env: dict[str, str], base_url: str, token: str,
                     console: Console) -> bool:
    """Run every entry in order; report each result. True if all succeeded."""
    ok = True
    for entry in config.update_fetch:
        if entry.url:
            try:
                status, body = fetch_url(base_url, entry, token)
            except (OSError, urllib.error.URLError) as exc:
                console.warn(f"update_fetch {entry.url}: {exc}")
                ok = False
                continue
            shown = body if len(body) <= MAX_SHOWN else body[:MAX_SHOWN] + "..."
            console.info(f"update_fetch {entry.url} -> {status}")
            if shown.strip():
                console.info(shown.rstrip())
            ok = ok and status < 400
        else:
            cmd = script_command(sys.executable, config.app_dir, entry.script or "",
                                 entry.args)
            try:
                proc = subprocess.run(cmd, cwd=config.app_dir, env={**os.environ, **env},
                                      capture_output=True, text=True)
            except OSError as exc:
                console.warn(f"update_fetch script:{entry.script}: {exc}")
                ok = False
                continue
            console.info(f"update_fetch script:{' '.join([entry.script or '', *entry.args])}"
                         f" -> exit {proc.returncode}")
            output = (proc.stdout + proc.stderr).rstrip()
            if output:
                console.info(output)
            ok = ok and proc.returncode == 0
    return ok
