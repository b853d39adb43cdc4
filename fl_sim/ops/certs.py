"""Throwaway TLS material for a deployment: a self-signed CA and a SuperLink server certificate.

Flower's SuperLink takes ``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``; SuperNodes,
SuperExecs and ``flwr`` trust the CA (``--root-certificates``). The CA key is never written:
nothing can sign further certificates after this call, which suits a test or a demo run.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Names the SuperLink is reached by: loopback, and the compose service name.
DEFAULT_SANS = ("localhost", "superlink", "127.0.0.1")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and the server certificate and key (PEM)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        """The file names Flower's Docker guide uses: ca.crt, server.pem, server.key."""
        return cls(directory / "ca.crt", directory / "server.pem", directory / "server.key")


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_certs(directory: Path, sans: tuple[str, ...] = DEFAULT_SANS, days: int = 30) -> TlsFiles:
    """Write ca.crt, server.pem and server.key (0600) for the given host names / IPs."""
    if not sans:
        raise ValueError("the server certificate needs at least one host name or IP address")
    files = TlsFiles.in_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("fl-sim throwaway CA"))
        .issuer_name(_name("fl-sim throwaway CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(sans[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_san(s) for s in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.touch(mode=0o600)
    os.chmod(files.key, 0o600)
    files.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files
