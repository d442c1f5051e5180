"""The benchmark suite's pure parts: figures, table, docs rewrite, wrk and query parsing.

The suite itself needs root and local nodes; these check that it imports and
that what it reports is computed and shown right.
"""

from __future__ import annotations

import pytest

from bench.__main__ import parse_args
from bench.cases import bytes_sent, curve_sizes, prev_state
from bench.load import parse_wrk, percentile
from bench.report import (BEGIN, END, Figure, Floor, markdown_table, replace_section, row,
                          text_table)

WRK = """Running 5s test @ http://127.0.0.1:80/bench-marker
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.98ms    1.16ms  12.75ms   79.60%
  Latency Distribution
     50%    1.75ms
     75%    2.43ms
     90%    3.34ms
     99%  850.00us
  8339 requests in 2.00s, 1.26MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 4
Requests/sec:   4167.31
Transfer/sec:    642.99KB
"""


def test_figure_statistics_ratio_and_target() -> None:
    fig = Figure("redeploy", "one-file", [3.0, 1.0, 2.0], floor=Floor("ssh", [0.5, 0.4, 0.6]),
                 target=1.0)
    assert (fig.median, fig.ratio, fig.met) == (2.0, 4.0, False)
    assert row(fig) == ["one-file", "2.00 s", "1.00 s", "3.00 s", "0.50 s (ssh)", "4.00x",
                        "<= 1.00 s", "NO"]


def test_ratio_targets_and_higher_is_better() -> None:
    eight = Figure("curve", "8 nodes", [1.2], floor=Floor("1 node", [1.0]), target=1.3,
                   target_on="ratio")
    assert eight.met and row(eight)[6] == "ratio <= 1.3x"
    rps = Figure("throughput", "nginx", [850.0], unit="req/s",
                 floor=Floor("socket", [1000.0], "req/s"), target=0.9, target_on="ratio",
                 higher=True)
    assert rps.met is False and row(rps)[1] == "850 req/s"


def test_targets_over_the_floor() -> None:
    """The Django redeploy's target: its own cold start plus 0.5 s at most."""
    django = Figure("django", "redeploy", [1.4, 1.3, 1.6], floor=Floor("cold", [0.9, 1.0]),
                    target=0.5, target_on="over")
    assert django.met is True and row(django)[6] == "<= floor + 0.50 s"
    assert Figure("django", "redeploy", [1.6], floor=Floor("cold", [1.0]), target=0.5,
                  target_on="over").met is False
    assert Figure("django", "redeploy", [1.6], target=0.5, target_on="over").met is None


def test_unsupported_and_targetless_figures() -> None:
    missing = Figure("redeploy", "forced", unsupported="not supported", target=0.5)
    assert missing.met is None
    assert row(missing)[1:3] == ["n/a (not supported)", ""]
    bytes_row = row(Figure("bigapp", "sent", [2_500_000.0], unit="B"))
    assert bytes_row[1] == "2.5 MB" and bytes_row[-1] == ""
    with pytest.raises(ValueError):
        Figure("x", "y", unit="minutes")


def test_tables_have_every_row() -> None:
    figures = [Figure("cli", "start", [0.1]), Figure("cli", "query", [0.3], target=0.4)]
    md = markdown_table(figures).splitlines()
    assert md[0].startswith("| case | median") and len(md) == 4
    text = text_table(figures).splitlines()
    assert text[2].split()[:3] == ["query", "0.30", "s"] and text[2].endswith("yes")


def test_replace_section_keeps_the_rest_of_the_doc() -> None:
    doc = f"# Benchmarks\n\nintro\n\n{BEGIN}\nold table\n{END}\n\nafter\n"
    new = replace_section(doc, "new table\n")
    assert new == f"# Benchmarks\n\nintro\n\n{BEGIN}\nnew table\n{END}\n\nafter\n"
    assert replace_section(new, "newer") == new.replace("new table", "newer")
    assert replace_section("# B\n", "t").endswith(f"\n\n{BEGIN}\nt\n{END}\n")


def test_parse_wrk() -> None:
    result = parse_wrk(WRK)
    assert (result.requests_per_s, result.p99_ms, result.requests, result.errors) == \
        (4167.31, 0.85, 8339, 7)
    with pytest.raises(ValueError):
        parse_wrk("unable to connect")


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0 and percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0


def test_cli_output_parsers() -> None:
    query = ("rollback\n  services: files\n"
             "  v3    2026-11-23T09:18:09Z  root@vm   ok       prev at rollback.bench\n"
             "  v4    2026-11-23T09:18:11Z  root@vm   running  live at rollback.bench\n")
    assert prev_state(query, "rollback.bench") == "ok"
    assert prev_state(query, "other.bench") is None
    assert bytes_sent("[n] rsync: 935 bytes sent, 1 files transferred\n"
                      "[n] rsync: 65 bytes sent, 0 files transferred\n") == 1000
    assert curve_sizes(8) == [1, 4, 8] and curve_sizes(2) == [1, 2]


def test_parse_args_selects_cases() -> None:
    args = parse_args(["--runs", "3", "--cases", "cli, redeploy"])
    assert args.cases == ["cli", "redeploy"] and args.runs == 3 and args.nodes == 8
    with pytest.raises(SystemExit):
        parse_args(["--cases", "nope"])
