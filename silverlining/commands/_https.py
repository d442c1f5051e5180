"""HTTPS for ``silver update`` and ``silver query`` (docs/https.md).

Decided locally, before any node is touched: the mode (app.ini's ``https``,
or ``--https``) and, for ``--cert/--key``, that the key matches and the
certificate covers the location's host, so a wrong file is one line here
rather than a failed deploy. On the node, ``certs-prepare`` runs between the
upload and the switch: a certificate that cannot be had stops a ``required``
deploy while the old version still serves, and only warns under ``auto``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from silverlining import protocol
from silverlining import tlscerts
from silverlining.appconfig import HTTPS_MODES, AppConfig
from silverlining.commands._remote import NodeSession
from silverlining.console import Console
from silverlining.errors import SilverError, UsageError
from silverlining.locations import Location
from silverlining.userconfig import AcmeConfig


@dataclass(frozen=True)
class HttpsRequest:
    """What a deploy asks of the node for HTTPS."""

    mode: str                     # auto or required (off asks nothing)
    host: str                     # whose certificate: the location's host, no leading '.'
    cert_pem: str | None = None   # the user's own certificate and key, if given
    key_pem: str | None = None


def request_for(config: AppConfig, location: Location, mode: str | None,
                cert: str | None, key: str | None) -> HttpsRequest | None:
    """The HTTPS part of a deploy, checked; None when the app is served over HTTP only."""
    if mode is not None and mode not in HTTPS_MODES:
        raise UsageError(f"--https {mode}: use one of {', '.join(HTTPS_MODES)}")
    if (cert is None) != (key is None):
        raise UsageError("give --cert and --key together (the certificate and its private key)")
    if cert and mode == "off":
        raise UsageError("--cert/--key with --https off: drop one of them")
    mode = mode or config.https
    if mode == "off" and not cert:
        return None
    if mode == "off":             # a certificate brought for an app.ini without https
        mode = "auto"
    host = location.host.removeprefix(".")
    if config.runner is None or location.host == "*" or not tlscerts.HOSTNAME_RE.match(host):
        if mode == "auto" and not cert:       # nothing to get a certificate for: plain HTTP
            return None
        raise UsageError(f"{location}: HTTPS needs a hostname location (https = {mode}); "
                         "use https = off or auto here")
    if not cert:
        return HttpsRequest(mode, host)
    assert key is not None
    why = tlscerts.problems(cert, key, host)
    if why:
        raise UsageError(why)
    return HttpsRequest(mode, host, Path(cert).read_text(), Path(key).read_text())


def acme_for(node: str) -> tuple[AcmeConfig, str]:
    """The ACME settings of the node's provider (the defaults without any), and the
    config file they come from."""
    from silverlining.state import NodeRegistry
    from silverlining.userconfig import UserConfig

    config = UserConfig.load()
    entry = NodeRegistry().get(node) or {}
    if not config.providers:
        return AcmeConfig(), str(config.path)
    try:
        provider = config.provider(entry.get("provider"))
    except SilverError:
        return AcmeConfig(), str(config.path)
    return provider.acme or AcmeConfig(), str(config.path)


def prepare(console: Console, session: NodeSession, app: str, version: str,
            location: Location, request: HttpsRequest, lock_wait: float) -> None:
    """Certificates for the location on the node, before its switch; a ``required``
    deploy stops here (SilverError) when the host gets none."""
    command = protocol.CertsPrepare(app=app, version=version, location=str(location),
                                    mode=request.mode, stdin=True, lock_wait=lock_wait,
                                    www=location.is_exact_host
                                    and not request.host.startswith("www."))
    _obtain(console, session, request, command)


def prepare_at_balancer(console: Console, session: NodeSession, location: Location,
                        request: HttpsRequest) -> None:
    """The location's certificate at its balancer, where TLS ends (docs/balancer.md),
    before any member changes; a ``required`` deploy stops here when there is none."""
    _obtain(console, session, request, protocol.BalancerCerts(location=str(location),
                                                              stdin=True))


def _obtain(console: Console, session: NodeSession, request: HttpsRequest,
            command: protocol.CertsPrepare | protocol.BalancerCerts) -> None:
    acme, config_path = acme_for(session.name)
    given: dict[str, str | None] = {"cert": request.cert_pem, "key": request.key_pem}
    why_not = None
    if request.cert_pem is None and not acme.explicit and \
            not tlscerts.is_public_name(request.host):
        why_not = (f"{request.host} is not a public DNS name, so Let's Encrypt cannot "
                   "validate it (set acme_directory for a private ACME server, or give "
                   "--cert/--key)")
    elif request.cert_pem is None:
        command = dataclasses.replace(command, directory=acme.directory,
                                      email=acme.email or None)
        given["ca"] = acme.ca_pem(config_path)
    with console.ticking(session.name, f"certificate for {request.host}"):
        result = session.send(command, input=json.dumps(given))
    hosts = result.get("hosts", {})
    main = hosts[request.host]
    if why_not and not main["ok"]:
        main = {"ok": False, "message": why_not}
    if not main["ok"]:
        if request.mode == "required":
            raise SilverError(f"[{session.name}] {request.host}: no certificate: "
                              f"{main['message']} (https = required: nothing was switched, "
                              "the live version keeps serving)")
        console.warn(f"[{session.name}] {request.host}: no certificate, served over HTTP "
                     f"only: {main['message']}")
        return
    console.step(session.name, f"HTTPS for {request.host}: certificate {main['how']}")
    for host, outcome in sorted(hosts.items()):
        if host != request.host and not outcome["ok"]:
            console.info(f"[{session.name}] {host}: no certificate, so https://{host} does "
                         f"not redirect: {outcome['message']}")
