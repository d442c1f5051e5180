"""The node byte-compiles a dependency set while it arrives (node/deps.py ``Compiler``):
each module handed on gets its ``.pyc`` for this Python, one Python takes as it is,
readable by the apps whatever root's umask, and what does not compile stays as it is."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

from silverlining.node.deps import Compiler


def test_modules_are_compiled_as_they_are_handed_on(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    good, bad, data = tmp_path / "pkg" / "good.py", tmp_path / "bad.py", tmp_path / "data.txt"
    good.write_text("VALUE = 1\n")
    bad.write_text("def broken(:\n")
    data.write_text("not python\n")
    old = os.umask(0o077)
    try:
        compiler = Compiler()
        for path in (good, bad, data):
            compiler.add(str(path))
        compiler.finish()
    finally:
        os.umask(old)
    pyc = Path(importlib.util.cache_from_source(str(good)))
    assert stat.S_IMODE(pyc.stat().st_mode) == 0o644
    assert stat.S_IMODE(pyc.parent.stat().st_mode) == 0o755
    assert not Path(importlib.util.cache_from_source(str(bad))).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.py", "data.txt", "pkg"]
    # the .pyc is one Python takes as it is: a source of the same size and mtime but
    # another text still imports as compiled (a .pyc it refused would be made anew)
    st = good.stat()
    good.write_text("VALUE = 7\n")
    os.utime(good, ns=(st.st_atime_ns, st.st_mtime_ns))
    out = subprocess.run([sys.executable, "-B", "-c", "import good; print(good.VALUE)"],
                         cwd=good.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_a_worker_that_died_costs_its_pyc_only(tmp_path: Path) -> None:
    """A compiler that crashed (or was killed) leaves modules uncompiled, still correct:
    the set is not refused for it."""
    compiler = Compiler()
    for worker in compiler._workers:
        worker.kill()
        worker.wait()
    module = tmp_path / "late.py"
    module.write_text("VALUE = 1\n")
    compiler.add(str(module))
    compiler.finish()
    assert not (tmp_path / "__pycache__").exists()
