"""What fronts a balanced location (docs/balancer.md), below both kinds: HAProxy on a
balancer node (``_balanced.NodeFront``) and a provider's load balancer
(``_provider_front.ProviderFront``), so that neither imports the other."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from silverlining import protocol
from silverlining.commands._remote import open_node
from silverlining.console import Console
from silverlining.errors import SilverError
from silverlining.topology import Topology

PROVIDER_PREFIX = "provider:"       # --balancer provider:NAME: the provider's own balancer


class Front(ABC):
    """What fronts a balanced location, as the rolling rules see it: which members take
    its traffic, taking a batch out of rotation and putting it back. Two kinds: HAProxy
    on a balancer node (``NodeFront``), a provider's load balancer through libcloud
    (``silverlining.commands._provider_front.ProviderFront``)."""

    console: Console
    topo: Topology

    @abstractmethod
    def members_here(self) -> list[str]:
        """The members the balancer fronts the location by now."""

    @abstractmethod
    def apply(self, members: list[str], maint: list[str], app: str, https: str = "",
              services: str = "") -> None:
        """Front the location by ``members``; those in ``maint`` take no traffic yet;
        ``https`` is the deployed version's mode, ``services`` the location's services
        node, recorded where the balancer keeps a record (empty: as recorded)."""

    @abstractmethod
    def drain(self, members: list[str]) -> None:
        """Take ``members`` out of rotation (requests in flight finish)."""

    @abstractmethod
    def ready(self, members: list[str]) -> None:
        """Put ``members`` in rotation; returns once the balancer sees them up."""

    @abstractmethod
    def guard(self, members: list[str]) -> None:
        """Make each member serve the location through the balancer only, as far as
        this kind of balancer allows (docs/balancer.md says how far)."""

    @abstractmethod
    def drop(self) -> None:
        """Stop fronting the location."""

    def close(self) -> None:
        """Release what talking to the balancer holds."""


def is_provider(balancer: str) -> bool:
    """Whether a topology's balancer is a provider's (``provider:NAME``), not a node."""
    return balancer.startswith(PROVIDER_PREFIX)


def parallel(fn: Callable[[str], object], members: list[str]) -> dict[str, object]:
    """``fn(member)`` for each member at once; results and SilverErrors by member."""
    from concurrent.futures import ThreadPoolExecutor   # its import costs query and activate

    out: dict[str, object] = {}
    if not members:
        return out
    with ThreadPoolExecutor(max_workers=min(8, len(members))) as pool:
        futures = {m: pool.submit(fn, m) for m in members}
        for m, future in futures.items():
            try:
                out[m] = future.result()
            except SilverError as exc:
                out[m] = exc
    return out


def guard_members(console: Console, location: str, vias: dict[str, str]) -> None:
    """Each member serves the location only to connections from its ``via`` (the
    balancer's address or network) and itself, in parallel."""
    def one(member: str) -> None:
        session = open_node(console, member, check=False)
        try:
            session.send(protocol.Balanced(location=location, via=vias[member]), quiet=True)
        finally:
            session.close()

    for member, r in parallel(one, list(vias)).items():
        if isinstance(r, SilverError):
            raise SilverError(f"{member}: {r.message}")
