"""TLS for ``swaprtc serve``: browsers give the camera only to https pages (or localhost), so a
LAN install needs a certificate. Either the operator's files, or a throw-away self-signed one."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import tempfile
from pathlib import Path

from swaprtc.errors import SwapRTCError
from swaprtc.settings import Settings

log = logging.getLogger(__name__)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_self_signed:
        return self_signed_context(settings.host)
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise SwapRTCError("TLS needs both --tls-cert and --tls-key", code="bad_tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise SwapRTCError(
            f"cannot load the TLS certificate {settings.tls_cert} / key {settings.tls_key}: {exc}",
            code="bad_tls",
        ) from None
    return context


def certificate_names(host: str) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the certificate should cover for a server bound to ``host``."""
    dns = ["localhost", socket.gethostname()]
    ips = {"127.0.0.1", "::1"}
    if host not in ("", "0.0.0.0", "::"):
        try:
            ips.add(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    else:
        # Bound to every interface: cover this machine's own addresses, as a LAN browser uses them.
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                ips.add(str(info[4][0]))
        except OSError:
            pass
    return sorted(set(dns)), sorted(ips)


def self_signed_context(host: str, days: int = 30) -> ssl.SSLContext:
    """A fresh EC key and self-signed certificate. Python's ``ssl`` loads a key only from a file, so
    the PEM files exist for the instant ``load_cert_chain`` needs them, in a private (0700)
    temporary folder deleted right after. Browsers warn once; the fingerprint is logged so the
    operator can compare it with what the browser shows."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    dns, ips = certificate_names(host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "swaprtc self-signed")])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="swaprtc-tls-") as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context.load_cert_chain(str(cert_path), str(key_path))
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":").upper()
    log.info("self-signed TLS certificate for %s; SHA-256 fingerprint %s", ", ".join(dns + ips), fingerprint)
    return context
