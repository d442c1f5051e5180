"""The node side: code that setup-node installs on a server and the CLI runs over SSH.

Invoked as ``silver-node SUBCOMMAND ARGS...`` (``python3 -m silverlining.node``).
Stdlib only. Progress goes to stderr as it happens; the result is one JSON
object printed as the last line of stdout.
"""
