"""What the user sees: progress lines, prompts, and the global options."""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import click

from silverlining.errors import UsageError

_lock = threading.Lock()


def human(size: float) -> str:
    """A byte count as people read it: ``313 B``, ``4.9 kB``, ``30.0 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


@dataclass
class Console:
    """Global options (-p, -y, -v, -q) and the output helpers that honour them.

    Long steps also get a *status line*: one line at the bottom of the
    terminal, redrawn in place (bytes uploaded, the image build's phase, time
    spent on a remote step). It is shown only when stderr is a terminal and
    without -q, so logs and pipes get the ordinary lines only.
    """

    provider: str | None = None
    yes: bool = False
    verbose: bool = False
    quiet: bool = False
    _status: dict[str, str] = field(default_factory=dict, repr=False)
    _status_shown: bool = field(default=False, repr=False)

    @property
    def live(self) -> bool:
        """Whether status lines are drawn (a terminal, and no -q)."""
        return not self.quiet and sys.stderr.isatty()

    def _emit(self, message: str, err: bool = True) -> None:
        """Print a line; a status line on screen is cleared first and redrawn after."""
        with _lock:
            if self._status_shown:
                sys.stderr.write("\r\x1b[K")
            click.echo(message, err=err)
            if self._status_shown:
                self._draw()

    def info(self, message: str) -> None:
        """A progress line: what is happening (hidden by -q)."""
        if not self.quiet:
            self._emit(message)

    def step(self, host: str, message: str) -> None:
        """A progress line about one host, prefixed so parallel output stays readable."""
        self.info(f"[{host}] {message}")

    def detail(self, message: str) -> None:
        """Shown only with -v."""
        if self.verbose and not self.quiet:
            self._emit(message)

    def warn(self, message: str) -> None:
        self._emit(f"silver: warning: {message}")

    def out(self, message: str = "") -> None:
        """Command results (stdout), never hidden."""
        self._emit(message, err=False)

    def status(self, host: str, text: str) -> None:
        """Set ``host``'s part of the status line (several hosts share the line)."""
        if not self.live:
            return
        with _lock:
            self._status[host] = text
            self._draw()

    def status_done(self, host: str) -> None:
        """Remove ``host``'s part; the line disappears when no part is left."""
        with _lock:
            if self._status.pop(host, None) is None or not self._status_shown:
                return
            self._draw()

    @contextlib.contextmanager
    def ticking(self, host: str, text: str) -> Iterator[None]:
        """``[host] text (12 s)`` on the status line, counting, for a step that is
        silent for long stretches (apt installs, building a version)."""
        if not self.live:
            yield
            return
        started = time.monotonic()
        stop = threading.Event()

        def tick() -> None:
            while not stop.is_set():
                self.status(host, f"{text} ({time.monotonic() - started:.0f} s)")
                stop.wait(1)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            self.status_done(host)

    def _draw(self) -> None:
        """Redraw the status line (caller holds the lock)."""
        text = "  ".join(f"[{host}] {part}" for host, part in self._status.items())
        width = shutil.get_terminal_size((80, 24)).columns - 1
        sys.stderr.write("\r" + text[:width] + "\x1b[K")
        sys.stderr.flush()
        self._status_shown = bool(self._status)

    def confirm(self, question: str, default: bool = False) -> bool:
        """Ask unless -y; without a terminal and without -y, refuse rather than guess."""
        if self.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{question} (no terminal to ask on: pass -y/--yes)")
        return click.confirm(question, default=default, err=True)
