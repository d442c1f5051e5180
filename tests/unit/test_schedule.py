"""Cron schedules become systemd calendars that fire at exactly the same minutes.

systemd itself (``systemd-analyze calendar``) computes the next elapses of each
converted schedule; a brute-force walk over the minutes computes cron's.
"""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from silverlining.schedule import cron_field, to_calendar

BASE = dt.datetime(2026, 3, 7, 13, 58)


def field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    span = st.tuples(value, value).map(lambda t: f"{min(t)}-{max(t)}")
    step = st.integers(1, 7)
    return st.one_of(st.just("*"), single, span, step.map(lambda s: f"*/{s}"),
                     st.tuples(span, step).map(lambda t: f"{t[0]}/{t[1]}"),
                     st.lists(single, min_size=2, max_size=3).map(",".join))


CRON = st.tuples(field(0, 59), field(0, 23), st.one_of(st.just("*"), field(1, 28)),
                 field(1, 12), st.just("*")).map(" ".join) | \
    st.tuples(field(0, 59), field(0, 23), st.just("*"), st.just("*"), field(0, 6)).map(" ".join)


def cron_next(expr: str, count: int) -> list[dt.datetime]:
    minute, hour, dom, month, dow = (cron_field(f, i) for i, f in enumerate(expr.split()))
    found, t = [], BASE
    while len(found) < count:
        t += dt.timedelta(minutes=1)
        if (minute is None or t.minute in minute) and (hour is None or t.hour in hour) \
                and (dom is None or t.day in dom) and (month is None or t.month in month) \
                and (dow is None or (t.isoweekday() % 7) in {d % 7 for d in dow}):
            found.append(t)
        assert t.year < 2031
    return found


def systemd_next(calendar: str, count: int) -> list[dt.datetime]:
    proc = subprocess.run(["systemd-analyze", "calendar", f"--iterations={count}",
                           f"--base-time={BASE:%Y-%m-%d %H:%M:%S} UTC", calendar],
                          capture_output=True, text=True, env={"TZ": "UTC"})
    assert proc.returncode == 0, proc.stderr
    times = [line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
             if "Next elapse:" in line or "Iter. #" in line]
    return [dt.datetime.strptime(t.rsplit(" ", 1)[0], "%a %Y-%m-%d %H:%M:%S") for t in times]


@settings(max_examples=25, deadline=None)
@given(CRON)
def test_cron_and_systemd_agree(expr):
    assert systemd_next(to_calendar(expr), 3) == cron_next(expr, 3)


@pytest.mark.parametrize("schedule", ["*:*:0/5", "daily", "Mon..Fri 09:00", "*-*-01 04:00:00",
                                      "@hourly"])
def test_systemd_syntax_passes_and_systemd_accepts_it(schedule):
    assert systemd_next(to_calendar(schedule), 1)


@pytest.mark.parametrize("schedule, message", [
    ("", "missing"),
    ("* * * *", "neither 5-field cron"),
    ("61 * * * *", "values go from 0 to 59"),
    ("* * 1 * mon", "split it into two crons"),
    ("*/0 * * * *", "a step must be at least 1"),
    ("every day", "neither 5-field cron"),
    ("*:*:* ; rm -rf /", "neither 5-field cron"),
])
def test_bad_schedules_say_why(schedule, message):
    with pytest.raises(ValueError, match=message):
        to_calendar(schedule)
