"""
Certificates made by the tests: a CA of their own, the certificates it
issues (for host names or IP addresses, valid or expired), and self-signed
ones, written as PEM files for p2pd's --tls-* options.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_NOW = datetime.datetime.now(datetime.timezone.utc)
_DAY = datetime.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


class Issued:
    """
    A certificate and its key, as PEM files.
    """

    def __init__(self, certFile: str, keyFile: str) -> None:
        self.certFile = certFile
        self.keyFile = keyFile

    @property
    def options(self) -> list[str]:
        """
        The node options serving this certificate.
        """
        return ["--tls-cert", self.certFile, "--tls-key", self.keyFile]


class CA:
    """
    A certificate authority of the test's, in C{directory}.
    """

    def __init__(self, directory: str, name: str = "p2pd test CA") -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self._key = _key()
        self._name = _name(name)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - _DAY)
            .not_valid_after(_NOW + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(self._key, hashes.SHA256())
        )
        self.certFile = _write(
            os.path.join(directory, f"{name.replace(' ', '-')}.pem"),
            self.certificate.public_bytes(serialization.Encoding.PEM),
        )

    def issue(self, *names: str, expired: bool = False, label: str = "") -> Issued:
        """
        A certificate for C{names} (host names or IP addresses), valid now
        unless C{expired}; its files are named after C{label} or the first
        name.
        """
        key = _key()
        notAfter = _NOW - _DAY if expired else _NOW + 30 * _DAY
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_NOW - 2 * _DAY)
            .not_valid_after(notAfter)
            .add_extension(_san(names), False)
            .sign(self._key, hashes.SHA256())
        )
        base = os.path.join(self.directory, label or names[0])
        return Issued(
            _write(base + ".crt", certificate.public_bytes(serialization.Encoding.PEM)),
            _write(base + ".key", _keyPEM(key)),
        )


def selfSigned(directory: str, *names: str) -> Issued:
    """
    A certificate for C{names} signed by its own key: no CA vouches for it.
    """
    os.makedirs(directory, exist_ok=True)
    key = _key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(_name(names[0]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - _DAY)
        .not_valid_after(_NOW + 30 * _DAY)
        .add_extension(_san(names), False)
        .sign(key, hashes.SHA256())
    )
    base = os.path.join(directory, f"self-{names[0]}")
    return Issued(
        _write(base + ".crt", certificate.public_bytes(serialization.Encoding.PEM)),
        _write(base + ".key", _keyPEM(key)),
    )
