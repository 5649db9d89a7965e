"""TLS of the plugin and the server (docs/deploy.md "TLS"): one certificate
and key file each, checked the same way.

- :func:`check_key_file` — a private key must be readable by its user only
  (mode 0600 or stricter): a key others can read is refused, with the command
  that fixes it.
- :func:`dns_names` — the subjectAltName DNS entries of a certificate (read
  with ``cryptography``'s x509): the plugin accepts them as ``Host`` besides
  127.0.0.1 and localhost (SPEC §3: ``wss://lccp-ex.easemob.com:1040``).
- :func:`server_context` — an :class:`ssl.SSLContext` serving that pair, TLS
  1.2 at least.
- :func:`client_context` — a client's context trusting a given CA file (a
  bank's own CA) instead of the system's.

Every failure is a :class:`TlsError` whose message says what to do.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from cryptography import x509

__all__ = ["TlsError", "check_key_file", "client_context", "dns_names", "server_context"]


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message says what to do."""


def check_key_file(path: Path) -> None:
    """Refuse a key file that is missing or that group or others may read."""
    try:
        st = path.stat()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS key {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TlsError(f"the TLS key {path} is not a file")
    if st.st_mode & 0o077:
        raise TlsError(
            f"the TLS key {path} may be read by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"make it readable by its user only: chmod 600 {path}"
        )
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise TlsError(
            f"the TLS key {path} belongs to another user (uid {st.st_uid}); "
            f"give it to the user that runs kefu: chown $(id -u) {path}"
        )


def _certificate(cert: Path) -> x509.Certificate:
    try:
        data = cert.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS certificate {cert}: {exc.strerror}") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(f"{cert} is not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None


def dns_names(cert: Path) -> tuple[str, ...]:
    """The DNS names of the certificate's subjectAltName, lower-case, in order
    (the first certificate of the file: the server's own, before its chain)."""
    try:
        san = _certificate(cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(name.lower().rstrip(".") for name in san.value.get_values_for_type(x509.DNSName))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for ``cert`` (PEM, the chain after it) and ``key``."""
    check_key_file(key)
    _certificate(cert)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(
            f"cannot use the TLS certificate {cert} with the key {key} ({exc.reason or exc}): "
            "is the key the certificate's, in PEM and without a passphrase?"
        ) from None
    return ctx


def client_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A client's context: the system's CAs, or only those of ``ca_file``."""
    if ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot load the CA certificates of {ca_file}: {exc}") from None
