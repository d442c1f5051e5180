"""Node-side records that need no node: environment files, locks, version specs."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from silverlining.node import _state, paths
from silverlining.node._env import format_env, parse_env
from silverlining.node._errors import NodeError


def test_env_file_round_trips_awkward_values():
    env = {"PLAIN": "a/b:c", "SPACES": "two words", "QUOTES": 'say "hi" $HOME `x` \\ end',
           "EMPTY": ""}
    text = format_env(env)
    assert 'QUOTES="say \\"hi\\" \\$HOME \\`x\\` \\\\ end"' in text
    assert parse_env(text) == env


def test_env_file_refuses_newlines_and_bad_names():
    with pytest.raises(NodeError, match="newline"):
        format_env({"A": "line1\nline2"})
    with pytest.raises(NodeError, match="bad environment variable name"):
        format_env({"A-B": "x"})


def _hold(seconds: float) -> None:
    """In a forked child, which inherits the patched ``paths.LOCKS``."""
    with _state.app_lock("demo", wait=1):
        time.sleep(seconds)


def test_app_lock_waits_then_gives_up_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "LOCKS", tmp_path)
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(3,))
    holder.start()
    try:
        deadline = time.monotonic() + 5
        while not (tmp_path / "app-demo.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        with pytest.raises(NodeError, match=r"app demo is busy .* gave up after 0.5s"):
            with _state.app_lock("demo", wait=0.5):
                pass
        assert 0.4 < time.monotonic() - started < 2
        with _state.app_lock("other", wait=0.5):      # other apps do not wait
            pass
        with _state.app_lock("demo", wait=10):        # and the lock is had once released
            pass
    finally:
        holder.join()


def test_activate_version_specs(tmp_path, monkeypatch):
    from silverlining.node.activate import resolve

    monkeypatch.setattr(paths, "ROUTES", tmp_path / "routes.json")
    (tmp_path / "routes.json").write_text(json.dumps(
        {"a.test": {"app": "hello", "version": "v3", "prev": "v2"},
         "b.test": {"app": "hello", "version": "v3", "prev": None}}))
    assert resolve("a.test", "prev") == ("hello", "v2")
    assert resolve("a.test", "v1") == ("hello", "v1")
    assert resolve("a.test", "4") == ("hello", "v4")
    assert resolve("new.test", "other.v7") == ("other", "v7")
    with pytest.raises(NodeError, match="no previous version"):
        resolve("b.test", "prev")
    with pytest.raises(NodeError, match="name the version as APP.vN"):
        resolve("new.test", "v1")
    with pytest.raises(NodeError, match="bad version"):
        resolve("a.test", "latest")
