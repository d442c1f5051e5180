"""The small CA behind services nodes' TLS, kept on this machine (docs/services-node.md).

Members reach a services node's databases over the nodes' network with
``sslmode=verify-full``: they trust this CA only, and it signs nothing but the
services nodes' server certificates (for the addresses members use). The CA's
key stays here, in ``SILVER_HOME/services-ca`` (0700, key 0600), and is never
printed; a services node gets its own server key and certificate on stdin.

The database passwords of apps on services nodes are derived from the CA's key
(HMAC): a later ``silver update`` sends each node the same password without
ever asking a node for it, so no secret travels back in a node's answer.
Whoever deploys to the same services nodes from another machine copies this
directory (as with any CA).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from silverlining.errors import SilverError
from silverlining.node.base import write_atomic
from silverlining.state import locked, state_dir

CA_DAYS = 3650
SERVER_DAYS = 825
RENEW_DAYS = 60            # a server certificate this close to its end is issued again


@dataclass(frozen=True)
class ServerCert:
    """What a services node gets: its key and certificate, and the CA members trust."""

    cert: str
    key: str
    ca: str


def ca_dir() -> Path:
    path = state_dir() / "services-ca"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def _write_private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600, uid=None, gid=None)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _load_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA's key and certificate, made on first use."""
    root = ca_dir()
    key_path, cert_path = root / "ca.key", root / "ca.crt"
    with locked(root / ".lock"):
        if not key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            now = datetime.datetime.now(datetime.timezone.utc)
            cert = (x509.CertificateBuilder()
                    .subject_name(_name("silverlining services CA"))
                    .issuer_name(_name("silverlining services CA"))
                    .public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(minutes=5))
                    .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                 False, False), critical=True)
                    # key identifiers: clients with strict X.509 checks (Python 3.13's
                    # ssl, so PyMySQL) refuse a chain without them
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                   critical=False)
                    .sign(key, hashes.SHA256()))
            _write_private(key_path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644,
                         uid=None, gid=None)
    if os.stat(key_path).st_mode & 0o077:
        raise SilverError(f"{key_path} is readable by others: chmod 600 it (it is the key "
                          "of the CA your services nodes' certificates come from)")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SilverError(f"the services CA in {root} cannot be read ({exc}): restore it "
                          "from a copy") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SilverError(f"{key_path}: not the services CA's key")
    return key, cert


def ca_pem() -> str:
    return _load_ca()[1].public_bytes(serialization.Encoding.PEM).decode()


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca``'s key signed ``cert``: its name alone is the same for every CA silver
    makes, so a CA made anew (its directory lost or replaced) would not be told apart."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def server_cert(node: str, addresses: set[str]) -> ServerCert:
    """``node``'s server certificate, valid for ``addresses`` (those members reach it
    on): the one issued before while it covers them and is not near its end, else a
    new one for them and every address the old one had."""
    key, ca = _load_ca()
    root = ca_dir() / "nodes"
    root.mkdir(mode=0o700, exist_ok=True)
    cert_path, key_path = root / f"{node}.crt", root / f"{node}.key"
    now = datetime.datetime.now(datetime.timezone.utc)
    have: set[str] = set()
    with locked(root / f".{node}.lock"):
        if cert_path.exists() and key_path.exists():
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
            fresh = old.not_valid_after_utc - now > datetime.timedelta(days=RENEW_DAYS)
            if addresses <= have and fresh and _signed_by(old, ca):
                return ServerCert(cert_path.read_text(), key_path.read_text(), ca_pem())
        server_key = ec.generate_private_key(ec.SECP256R1())
        names = sorted(have | addresses)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(node))
                .issuer_name(ca.subject)
                .public_key(server_key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(a)) for a in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    key.public_key()), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                    server_key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write_private(key_path, server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return ServerCert(cert_path.read_text(), key_path.read_text(), ca_pem())


def password(purpose: str) -> str:
    """A database password for ``purpose`` (service, node role and app), the same on
    every call: an HMAC of it under the CA's key."""
    key, _ = _load_ca()
    secret = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    return hmac.new(hashlib.sha256(secret).digest(), purpose.encode(), hashlib.sha256
                    ).hexdigest()[:48]
