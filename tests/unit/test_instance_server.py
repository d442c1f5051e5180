"""The instance's ExecStart (``silverlining.node._serve``) with the real gunicorn: the
first worker loads the app alone, the others start once it has (node/_gunicorn.py).
A local process on a unix socket; no node needed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# each worker says when its import of the app starts and ends; the import takes a while,
# so workers started together would both start before either ends
SLOW_APP = '''import os, time
print(f"loading {os.getpid()}", flush=True)
time.sleep(0.4)
print(f"loaded {os.getpid()}", flush=True)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


@pytest.mark.parametrize("workers", [2, 3])
def test_first_worker_loads_alone_then_the_others_start(tmp_path: Path, workers: int) -> None:
    pytest.importorskip("gunicorn")
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.ini").write_text("[production]\napp_name = slow\nrunner = main.py\n")
    (app / "main.py").write_text(SLOW_APP)
    log = tmp_path / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "silverlining.node._serve", "--socket",
                             str(tmp_path / "s.sock"), "--log", str(log), "--workers",
                             str(workers)], cwd=app, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while (log.read_text().count("loaded ") if log.exists() else 0) < workers:
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)             # any worker too many would have started by now
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    booted = re.findall(r"Booting worker with pid: (\d+)", text)
    assert len(booted) == workers, text
    first = booted[0]
    # the others were started (booted) only after the first had loaded the app
    for pid in booted[1:]:
        assert text.index(f"loaded {first}") < text.index(f"Booting worker with pid: {pid}"), text
    assert text.count("Handling signal: ttin") == 1, text
