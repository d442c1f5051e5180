"""The local checks of ``silver update`` before any node is touched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from silverlining import appfiles
from silverlining.commands.update import Plan, check_binaries, find_binaries, make_plan
from silverlining.deps import Target
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError

PROBE = Path(__file__).resolve().parents[1] / "data" / "probe"


@pytest.fixture
def app(tmp_path) -> Path:
    dest = tmp_path / "probe"
    shutil.copytree(PROBE, dest)
    return dest


def elf(machine: int = 62) -> bytes:
    """The start of a little-endian ELF shared object for ``machine`` (62: x86_64)."""
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (3).to_bytes(2, "little") \
        + machine.to_bytes(2, "little") + b"\0" * 40


NODE = Target("cpython", "3.11.2", "cp311", "2.36", "x86_64")


@pytest.mark.parametrize("name, head, what", [
    ("_speed.cpython-312-x86_64-linux-gnu.so", elf(), "a compiled extension for Python 3.12"),
    ("_ok.abi3.so", elf(183), "compiled for Linux aarch64"),
    ("_ok.cpython-311-aarch64-linux-gnu.so", elf(183), "compiled for Linux aarch64"),
    ("_mac.abi3.so", b"\xcf\xfa\xed\xfe" + b"\0" * 40, "compiled for macOS"),
    ("_mac.cpython-311-darwin.so", b"\xca\xfe\xba\xbe" + b"\0" * 40, "compiled for macOS"),
    ("_win.cp311-win_amd64.pyd", b"MZ" + b"\0" * 60, "compiled for Windows"),
    ("_musl.cpython-311-x86_64-linux-musl.so", elf(), "compiled for musl Linux"),
    ("libfoo-1234.so.6.0.1", elf(40), "compiled for Linux armv7l"),
])
def test_compiled_files_the_node_cannot_load_are_refused(app, name, head, what):
    lib = app / "lib" / "python" / "fast"
    lib.mkdir(parents=True)
    (lib / name).write_bytes(head)
    plan = make_plan(str(app), "probe.test", None, None, None, False, None, Console())
    assert plan.binaries == [f"lib/python/fast/{name}"]
    with pytest.raises(SilverError) as err:
        check_binaries(plan, "n1", NODE)
    assert f"fast/{name} is {what}, but n1 runs CPython 3.11.2, manylinux_2_36_x86_64: " \
        "list the package it comes from in requirements.txt" in err.value.message


def test_compiled_files_that_fit_the_node_pass(app):
    lib = app / "lib" / "python" / "fast"
    lib.mkdir(parents=True)
    for name in ("_speed.cpython-311-x86_64-linux-gnu.so", "_ok.abi3.so", "plain.so",
                 "libz-1.so.1"):
        (lib / name).write_bytes(elf())
    (lib / "notes.so").write_text("not a binary at all\n")
    plan = make_plan(str(app), "probe.test", None, None, None, False, None, Console())
    assert len(plan.binaries) == 5
    check_binaries(plan, "n1", NODE)


def test_ignored_extensions_do_not_count(app):
    (app / ".silverignore").write_text("*.so\n")
    (app / "x.cpython-39-x86_64-linux-gnu.so").write_bytes(b"")
    assert find_binaries(list(appfiles.iter_app_files(app))) == []


def test_symlink_out_of_the_app_is_refused_before_anything(app):
    (app / "static").mkdir(exist_ok=True)
    (app / "static" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(UsageError) as err:
        make_plan(str(app), "example.com", None, None, None, False, None, Console())
    assert f"{app / 'static' / 'passwd'} is a symlink to /etc/passwd, outside the app" \
        in err.value.message


def test_special_files_are_skipped_with_a_warning(app, capsys):
    os.mkfifo(app / "pipe")
    make_plan(str(app), "example.com", None, None, None, False, None, Console())
    assert "skipping" in capsys.readouterr().err
    assert "pipe" not in list(appfiles.iter_app_files(app))


def test_location_given_twice_or_not_at_all(app):
    with pytest.raises(UsageError, match="either LOCATION or --host"):
        make_plan(str(app), "a.test", "b.test", None, None, False, None, Console())
    with pytest.raises(UsageError, match="no location"):
        make_plan(str(app), None, None, None, None, False, None, Console())
    plan = make_plan(str(app), None, "b.test/x", None, None, False, None, Console())
    assert str(plan.location) == "b.test/x"


def test_name_and_config_are_checked(app, tmp_path):
    with pytest.raises(UsageError, match="bad --name"):
        make_plan(str(app), "a.test", None, "Bad Name", None, False, None, Console())
    with pytest.raises(UsageError, match="not a directory"):
        make_plan(str(app), "a.test", None, None, str(tmp_path / "nope"), False, None, Console())
    plan: Plan = make_plan(str(app), "a.test", None, "other", str(tmp_path), False, None,
                           Console())
    assert plan.app == "other" and plan.config_dir == tmp_path.resolve()


def test_absolute_pth_paths_are_made_relative(app):
    lib = app / "lib" / "python"
    lib.mkdir(parents=True)
    (lib / "src.pth").write_text(f"{app}/src\n")
    make_plan(str(app), "a.test", None, None, None, False, None, Console())
    assert (lib / "src.pth").read_text() == "../../src\n"


def test_config_checker_rejects_a_bad_config(app, tmp_path):
    ini = app / "app.ini"
    ini.write_text(ini.read_text() + "config.checker = checker:check\n")
    (app / "checker.py").write_text(
        "import os\n\ndef check(path):\n"
        "    if not os.path.exists(os.path.join(path, 'settings.ini')):\n"
        "        raise ValueError('settings.ini is missing')\n")
    config = tmp_path / "conf"
    config.mkdir()
    with pytest.raises(UsageError, match="settings.ini is missing"):
        make_plan(str(app), "a.test", None, None, str(config), False, None, Console())
    (config / "settings.ini").write_text("[x]\n")
    assert make_plan(str(app), "a.test", None, None, str(config), False, None,
                     Console()).config_dir == config


_SEGMENT = st.sampled_from(["a", "b", "..", ".", "static", "x y"])


@settings(max_examples=200, deadline=None)
@given(where=st.lists(st.sampled_from(["a", "b", "static"]), max_size=3),
       target=st.lists(_SEGMENT, min_size=1, max_size=5), absolute=st.booleans())
def test_links_are_judged_like_the_filesystem_resolves_them(tmp_path_factory, where, target,
                                                             absolute):
    """A link is refused exactly when, resolved from where it stands, it leaves the app."""
    root = tmp_path_factory.mktemp("app")
    folder = root.joinpath(*where)
    folder.mkdir(parents=True, exist_ok=True)
    text = ("/" if absolute else "") + "/".join(target)
    (folder / "link").symlink_to(text)
    rel = "/".join([*where, "link"])
    landed = os.path.normpath(os.path.join(str(folder), text))
    inside = landed == str(root) or landed.startswith(str(root) + "/")
    leaves = appfiles._leaves_app(root, rel) is not None
    assert leaves == (absolute or not inside)


def _fingerprint(app: Path, **kw) -> str:
    return make_plan(str(app), "probe.test", None, None, None, False, None, Console(),
                     **kw).fingerprint


def test_the_fingerprint_changes_with_what_rsync_would_send(app, tmp_path):
    first = _fingerprint(app)
    copy = tmp_path / "copy"
    shutil.copytree(app, copy)                           # copy2: same times and modes
    assert _fingerprint(copy) == first
    main = app / "main.py"
    stat = main.stat()
    os.utime(main, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = _fingerprint(app)
    assert touched != first
    os.chmod(main, 0o700)
    assert _fingerprint(app) != touched
    os.chmod(main, stat.st_mode)
    assert _fingerprint(app) == touched
    (app / "static").mkdir(exist_ok=True)
    (app / "static" / "empty").mkdir()
    assert _fingerprint(app) != touched                  # rsync would make the directory
    (app / ".silverignore").write_text("static/empty/\n")
    ignored = _fingerprint(app)
    (app / "static" / "empty" / "note.txt").write_text("not uploaded")
    assert _fingerprint(app) == ignored
    (app / "link.py").symlink_to("main.py")
    assert _fingerprint(app) != ignored


def test_parameters_data_and_force_always_deploy(app):
    plan = make_plan(str(app), "probe.test", None, None, None, False, None, Console())
    assert plan.may_skip
    for change in ({"force": True}, {"backup": True}, {"clear": True},
                   {"params": {"X": "1"}}):
        assert not Plan(**{**plan.__dict__, **change}).may_skip, change
