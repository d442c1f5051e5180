"""The node side: code that setup-node installs on a server and the CLI runs over SSH.

Invoked as ``silver-node COMMAND JSON`` (``python3 -m silverlining.node``), each
command defined in ``silverlining.protocol``. Stdlib only. Progress goes to
stderr as it happens; the result is one JSON object printed as the last line of
stdout.
"""
