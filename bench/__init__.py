"""The benchmark suite (issue 14): ``python -m bench`` or ``bench/run``.

Not a test: it creates its own local nodes, measures each case several times
next to floors measured in the same run, and reports medians and ratios.
"""
