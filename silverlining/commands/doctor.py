"""``silver doctor [NODE...]``: what is wrong with this machine and with nodes, and
the command that fixes each problem.

Without NODE every node in the registry is checked. Nodes are checked in
parallel (each one is a few SSH round trips); the report comes at the end,
grouped by machine, so parallel output never interleaves.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from silverlining.commands._doctor_local import check_machine
from silverlining.commands._doctor_node import check_node
from silverlining.commands._doctor_report import PROBLEM, WARN, Finding, format_section
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.state import NodeRegistry

MAX_PARALLEL = 8


def run(console: Console, node_names: tuple[str, ...]) -> int:
    console.info("checking this machine")
    sections: list[tuple[str, list[Finding]]] = [("this machine", check_machine())]
    names = list(dict.fromkeys(node_names))
    if not names:
        try:
            names = sorted(NodeRegistry().all())
        except SilverError:
            names = []      # already reported as a problem of this machine
    if names:
        console.info(f"checking {len(names)} node{'s' * (len(names) != 1)}: {', '.join(names)}")
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(names))) as pool:
            sections += list(pool.map(check_node, names))
    for title, findings in sections:
        for line in format_section(title, findings):
            console.out(line)
    every = [f for _, findings in sections for f in findings]
    problems = sum(f.status == PROBLEM for f in every)
    warnings = sum(f.status == WARN for f in every)
    if problems or warnings:
        console.out(f"{problems} problem{'s' * (problems != 1)}, {warnings} "
                    f"warning{'s' * (warnings != 1)}: each 'fix:' line says what to run")
    else:
        console.out("everything looks right")
    return 1 if problems else 0
