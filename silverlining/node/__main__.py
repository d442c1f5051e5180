"""Entry point of the node side: ``silver-node SUBCOMMAND ...``.

Subcommands are found in the modules of this package that define
``register(subparsers)`` (modules starting with '_' are helpers);
each handler returns a JSON-able dict that is
printed as the last line of stdout. Errors print ``{"error": ...}`` and exit 1.
Raw subcommands (``set_defaults(raw=True)``: ``run``, ``logs``) own stdout and
return their exit status; their errors are one ``silver-node: error:`` line on
stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
from pathlib import Path

import silverlining.node as node_pkg
from silverlining.node._errors import NodeError


_ADD_PARSER = re.compile(r"""add_parser\(\s*["']([a-z-]+)["']""")


def _modules_for(command: str | None) -> list[str]:
    """The node modules to import: the one that registers ``command`` (found in the
    sources, without importing the others: each call is a new process, and importing
    every module would cost more than most subcommands take), else all of them."""
    names = sorted(i.name for i in pkgutil.iter_modules(node_pkg.__path__)
                   if not i.name.startswith("_"))
    first = (command or "").split("-")[0]        # "deploy" is in deploy.py, "job-stop"...
    for name in sorted(names, key=lambda n: n != first) if command else []:
        source = Path(node_pkg.__path__[0], f"{name}.py")
        if source.is_file() and command in _ADD_PARSER.findall(source.read_text()):
            return [name]
    return names


def _server_version() -> str:
    from silverlining.node import paths

    try:
        return paths.SERVER_VERSION.read_text().strip()
    except FileNotFoundError:
        return ""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="silver-node")
    parser.add_argument("--expect-version", metavar="HASH",
                        help="refuse to run unless the node's server version is this")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _modules_for(command):
        module = importlib.import_module(f"silverlining.node.{name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv and not argv[0].startswith("-") else None
                        ).parse_args(argv)
    raw = getattr(args, "raw", False)
    try:
        if args.expect_version and args.expect_version != _server_version():
            raise NodeError("this node was set up with other server files")
        result = args.handler(args)
    except NodeError as exc:
        try:
            if raw:
                print(f"silver-node: error: {exc}", file=sys.stderr, flush=True)
            else:
                print(json.dumps({"error": str(exc)}), flush=True)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    if raw:
        return result
    try:
        print(json.dumps(result if result is not None else {}), flush=True)
    except BrokenPipeError:          # the CLI went away: the work is done, nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
