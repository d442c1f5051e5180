"""Entry point of the node side: ``silver-node [--expect-version HASH] COMMAND [JSON]``.

``COMMAND`` is a name in ``silverlining.protocol.COMMANDS``, ``JSON`` its parameters
(one JSON object; left out, every parameter has its default). The command's
definition names the one module that handles it, and only that module is imported:
each call is a new process, and importing every module would cost more than most
commands take. A handler returns the command's JSON answer, printed as the last
line of stdout; errors print ``{"error": ...}`` and exit 1. Raw commands (``run``,
``logs``, ``job-attach``) own stdout and return their exit status; their errors
are one ``silver-node: error:`` line on stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import MISSING, fields

from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.protocol import COMMANDS, Command, ProtocolError

USAGE = "usage: silver-node [--expect-version HASH] COMMAND [JSON]"


def server_version() -> str:
    try:
        return paths.SERVER_VERSION.read_text().strip()
    except FileNotFoundError:
        return ""


def usage() -> str:
    """The commands and their parameters, for a person at the node's shell."""
    lines = [USAGE, "", "commands (JSON parameters, defaults in brackets):"]
    for name, cls in sorted(COMMANDS.items()):
        params = [f"{f.name}" if f.default is f.default_factory is MISSING
                  else f"{f.name} [{json.dumps(f.default)}]"
                  for f in fields(cls)]
        lines.append(f"  {name}: {(cls.__doc__ or '').splitlines()[0]}")
        if params:
            lines.append(f"      {', '.join(params)}")
    return "\n".join(lines)


def handler_of(cls: type[Command]):
    """The function that answers a command, from the one module that holds it."""
    module, function = cls.HANDLER.split(":")
    return getattr(importlib.import_module(f"silverlining.node.{module}"), function)


def _say_error(message: str, raw: bool) -> None:
    try:
        if raw:
            print(f"silver-node: error: {message}", file=sys.stderr, flush=True)
        else:
            print(json.dumps({"error": message}), flush=True)
    except BrokenPipeError:          # the CLI went away: nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    expect = None
    if argv[:1] == ["--expect-version"] and len(argv) >= 2:
        expect, argv = argv[1], argv[2:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    cls = COMMANDS.get(name)
    if cls is None or len(rest) > 1:
        print(f"{USAGE}\nsilver-node: error: " + (f"no command {name!r} (--help lists them)"
              if cls is None else "the parameters are one JSON object"), file=sys.stderr)
        return 2
    try:
        call = cls.decode(rest[0] if rest else None)
        if expect is not None and expect != server_version():
            raise NodeError("this node was set up with other server files")
        result = handler_of(cls)(call)
    except (NodeError, ProtocolError) as exc:
        _say_error(str(exc), cls.RAW)
        return 1
    if cls.RAW:
        return result
    try:
        print(json.dumps(result), flush=True)
    except BrokenPipeError:          # the CLI went away: the work is done, nobody to tell
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
