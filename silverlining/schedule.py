"""Schedules of ``[cron:NAME]``: 5-field cron syntax or systemd calendar syntax.

Both become a systemd ``OnCalendar=`` expression, checked here (on the
developer's machine, before any upload) so a typo is an app.ini error and not
a failed deploy. Cron fields are expanded to explicit lists, which systemd
reads exactly as cron means them. Stdlib only: the node parses app.ini too.
"""

from __future__ import annotations

import re

SHORTHANDS = {"minutely", "hourly", "daily", "weekly", "monthly", "quarterly",
              "semiannually", "yearly", "annually"}
CRON_ALIASES = {"@hourly": "hourly", "@daily": "daily", "@midnight": "daily",
                "@weekly": "weekly", "@monthly": "monthly", "@yearly": "yearly",
                "@annually": "yearly"}
# (name, lowest, highest) of the five cron fields
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))
DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

_PART = re.compile(r"^(\*|\d+(?:-\d+)?)(?:/(\d+))?\Z")
# systemd calendar syntax: [WEEKDAYS] [DATE] TIME, each piece made of digits, '*',
# ranges (..), lists (,) and repetitions (/); weekday names as systemd spells them.
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)(?:(?:\.\.|,)(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun))*"
_VALUE = r"(?:\*|\d+(?:\.\.\d+)?)(?:/\d+)?(?:,(?:\*|\d+(?:\.\.\d+)?)(?:/\d+)?)*"
_CALENDAR = re.compile(rf"^(?:{_WEEKDAY} )?(?:{_VALUE}-{_VALUE}-{_VALUE} )?"
                       rf"{_VALUE}:{_VALUE}(?::{_VALUE})?\Z")


def _names(text: str, names: tuple[str, ...], base: int) -> str:
    lowered = text.lower()
    for i, name in enumerate(names):
        lowered = re.sub(rf"\b{name}\b", str(i + base), lowered)
    return lowered


def cron_field(text: str, index: int) -> list[int] | None:
    """The values a cron field allows (None for '*'); ValueError naming the field."""
    name, low, high = FIELDS[index]
    if index == 3:
        text = _names(text, MONTHS, 1)
    elif index == 4:
        text = _names(text, DAY_NAMES, 0)
    if text == "*":
        return None
    values: set[int] = set()
    for part in text.split(","):
        m = _PART.match(part)
        if not m:
            raise ValueError(f"cron {name} {text!r}: use *, N, N-M, */S or lists of them")
        span, step = m.group(1), int(m.group(2) or 1)
        if step < 1:
            raise ValueError(f"cron {name} {text!r}: a step must be at least 1")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(x) for x in span.split("-"))
        else:
            first = last = int(span)
            if m.group(2):
                last = high
        if not (low <= first <= last <= high):
            raise ValueError(f"cron {name} {text!r}: values go from {low} to {high}")
        values.update(range(first, last + 1, step))
    return sorted(values)


def _list(values: list[int] | None, width: int = 2) -> str:
    return "*" if values is None else ",".join(f"{v:0{width}d}" for v in values)


def to_calendar(schedule: str) -> str:
    """The systemd ``OnCalendar=`` expression for a schedule, or ValueError saying why not."""
    text = " ".join(schedule.split())
    if not text:
        raise ValueError("missing: 5-field cron ('*/15 * * * *') or systemd calendar "
                         "syntax ('*:0/15', 'daily')")
    if text in CRON_ALIASES:
        return CRON_ALIASES[text]
    if text in SHORTHANDS:
        return text
    fields = text.split(" ")
    if len(fields) == 5 and not any(":" in f for f in fields):
        minute, hour, dom, month, dow = (cron_field(f, i) for i, f in enumerate(fields))
        if dom is not None and dow is not None:
            raise ValueError(f"{schedule!r}: a day of month and a day of week together mean "
                             "'either' in cron; split it into two crons")
        days = "" if dow is None else \
            ",".join(dict.fromkeys(DAYS[d] for d in dow)) + " "
        return f"{days}*-{_list(month)}-{_list(dom)} {_list(hour)}:{_list(minute)}:00"
    if _CALENDAR.match(text):
        return text
    raise ValueError(f"{schedule!r} is neither 5-field cron ('*/15 * * * *') nor systemd "
                     "calendar syntax ('*:0/15', 'Mon..Fri 09:00', 'daily')")
