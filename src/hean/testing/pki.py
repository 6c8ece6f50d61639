"""Per-run PKI for the local control plane, made with the ``cryptography`` library.

Everything is generated fresh for every :class:`~hean.testing.controlplane.ControlPlane`
run and written as PEM files into one directory:

========================  ==========================================================
``ca.crt`` / ``ca.key``   the cluster CA (signs every certificate below; it is the
                          apiserver's ``--client-ca-file`` and kcm's ``--root-ca-file``)
``apiserver.crt/.key``    serving certificate, SANs 127.0.0.1, localhost, 10.0.0.1,
                          kubernetes, kubernetes.default, kubernetes.default.svc,
                          kubernetes.default.svc.cluster.local
``admin.crt/.key``        client certificate CN=hean-admin, O=system:masters
``kcm.crt/.key``          client certificate CN=system:kube-controller-manager
``sa.key`` / ``sa.pub``   RSA key pair that signs / verifies service-account tokens
========================  ==========================================================

Certificates use ECDSA P-256 keys (fast to generate); the service-account key is RSA
2048 as Kubernetes expects for ``--service-account-signing-key-file``.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVING_DNS_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS: tuple[str, ...] = ("127.0.0.1", "10.0.0.1")

_VALIDITY = _dt.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    """A certificate (or public key) and its private key, as PEM bytes and file paths."""

    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(cn: str, orgs: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class PKI:
    """Generate a CA and the certificates the control plane needs into ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        now = _dt.datetime.now(_dt.timezone.utc)
        self._not_before = now - _dt.timedelta(hours=1)
        self._not_after = now + _VALIDITY

        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("hean-local-ca")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key()), critical=False
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self._ca_cert = ca_cert
        self.ca = self._store("ca", ca_cert, self._ca_key)

        self.apiserver = self.issue(
            "apiserver",
            "kube-apiserver",
            server=True,
            dns_names=SERVING_DNS_NAMES,
            ip_addresses=SERVING_IPS,
        )
        self.admin = self.issue("admin", "hean-admin", orgs=("system:masters",))
        self.kcm = self.issue("kcm", "system:kube-controller-manager")

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_pub = sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        sa_priv = _key_pem(sa_key)
        _write(self.directory / "sa.pub", sa_pub)
        _write(self.directory / "sa.key", sa_priv, private=True)
        self.service_account = KeyPair(
            sa_pub, sa_priv, self.directory / "sa.pub", self.directory / "sa.key"
        )

    # -- public helpers -----------------------------------------------------------
    def issue(
        self,
        basename: str,
        common_name: str,
        *,
        orgs: Sequence[str] = (),
        server: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> KeyPair:
        """Issue a client (default) or server certificate signed by the CA and write
        ``<basename>.crt`` / ``<basename>.key``."""
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, orgs))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self._not_before)
            .not_valid_after(self._not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self._ca_key, hashes.SHA256())
        return self._store(basename, cert, key)

    def _store(self, basename: str, cert: x509.Certificate, key) -> KeyPair:
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = _key_pem(key)
        cp, kp = self.directory / f"{basename}.crt", self.directory / f"{basename}.key"
        _write(cp, cert_pem)
        _write(kp, key_pem, private=True)
        return KeyPair(cert_pem, key_pem, cp, kp)


def self_signed_cert(
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 365,
) -> tuple[bytes, bytes]:
    """A self-signed serving certificate (PEM cert, PEM key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    name = _name(common_name)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(hours=1))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_pki(directory: str | Path) -> PKI:
    """Create a fresh :class:`PKI` in ``directory``."""
    return PKI(directory)


__all__ = [
    "KeyPair", "PKI", "SERVING_DNS_NAMES", "SERVING_IPS", "generate_pki", "self_signed_cert",
]
