"""Any text either becomes a clean, canonical location or is refused with a UsageError."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from silverlining.errors import UsageError
from silverlining.locations import parse_location

CLEAN = re.compile(r"^[a-z0-9.*-]*(/[A-Za-z0-9._~-]+)*$")
PIECES = st.sampled_from(["a", "b.test", "/", ".", "..", "*", "-", " ", ";", "$(id)", "`x`",
                          "ü", "\n", "'", '"', "x" * 70, "\\", "%2e", "{", "}", "#", "~"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(PIECES, max_size=8).map("".join)))
@example("x.test/..")
@example("x.test/a/../b")
@example("a" * 64 + ".test")
@example("bad;host")
@example("a\n/a")          # '$' once matched before a final newline: nginx config injection
def test_locations_are_clean_or_refused(text):
    try:
        location = parse_location(text)
    except UsageError as exc:
        assert exc.message.startswith("bad location"), exc.message
        return
    canonical = str(location)
    assert CLEAN.match(canonical) or location.is_special or \
        re.fullmatch(r"@[a-z0-9][a-z0-9_-]*", canonical), canonical
    assert "/../" not in canonical + "/" and not canonical.endswith("/..")
    assert len(location.host) <= 253
    assert parse_location(canonical) == location


@given(st.text(max_size=40))
@example("app\n")
def test_app_names_that_pass_hold_only_safe_characters(text):
    from silverlining.appconfig import NAME_RE

    if NAME_RE.match(text):
        assert re.fullmatch(r"[a-z0-9_-]+", text)
