"""One rule for running an app's script: update_fetch (serve and node) and silver run."""

from __future__ import annotations

import pytest

from silverlining.apploader import script_command

LOADER = ["py", "-m", "silverlining.apploader", "run"]


@pytest.mark.parametrize("name, text, through_loader", [
    ("setup.py", "#!/bin/sh\necho x\n", True),          # a .py file is Python, whatever it says
    ("tool", "#!/usr/bin/env python3\nprint(1)\n", True),
    ("tool", "print(1)\n", True),                       # no #!: nothing else could run it
    ("tool.sh", "#!/bin/sh\necho x\n", False),
    ("missing", None, True),
])
def test_python_goes_through_the_loader_anything_else_runs_as_it_is(tmp_path, name, text,
                                                                   through_loader):
    if text is not None:
        (tmp_path / name).write_text(text)
    argv = script_command("py", tmp_path, name, ["a b"])
    if through_loader:
        assert argv == [*LOADER, str(tmp_path), name, "a b"]
    else:
        assert argv == [str(tmp_path / name), "a b"]
