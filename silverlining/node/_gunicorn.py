"""gunicorn's configuration for an instance (``--config python:`` this module): its
first worker starts alone, the others once it has loaded the app.

Workers started together import the app at the same time, each on its own CPU
at best; on a node with fewer spare CPUs than workers (most small servers,
and any node busy with a deploy) they share them, and the first answer, which
the health gate and so the deploy wait for, comes only after all of them
finished. One worker loading alone answers after one import; the others load
while the gate, the switch and nginx go on, and requests queue on the socket
for the first worker meanwhile. Each worker still imports the app itself
(unlike ``--preload``): what the app does at import time stays its own.

Runs in gunicorn's master and workers, as the app's user; standard library only.
"""

from __future__ import annotations

import os
import signal

_held_back = 0      # the workers asked for, while only the first runs; 0: all may run


def when_ready(server) -> None:
    """In the master, before it starts any worker: one first."""
    global _held_back
    if server.num_workers > 1:
        _held_back = server.num_workers
        server.num_workers = 1


def post_worker_init(worker) -> None:
    """In a worker that has loaded the app: if it was started while the others were
    held back, the master may start them now (gunicorn's own SIGTTIN)."""
    if _held_back:
        os.kill(worker.ppid, signal.SIGTTIN)


def nworkers_changed(server, new_value: int, old_value: int | None) -> None:
    """In the master: the first SIGTTIN after ``when_ready`` brings the workers to the
    number asked for (gunicorn then starts them) instead of one more."""
    global _held_back
    if _held_back and old_value is not None and new_value > old_value:
        wanted, _held_back = _held_back, 0
        server.num_workers = max(wanted, new_value)
