"""``~/.silverlining.conf`` as a validated ``UserConfig``.

Sections: ``[provider:NAME]`` (a libcloud driver or ``local``, its
credentials and defaults), ``[dns:NAME]`` (a libcloud DNS driver and the zone
node names go in, named by a provider's ``dns =``), ``[devel]`` and
``[devel:APPNAME]`` (service settings for ``silver serve``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from silverlining import state
from silverlining.errors import ConfigError
from silverlining.inifile import IniFile, read_ini, suggest

PROVIDER_KEYS = ("driver", "image", "size", "location", "ssh_public_key", "dns",
                 "acme_email", "acme_directory", "acme_ca", "balancer_ready_wait")
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
DNS_KEYS = ("driver", "zone", "ttl")
_DRIVER_RE = re.compile(r"^[A-Za-z0-9_]+\Z|^[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")


@dataclass(frozen=True)
class ProviderConfig:
    """One ``[provider:NAME]`` section."""

    name: str
    driver: str
    image: str | None = None
    size: str | None = None
    location: str | None = None
    ssh_public_key: str | None = None
    driver_args: dict[str, str] = field(default_factory=dict)   # constructor arguments
    create_args: dict[str, str] = field(default_factory=dict)   # create.* keys
    path: str = ""
    dns: "DnsConfig | None" = None
    acme: "AcmeConfig | None" = None     # None: no acme_* key, the defaults apply
    balancer_ready_wait: int | None = None  # seconds an ELB member needs to be InService

    def public_key_path(self) -> Path:
        """The SSH public key given to new nodes (first that exists of the defaults)."""
        if self.ssh_public_key:
            path = Path(self.ssh_public_key).expanduser()
            if not path.is_file():
                raise ConfigError(self.path, f"file {str(path)!r} not found",
                                  key="ssh_public_key", section=f"provider:{self.name}")
            return path
        for name in ("id_ed25519.pub", "id_rsa.pub"):
            path = Path.home() / ".ssh" / name
            if path.is_file():
                return path
        raise ConfigError(self.path, "no SSH public key: set ssh_public_key or create "
                          "~/.ssh/id_ed25519.pub (ssh-keygen -t ed25519)",
                          section=f"provider:{self.name}")


@dataclass(frozen=True)
class AcmeConfig:
    """Where the nodes of a provider get certificates (docs/https.md)."""

    directory: str = LETSENCRYPT
    email: str | None = None
    ca: Path | None = None            # CA bundle of a private directory's API (pebble)
    explicit: bool = False            # the directory was set, not defaulted

    def ca_pem(self, path: str) -> str | None:
        """The CA bundle's text, to send to the node; ConfigError if unreadable."""
        if self.ca is None:
            return None
        try:
            text = self.ca.read_text()
        except OSError as exc:
            raise ConfigError(path, f"cannot read {str(self.ca)!r}: {exc.strerror}",
                              key="acme_ca") from None
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise ConfigError(path, f"{str(self.ca)!r} is not a PEM CA bundle", key="acme_ca")
        return text


@dataclass(frozen=True)
class DnsConfig:
    """One ``[dns:NAME]`` section: where a provider's nodes get their DNS records."""

    name: str
    driver: str
    zone: str
    ttl: int | None = None
    driver_args: dict[str, str] = field(default_factory=dict)
    path: str = ""


@dataclass(frozen=True)
class UserConfig:
    path: Path
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    dns: dict[str, DnsConfig] = field(default_factory=dict)
    devel: dict[str, str] = field(default_factory=dict)
    devel_apps: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "UserConfig":
        """Read the user config; a missing file is an empty config."""
        path = path or state.config_path()
        return parse_user_config(read_ini(path, missing_ok=True))

    def provider(self, name: str | None) -> ProviderConfig:
        """The named provider, else ``default``, else the only one there is."""
        if name is None:
            if "default" in self.providers:
                name = "default"
            elif len(self.providers) == 1:
                name = next(iter(self.providers))
            elif not self.providers:
                raise ConfigError(str(self.path), "no [provider:NAME] section; add one "
                                  "(for local nodes: [provider:local] with driver = local)")
            else:
                raise ConfigError(str(self.path), "several providers and none named "
                                  f"'default'; choose one with -p ({', '.join(self.providers)})")
        if name not in self.providers:
            known = ", ".join(self.providers) or "none"
            raise ConfigError(str(self.path), f"no section [provider:{name}] "
                              f"(providers: {known}){suggest(name, list(self.providers))}")
        return self.providers[name]

    def devel_settings(self, app_name: str) -> dict[str, str]:
        """``[devel]`` overlaid with ``[devel:APP]``, ``APP_NAME`` substituted in values."""
        merged = {**self.devel, **self.devel_apps.get(app_name, {})}
        return {k: v.replace("APP_NAME", app_name) for k, v in merged.items()}


def parse_user_config(ini: IniFile) -> UserConfig:
    providers: dict[str, ProviderConfig] = {}
    dns: dict[str, DnsConfig] = {}
    devel: dict[str, str] = {}
    devel_apps: dict[str, dict[str, str]] = {}
    for section, values in ini.sections.items():
        kind, _, name = section.partition(":")
        if kind == "dns" and name:
            dns[name] = _parse_dns(ini, section, name, values)
    for section, values in ini.sections.items():
        kind, _, name = section.partition(":")
        if kind == "dns" and name:
            continue
        if kind == "provider" and name:
            providers[name] = _parse_provider(ini, section, name, values, dns)
        elif kind == "devel" and not name:
            devel = dict(values)
        elif kind == "devel" and name:
            devel_apps[name] = dict(values)
        else:
            raise ini.error(f"unknown section [{section}]; expected [provider:NAME], "
                            "[dns:NAME], [devel] or [devel:APPNAME]", section)
    return UserConfig(ini.path, providers, dns, devel, devel_apps)


def _driver_args(ini: IniFile, section: str, values: dict[str, str],
                 known: tuple[str, ...]) -> dict[str, str]:
    """The section's keys that are not ours: the driver's constructor arguments."""
    args: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("create.") or key in known:
            continue
        if not re.match(r"^[a-z_][a-z0-9_]*$", key):
            raise ini.error("not a valid argument name", section, key)
        args[key] = value
    return args


def _parse_dns(ini: IniFile, section: str, name: str, values: dict[str, str]) -> DnsConfig:
    for key in ("driver", "zone"):
        if not values.get(key):
            hint = ("a libcloud DNS provider name such as 'route53', 'digitalocean', "
                    "'cloudflare'" if key == "driver" else "the domain records go in, "
                    "e.g. 'example.com'")
            raise ini.error(f"missing key {key!r} ({hint})", section)
    if not _DRIVER_RE.match(values["driver"]):
        raise ini.error(f"{values['driver']!r} is not a DNS provider name or module:Class",
                        section, "driver")
    ttl = values.get("ttl") or None
    if ttl is not None and not (ttl.isdigit() and int(ttl) > 0):
        raise ini.error(f"ttl must be a number of seconds, not {ttl!r}", section, "ttl")
    zone = values["zone"].strip().rstrip(".").lower()
    return DnsConfig(name=name, driver=values["driver"], zone=zone,
                     ttl=int(ttl) if ttl else None,
                     driver_args=_driver_args(ini, section, values, DNS_KEYS),
                     path=str(ini.path))


def _parse_provider(ini: IniFile, section: str, name: str,
                    values: dict[str, str], dns: dict[str, DnsConfig]) -> ProviderConfig:
    if "driver" not in values or not values["driver"]:
        raise ini.error("missing key 'driver' (a libcloud provider name such as "
                        "'digitalocean', 'module:Class', or 'local')", section)
    driver = values["driver"]
    if not _DRIVER_RE.match(driver):
        raise ini.error(f"{driver!r} is not a provider name or module:Class", section, "driver")
    create_args = {key[len("create."):]: value for key, value in values.items()
                   if key.startswith("create.")}
    dns_name = values.get("dns") or None
    if dns_name is not None and dns_name not in dns:
        raise ini.error(f"no section [dns:{dns_name}]{suggest(dns_name, list(dns))}",
                        section, "dns")
    wait = values.get("balancer_ready_wait") or None
    if wait is not None and not wait.isdigit():
        raise ini.error(f"balancer_ready_wait must be a number of seconds, not {wait!r}",
                        section, "balancer_ready_wait")
    return ProviderConfig(
        acme=_parse_acme(ini, section, values),
        balancer_ready_wait=int(wait) if wait is not None else None,
        name=name, driver=driver, image=values.get("image") or None,
        size=values.get("size") or None, location=values.get("location") or None,
        ssh_public_key=values.get("ssh_public_key") or None,
        driver_args=_driver_args(ini, section, values, PROVIDER_KEYS),
        create_args=create_args, path=str(ini.path),
        dns=dns[dns_name] if dns_name else None)


def _parse_acme(ini: IniFile, section: str, values: dict[str, str]) -> AcmeConfig | None:
    if not any(values.get(k) for k in ("acme_email", "acme_directory", "acme_ca")):
        return None
    directory = values.get("acme_directory") or None
    if directory and not re.match(r"^https://[^\s/]+(/\S*)?\Z", directory):
        raise ini.error(f"{directory!r} must be an https:// URL of an ACME directory",
                        section, "acme_directory")
    email = values.get("acme_email") or None
    if email and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z", email):
        raise ini.error(f"{email!r} is not an email address", section, "acme_email")
    ca = values.get("acme_ca") or None
    return AcmeConfig(directory=directory or LETSENCRYPT, email=email,
                      ca=Path(ca).expanduser() if ca else None, explicit=bool(directory))
