"""Node-side file helpers never follow a link an app could plant, and names never collide."""

from __future__ import annotations

import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from silverlining.appconfig import NAME_RE
from silverlining.node import instances
from silverlining.node._env import parse_env, write_env
from silverlining.node._errors import NodeError
from silverlining.node.base import make_dir, tail

APP_NAMES = st.from_regex(NAME_RE, fullmatch=True)
VERSIONS = st.integers(min_value=1, max_value=10**6).map(lambda n: f"v{n}")


def test_make_dir_refuses_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (tmp_path / "app").symlink_to(victim)
    with pytest.raises(NodeError, match="is not a plain directory"):
        make_dir(tmp_path / "app", 12345, 12345, 0o777)
    assert (victim.stat().st_uid, victim.stat().st_mode & 0o777) == (os.getuid(), 0o700)
    made = make_dir(tmp_path / "new" / "dir", os.getuid(), os.getgid(), 0o750)
    assert made.stat().st_mode & 0o7777 == 0o750


def test_write_env_never_writes_through_a_planted_tmp_link(tmp_path):
    target = tmp_path / "shadow"
    target.write_text("secret\n")
    (tmp_path / ".v1.env.tmp").symlink_to(target)
    write_env(tmp_path / "v1.env", {"A": "1 2"}, os.getgid())
    assert target.read_text() == "secret\n"
    st_ = (tmp_path / "v1.env").stat()
    assert (st_.st_uid, st_.st_mode & 0o777) == (0, 0o640)
    assert parse_env((tmp_path / "v1.env").read_text()) == {"A": "1 2"}


def test_tail_does_not_follow_a_planted_link_or_hang_on_a_fifo(tmp_path):
    (tmp_path / "secret").write_text("root:x\n")
    (tmp_path / "v1.log").symlink_to(tmp_path / "secret")
    os.mkfifo(tmp_path / "v2.log")
    assert tail(tmp_path / "v1.log") == [] and tail(tmp_path / "v2.log") == []


@given(a=APP_NAMES, b=APP_NAMES, v=VERSIONS, w=VERSIONS)
@example(a="stop-x", b="x", v="v1", w="v1")      # once the same name
def test_unit_names_are_unique_across_apps(a, b, v, w):
    """No app's instance unit or stop timer shares a name with another's."""
    names = {("unit", a, v): instances.unit_name(a, v),
             ("stop", a, v): instances.stop_unit_name(a, v) + ".service",
             ("unit", b, w): instances.unit_name(b, w),
             ("stop", b, w): instances.stop_unit_name(b, w) + ".service"}
    assert len(set(names.values())) == len(names)


@given(a=APP_NAMES, b=APP_NAMES)
@example(a="my", b="my-app")        # '-' is systemd's slice nesting: escaped
@example(a="x", b="x_run")
def test_each_app_has_its_own_slice_right_under_silver_slice(a, b):
    """No app's slice is another's, nor its parent (systemd nests ``a-b.slice`` in
    ``a.slice``), and no app's database login is another's maintenance login."""
    from silverlining.node.slices import slice_name
    from silverlining.services._system import db_name
    from silverlining.services.mysql import run_user
    from silverlining.services.postgresql import run_role

    for app in (a, b):
        name = slice_name(app).removesuffix(".slice")
        assert name.startswith("silver-") and "-" not in name.removeprefix("silver-")
        assert run_role(db_name(app)) not in (db_name(a), db_name(b))
        assert run_user(db_name(app)) == run_role(db_name(app))
    if a != b:
        assert slice_name(a) != slice_name(b)
        assert run_role(db_name(a)) != run_role(db_name(b))


def test_a_web_instance_stops_after_nginx():
    """A reboot stops nginx (finishing its requests) before the app it passes them to."""
    from silverlining.appconfig import Limits

    text = instances.unit_text("my-app", "v3", "wsgi", None, Limits())
    assert "\nBefore=nginx.service\n" in text.split("[Service]")[0]


def test_every_unit_of_app_code_is_in_its_slice_with_the_task_limit():
    from silverlining.appconfig import Limits
    from silverlining.node import slices

    text = instances.unit_text("my-app", "v3", "wsgi", None, Limits(tasks=77))
    assert "Slice=silver-my\\x2dapp.slice\nLimitNPROC=77\n" in text
    limits = Limits("300M", 99, 50, 20)
    assert slices.slice_text("my-app", limits).endswith(
        "MemoryMax=300M\nTasksMax=99\nCPUWeight=50\nIOWeight=20\n")
