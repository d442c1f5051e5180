"""Pure logic of ``silver run`` (which arguments are uploaded) and ``silver diff``."""

from __future__ import annotations

import os

from silverlining.commands.diff import compare, file_diff, local_manifest
from silverlining.commands.run import LocalArg, local_args, remote_args
from silverlining.console import Console


def test_local_args_finds_files_dirs_and_option_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x")
    (tmp_path / "dir").mkdir()
    args = ["data.csv", "--out=dir", "--flag", "missing.txt", "-x=nope", "dir/", "."]
    found = local_args(args)
    assert found == [LocalArg(0, "", str(tmp_path / "data.csv")),
                     LocalArg(1, "--out=", str(tmp_path / "dir")),
                     LocalArg(5, "", str(tmp_path / "dir")),
                     LocalArg(6, "", str(tmp_path))]
    assert [f.name for f in found] == ["data.csv", "dir", "dir", os.path.basename(tmp_path)]


def test_remote_args_replace_only_uploaded_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a b.txt").write_text("x")
    args = ["--n=3", "a b.txt", "--in=a b.txt", "plain"]
    out = remote_args(args, local_args(args), "/tmp/app/silver-run-1")
    assert out == ["--n=3", "/tmp/app/silver-run-1/1/a b.txt",
                   "--in=/tmp/app/silver-run-1/2/a b.txt", "plain"]


def test_compare_sorts_changed_added_removed():
    changes = compare({"a": "1", "b": "2", "c": "3"}, {"b": "2", "c": "x", "d": "4"})
    assert (changes.changed, changes.added, changes.removed) == (["c"], ["a"], ["d"])
    assert not compare({"a": "1"}, {"a": "1"})


def test_file_diff_text_binary_added_removed_and_missing_newline():
    lines = file_diff("m.py", b"a\nb\n", b"a\nc", "app.v1", "local")
    assert lines[:2] == ["--- app.v1/m.py\n", "+++ local/m.py\n"]
    assert "-b\n" in lines and "+c\n\\ No newline at end of file\n" in lines
    assert file_diff("x.bin", b"\0", b"\1", "app.v1", "local") == [
        "Binary files app.v1/x.bin and local/x.bin differ\n"]
    added = file_diff("n.txt", None, b"new\n", "app.v1", "local", old_exists=False)
    assert added[:2] == ["--- /dev/null\n", "+++ local/n.txt\n"] and "+new\n" in added
    removed = file_diff("o.txt", b"old\n", None, "app.v1", "local", new_exists=False)
    assert removed[:2] == ["--- app.v1/o.txt\n", "+++ /dev/null\n"] and "-old\n" in removed
    assert file_diff("big", None, b"x", "app.v1", "local") == [
        "Binary files app.v1/big and local/big differ\n"]


def test_diff_skips_special_files_with_a_warning(tmp_path, capsys):
    (tmp_path / "app.ini").write_text("x")
    os.mkfifo(tmp_path / "pipe")
    assert list(local_manifest(tmp_path, Console())) == ["app.ini"]
    assert f"skipping {tmp_path / 'pipe'}: not a regular file" in capsys.readouterr().err
