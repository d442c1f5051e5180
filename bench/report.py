"""Figures, their floors and targets, and how they are shown: table, JSON, docs.

Pure code (no nodes, no subprocesses) so the unit tests can check it. A figure
is judged by its ratio to a floor measured in the same run as much as by its
raw value: on a shared 2-core machine the raw value swings with the load, the
ratio much less.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass, field

UNITS = ("s", "ms", "B", "req/s", "count")


@dataclass
class Floor:
    """The bare cost of one ingredient (an SSH round trip, a gunicorn start), measured
    in the same run as the figures compared with it."""

    name: str
    values: list[float]
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Figure:
    """One row of the table: a measured quantity, optionally with a floor and a target.

    ``target_on`` says what the target bounds: the median itself (``"value"``),
    its ratio to the floor (``"ratio"``, e.g. 8 nodes vs 1), or how much it exceeds
    the floor's median (``"over"``: the app's cold start + 0.5 s). ``higher`` means more is
    better (throughput). ``unsupported`` marks a case the CLI cannot express yet.
    """

    case: str
    name: str
    values: list[float] = field(default_factory=list)
    unit: str = "s"
    floor: Floor | None = None
    target: float | None = None
    target_on: str = "value"
    higher: bool = False
    unsupported: str = ""

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit {self.unit!r} not one of {UNITS}")
        if self.target_on not in ("value", "ratio", "over"):
            raise ValueError(f"target_on {self.target_on!r}")

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def ratio(self) -> float | None:
        if self.median is None or self.floor is None or not self.floor.values:
            return None
        return self.median / self.floor.median if self.floor.median else None

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is no target or no value."""
        judged = {"value": self.median, "ratio": self.ratio,
                  "over": None if self.median is None or self.floor is None
                  or not self.floor.values else self.median - self.floor.median
                  }[self.target_on]
        if self.target is None or judged is None:
            return None
        return judged >= self.target if self.higher else judged <= self.target

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(median=self.median, min=min(self.values, default=None),
                    max=max(self.values, default=None), ratio=self.ratio, met=self.met)
        if self.floor is not None:
            data["floor"] = {**asdict(self.floor), "median": self.floor.median}
        return data


def quantity(value: float | None, unit: str) -> str:
    """A value in its unit, rounded for reading (seconds to 10 ms, bytes in kB/MB)."""
    if value is None:
        return ""
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "req/s":
        return f"{value:.0f} req/s"
    if unit == "count":
        return f"{value:.0f}"
    for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= scale:
            return f"{value / scale:.1f} {suffix}"
    return f"{value:.0f} B"


def target_text(figure: Figure) -> str:
    if figure.target is None:
        return ""
    sign = ">=" if figure.higher else "<="
    if figure.target_on == "ratio":
        return f"ratio {sign} {figure.target:g}x"
    if figure.target_on == "over":
        return f"{sign} floor + {quantity(figure.target, figure.unit)}"
    return f"{sign} {quantity(figure.target, figure.unit)}"


def row(figure: Figure) -> list[str]:
    """The table cells of a figure: case | median | min | max | floor | ratio | target | met?"""
    if figure.unsupported:
        return [figure.name, f"n/a ({figure.unsupported})", "", "", "", "", target_text(figure), ""]
    floor = ""
    if figure.floor is not None:
        floor = f"{quantity(figure.floor.median, figure.floor.unit)} ({figure.floor.name})"
    ratio = f"{figure.ratio:.2f}x" if figure.ratio is not None else ""
    met = {True: "yes", False: "NO", None: ""}[figure.met]
    return [figure.name, quantity(figure.median, figure.unit),
            quantity(min(figure.values, default=None), figure.unit),
            quantity(max(figure.values, default=None), figure.unit), floor, ratio,
            target_text(figure), met]


HEADER = ["case", "median", "min", "max", "floor", "ratio", "target", "met?"]


def markdown_table(figures: list[Figure]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(f)) + " |" for f in figures]
    return "\n".join(lines)


def text_table(figures: list[Figure]) -> str:
    """The same table for a terminal: columns padded to their widest cell."""
    rows = [HEADER] + [row(f) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
                     for r in rows)


def floors_table(floors: list[Floor]) -> str:
    lines = ["| floor | median | min | max |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {quantity(f.median, f.unit)} | {quantity(min(f.values), f.unit)} "
              f"| {quantity(max(f.values), f.unit)} |" for f in floors if f.values]
    return "\n".join(lines)


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def replace_section(text: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """``text`` with what stands between the markers replaced by ``section`` (markers
    kept); the markers and section are appended when ``text`` has none yet."""
    block = f"{begin}\n{section.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block + "\n"
