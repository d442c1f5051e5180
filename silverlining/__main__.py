"""``python -m silverlining`` is the ``silver`` command."""

from silverlining.cli import main

main()
