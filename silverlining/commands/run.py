"""``silver run LOCATION SCRIPT [ARGS...]``: a script of the deployed app, on its node.

It runs in the app's environment (``SILVER_*``, ``CONFIG_*``) as the app's
user; output streams back and the exit status is the script's. Local files
and directories named in ARGS (also as ``--opt=PATH``) are uploaded first
and replaced by their path on the node, so ``silver run LOC import.py
data.csv`` works as it would locally. Piped standard input reaches the script;
``-i`` gives it this terminal instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass

from silverlining import protocol
from silverlining.commands._params import changes_input, parse_assignments
from silverlining.commands._remote import node_for, open_node
from silverlining.console import Console
from silverlining.errors import UsageError
from silverlining.locations import parse_location
from silverlining.node import paths
from silverlining.transport import rsync


@dataclass(frozen=True)
class LocalArg:
    """An argument naming a local path: ``index`` in ARGS, ``prefix`` kept (``--opt=``)."""

    index: int
    prefix: str
    path: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def local_args(args: tuple[str, ...] | list[str]) -> list[LocalArg]:
    """The arguments that name existing local files or directories."""
    found = []
    for i, arg in enumerate(args):
        prefix, value = "", arg
        if arg.startswith("-"):
            if "=" not in arg:
                continue
            head, value = arg.split("=", 1)
            prefix = head + "="
        if value and os.path.exists(value):
            found.append(LocalArg(i, prefix, os.path.abspath(value)))
    return found


def remote_args(args: tuple[str, ...] | list[str], uploads: list[LocalArg],
                run_dir: str) -> list[str]:
    """ARGS with each uploaded path replaced by where the script finds it on the node."""
    out = list(args)
    for up in uploads:
        out[up.index] = f"{up.prefix}{run_dir}/{up.index}/{up.name}"
    return out


def attach(console: Console, loc, job_id: str, node: str | None) -> int:
    """Follow a detached run's output to its end; its exit status is ours."""
    session = open_node(console, node_for(loc, node))
    try:
        live = session.send(protocol.Served(location=str(loc)), quiet=True)
        return session.send_raw(protocol.JobAttach(app=live["app"], id=job_id))
    finally:
        session.close()


def detach(console: Console, loc, script: str, args: tuple[str, ...],
           node: str | None) -> int:
    """Start the script in a unit of its own on the node and return at once."""
    if local_args(args):
        raise UsageError("--detach cannot upload local files (the run outlives this "
                         "command): put them on the node first, e.g. with a plain silver run")
    session = open_node(console, node_for(loc, node))
    try:
        result = session.send(protocol.RunDetach(location=str(loc), script=script, args=args),
                              quiet=True)
    finally:
        session.close()
    console.out(result["id"])
    console.info(f"[{session.name}] {script} runs as job {result['id']} of "
                 f"{result['app']}.{result['version']}: silver jobs {loc}, silver logs {loc} "
                 f"--job {result['id']}, silver run --attach {result['id']} {loc}")
    return 0


def run(console: Console, location: str, script: str | None, args: tuple[str, ...],
        interactive: bool, user: str, node: str | None, params: tuple[str, ...] = (),
        detach_run: bool = False, attach_id: str | None = None) -> int:
    loc = parse_location(location)
    if attach_id:
        return attach(console, loc, attach_id, node)
    if not script:
        raise UsageError("give SCRIPT (or --attach ID)")
    if detach_run:
        if user != "app" or interactive or params:
            raise UsageError("--detach runs as the app's user, without a terminal or --param")
        return detach(console, loc, script, args, node)
    uploads = local_args(args)
    overrides = parse_assignments(params, "--param")
    session = open_node(console, node_for(loc, node))
    try:
        prep = session.send(protocol.RunPrepare(location=str(loc), script=script,
                                                upload=bool(uploads),
                                                params_stdin=bool(overrides)),
                            quiet=True, input=changes_input(overrides) if overrides else None)
        command = protocol.Run(app=prep["app"], version=prep["version"], script=script,
                               user=user, params=prep["params"] if overrides else None)
        if uploads:
            for up in uploads:
                console.step(session.name, f"uploading {up.path}")
                with session.upload_progress() as progress:
                    rsync(up.path, session.address, f"{prep['upload_dir']}/{up.index}/",
                          user=paths.DEPLOY_USER, label=session.name, progress=progress)
            command = dataclasses.replace(command, upload=prep["token"])
            args = tuple(remote_args(args, uploads, prep["run_dir"]))
        console.detail(f"[{session.name}] running {script} of {prep['app']}.{prep['version']} "
                       f"as {'the app user' if user == 'app' else 'root'}")
        piped = sys.stdin is not None and not sys.stdin.isatty() and not interactive
        return session.send_raw(dataclasses.replace(command, args=args), terminal=interactive,
                                input=sys.stdin.buffer if piped else None)
    finally:
        session.close()
