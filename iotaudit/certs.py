"""Certificates: loading PEM/DER, fingerprints and one row per distinct certificate.

Every certificate iotaudit meets (served by an endpoint, imported from a
bundle, held in a firmware trust store, or in the catalogue) becomes a row of
the ``certificates`` table built by :func:`certificates_frame`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from . import columns as c
from .errors import PemError

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (?P<label>[A-Z0-9 ]+)-----(?P<body>.*?)-----END (?P=label)-----", re.DOTALL
)
_BEGIN = re.compile(rb"-----BEGIN ")
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}


@contextlib.contextmanager
def tolerate_serial_zero() -> Iterator[None]:
    """Silence ``cryptography``'s warning about non-positive serial numbers, and only that.

    Starfield Services Root G2 carries serial number 0, which ``cryptography``
    reports with a deprecation warning whenever the certificate is parsed
    (RFC 5280 section 4.1.2.2 asks for a positive serial, but the certificate
    is in every trust store).  A scan must not spam it or, under
    ``-W error``, crash on it.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*serial number which wasn't positive.*")
        yield


def load_der_x509_certificate(der: bytes) -> x509.Certificate:
    """Parse one DER certificate, tolerating the quirks of real roots (see :func:`tolerate_serial_zero`)."""
    with tolerate_serial_zero():
        return x509.load_der_x509_certificate(der)


def load_pem_x509_certificates(data: bytes | str, source: str | Path = "<input>") -> list[x509.Certificate]:
    """Parse every ``CERTIFICATE`` block in PEM text, keeping their order.

    Text around the blocks (``openssl s_client`` noise, comments, ``subject=``
    lines) is ignored; blocks of other types (keys, CRLs) are skipped.

    Args:
        data: PEM text.
        source: Name of the file or stream, used in error messages.

    Returns:
        The certificates in the order they appear.

    Raises:
        PemError: naming ``source`` and the 1-based block number when a
            certificate block is not valid base64 or not a valid certificate,
            or when the input holds no certificate at all.
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    certs: list[x509.Certificate] = []
    blocks = list(_PEM_BLOCK.finditer(raw))
    for number, match in enumerate(blocks, start=1):
        if match.group("label") not in _CERT_LABELS:
            continue
        body = b"".join(match.group("body").split())
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError as err:
            raise PemError(source, number, f"invalid base64 in CERTIFICATE block ({err})") from err
        try:
            certs.append(load_der_x509_certificate(der))
        except ValueError as err:
            raise PemError(source, number, f"not a valid X.509 certificate ({err})") from err
    starts = {block.start() for block in blocks}
    stray = next((begin.start() for begin in _BEGIN.finditer(raw) if begin.start() not in starts), None)
    if stray is not None:
        # Numbered like the other blocks: one more than the complete blocks that end before it.
        number = 1 + sum(block.end() <= stray for block in blocks)
        raise PemError(source, number, "BEGIN line without a matching END line (truncated PEM?)")
    if not certs:
        raise PemError(source, None, "no PEM CERTIFICATE block found")
    return certs


def load_pem_file(path: str | Path) -> list[x509.Certificate]:
    """Read a PEM bundle from disk; see :func:`load_pem_x509_certificates`.

    Raises:
        PemError: when the file cannot be read or holds a bad block.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PemError(path, None, f"cannot read file ({err.strerror or err})") from err
    return load_pem_x509_certificates(data, path)


def cert_der(cert: x509.Certificate) -> bytes:
    """DER encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.DER)


def cert_pem(cert: x509.Certificate) -> str:
    """PEM encoding of ``cert`` as text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate DER (the whole-certificate fingerprint)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def cert_sha1(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-1 of the certificate DER (legacy whole-certificate pins)."""
    return cert.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - a fingerprint, not a signature


def spki_der(cert: x509.Certificate) -> bytes:
    """DER SubjectPublicKeyInfo of ``cert``."""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_sha256(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the SubjectPublicKeyInfo (survives re-issuance under another issuer)."""
    return hashlib.sha256(spki_der(cert)).hexdigest()


def spki_pin_from_hex(spki_hex: str) -> str:
    """``sha256/<base64>`` pin (OkHttp, Android network-security-config, TrustKit) from the hex digest."""
    return "sha256/" + base64.b64encode(bytes.fromhex(spki_hex)).decode("ascii")


def spki_pin(cert: x509.Certificate) -> str:
    """``sha256/<base64>`` SPKI pin of ``cert``."""
    return spki_pin_from_hex(spki_sha256(cert))


def common_name(name: x509.Name) -> str:
    """commonName, else the last organizationalUnitName, else the RFC 4514 string (Starfield Class 2 has no CN)."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME):
        attrs = name.get_attributes_for_oid(oid)
        if attrs:
            value = attrs[-1].value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string() or "(empty name)"


def _key_facts(cert: x509.Certificate) -> tuple[str, int, str]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return c.KeyType.OTHER.value, 0, ""
    if isinstance(key, rsa.RSAPublicKey):
        return c.KeyType.RSA.value, key.key_size, ""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return c.KeyType.EC.value, key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return c.KeyType.ED25519.value, 256, ""
    if isinstance(key, ed448.Ed448PublicKey):
        return c.KeyType.ED448.value, 456, ""
    if isinstance(key, dsa.DSAPublicKey):
        return c.KeyType.DSA.value, key.key_size, ""
    return c.KeyType.OTHER.value, 0, ""


def key_type(cert: x509.Certificate) -> str:
    """The ``key_type`` value (``rsa``, ``ec``, ...) of ``cert``'s public key."""
    return _key_facts(cert)[0]


def is_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s public key verifies ``cert``'s signature.

    Accepts any signature hash, SHA-1 included: this answers "who signed this",
    not "is this signature acceptable" (the path validator decides that).
    """
    if cert.issuer != issuer.subject:
        return False
    try:
        key = issuer.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, (padding.PKCS1v15, padding.PSS)):
                pad = padding.PKCS1v15()
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # a malformed extension elsewhere in the list
        return None


def _signature_algorithm_name(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    return getattr(oid, "_name", None) or oid.dotted_string


def certificate_record(cert: x509.Certificate) -> dict[str, Any]:
    """One ``certificates`` row (see :data:`iotaudit.columns.CERTIFICATE_DTYPES`) for ``cert``.

    Catalogue columns are left empty; :func:`iotaudit.catalog.Catalog.label_frame` fills them.
    """
    with tolerate_serial_zero():
        return _certificate_record(cert)


def _certificate_record(cert: x509.Certificate) -> dict[str, Any]:
    kt, size, curve = _key_facts(cert)
    bc = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    ski = _extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    aki = _extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    san = _extension(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    san_values: list[str] = []
    if san is not None:
        san_values = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        san_values += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    spki_hex = spki_sha256(cert)
    return {
        c.SHA256: cert_sha256(cert),
        c.SPKI_SHA256: spki_hex,
        c.SPKI_PIN: spki_pin_from_hex(spki_hex),
        c.SUBJECT: cert.subject.rfc4514_string(),
        c.ISSUER: cert.issuer.rfc4514_string(),
        c.SUBJECT_CN: common_name(cert.subject),
        c.ISSUER_CN: common_name(cert.issuer),
        c.SERIAL: format(cert.serial_number, "x") if cert.serial_number >= 0 else "-" + format(-cert.serial_number, "x"),
        c.NOT_BEFORE: cert.not_valid_before_utc,
        c.NOT_AFTER: cert.not_valid_after_utc,
        c.KEY_TYPE: kt,
        c.KEY_SIZE: size,
        c.CURVE: curve,
        c.SIGNATURE_ALGORITHM: _signature_algorithm_name(cert),
        c.IS_CA: bool(bc.ca) if bc is not None else False,
        c.PATH_LENGTH: bc.path_length if bc is not None else None,
        c.SELF_SIGNED: is_signed_by(cert, cert),
        c.SKI: ski.digest.hex() if ski is not None else "",
        c.AKI: aki.key_identifier.hex() if aki is not None and aki.key_identifier else "",
        c.SAN: san_values,
        c.CATALOG_NAME: "",
        c.CATALOG_MATCH: "",
        c.CATALOG_STATUS: "",
        c.PEM: cert_pem(cert),
    }


def certificates_frame(certs: Iterable[x509.Certificate]):  # -> pd.DataFrame
    """One row per distinct certificate (by SHA-256 of the DER), first occurrence kept.

    Returns:
        A DataFrame with the columns and dtypes of :data:`iotaudit.columns.CERTIFICATE_DTYPES`.
    """
    seen: dict[str, dict[str, Any]] = {}
    for cert in certs:
        fp = cert_sha256(cert)
        if fp not in seen:
            seen[fp] = certificate_record(cert)
    return c.typed_frame(seen.values(), c.CERTIFICATE_DTYPES)
