"""``python -m bench``: run the benchmark suite of issue 14 on fresh local nodes.

Creates bench1..benchN (local provider, private SILVER_HOME), sets them up,
measures the floors and each selected case, prints the table, writes JSON and,
with --write-docs, the table in docs/benchmarks.md. The nodes are destroyed at
the end, on errors and on SIGINT/SIGTERM/SIGHUP too, unless --keep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.cases import CASES, MULTI_NODE, Context, measure_floors
from bench.env import REPO, BenchEnv, BenchError
from bench.report import Figure, Floor, floors_table, markdown_table, replace_section, text_table

DOC = REPO / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, of: {', '.join(CASES)} (default: all)")
    parser.add_argument("--nodes", type=int, default=8,
                        help="nodes for the curve, the soak and parallel setup-node (default 8)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON "
                        "(default: a timestamped file in the temp directory)")
    parser.add_argument("--keep", action="store_true", help="do not destroy the nodes")
    parser.add_argument("--write-docs", action="store_true",
                        help="rewrite the table in docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; cases: {', '.join(CASES)}")
    if args.runs < 1 or args.nodes < 1:
        parser.error("--runs and --nodes must be at least 1")
    return args


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.node()}: {os.cpu_count()} CPUs, {mem:.1f} GiB, "
            f"{platform.system()} {platform.release()}")


def load_average() -> float:
    return os.getloadavg()[0]


def ensure_host_tools() -> None:
    """wrk (the load generator on the host) from the OS packages, through the
    project's host set-up script, which installs only what is missing."""
    if shutil.which("wrk") is None:
        subprocess.run(["sh", str(REPO / "scripts" / "host-setup.sh"), "wrk"], check=True)


def raise_on_signal(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C: through the finally that destroys nodes."""
    raise SystemExit(128 + signum)


def docs_section(result: dict, figures: list[Figure], floors: list[Floor]) -> str:
    return "\n".join([
        f"Measured {result['started']} on {result['machine']} with `{result['command']}`,",
        f"in {result['seconds'] / 60:.1f} min. Load average (1 min) at the start "
        f"{result['load_start']:.2f}, at the end {result['load_end']:.2f} (the CPUs are "
        "shared with other work: read the ratios).",
        "",
        markdown_table(figures),
        "",
        "Floors measured in the same run (what each figure's floor column adds up):",
        "",
        floors_table(floors),
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: local nodes need root", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, raise_on_signal)
    ensure_host_tools()
    count = args.nodes if any(c in MULTI_NODE for c in args.cases) else 1
    # SILVER_TEST_NODE_TAG keeps checkouts that run the bench at once apart, as the tests
    tag = os.environ.get("SILVER_TEST_NODE_TAG", "")
    names = [f"bench{i}" + (f"-{tag}" if tag else "") for i in range(1, count + 1)]
    started = datetime.datetime.now(datetime.timezone.utc)
    start, load_start = time.monotonic(), load_average()
    figures: list[Figure] = []
    root = Path(tempfile.mkdtemp(prefix="silver-bench-"))
    env = BenchEnv(root)
    try:
        print(f"creating {', '.join(names)} ...", flush=True)
        env.create_nodes(names)
        seconds, _ = env.silver("-y", "setup-node", *names)
        figures.append(Figure("setup-node", f"first setup-node of {count} fresh node"
                              f"{'s' if count > 1 else ''} (one run, no target)", [seconds]))
        ctx = Context(env, args.runs, names)
        floors = measure_floors(ctx)
        print(floors_table(floors), flush=True)
        for case in args.cases:
            print(f"case {case} ...", flush=True)
            case_start = time.monotonic()
            figures += CASES[case](ctx)
            print(f"case {case}: {time.monotonic() - case_start:.0f} s", flush=True)
    except BaseException as exc:
        if figures:
            print(f"\nmeasured before it stopped:\n{text_table(figures)}", flush=True)
        if isinstance(exc, BenchError):
            print(f"bench: error: {exc}", file=sys.stderr)
            return 1
        raise
    finally:
        if args.keep:
            print(f"kept nodes {', '.join(env.nodes)} (SILVER_HOME={env.env['SILVER_HOME']}, "
                  f"SILVER_CONFIG={env.env['SILVER_CONFIG']}, key {env.key})")
        else:
            env.destroy_nodes()
            shutil.rmtree(root, ignore_errors=True)
    result = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "command": shlex.join(["bench/run", *(argv if argv is not None else sys.argv[1:])]),
        "seconds": time.monotonic() - start, "load_start": load_start,
        "load_end": load_average(), "floors": [f.__dict__ for f in floors],
        "figures": [f.as_dict() for f in figures],
    }
    print()
    print(text_table(figures))
    path = args.json or Path(tempfile.gettempdir()) / \
        f"silver-bench-{started.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {path}; the whole run took {result['seconds'] / 60:.1f} min")
    if args.write_docs:
        DOC.write_text(replace_section(DOC.read_text(), docs_section(result, figures, floors)))
        print(f"table written to {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
