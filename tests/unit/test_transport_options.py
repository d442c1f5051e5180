"""The transport's pure parts: known_hosts entries (hashed too), the options every ssh
gets, where the control sockets go, and what ssh's own complaints become."""

from __future__ import annotations

import stat

import pytest
from paramiko.hostkeys import HostKeys

from silverlining import transport
from silverlining.state import known_hosts_path


def test_hashed_known_hosts_entries_are_found_and_forgotten():
    hashed = HostKeys.hash_host("10.213.7.2")
    known_hosts_path().write_text(f"{hashed} ssh-ed25519 AAAA1\n"
                                  "# a comment stays\n"
                                  "10.213.7.20 ssh-ed25519 AAAA2\n")
    assert transport.has_host_key("10.213.7.2")
    assert not transport.has_host_key("10.213.7.3")
    assert transport.forget_host_key("10.213.7.2") is True
    assert known_hosts_path().read_text() == ("# a comment stays\n"
                                              "10.213.7.20 ssh-ed25519 AAAA2\n")


def option(argv: list[str], name: str) -> str | None:
    values = [argv[i + 1].split("=", 1)[1] for i, a in enumerate(argv[:-1])
              if a == "-o" and argv[i + 1].startswith(name + "=")]
    return values[0] if values else None


def test_options_leave_port_and_user_config_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("SILVER_SSH_CONFIG", raising=False)
    monkeypatch.delenv("SILVER_SSH_KEY", raising=False)
    argv = transport.ssh_options("silver", "10.213.7.2")
    assert "-p" not in argv and "-F" not in argv and option(argv, "Port") is None
    assert option(argv, "UserKnownHostsFile") == str(known_hosts_path())
    assert option(argv, "StrictHostKeyChecking") == "yes"
    assert option(argv, "HostKeyAlias") == "10.213.7.2"
    assert option(argv, "BatchMode") == "yes"
    assert option(argv, "ControlMaster") == "auto"
    assert option(argv, "ServerAliveInterval") and option(argv, "ConnectTimeout")
    socket_path = option(argv, "ControlPath")
    assert socket_path == str(transport.control_path("silver", "10.213.7.2"))
    folder = transport.control_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    config = tmp_path / "config"
    config.write_text("")
    monkeypatch.setenv("SILVER_SSH_CONFIG", str(config))
    argv = transport.ssh_options("silver", "10.213.7.2")
    assert argv[argv.index("-F") + 1] == str(config)
    # another ssh config, another login: a master of its own
    assert option(argv, "ControlPath") != socket_path


def test_control_sockets_fit_a_socket_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SILVER_HOME", str(tmp_path / ("x" * 120)))
    path = transport.control_path("root", "10.213.7.2")
    assert len(str(path)) + 18 <= 104
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent != transport.state.state_dir() / "ssh"
    assert transport.control_path("root", "10.213.7.2") == path


@pytest.mark.parametrize("lines, message", [
    (["No ED25519 host key is known for 10.0.0.1 and you have requested strict checking.",
      "Host key verification failed."],
     "[n] host key of 10.0.0.1 unknown: it is recorded only by 'silver create-node --wait'"),
    (["@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
      "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
      "Host key verification failed."],
     "[n] host key of 10.0.0.1 CHANGED (possible impostor)"),
    (["root@10.0.0.1: Permission denied (publickey)."],
     "[n] SSH login as root@10.0.0.1 refused; is your key"),
    (["ssh: connect to host 10.0.0.1 port 22: Connection refused"],
     "[n] cannot connect to root@10.0.0.1: Connection refused"),
    (["kex_exchange_identification: read: Connection reset by peer"],
     "[n] cannot connect to root@10.0.0.1: Connection reset by peer"),
    (["Timeout, server 10.0.0.1 not responding."],
     "[n] SSH connection to 10.0.0.1 lost: Timeout, server 10.0.0.1 not responding."),
])
def test_ssh_complaints_become_one_line(lines, message):
    error = transport._ssh_failure("n", "root", "10.0.0.1", lines)
    assert error is not None and error.message.startswith(message)
    assert "\n" not in error.message


def test_a_command_own_output_is_not_an_ssh_complaint():
    assert transport._ssh_failure("n", "root", "10.0.0.1", ["error: no such app"]) is None


def test_keys_of_another_home_are_offered(monkeypatch, tmp_path):
    """With ``$HOME`` not the passwd home, OpenSSH would look for its default keys
    in the passwd home while new nodes get ``$HOME``'s public key."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("key")
    monkeypatch.setenv("HOME", str(tmp_path))
    transport._home_keys.cache_clear()
    try:
        argv = transport.ssh_options("root", "10.213.1.2")
    finally:
        transport._home_keys.cache_clear()
    assert argv[argv.index(str(tmp_path / ".ssh" / "id_ed25519")) - 1] == "-i"


def test_the_passwd_home_adds_no_key(monkeypatch):
    import os
    import pwd
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)
    transport._home_keys.cache_clear()
    try:
        assert transport._home_keys() == ()
    finally:
        transport._home_keys.cache_clear()


def test_a_stdin_that_never_ends_does_not_abort_the_exit():
    """``silver run`` feeds our stdin to the command from a thread; when the command is
    over while that pipe stays open, the thread still waits on it, and Python's exit
    must not need what it holds (it aborted with a fatal error, status -6)."""
    import subprocess
    import sys

    code = ("import os, sys, threading, time\n"
            "from silverlining.transport import _send_all\n"
            "r, w = os.pipe()\n"
            "threading.Thread(target=_send_all, args=(os.fdopen(w, 'wb'), sys.stdin.buffer),"
            " daemon=True).start()\n"
            "time.sleep(0.2)\n"
            "print('over')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        status = proc.wait(timeout=30)      # our end of its stdin stays open meanwhile
        assert status == 0 and proc.stdout.read() == b"over\n", proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
