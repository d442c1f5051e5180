"""What the user sees: progress lines, prompts, and the global options."""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import click

from silverlining.errors import UsageError

_lock = threading.Lock()


@dataclass
class Console:
    """Global options (-p, -y, -v, -q) and the output helpers that honour them."""

    provider: str | None = None
    yes: bool = False
    verbose: bool = False
    quiet: bool = False

    def info(self, message: str) -> None:
        """A progress line: what is happening (hidden by -q)."""
        if not self.quiet:
            with _lock:
                click.echo(message, err=True)

    def step(self, host: str, message: str) -> None:
        """A progress line about one host, prefixed so parallel output stays readable."""
        self.info(f"[{host}] {message}")

    def detail(self, message: str) -> None:
        """Shown only with -v."""
        if self.verbose and not self.quiet:
            with _lock:
                click.echo(message, err=True)

    def warn(self, message: str) -> None:
        with _lock:
            click.echo(f"silver: warning: {message}", err=True)

    def out(self, message: str = "") -> None:
        """Command results (stdout), never hidden."""
        with _lock:
            click.echo(message)

    def confirm(self, question: str, default: bool = False) -> bool:
        """Ask unless -y; without a terminal and without -y, refuse rather than guess."""
        if self.yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"{question} (no terminal to ask on: pass -y/--yes)")
        return click.confirm(question, default=default, err=True)
