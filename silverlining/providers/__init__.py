"""Compute providers: a libcloud ``NodeDriver`` from a ``[provider:NAME]`` section.

``driver = local`` is our own systemd-nspawn driver, ``module:Class`` any
NodeDriver subclass, anything else a libcloud provider name. Provider
failures (bad credentials, API errors, network) become one ``SilverError``
line through ``call_provider``: the user sees what failed, never a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from libcloud.common.exceptions import BaseHTTPError
from libcloud.common.types import InvalidCredsError, LibcloudError
from libcloud.compute.base import Node, NodeDriver
from libcloud.compute.providers import get_driver as libcloud_get_driver
from libcloud.compute.types import Provider

from silverlining.errors import ConfigError, SilverError
from silverlining.userconfig import ProviderConfig

T = TypeVar("T")

LOCAL_DRIVER = "silverlining.providers.local:LocalNodeDriver"


def provider_names(enum: type = Provider) -> dict[str, str]:
    """Every spelling we accept (lowercase) -> libcloud's provider id (compute or DNS)."""
    names: dict[str, str] = {}
    for attr in dir(enum):
        value = getattr(enum, attr)
        if attr.isupper() and isinstance(value, str):
            for spelling in (value, attr, attr.replace("_", "")):
                names.setdefault(spelling.lower(), value)
    return names


def driver_class(cfg: ProviderConfig) -> type[NodeDriver]:
    """The class named by ``driver =`` (imports it, nothing is contacted)."""
    section = f"provider:{cfg.name}"
    spec = LOCAL_DRIVER if cfg.driver == "local" else cfg.driver
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(cfg.path, f"cannot import {module_name!r}: {exc}",
                              key="driver", section=section) from None
        cls = getattr(module, class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, NodeDriver)):
            raise ConfigError(cfg.path, f"{spec!r} is not a libcloud NodeDriver class",
                              key="driver", section=section)
        return cls
    names = provider_names()
    provider = names.get(spec.lower())
    if provider is None:
        close = difflib.get_close_matches(spec.lower(), sorted(set(names.values())), n=5,
                                          cutoff=0.6)
        hint = f" (close: {', '.join(close)})" if close else " (see libcloud's provider list)"
        raise ConfigError(cfg.path, f"unknown libcloud provider {spec!r}{hint}",
                          key="driver", section=section)
    try:
        return libcloud_get_driver(provider)
    except (AttributeError, ImportError, LibcloudError) as exc:
        raise ConfigError(cfg.path, f"libcloud cannot load driver {spec!r}: {exc}",
                          key="driver", section=section) from None


def get_driver(cfg: ProviderConfig) -> NodeDriver:
    """An instance of the section's driver, built from its credential keys."""
    cls = driver_class(cfg)
    section = f"provider:{cfg.name}"
    check_constructor(cls, cfg.driver, cfg.driver_args, cfg.path, section)
    return construct(cls, cfg.driver, cfg.driver_args, cfg.path, section)


def construct(cls: type[T], label: str, args: dict[str, str], path: str, section: str) -> T:
    """``cls(**args)``; refused credentials or a bad argument become a ConfigError."""
    try:
        return cls(**args)
    except SilverError:
        raise
    except InvalidCredsError as exc:
        raise ConfigError(path, f"credentials refused by {label}: {_message(exc)}",
                          section=section) from None
    except Exception as exc:  # drivers raise bare exceptions too (OVH: "validate your key")
        raise ConfigError(path, f"cannot set up driver {label!r}: {_message(exc)}",
                          section=section) from None


def check_constructor(cls: type, label: str, args: dict[str, str], path: str,
                      section: str) -> None:
    """Name missing or unknown constructor keys before libcloud's TypeError would."""
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    named = {n: p for n, p in params.items() if n != "self" and p.kind in
             (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    required = [n for n, p in named.items() if p.default is p.empty]
    missing = [n for n in required if n not in args]
    if missing:
        raise ConfigError(path, f"driver {label!r} needs "
                          f"{', '.join(repr(m) for m in missing)} (its credentials)",
                          section=section)
    if not takes_any:
        for key in args:
            if key not in named:
                raise ConfigError(path, f"driver {label!r} takes no argument "
                                  f"{key!r} (it takes: {', '.join(named) or 'none'})",
                                  key=key, section=section)


def _message(exc: BaseException) -> str:
    """The reason an exception gives, on one line; a raw JSON error body is unwrapped."""
    value = getattr(exc, "value", None)
    text = str(value or exc or type(exc).__name__)
    body = value if isinstance(value, dict) else None
    if body is None:
        try:
            body = json.loads(text)
        except ValueError:
            pass
    for _ in range(2):      # {"message": ...}, or nested: {"error": {"message": ...}}
        if not isinstance(body, dict):
            break
        reason = body.get("message") or body.get("error") or body.get("detail")
        if isinstance(reason, str) and reason:
            text = reason
        body = reason
    return " ".join(text.split())[:300] or type(exc).__name__


def call_provider(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a driver method; libcloud and network failures become one clear line."""
    driver = getattr(fn, "__self__", None)
    name = getattr(driver, "name", None) or "provider"   # a driver's, or a CloudProfile's
    try:
        return fn(*args, **kwargs)
    except SilverError:
        raise
    except InvalidCredsError as exc:
        raise SilverError(f"{name}: credentials refused while {what}: {_message(exc)}") from None
    except (LibcloudError, BaseHTTPError) as exc:
        raise SilverError(f"{name}: {what} failed: {_message(exc)}") from None
    except (socket.timeout, TimeoutError):
        raise SilverError(f"{name}: timed out while {what}") from None
    except OSError as exc:  # includes requests' errors, which libcloud's HTTP uses
        reason = exc.strerror or _message(exc)
        raise SilverError(f"{name}: cannot reach the provider while {what}: {reason}") from None
    except Exception as exc:  # drivers raise bare Exception/ValueError for API answers
        raise SilverError(f"{name}: {what} failed: {_message(exc)}") from None


def open_provider(name: str | None) -> tuple[ProviderConfig, NodeDriver]:
    """The ``[provider:NAME]`` section chosen by ``-p`` (or the default) and its driver."""
    from silverlining.userconfig import UserConfig

    cfg = UserConfig.load().provider(name)
    return cfg, get_driver(cfg)


def find_node(nodes: list[Node], name: str, node_id: str | None = None) -> Node | None:
    """Our node among the provider's: by the id we recorded, else by name.

    Terminated nodes do not count: EC2 lists them for an hour after destroy-node.
    """
    nodes = [n for n in nodes if state_name(n) != "terminated"]
    if node_id is not None:
        for node in nodes:
            if str(node.id) == str(node_id):
                return node
    for node in nodes:
        if node.name == name:
            return node
    return None


def node_address(node: Node, public: bool = False) -> str | None:
    """The address we reach the node on: its first public IPv4, else any other one.

    ``public`` ignores private addresses (a cloud node has one before its public
    one). Placeholders some providers report before an address is assigned
    (Vultr's ``0.0.0.0``) do not count.
    """
    private = [] if public else list(node.private_ips or [])
    ips = [str(ip) for ip in list(node.public_ips or []) + private
           if ip and str(ip) not in ("0.0.0.0", "::")]
    return next((ip for ip in ips if ":" not in ip), ips[0] if ips else None)


def private_address(node: Node) -> str | None:
    """The node's first private IPv4 (on the provider's private network), if it has one:
    the address other nodes of the same network reach it on."""
    ips = [str(ip) for ip in node.private_ips or []
           if ip and str(ip) not in ("0.0.0.0", "::") and ":" not in str(ip)]
    return ips[0] if ips else None


def state_name(node: Node) -> str:
    state = node.state
    return str(getattr(state, "value", state)).lower()
