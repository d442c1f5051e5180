"""The node's connector (``node/connect.py``), which imports next to nothing: its
paths and its hand-written JSON must agree with ``paths.py`` and ``json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from silverlining.node import connect, paths

REPO = str(Path(connect.__file__).resolve().parents[2])


def test_the_connectors_paths_are_paths_py():
    assert (connect.NODE_SOCKET, connect.SUDO, connect.ENTRY) == \
        (str(paths.NODE_SOCKET), str(paths.SUDO), str(paths.ENTRY))


def test_a_request_is_what_json_makes_of_the_arguments():
    argv = ["--expect-version", "0123456789abcdef", "deploy",
            json.dumps({"app": "x", "who": "ann@host", "quote": '"\\'}), "",
            "tab\there\nnewline\x00\x7f", "é ü ß", "日本", "\U0001f600",
            b"\xff\xfe".decode("utf-8", "surrogateescape")]
    body = connect.request(argv)
    assert int.from_bytes(body[:4], "big") == len(body) - 4
    assert body[4:].isascii()
    assert json.loads(body[4:]) == argv
    assert connect.request([])[4:] == b"[]"


def test_the_connector_imports_next_to_nothing():
    """What makes it cheap: none of these is imported to hand a call over."""
    code = (f"import sys; sys.path.insert(0, {REPO!r}); from silverlining.node import connect; "
            "print(' '.join(m for m in ('json', 're', 'socket', 'enum', 'os', 'pathlib', "
            "'silverlining.node.paths') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], text=True,
                         capture_output=True, check=True).stdout
    assert out.strip() == ""
