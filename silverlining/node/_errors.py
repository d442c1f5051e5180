"""The node side's one error type."""


class NodeError(Exception):
    """A failure to report to the CLI as ``{"error": message}`` (exit status 1)."""
