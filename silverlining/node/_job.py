"""``ExecStart`` of a worker, cron or detached-run unit: run its command.

Runs as the app's user (systemd's ``User=``): takes the command from the
version's app.ini (``process``/``cron``) or from its arguments (``run``, for
``silver run --detach``), points stdout and stderr at the job's own log file
(opened here, as the app, never by root), and execs the script the same way
``silver run`` would (``apploader.script_command``).
Arguments: ``APP VERSION process|cron NAME`` or ``APP VERSION run ID SCRIPT ARGS...``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from silverlining.appconfig import AppConfig
from silverlining.node import paths
from silverlining.node._errors import NodeError
from silverlining.node.scripts import script_argv


def log_path(app: str, version: str, kind: str, name: str) -> str:
    """A worker's or cron's log is per version; a detached run's is per app (``run-ID``)."""
    if kind == "run":
        return str(paths.APP_LOGS / app / f"run-{name}.log")
    return str(paths.APP_LOGS / app / f"{version}-{kind}-{name}.log")


def main(argv: list[str]) -> int:
    app, version, kind, name, *rest = argv
    inst = paths.APPS / app / version
    if kind == "run":
        command = tuple(rest)
    else:
        if kind == "process":       # a worker with a health check serves HTTP on $PORT
            with open(paths.ENV / app / f"{version}.ports.json") as fh:
                port = json.load(fh).get(f"{name}@{os.environ.get('SILVER_JOB_INSTANCE')}")
            if port:
                os.environ["PORT"] = str(port)
        config = AppConfig.load(inst, check_files=False)
        command = (config.processes if kind == "process" else config.crons)[name].command
    fd = os.open(log_path(app, version, kind, name),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    os.write(fd, f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {kind} {name} of "
                 f"{app}.{version} ({os.environ.get('SILVER_JOB_INSTANCE', '')}): "
                 f"{' '.join(command)}\n".encode())
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        argv = script_argv(inst, command[0], list(command[1:]))
    except NodeError as exc:
        print(f"silverlining: {kind} {name}: {exc}", file=sys.stderr, flush=True)
        return 1
    os.chdir(inst)
    os.execv(argv[0], argv)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
