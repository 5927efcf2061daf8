"""The values every firmware reader returns: :class:`Finding`, and name + key anchors.

A reader looks at one file (or one region of it) and returns findings; it
never decides what the profile's trust store is.  The package front
(:mod:`iotaudit.firmware`) labels findings with the catalogue, joins them
into one profile per scanned firmware, and writes the frames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from ..columns import FindingKind, KeyType, ScanFormat
from ..errors import ScanError
from . import _asn1

# Largest item a reader parses out of a byte window: a DER certificate is at most
# 4 + 65535 bytes with a two-byte length, an ESP bundle of 200 roots is about 120 KiB
# (ESP-IDF DEFAULT_CERT_BUNDLE_MAX_CERTS = 200, components/mbedtls/esp_crt_bundle/gen_crt_bundle.py).
MAX_ITEM = 1 << 20


@dataclass(frozen=True, slots=True)
class NameKeyAnchor:
    """A trust anchor that is only a subject name and a public key (an ESP-IDF bundle entry).

    Attributes:
        name_der: The DER subject Name, as stored.
        spki_der: The DER SubjectPublicKeyInfo, as stored.
    """

    name_der: bytes
    spki_der: bytes

    def __post_init__(self) -> None:
        try:
            _asn1.name_to_rfc4514(self.name_der)
        except ValueError as err:
            raise ScanError("<anchor>", None, f"subject name is not a DER Name ({err})") from err
        try:
            serialization.load_der_public_key(self.spki_der)
        except (ValueError, UnsupportedAlgorithm) as err:
            raise ScanError("<anchor>", None, f"key is not a DER SubjectPublicKeyInfo ({err})") from err

    @property
    def subject(self) -> str:
        """RFC 4514 subject string."""
        return _asn1.name_to_rfc4514(self.name_der)

    @property
    def subject_cn(self) -> str:
        """commonName, else last organizationalUnitName, else the whole name (as :func:`iotaudit.certs.common_name`)."""
        return _asn1.name_common_name(self.name_der)

    @property
    def spki_sha256(self) -> str:
        """SHA-256 of the key re-encoded as DER SPKI, exactly as :func:`iotaudit.certs.spki_sha256` hashes a certificate's key."""
        key = serialization.load_der_public_key(self.spki_der)
        canonical = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(canonical).hexdigest()

    @property
    def key_type(self) -> str:
        """The ``key_type`` value of the key."""
        key = serialization.load_der_public_key(self.spki_der)
        if isinstance(key, rsa.RSAPublicKey):
            return KeyType.RSA.value
        if isinstance(key, ec.EllipticCurvePublicKey):
            return KeyType.EC.value
        if isinstance(key, ed25519.Ed25519PublicKey):
            return KeyType.ED25519.value
        if isinstance(key, ed448.Ed448PublicKey):
            return KeyType.ED448.value
        if isinstance(key, dsa.DSAPublicKey):
            return KeyType.DSA.value
        return KeyType.OTHER.value


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a reader found (a certificate, an anchor, a pin, a setting, a skip or an error).

    Attributes:
        file: Path relative to the scanned root ("" for the root itself when it is a file: its name).
        offset: Byte offset in ``file`` (None when not a byte position).
        format: How it was stored.
        kind: What it is.
        line: 1-based line in a text file, or None.
        embedded_as: ELF symbol stem, C variable or macro name.
        container: "file@offset" of the store container it belongs to (one PEM file, bundle, blob).
        certificate: The certificate (kind ``certificate``).
        anchor: The name + key anchor (kind ``anchor``).
        tls_stack: For ``stack`` findings: the stack id the evidence points to ("" if it points to none).
        family: For ``stack`` findings: the library family (``mbedtls``, ``wolfssl``, ``esp-idf-bundle``...).
        evidence: Plain-words statement of what was found.
        detail: The reason of an error or skip, or more about the finding.
        pin: A pin in ``sha256/<base64>`` form (kind ``pin``).
        pin_expiry: When the pin set stops being enforced (tz-aware UTC), or None.
        ca_files: For ``config`` findings that name CA files: those files, relative to the root,
            as found in the scanned tree (empty if the named file is not in the tree).
        key_types: Key types (``rsa``, ``ecdsa``) the stack offers, when this finding tells.
        idf_version: ESP-IDF version this finding tells (e.g. ``5.2.1``), or "".
        setting: For ``config``/``stack`` findings: the setting name (``CONFIG_MBEDTLS_CERTIFICATE_BUNDLE``...).
        value: Its value as written.
    """

    file: str
    offset: int | None
    format: ScanFormat
    kind: FindingKind
    line: int | None = None
    embedded_as: str = ""
    container: str = ""
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)
    anchor: NameKeyAnchor | None = field(default=None, repr=False, compare=False)
    tls_stack: str = ""
    family: str = ""
    evidence: str = ""
    detail: str = ""
    pin: str = ""
    pin_expiry: datetime | None = None
    ca_files: tuple[str, ...] = ()
    key_types: tuple[str, ...] = ()
    idf_version: str = ""
    setting: str = ""
    value: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", ScanFormat(self.format))
        object.__setattr__(self, "kind", FindingKind(self.kind))
        if self.offset is not None and self.offset < 0:
            raise ScanError(self.file, self.offset, "a finding's offset cannot be negative")
        if self.kind is FindingKind.CERTIFICATE and self.certificate is None:
            raise ScanError(self.file, self.offset, "a certificate finding needs its certificate")
        if self.kind is FindingKind.ANCHOR and self.anchor is None:
            raise ScanError(self.file, self.offset, "an anchor finding needs its name and key")
        if self.pin_expiry is not None and self.pin_expiry.tzinfo is None:
            raise ScanError(self.file, self.offset, "pin_expiry must be tz-aware UTC")


def error(file: str, offset: int | None, fmt: ScanFormat, reason: str, *, line: int | None = None,
          embedded_as: str = "") -> Finding:
    """An ``error`` finding: something at ``file``/``offset`` could not be read, and why."""
    return Finding(file, offset, fmt, FindingKind.ERROR, line=line, embedded_as=embedded_as, detail=reason)


def container_id(file: str, offset: int | None) -> str:
    """The ``container`` value for a store that starts at ``offset`` of ``file``."""
    return f"{file}@{offset if offset is not None else 0}"
