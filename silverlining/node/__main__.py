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
import sys

import silverlining.node as node_pkg
from silverlining.node._errors import NodeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="silver-node")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(node_pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"silverlining.node.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raw = getattr(args, "raw", False)
    try:
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
