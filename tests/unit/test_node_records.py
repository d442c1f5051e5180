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


def test_job_units_are_listed_per_version_of_their_own_app_only(tmp_path, monkeypatch):
    """One listing of the unit directory gives each version's job units; an app whose
    name extends another's (``my`` and ``my-app``) and the web unit are not among them."""
    from silverlining.node import jobs
    monkeypatch.setattr(paths, "SYSTEMD_UNITS", tmp_path)
    for name in ("silver-my-v3.process-web@.service", "silver-my-v3.cron-nightly.timer",
                 "silver-my-v3.cron-nightly.service", "silver-my-v3.service",
                 "silver-my-v12.process-q@.service", "silver-my-app-v3.process-web@.service",
                 "silver-my.slice", "nginx.service"):
        (tmp_path / name).write_text("")
    found = jobs.installed_by_version("my")
    assert found["v3"] == ["silver-my-v3.cron-nightly.service", "silver-my-v3.cron-nightly.timer",
                           "silver-my-v3.process-web@.service"]
    assert found["v12"] == ["silver-my-v12.process-q@.service"]
    assert set(found) == {"v3", "v12"}
    assert jobs._installed("my", "v4") == []
    assert jobs.installed_by_version("my-app") == {"v3": ["silver-my-app-v3.process-web@.service"]}


def test_root_connects_to_a_socket_never_through_a_link(tmp_path):
    """``connect_unix`` reaches a socket itself, refuses a link to one (an app's socket
    directory is the app's) and anything that is not a socket."""
    import socket

    from silverlining.node.base import connect_unix, listening
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "real.sock"))
    server.listen(4)
    try:
        (tmp_path / "link.sock").symlink_to(tmp_path / "real.sock")
        (tmp_path / "file.sock").write_text("")
        connect_unix(tmp_path / "real.sock", 2.0).close()
        assert listening(tmp_path / "real.sock")
        for bad in ("link.sock", "file.sock", "missing.sock"):
            with pytest.raises(OSError):
                connect_unix(tmp_path / bad, 2.0)
            assert not listening(tmp_path / bad)
    finally:
        server.close()
