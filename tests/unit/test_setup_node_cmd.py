"""setup-node's handling of script output and its summary (no node needed)."""

from __future__ import annotations

from silverlining.commands.setup_node import HostResult, _ScriptOutput, print_summary
from silverlining.console import Console


def test_script_output_is_streamed_and_counted(capsys):
    result = HostResult("web1")
    out = _ScriptOutput(Console(), "web1", result)
    out("stdout", "installing nginx-light")
    out("stdout", "changed: packages installed: nginx-light")
    out("stdout", "changed: file /etc/nginx/conf.d/silverlining.conf")
    out("stderr", "error: nginx configuration test failed")
    out("stdout", '{"changes": 2, "version": "0123456789abcdef"}')
    err = capsys.readouterr().err.splitlines()
    assert err == ["[web1] installing nginx-light",
                   "[web1] changed: packages installed: nginx-light",
                   "[web1] changed: file /etc/nginx/conf.d/silverlining.conf",
                   "[web1] error: nginx configuration test failed"]
    assert result.changes == 2
    assert result.changed == ["packages installed: nginx-light",
                              "file /etc/nginx/conf.d/silverlining.conf"]
    assert out.error == "nginx configuration test failed"


def test_summary_lists_every_host(capsys):
    results = [HostResult("web1", ok=True, seconds=14.25, changes=31),
               HostResult("web2", ok=True, seconds=0.9, changes=1, changed=["file /x"]),
               HostResult("db", ok=False, seconds=0.1, error="cannot reach 10.0.0.9 port 22")]
    print_summary(Console(verbose=True), results)
    assert capsys.readouterr().out.splitlines() == [
        "setup-node: 2 ok, 1 failed",
        "  web1  ok        14.2s  31 changes",
        "  web2  ok         0.9s  1 change",
        "          - file /x",
        "  db    FAILED     0.1s  cannot reach 10.0.0.9 port 22",
    ]
