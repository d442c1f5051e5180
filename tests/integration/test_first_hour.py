"""A newcomer's first hour on a real local node: the app `silver init` writes
deploys as it is; `silver diff` tells by its exit status; the upload shows its
progress on a terminal only (never with -q); the location deployed to
completes in the shell."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.fixtures_apps import http_get, node, setup_node  # noqa: F401

pytestmark = pytest.mark.node


def on_terminal(node, *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run the real CLI with a pseudo-terminal as stdin, stdout and stderr; the status
    and everything written to the terminal (as bytes decoded)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "silverlining", *args], cwd=REPO,
                            stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, **node.env.env, "COLUMNS": "200"})
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:         # the other side closed: the CLI ended
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"silver {' '.join(args)} still running after {timeout} s")
        return proc.wait(30), screen.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.fixture(scope="module")
def first_app(node, tmp_path_factory) -> Path:  # noqa: F811
    app = tmp_path_factory.mktemp("first") / "myapp"
    node.silver("init", str(app), check=True, timeout=120)
    (app / "scripts").mkdir()
    (app / "scripts" / "size.py").write_text(
        "import os, sys\nprint('size', os.path.getsize(sys.argv[1]))\n")
    node.update(app, "first.test")
    return app


def test_the_app_init_writes_deploys_as_it_is(node, first_app):  # noqa: F811
    status, body, _ = http_get(node.address, "first.test")
    assert status == 200 and b"<h1>Hello from myapp</h1>" in body


def test_diff_exit_status_says_whether_there_are_differences(node, first_app):  # noqa: F811
    same = node.silver("diff", str(first_app), "first.test", "--node", node.name)
    assert same.returncode == 0 and same.stdout == "", same.stderr
    main = first_app / "main.py"
    main.write_text(main.read_text().replace("Hello from", "Hi from"))
    changed = node.silver("diff", str(first_app), "first.test", "--node", node.name)
    assert changed.returncode == 1, changed.stderr
    assert "+            f\"<h1>Hi from {name}</h1>\"" in changed.stdout
    failed = node.silver("diff", str(first_app), "first.test", "--node", "127.0.0.9")
    assert failed.returncode == 2, failed.stderr                 # could not compare
    assert failed.stderr.startswith("silver: error: [127.0.0.9] cannot connect")
    node.update(first_app, "first.test")
    again = node.silver("diff", str(first_app), "first.test", "--node", node.name)
    assert again.returncode == 0, again.stderr


def test_upload_progress_only_on_a_terminal(node, first_app):  # noqa: F811
    (first_app / "static" / "big.bin").write_bytes(os.urandom(30_000_000))
    status, screen = on_terminal(node, "-y", "update", str(first_app), "first.test",
                                 "--node", node.name, "--noetchosts")
    assert status == 0, screen
    assert re.search(rf"\r\[{node.name}\] uploading: 30\.0 MB, \d+%, [\d.]+ [kMG]B/s\x1b\[K",
                     screen), screen
    assert f"\r[{node.name}] installing myapp.v" in screen
    assert "live at first.test" in screen
    (first_app / "static" / "big.bin").write_bytes(os.urandom(30_000_000))
    piped = node.update(first_app, "first.test")
    assert "\r" not in piped.stderr and "uploading: " not in piped.stderr
    assert f"[{node.name}] sent 30.0 MB" in piped.stderr
    (first_app / "static" / "big.bin").write_bytes(os.urandom(1_000_000))
    status, screen = on_terminal(node, "-q", "-y", "update", str(first_app), "first.test",
                                 "--node", node.name, "--noetchosts")
    assert status == 0, screen
    assert "uploading: " not in screen and "installing " not in screen
    assert "\r\n" in screen and "live at first.test" in screen    # the result still shows


def test_silver_run_shows_the_upload_of_a_file_argument(node, first_app, tmp_path):  # noqa: F811
    dump = tmp_path / "dump.bin"
    dump.write_bytes(os.urandom(20_000_000))
    status, screen = on_terminal(node, "run", "--node", node.name, "first.test",
                                 "scripts/size.py", str(dump))
    assert status == 0, screen
    assert re.search(rf"\r\[{node.name}\] uploading: 20\.0 MB, \d+%, [\d.]+ [kMG]B/s\x1b\[K",
                     screen), screen
    assert "size 20000000" in screen


def test_deployed_locations_complete(node, first_app):  # noqa: F811
    proc = node.silver(env={"_SILVER_COMPLETE": "bash_complete",
                            "COMP_WORDS": "silver logs fir", "COMP_CWORD": "2"}, check=True)
    assert proc.stdout.split() == [f"plain,{node.name}", "plain,first.test"]
    proc = node.silver(env={"_SILVER_COMPLETE": "bash_complete",
                            "COMP_WORDS": "silver doctor first", "COMP_CWORD": "2"}, check=True)
    assert proc.stdout.split() == [f"plain,{node.name}"]


def test_update_takes_yes_after_the_command(node, first_app):  # noqa: F811
    hosts = node.env.etc_hosts
    assert "first.test" not in hosts.read_text()
    proc = node.silver("update", str(first_app), "first.test", "--node", node.name, "--yes",
                       check=True)
    assert "live at first.test" in proc.stdout
    assert f"{node.address} first.test # silverlining" in hosts.read_text()
