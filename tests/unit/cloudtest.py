"""Shared set-up for the cloud tests: the real CLI in-process against a FakeApi."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from silverlining import cli
from tests.unit.fakecloud import FakeApi, redirect_libcloud

PUBKEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJev0+dwLABvcQmnqGvtWL/oVTx09t39hw5zaoqJCxan "
          "me@laptop")    # a real key (drivers parse it); its private half was discarded


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


@pytest.fixture
def api(monkeypatch, tmp_path):
    """A running FakeApi that every libcloud driver talks to; no sleeping in polls."""
    fake = FakeApi().start()
    redirect_libcloud(monkeypatch, fake)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    monkeypatch.setenv("SILVER_WAIT_TIMEOUT", "5")
    monkeypatch.setenv("SILVER_ETC_HOSTS", str(tmp_path / "hosts"))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "id_test.pub").write_text(PUBKEY + "\n")
    yield fake
    fake.stop()


def key_path() -> str:
    return str(Path(os.environ["HOME"]) / "id_test.pub")


def write_config(text: str) -> None:
    Path(os.environ["SILVER_CONFIG"]).write_text(text)


def silver(*args: str) -> Result:
    """The real ``silver`` command, in this process so the redirection applies."""
    result = CliRunner().invoke(cli.silver, list(args), prog_name="silver")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(result: Result, status: int, text: str) -> None:
    assert result.status == status, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("silver: error: "), result.stderr
    assert text in last, result.stderr
