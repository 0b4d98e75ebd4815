"""X.509 material for TLS between nodes and the broker: a CA, a server and client certificates.

For the compose federation and for trying TLS out (``deploy/compose/prepare.sh``); organisations
with a PKI use that instead (docs/ops.md, "Broker TLS"). What the broker checks
(``deploy/rabbitmq/rabbitmq-tls.conf``): the client certificate chains to the CA, and its
**common name is the broker user** (``ssl_cert_login_from = common_name``), so a client
certificate is issued per organisation with CN = that organisation's ``broker_user``. Nodes
check the server certificate's subject alternative names against the broker's host name.

All keys are P-256 (every TLS stack and HSM has it); private keys are PKCS#8 PEM written with
mode ``0600`` and never overwritten (:func:`gateway.keyfiles.write_private_key`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.keyfiles import write_private_key

__all__ = ["BACKDATE", "Issued", "issue_client", "issue_server", "make_ca"]

BACKDATE = timedelta(minutes=5)
"""``notBefore`` lies this far before ``now``: tolerates clocks a little behind the issuer's."""


@dataclass(frozen=True)
class Issued:
    """A private key and its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, cert_file: Path, key_file: Path) -> None:
        """Write the certificate (PEM, 0644) and the key (PKCS#8 PEM, 0600, new file only)."""
        cert_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        cert_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        write_private_key(key_file, self.key)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(cn: str, *, now: datetime, valid_for: timedelta) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def _leaf(
    ca: Issued,
    cn: str,
    *,
    now: datetime,
    valid_for: timedelta,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + valid_for, ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def issue_server(
    ca: Issued, hosts: tuple[str, ...], *, now: datetime, valid_for: timedelta
) -> Issued:
    """A broker certificate: CN = the first host, every host (DNS name or IP) in the SAN."""
    if not hosts:
        raise ValueError("a server certificate names at least one host")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return _leaf(
        ca,
        hosts[0],
        now=now,
        valid_for=valid_for,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=names,
    )


def issue_client(ca: Issued, broker_user: str, *, now: datetime, valid_for: timedelta) -> Issued:
    """A node's client certificate: CN = its broker user (the broker logs it in as that user)."""
    return _leaf(
        ca,
        broker_user,
        now=now,
        valid_for=valid_for,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        names=[],
    )
