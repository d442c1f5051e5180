"""The node side's one error type."""

from silverlining.errors import SilverError


class NodeError(SilverError):
    """A failure to report to the CLI as ``{"error": message}`` (exit status 1).

    A ``SilverError``, so the services (shared with the client, which raise those)
    and the node's base layer fail in the one way both sides catch."""
