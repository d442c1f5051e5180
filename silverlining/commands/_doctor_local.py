"""``silver doctor``'s checks of this machine: config, node registry, SSH keys, providers."""

from __future__ import annotations

import os

from silverlining import transport
from silverlining.commands._doctor_report import Finding, ok, problem, warn
from silverlining.errors import ConfigError, SilverError
from silverlining.state import NodeRegistry, config_path
from silverlining.userconfig import ProviderConfig, UserConfig


def check_machine() -> list[Finding]:
    findings: list[Finding] = []
    config = _check_config(findings)
    _check_registry(findings)
    _check_login_keys(findings)
    for provider in (config.providers.values() if config else ()):
        findings += check_provider(provider)
    return findings


def _check_config(findings: list[Finding]) -> UserConfig | None:
    path = config_path()
    if not path.exists():
        findings.append(warn("config", f"{path} does not exist: silver serve works, but "
                             "there is no provider to create nodes with",
                             f"add '[provider:local]' and 'driver = local' to {path} "
                             "(see docs/userconfig.md)"))
        return None
    try:
        config = UserConfig.load()
    except ConfigError as exc:
        where = f"{exc.path}:{exc.line}" if exc.line else str(exc.path)
        findings.append(problem("config", exc.message, f"edit {where}"))
        return None
    names = ", ".join(config.providers) or "none"
    findings.append(ok("config", f"{path} parses; providers: {names}"))
    return config


def _check_registry(findings: list[Finding]) -> None:
    registry = NodeRegistry()
    try:
        count = len(registry.all())
    except SilverError as exc:
        findings.append(problem("node registry", exc.message, f"repair or move {registry.path}"))
        return
    findings.append(ok("node registry", f"{registry.path}: {count} node{'s' * (count != 1)}"))


def _check_login_keys(findings: list[Finding]) -> None:
    try:
        keys = transport.login_keys()
    except SilverError as exc:
        findings.append(problem("ssh key", exc.message, "fix or unset SILVER_SSH_KEY"))
        return
    if keys:
        findings.append(ok("ssh key", "logins use " + "; ".join(keys)))
    else:
        findings.append(problem("ssh key", "no SSH private key: no SILVER_SSH_KEY, no agent "
                                "key, nothing in ~/.ssh", "ssh-keygen -t ed25519"))


def check_provider(cfg: ProviderConfig) -> list[Finding]:
    """The key new nodes get, the host packages (local), and whether the provider
    accepts our credentials (one cheap listing call)."""
    from silverlining.providers import call_provider, get_driver

    check = f"provider {cfg.name}"
    found: list[Finding] = []
    try:
        found.append(ok(check, f"new nodes get {cfg.public_key_path()}"))
    except ConfigError as exc:
        found.append(problem(check, exc.message, "ssh-keygen -t ed25519, or set "
                             f"ssh_public_key in [provider:{cfg.name}] of {cfg.path}"))
    if cfg.driver == "local":
        from silverlining.providers.local_host import check_host

        try:
            check_host()
        except SilverError as exc:
            # local nodes need root first, then the host packages
            fix = ("run silver as root (sudo)" if os.geteuid() != 0
                   else "sudo scripts/host-setup.sh")
            found.append(problem(check, exc.message, fix))
            return found
    try:
        driver = get_driver(cfg)
        nodes = call_provider("listing nodes", driver.list_nodes)
    except SilverError as exc:
        found.append(problem(check, exc.message,
                             f"check the settings of [provider:{cfg.name}] in {cfg.path}"))
        return found
    found.append(ok(check, f"{cfg.driver}: credentials accepted, {len(nodes)} "
                           f"node{'s' * (len(nodes) != 1)}"))
    return found
