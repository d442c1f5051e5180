"""What a newcomer meets first: whole help lines, -y on the command that asks,
suggestions for typos, shell completion from the registry, diff's exit status."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from silverlining.cli import silver as silver_cli
from silverlining.state import NodeRegistry
from tests.conftest import run_silver
from tests.unit.test_providers_dummy import env, file_dummy, silver  # noqa: F401  (env: fixture)


def words(text: str) -> str:
    return " ".join(text.split())


def test_help_shows_every_description_whole_even_on_a_narrow_terminal():
    result = CliRunner().invoke(silver_cli, ["--help"], terminal_width=60)
    assert result.exit_code == 0
    listing = result.output.split("Commands:")[1]
    assert "..." not in listing
    unwrapped = "".join(listing.split())    # lines may wrap anywhere, even at a hyphen
    for name, cmd in silver_cli.commands.items():
        first = words(cmd.help or "").split(". ")[0].rstrip(".")
        assert "".join(f"{name} {first}".split()) in unwrapped, (name, first)


@pytest.mark.parametrize("command, asks", [
    ("destroy-node", "for confirmation before destroying"),
    ("create-node", "whether to add the node's name to /etc/hosts"),
    ("update", "whether to point the location's host at the node (DNS zone or /etc/hosts)"),
])
def test_each_command_that_asks_says_what_and_takes_yes(command, asks):
    result = CliRunner().invoke(silver_cli, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert re.search(rf"-y, --yes\s+Do not ask {re.escape(asks)}: answer yes\.", result.output)


def test_destroy_node_takes_yes_after_the_command(env):
    file_dummy(env)
    for name in ("web1", "web2"):
        assert silver(env, "create-node", name, "--no-etc-hosts").returncode == 0
    refused = silver(env, "destroy-node", "web1")
    assert refused.returncode == 2 and "pass -y/--yes" in refused.stderr
    assert silver(env, "destroy-node", "--yes", "web1").returncode == 0
    assert silver(env, "destroy-node", "web2", "-y").returncode == 0
    assert json.loads(Path(env["_state"]).read_text()) == []


def test_create_node_yes_answers_the_etc_hosts_question(env):
    file_dummy(env)
    proc = silver(env, "create-node", "web1", "-y")
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.201 web1 # silverlining" in Path(env["SILVER_ETC_HOSTS"]).read_text()
    silent = silver(env, "create-node", "web2")       # no terminal, no -y: not added
    assert silent.returncode == 0, silent.stderr
    assert "web2" not in Path(env["SILVER_ETC_HOSTS"]).read_text()


def test_unknown_node_to_destroy_gets_a_suggestion(env):
    file_dummy(env)
    assert silver(env, "create-node", "web1", "--no-etc-hosts").returncode == 0
    proc = silver(env, "-y", "destroy-node", "wbe1")
    assert proc.returncode == 2 and "(did you mean 'web1'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_node_name_gets_a_suggestion(monkeypatch):
    NodeRegistry().put("web1", address="127.0.0.5", provider="local")
    NodeRegistry().put("db1", address="127.0.0.6", provider="local")

    def no_dns(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    result = CliRunner().invoke(silver_cli, ["query", "web2"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "silver: error: unknown node 'web2': not created with 'silver create-node' and its "
        "name does not resolve (did you mean 'web1'?)"]


@pytest.mark.parametrize("typed, meant", [
    ("updat", "update"), ("lsit-nodes", "list-nodes"), ("deploy", "update"),
    ("rollback", "activate"), ("destory-node", "destroy-node"), ("lgos", "logs"),
    ("doctr", "doctor"), ("check", "doctor"),
])
def test_command_typos_and_synonyms_get_one_suggestion(typed, meant):
    proc = run_silver(typed)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        f"Error: No such command {typed!r}. Did you mean {meant!r}?"


def test_a_word_far_from_every_command_gets_no_guess():
    proc = run_silver("xyzzy")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "Error: No such command 'xyzzy'."


def complete(*words_typed: str) -> list[str]:
    """What bash completion offers after ``silver WORDS`` (the last word being typed)."""
    proc = run_silver(env={"_SILVER_COMPLETE": "bash_complete",
                           "COMP_WORDS": " ".join(("silver",) + words_typed),
                           "COMP_CWORD": str(len(words_typed))}, check=True)
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if line]


def test_completion_offers_registered_nodes_and_their_locations():
    registry = NodeRegistry()
    registry.put("web1", address="127.0.0.5")
    registry.put("web2", address="127.0.0.6")
    registry.put("db1", address="127.0.0.7")
    registry.add_location("web1", "shop.test/admin")
    registry.add_location("web1", "shop.test")
    registry.add_location("ghost", "nowhere.test")      # not registered: not recorded
    assert "ghost" not in registry.all()
    assert complete("query", "w") == ["web1", "web2"]
    assert complete("setup-node", "db1", "") == ["db1", "web1", "web2"]
    assert complete("logs", "--node", "d") == ["db1"]
    assert complete("destroy-node", "-y", "w") == ["web1", "web2"]
    assert complete("activate", "sh") == ["shop.test", "shop.test/admin"]
    assert complete("update", "app", "") == ["db1", "shop.test", "shop.test/admin",
                                             "web1", "web2"]
    assert complete("upd") == ["update"]


def test_completion_offers_providers_and_survives_a_corrupt_registry():
    Path(os.environ["SILVER_CONFIG"]).write_text(
        "[provider:local]\ndriver = local\n[provider:lab]\ndriver = local\n")
    assert complete("-p", "l") == ["lab", "local"]
    registry = Path(os.environ["SILVER_HOME"]) / "nodes.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text("{broken")
    assert complete("query", "") == []


def test_completion_script_for_each_shell():
    for shell, marker in (("bash", "complete -o nosort -F"), ("zsh", "#compdef silver"),
                          ("fish", "complete --no-files --command silver")):
        proc = run_silver(env={"_SILVER_COMPLETE": f"{shell}_source"}, check=True)
        assert marker in proc.stdout, (shell, proc.stdout[:200])


def test_diff_help_states_its_exit_status():
    result = CliRunner().invoke(silver_cli, ["diff", "--help"], terminal_width=200)
    assert "exits 1 when there are differences, 0 when there are none" in words(result.output)
