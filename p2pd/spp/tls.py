# -*- test-case-name: tests.unit.test_tls,tests.integration.test_tls -*-
"""
TLS for SPP and HTTP: the certificate a node serves, and how it checks the
certificates of the nodes it dials (docs/security.md, TLS).

An origin serves the certificate for its name from files, reloaded when
asked (SIGHUP) for the connections that follow. A node without one serves a
self-signed certificate of its own, made once and kept in its cache
directory: its peers' connections are encrypted, and none of them is an
authority, so there is no name to prove.

A node dialing an C{spps://} origin, or a mirror that origin named,
verifies the certificate for the URL's host name with service-identity,
against the system's CAs or the operator's. A peer's certificate is not
checked: encryption only.
"""

import datetime
import os
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL.crypto import FILETYPE_PEM
from service_identity import VerificationError
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

# The first byte of a TLS ClientHello (a handshake record): what tells TLS
# from SPP and HTTP on the shared port.
TLS_FIRST_BYTE = b"\x16"
# Where a node keeps its own certificate and key, under its cache directory.
NODE_CERTIFICATE = os.path.join("tls", "node.pem")
# How long a node's own certificate is valid: nobody verifies it, so long.
NODE_CERTIFICATE_DAYS = 3650

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


class TLSFileError(ValueError):
    """
    A certificate, key or CA file that cannot be used.
    """


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSFileError(f"cannot read {path!r}: {e.strerror}") from None


def _certificates(path: str) -> list[Certificate]:
    """
    Every certificate of the PEM file at C{path}, in order.
    """
    blocks = _PEM_CERTIFICATE.findall(_read(path))
    if not blocks:
        raise TLSFileError(f"{path!r} holds no PEM certificate")
    try:
        return [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise TLSFileError(f"{path!r}: bad certificate: {e}") from None


def serverOptions(certFile: str, keyFile: str) -> CertificateOptions:
    """
    Server options from a PEM certificate file (the certificate, then any
    intermediates) and a PEM key file; checked now, so a bad pair fails
    here rather than at the first client.
    """
    chain = _certificates(certFile)
    pem = _read(keyFile)
    try:
        key = KeyPair.load(pem, FILETYPE_PEM)
    except Exception as e:
        raise TLSFileError(f"{keyFile!r}: bad private key: {e}") from None
    options = CertificateOptions(
        privateKey=key.original,
        certificate=chain[0].original,
        extraCertChain=[c.original for c in chain[1:]],
    )
    try:
        options.getContext()
    except SSL.Error as e:
        raise TLSFileError(
            f"{keyFile!r} is not the key of {certFile!r}: {e}"
        ) from None
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """
    The TLS context of a node's port, swapped for new connections on
    L{reload}; connections already open keep theirs.
    """

    _log = Logger()

    def __init__(self, certFile: str, keyFile: str) -> None:
        self.certFile = certFile
        self.keyFile = keyFile
        self._context = serverOptions(certFile, keyFile).getContext()

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)

    def reload(self) -> None:
        """
        Read the certificate and key again; on failure keep the old ones.
        """
        try:
            self._context = serverOptions(self.certFile, self.keyFile).getContext()
        except TLSFileError as e:
            self._log.error("TLS certificate not reloaded: {why}", why=str(e))
            return
        self._log.info("TLS certificate reloaded from {path}", path=self.certFile)


def nodeCertificate(cacheDir: str) -> str:
    """
    The path of this node's own certificate and key (one PEM file), made
    on first use: self-signed, for peers' encryption only.
    """
    path = os.path.join(cacheDir, NODE_CERTIFICATE)
    if os.path.exists(path):
        return path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p2pd node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=NODE_CERTIFICATE_DAYS))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    partial = path + ".new"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(partial, path)
    return path


class ClientTLS:
    """
    How a node's outgoing connections do TLS: an origin's certificate must
    chain to a CA of C{caFile}, or to one of the system's.
    """

    def __init__(self, caFile: str | None = None) -> None:
        if caFile is None:
            self.trust = platformTrust()
        else:
            self.trust = trustRootFromCertificates(_certificates(caFile))
        self._peers = CertificateOptions()

    def verifying(self, hostname: str) -> IOpenSSLClientConnectionCreator:
        """
        For an origin or a mirror: the certificate must be valid for
        C{hostname}.
        """
        creator: IOpenSSLClientConnectionCreator = optionsForClientTLS(
            hostname, trustRoot=self.trust
        )
        return creator

    def peer(self) -> CertificateOptions:
        """
        For a peer: encrypted, any certificate.
        """
        return self._peers


def whyLost(reason: Failure) -> str:
    """
    Why a connection ended, in words; a refused certificate said plainly.
    """
    if reason.check(VerificationError):
        return "TLS: the certificate is not valid for this host name"
    if isinstance(reason.value, SSL.Error):
        # pyOpenSSL's args: a list of (library, function, reason).
        errors = reason.value.args[0] if reason.value.args else []
        text = ", ".join(e[-1] for e in errors if isinstance(e, tuple)) or str(
            reason.value
        )
        if "certificate verify failed" in text:
            return (
                "TLS: the certificate was refused (expired, not yet valid, or "
                "not from a trusted CA)"
            )
        return f"TLS failed: {text}"
    return str(reason.value)
