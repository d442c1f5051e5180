"""``silver-node`` imports only the module of the subcommand it runs."""

from __future__ import annotations

import argparse

from silverlining.node.__main__ import _modules_for, build_parser


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_each_subcommand_is_found_by_its_own_parser():
    every = _commands(build_parser())
    assert {"prepare", "deploy", "activate", "query", "routing-apply"} <= every
    for command in every:
        assert command in _commands(build_parser(command)), command


def test_a_subcommand_loads_one_module_and_an_unknown_one_all():
    assert _modules_for("prepare") == ["apps"]
    assert _modules_for("deploy") == ["deploy"]
    assert len(_modules_for("no-such-command")) > 10
    assert _modules_for(None) == _modules_for("no-such-command")
