"""User errors of the real CLI end in one ``silver: error:`` line, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import run_silver


def one_line_error(proc, code: int, text: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and text in lines[0], proc.stderr


def test_init_into_a_path_that_cannot_be_a_directory():
    one_line_error(run_silver("init", "/etc/hostname/app"), 2, "cannot create /etc/hostname/app")


def test_serve_port_out_of_range(tmp_path):
    proc = run_silver("serve", str(tmp_path), "--port", "99999")
    assert proc.returncode == 2 and "99999 is not in the range 0<=x<=65535" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_node_registry_is_named():
    registry = Path(os.environ["SILVER_HOME"]) / "nodes.json"
    registry.parent.mkdir(parents=True)
    registry.write_text("{not json")
    one_line_error(run_silver("query", "web1"), 1, f"{registry} is corrupt")
    registry.write_text("[]")
    one_line_error(run_silver("query", "web1"), 1, "not a JSON object")


def test_silver_home_that_is_a_file(tmp_path):
    home = tmp_path / "file"
    home.write_text("")
    proc = run_silver("query", "web1", env={"SILVER_HOME": str(home)})
    one_line_error(proc, 1, f"cannot use {home} as silverlining's state directory")


@pytest.mark.parametrize("version", ["v;1", "1.5", "prev2", "App.v1"])
def test_activate_refuses_a_bad_version_before_connecting(version):
    # web1 is not a node anywhere: the version is refused before any lookup
    one_line_error(run_silver("activate", "web1", version), 2, f"bad version {version!r}")


def test_bad_wait_timeout_is_refused_before_creating(tmp_path):
    config = Path(os.environ["SILVER_CONFIG"])
    config.write_text("[provider:dummy]\ndriver = dummy\ncreds = 0\nimage = id 1\nsize = id 1\n")
    proc = run_silver("-p", "dummy", "create-node", "web1", "--wait",
                      env={"SILVER_WAIT_TIMEOUT": "soon"})
    one_line_error(proc, 2, "SILVER_WAIT_TIMEOUT='soon' is not a number of seconds")
    assert "creating" not in proc.stderr


def test_local_listings_mark_the_drivers_defaults(tmp_path):
    config = Path(os.environ["SILVER_CONFIG"])
    config.write_text(f"[provider:local]\ndriver = local\ncache_dir = {tmp_path}\n")
    sizes = run_silver("-p", "local", "list-sizes", check=True).stdout.splitlines()
    assert [ln.split()[1] for ln in sizes if ln.startswith("*")] == ["small"]
    images = run_silver("-p", "local", "list-images", check=True).stdout.splitlines()
    assert images[0].split() == ["ID", "NAME", "STATE"]
    marked = [ln for ln in images if ln.startswith("*")]
    assert len(marked) == 1 and "debian-13" in marked[0]
    assert marked[0].rstrip().endswith("built on first use")
