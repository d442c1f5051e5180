"""``certs-renew``: renew the certificates that are due, then serve them: HAProxy on a
balancer, nginx elsewhere. It stands above both ``certs`` and ``balancer`` (which
builds on ``certs``), so neither imports the other back."""

from __future__ import annotations

from silverlining import protocol
from silverlining.node import balancer, certs, haproxy, routing
from silverlining.node._state import routing_lock


def certs_renew(call: protocol.CertsRenew) -> protocol.CertsRenewResult:
    result = certs.renew(call.renew_within, list(call.hosts))
    if result["renewed"]:
        if haproxy.is_balancer():
            balancer.reload_tls()
        else:
            with routing_lock():
                routing.reload_nginx(certs.NGINX_REFUSED)
    return result
