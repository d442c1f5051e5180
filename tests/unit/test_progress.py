"""Progress on long steps: the status line (only on a screen, never with -q),
rsync's progress read from real rsync output, mmdebstrap's phases."""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest

from silverlining import transport
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.providers import local_image


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def on_terminal(monkeypatch) -> Terminal:
    """stderr as a terminal; patched in the test itself, since pytest's capture
    swaps sys.stderr again between a fixture's set-up and the test."""
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    return screen


def test_status_line_is_redrawn_in_place_and_cleared(monkeypatch):
    screen = on_terminal(monkeypatch)
    console = Console()
    console.status("web1", "uploading: 1.0 MB, 10%")
    console.status("web2", "uploading: 2.0 MB, 20%")
    console.info("[web1] a lasting line")
    console.status_done("web1")
    console.status_done("web2")
    assert screen.getvalue() == (
        "\r[web1] uploading: 1.0 MB, 10%\x1b[K"
        "\r[web1] uploading: 1.0 MB, 10%  [web2] uploading: 2.0 MB, 20%\x1b[K"
        "\r\x1b[K[web1] a lasting line\n"
        "\r[web1] uploading: 1.0 MB, 10%  [web2] uploading: 2.0 MB, 20%\x1b[K"
        "\r[web2] uploading: 2.0 MB, 20%\x1b[K"
        "\r\x1b[K")


def test_quiet_or_no_terminal_shows_no_status(monkeypatch):
    screen = on_terminal(monkeypatch)
    Console(quiet=True).status("web1", "uploading")
    with Console(quiet=True).ticking("web1", "installing"):
        pass
    assert screen.getvalue() == ""
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    console = Console()
    assert not console.live
    console.status("web1", "uploading")
    console.info("a line")
    assert pipe.getvalue() == "a line\n"


def test_ticking_counts_seconds_and_clears(monkeypatch):
    terminal = on_terminal(monkeypatch)
    with Console().ticking("web1", "installing shop.v3"):
        time.sleep(1.3)
    screen = terminal.getvalue()
    assert "\r[web1] installing shop.v3 (0 s)\x1b[K" in screen
    assert "\r[web1] installing shop.v3 (1 s)\x1b[K" in screen
    assert screen.endswith("\r\x1b[K")


def test_rsync_progress2_output_is_parsed(tmp_path):
    """Real rsync output (a local copy: no SSH, no network) through the same reader."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3_000_000))
    (src / "small.txt").write_text("x" * 1000)
    proc = subprocess.Popen(["rsync", "-a", "--info=progress2", "--no-inc-recursive",
                             "--out-format=%i %n%L", f"{src}/", str(tmp_path / "dst")],
                            stdout=subprocess.PIPE)
    seen = []
    items = []
    for record in transport.output_records(proc.stdout):
        if m := transport._PROGRESS_RE.match(record):
            seen.append((int(m.group(1).replace(",", "")), int(m.group(2)), m.group(3)))
        elif record.startswith(">f"):
            items.append(record.split()[1])
    assert proc.wait() == 0
    assert sorted(items) == ["big.bin", "small.txt"]
    assert seen[-1][:2] == (3_001_000, 100)
    assert all(rate.endswith("B/s") for _, _, rate in seen)


def test_output_records_split_at_carriage_returns():
    pipe = io.BufferedReader(io.BytesIO(b"a\r  1,024  10%  1.00kB/s    0:00:01\rb\nlast"))
    assert list(transport.output_records(pipe)) == [
        "a", "  1,024  10%  1.00kB/s    0:00:01", "b", "last"]


def fake_mmdebstrap(tmp_path: Path, monkeypatch, status: int) -> None:
    tool = tmp_path / "bin" / "mmdebstrap"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho 'I: downloading packages with apt...' >&2\n"
                    "echo 'I: extracting archives...' >&2\n"
                    f"[ {status} = 0 ] || echo 'E: apt-get download failed' >&2\n"
                    f"exit {status}\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ['PATH']}")


def test_image_build_reports_mmdebstrap_phases(tmp_path, monkeypatch):
    fake_mmdebstrap(tmp_path, monkeypatch, 0)
    phases: list[str] = []
    spec = local_image.IMAGES["debian-12"]
    local_image._build(tmp_path / "rootfs", spec, [], phases.append)
    assert phases == ["building image Debian 12 (bookworm): downloading packages with apt...",
                      "building image Debian 12 (bookworm): extracting archives..."]


def test_image_build_failure_is_one_line(tmp_path, monkeypatch):
    fake_mmdebstrap(tmp_path, monkeypatch, 1)
    with pytest.raises(SilverError) as err:
        local_image._build(tmp_path / "rootfs", local_image.IMAGES["debian-12"], [],
                           lambda _text: None)
    assert err.value.message == ("building image Debian 12 (bookworm) with mmdebstrap "
                                 "failed: E: apt-get download failed")
