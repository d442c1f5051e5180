"""What ``silver doctor`` found: one line per check, and the command that fixes a problem."""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, PROBLEM = "ok", "warning", "PROBLEM"


@dataclass(frozen=True)
class Finding:
    status: str         # OK, WARN (worth knowing) or PROBLEM (makes doctor fail)
    check: str          # short name: "config", "ssh key", "nginx", ...
    detail: str
    fix: str = ""       # the command (or edit) that fixes it

    @property
    def failed(self) -> bool:
        return self.status == PROBLEM


def ok(check: str, detail: str) -> Finding:
    return Finding(OK, check, detail)


def warn(check: str, detail: str, fix: str = "") -> Finding:
    return Finding(WARN, check, detail, fix)


def problem(check: str, detail: str, fix: str) -> Finding:
    return Finding(PROBLEM, check, detail, fix)


def format_section(title: str, findings: list[Finding]) -> list[str]:
    """``title`` then the findings aligned under it, each fix on its own line."""
    width = max((len(f.check) for f in findings), default=0)
    lines = [title]
    for f in findings:
        lines.append(f"  {f.status:<7}  {f.check:<{width}}  {f.detail}")
        if f.fix:
            lines.append(f"  {'':<7}  {'':<{width}}  fix: {f.fix}")
    return lines
