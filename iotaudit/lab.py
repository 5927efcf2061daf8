"""The loopback lab: AWS-IoT-like endpoints on 127.0.0.1 with a lab PKI of the same shape.

No machine here reaches AWS, so the lab mirrors what AWS IoT Core serves
(AWS IoT Core developer guide, "Server Authentication"): lab copies of Amazon
Root CA 1-4, Starfield Services Root G2, Starfield Class 2 and VeriSign Class 3
G5; the Amazon roots cross-signed by the Starfield Services root, which is in
turn cross-signed by Starfield Class 2; RSA and ECDSA intermediates; and
dual-certificate endpoints where one :class:`ssl.SSLContext` holds an RSA and
an ECDSA chain, OpenSSL choosing by the client's offer.  Every lab
certificate says so in its subject (``O=iotaudit LAB - not a real CA``, CN
suffixed ``(iotaudit lab)``) so no report can confuse it with a real root.

CA identities are stable: the CA keys are committed in ``data/lab/keys`` and
every CA certificate has fixed dates and serial numbers and a deterministic
signature (RSA PKCS#1 v1.5; ECDSA with RFC 6979 deterministic nonces), so
pins of lab CAs (``data/lab/IDENTITIES.md``) hold at every start and on every
machine.  Only the leaves (and the lab client certificate) are issued
relative to the lab's ``as_of``.

Entry points: :class:`Lab` (context manager, used by the tests),
:func:`serve_in_background` / :func:`stop` (``iotaudit lab serve`` /
``iotaudit lab stop``), :func:`main` (``python -m iotaudit.lab``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from .certs import cert_pem, cert_sha256, spki_pin
from .columns import EndpointType
from .discover import ALPN_MQTT, LAB_FORMAT, Target
from .errors import IotauditError, LabError

__all__ = [
    "DEFAULT_REGIONS",
    "LAB_ORGANIZATION",
    "Lab",
    "LabError",
    "LabPki",
    "generate_lab_keys",
    "lab_ca_certificates",
    "lab_catalog",
    "lab_data_directory",
    "lab_pki",
    "main",
    "read_ports_file",
    "register",
    "serve_in_background",
    "stop",
    "write_identities",
]

FORMAT = LAB_FORMAT  # what iotaudit.discover.read_lab_ports (collect --lab) accepts
PORTS_FILE = "lab.json"
LOG_FILE = "lab.log"
DEFAULT_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1")
LAB_ORGANIZATION = "iotaudit LAB - not a real CA"
LAB_SUFFIX = " (iotaudit lab)"
LOOPBACK = "127.0.0.1"  # the lab never listens anywhere else

# How long the servers keep a connection that stays open after the handshake,
# and how long a hostile endpoint keeps a client it is stalling.  Clients
# close long before; the bound only stops a forgotten socket living forever.
HOLD_SECONDS = 120.0
HANDSHAKE_TIMEOUT_SECONDS = 60.0
DRIP_INTERVAL_SECONDS = 0.5
GARBAGE = b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
# A TLS handshake record header announcing 16384 bytes (RFC 8446 section 5.1),
# then zeros: it looks like TLS and never completes.
DRIP = b"\x16\x03\x03\x40\x00"

LEAF_LIFETIME = timedelta(days=395)       # ~13 months, like AWS-issued server certificates
LEAF_BACKDATE = timedelta(days=30)
EXPIRING_LEAF_LEFT = timedelta(days=20)   # the "leaf-expiring" case: < 30 days left


# --------------------------------------------------------------------------
# Lab PKI
# --------------------------------------------------------------------------

def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class _KeySpec:
    """One fixed lab key: file stem and algorithm (``rsa2048``, ``rsa4096``, ``p256``, ``p384``)."""

    stem: str
    algorithm: str

    def __post_init__(self) -> None:
        if self.algorithm not in {"rsa2048", "rsa4096", "p256", "p384"}:
            raise LabError(self.stem, f"unknown key algorithm {self.algorithm!r}")


@dataclass(frozen=True, slots=True)
class _CaSpec:
    """One deterministic lab CA certificate.

    The subject is ``C=US, O=<LAB_ORGANIZATION>, CN=<common_name> (iotaudit lab)``;
    a cross-sign has the subject and key of ``subject_of`` and is issued by ``issuer``.
    """

    name: str                 # catalogue entry name (same as data/aws-ca/catalog.json where one exists)
    display_name: str
    common_name: str          # the real CA's commonName ("Certification Authority" shortened to "CA"
                              # where the lab suffix would pass the 64-character ub-common-name of RFC 5280)
    key: str                  # key stem
    issuer: str | None        # catalogue name of the issuing CA; None = self-signed
    not_before: datetime
    not_after: datetime
    role: CatalogRole
    status: CatalogStatus
    path_length: int | None = None
    in_catalog: bool = True
    hash_name: str = "sha256"

    def __post_init__(self) -> None:
        if self.not_after <= self.not_before:
            raise LabError(self.name, "not_after must be later than not_before")

    @property
    def serial(self) -> int:
        """Fixed positive serial (RFC 5280 section 4.1.2.2: positive, at most 20 octets)."""
        digest = hashlib.sha256(f"iotaudit-lab-ca:{self.name}".encode()).digest()
        return int.from_bytes(digest[:16], "big") | 1


_KEYS: tuple[_KeySpec, ...] = (
    _KeySpec("amazon-root-ca-1", "rsa2048"),
    _KeySpec("amazon-root-ca-2", "rsa4096"),
    _KeySpec("amazon-root-ca-3", "p256"),
    _KeySpec("amazon-root-ca-4", "p384"),
    _KeySpec("sfs-root-g2", "rsa2048"),
    _KeySpec("starfield-class2", "rsa2048"),
    _KeySpec("verisign-class3-g5", "rsa2048"),
    _KeySpec("amazon-server-ca-1b", "rsa2048"),
    _KeySpec("amazon-rsa-2048-m01", "rsa2048"),
    _KeySpec("amazon-rsa-2048-m02", "rsa2048"),
    _KeySpec("amazon-rsa-2048-m03", "rsa2048"),
    _KeySpec("amazon-rsa-2048-m04", "rsa2048"),
    _KeySpec("amazon-ecdsa-256-m01", "p256"),
    _KeySpec("amazon-ecdsa-256-m02", "p256"),
    _KeySpec("amazon-rsa-4096-m01", "rsa4096"),
    _KeySpec("amazon-ecdsa-384-m01", "p384"),
    _KeySpec("symantec-class3-ecc256-g2", "p256"),
    _KeySpec("client-ca", "p256"),
    _KeySpec("leaf-rsa", "rsa2048"),   # every RSA leaf (different certificates, one key)
    _KeySpec("leaf-ec", "p256"),       # every ECDSA leaf
    _KeySpec("client", "p256"),        # the lab device's client certificate
)

_R, _X, _I = CatalogRole.ROOT, CatalogRole.CROSS_SIGNED, CatalogRole.INTERMEDIATE
_IN_USE, _RESERVED, _LEGACY = CatalogStatus.IN_USE, CatalogStatus.RESERVED, CatalogStatus.LEGACY
_SIGNER, _ISSUING = CatalogStatus.CROSS_SIGNER, CatalogStatus.ISSUING_CA
_INTERMEDIATE_FROM, _INTERMEDIATE_TO = _utc(2022, 8, 23), _utc(2030, 8, 23, 0, 0, 0)

# Dates follow the real certificates (data/aws-ca) where one exists, so expiry
# timelines look real: Amazon Root CA 1 to 2038-01-17, 2-4 to 2040-05-26,
# Starfield Services Root G2 to 2037-12-31 (cross-signs too), Starfield Class 2
# to 2034-06-29, VeriSign G5 to 2036-07-16, M01-M04 2022-08-23..2030-08-23,
# Amazon Server CA 1B ended 2025-10-19.  Issuers come before what they issue.
_CAS: tuple[_CaSpec, ...] = (
    _CaSpec("StarfieldClass2CA", "Starfield Class 2 Certification Authority (lab)",
            "Starfield Class 2 Certification Authority", "starfield-class2", None,
            _utc(2004, 6, 29, 17, 39, 16), _utc(2034, 6, 29, 17, 39, 16), _R, _SIGNER),
    _CaSpec("SFSRootCAG2", "Starfield Services Root Certificate Authority - G2 (lab)",
            "Starfield Services Root CA - G2", "sfs-root-g2", None,
            _utc(2009, 9, 1), _utc(2037, 12, 31, 23, 59, 59), _R, _SIGNER),
    _CaSpec("VeriSignClass3G5", "VeriSign Class 3 Public Primary Certification Authority - G5 (lab)",
            "VeriSign Class 3 Public Primary CA - G5", "verisign-class3-g5", None,
            _utc(2006, 11, 8), _utc(2036, 7, 16, 23, 59, 59), _R, _LEGACY),
    _CaSpec("AmazonRootCA1", "Amazon Root CA 1 (lab)", "Amazon Root CA 1", "amazon-root-ca-1", None,
            _utc(2015, 5, 26), _utc(2038, 1, 17), _R, _IN_USE),
    _CaSpec("AmazonRootCA2", "Amazon Root CA 2 (lab)", "Amazon Root CA 2", "amazon-root-ca-2", None,
            _utc(2015, 5, 26), _utc(2040, 5, 26), _R, _RESERVED, hash_name="sha384"),
    _CaSpec("AmazonRootCA3", "Amazon Root CA 3 (lab)", "Amazon Root CA 3", "amazon-root-ca-3", None,
            _utc(2015, 5, 26), _utc(2040, 5, 26), _R, _IN_USE),
    _CaSpec("AmazonRootCA4", "Amazon Root CA 4 (lab)", "Amazon Root CA 4", "amazon-root-ca-4", None,
            _utc(2015, 5, 26), _utc(2040, 5, 26), _R, _RESERVED, hash_name="sha384"),
    _CaSpec("G2-RootCA1", "Amazon Root CA 1 (lab, cross-signed by Starfield Services Root G2)",
            "Amazon Root CA 1", "amazon-root-ca-1", "SFSRootCAG2",
            _utc(2015, 5, 25, 12, 0, 0), _utc(2037, 12, 31, 1, 0, 0), _X, _IN_USE),
    _CaSpec("G2-RootCA2", "Amazon Root CA 2 (lab, cross-signed by Starfield Services Root G2)",
            "Amazon Root CA 2", "amazon-root-ca-2", "SFSRootCAG2",
            _utc(2015, 5, 25, 12, 0, 0), _utc(2037, 12, 31, 1, 0, 0), _X, _RESERVED),
    _CaSpec("G2-RootCA3", "Amazon Root CA 3 (lab, cross-signed by Starfield Services Root G2)",
            "Amazon Root CA 3", "amazon-root-ca-3", "SFSRootCAG2",
            _utc(2015, 5, 25, 12, 0, 0), _utc(2037, 12, 31, 1, 0, 0), _X, _IN_USE),
    _CaSpec("G2-RootCA4", "Amazon Root CA 4 (lab, cross-signed by Starfield Services Root G2)",
            "Amazon Root CA 4", "amazon-root-ca-4", "SFSRootCAG2",
            _utc(2015, 5, 25, 12, 0, 0), _utc(2037, 12, 31, 1, 0, 0), _X, _RESERVED),
    _CaSpec("SFSRootCAG2-Class2", "Starfield Services Root G2 (lab, cross-signed by Starfield Class 2)",
            "Starfield Services Root CA - G2", "sfs-root-g2", "StarfieldClass2CA",
            _utc(2009, 9, 2), _utc(2034, 6, 28, 17, 39, 16), _X, _SIGNER),
    _CaSpec("AmazonServerCA1B", "Amazon Server CA 1B (lab, expired)", "Amazon Server CA 1B",
            "amazon-server-ca-1b", "AmazonRootCA1", _utc(2015, 10, 22), _utc(2025, 10, 19), _I, _ISSUING, 0),
    _CaSpec("AmazonRSA2048M01", "Amazon RSA 2048 M01 (lab)", "Amazon RSA 2048 M01", "amazon-rsa-2048-m01",
            "AmazonRootCA1", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonRSA2048M02", "Amazon RSA 2048 M02 (lab)", "Amazon RSA 2048 M02", "amazon-rsa-2048-m02",
            "AmazonRootCA1", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonRSA2048M03", "Amazon RSA 2048 M03 (lab)", "Amazon RSA 2048 M03", "amazon-rsa-2048-m03",
            "AmazonRootCA1", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonRSA2048M04", "Amazon RSA 2048 M04 (lab)", "Amazon RSA 2048 M04", "amazon-rsa-2048-m04",
            "AmazonRootCA1", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonECDSA256M01", "Amazon ECDSA 256 M01 (lab)", "Amazon ECDSA 256 M01", "amazon-ecdsa-256-m01",
            "AmazonRootCA3", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonECDSA256M02", "Amazon ECDSA 256 M02 (lab)", "Amazon ECDSA 256 M02", "amazon-ecdsa-256-m02",
            "AmazonRootCA3", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0),
    _CaSpec("AmazonRSA4096M01", "Amazon RSA 4096 M01 (lab, under reserved Root CA 2)", "Amazon RSA 4096 M01",
            "amazon-rsa-4096-m01", "AmazonRootCA2", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0,
            hash_name="sha384"),
    _CaSpec("AmazonECDSA384M01", "Amazon ECDSA 384 M01 (lab, under reserved Root CA 4)", "Amazon ECDSA 384 M01",
            "amazon-ecdsa-384-m01", "AmazonRootCA4", _INTERMEDIATE_FROM, _INTERMEDIATE_TO, _I, _ISSUING, 0,
            hash_name="sha384"),
    # Same name as the real catalogue's legacy intermediate and, like it, a
    # P-256 key certified by the RSA VeriSign G5 root.  The legacy endpoint
    # serves an RSA leaf under it, so iot:Data answers RSA suites only.
    _CaSpec("SymantecClass3ECC256G2", "Symantec Class 3 ECC 256 bit SSL CA - G2 (lab)",
            "Symantec Class 3 ECC 256 bit SSL CA - G2", "symantec-class3-ecc256-g2", "VeriSignClass3G5",
            _utc(2020, 5, 12), _utc(2030, 5, 11, 23, 59, 59), _I, _LEGACY, 0),
    # The lab client CA: not a server-authentication CA, so not in the catalogue.
    _CaSpec("LabClientCA", "iotaudit lab client CA", "iotaudit lab device client CA", "client-ca", None,
            _utc(2024, 1, 1), _utc(2044, 1, 1), _R, _SIGNER, in_catalog=False),
)

_CA_SPECS: dict[str, _CaSpec] = {spec.name: spec for spec in _CAS}

# Catalogue order: that of data/aws-ca/catalog.json, then the lab-only entries.
_CATALOG_ORDER = (
    "AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4", "SFSRootCAG2", "StarfieldClass2CA",
    "VeriSignClass3G5", "G2-RootCA1", "G2-RootCA2", "G2-RootCA3", "G2-RootCA4", "SFSRootCAG2-Class2",
    "AmazonServerCA1B", "AmazonRSA2048M01", "AmazonRSA2048M02", "AmazonRSA2048M03", "AmazonRSA2048M04",
    "AmazonECDSA256M01", "AmazonECDSA256M02", "SymantecClass3ECC256G2", "AmazonRSA4096M01", "AmazonECDSA384M01",
)

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384}


def lab_data_directory() -> Path:
    """Directory of the shipped lab data (``keys/``, ``IDENTITIES.md``): in the wheel, or ``data/lab``."""
    packaged = Path(__file__).parent / "_data" / "lab"
    if (packaged / "keys").is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "data" / "lab"


def _new_key(algorithm: str) -> Any:
    if algorithm.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(algorithm[3:]))
    return ec.generate_private_key(ec.SECP256R1() if algorithm == "p256" else ec.SECP384R1())


def generate_lab_keys(directory: str | Path | None = None, *, overwrite: bool = False) -> list[Path]:
    """Create the fixed lab private keys (PKCS#8 PEM, unencrypted) that are committed in ``data/lab/keys``.

    Run once by a maintainer; the lab only loads them.  Changing them changes
    every lab CA fingerprint and pin (regenerate ``IDENTITIES.md`` and the sample inventory's pins).

    Args:
        directory: Where to write; default ``<lab data>/keys``.
        overwrite: Replace keys that already exist.

    Returns:
        The key files written.
    """
    directory = Path(directory) if directory is not None else lab_data_directory() / "keys"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in _KEYS:
        path = directory / f"{spec.stem}.key.pem"
        if path.exists() and not overwrite:
            continue
        pem = _new_key(spec.algorithm).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.write_bytes(pem)
        written.append(path)
    return written


@cache
def _load_key(stem: str) -> Any:
    path = _key_path(stem)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LabError(path, f"lab key missing ({err.strerror}); run iotaudit.lab.generate_lab_keys()") from err
    # The keys are our own committed files; skipping the slow RSA consistency check is safe here.
    return serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)


def _key_path(stem: str) -> Path:
    return lab_data_directory() / "keys" / f"{stem}.key.pem"


def _lab_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, LAB_ORGANIZATION),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name + LAB_SUFFIX),
    ])


def _sign(builder: x509.CertificateBuilder, key: Any, hash_name: str = "sha256") -> x509.Certificate:
    algorithm = _HASHES[hash_name]()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 6979 deterministic ECDSA: the same certificate bytes at every start.
        return builder.sign(key, algorithm, ecdsa_deterministic=True)
    return builder.sign(key, algorithm)  # RSA PKCS#1 v1.5 is deterministic


def _ski(public_key: Any) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _aki(issuer_key: Any) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(issuer_key.public_key()))


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)


@cache
def lab_ca_certificates() -> dict[str, x509.Certificate]:
    """Every lab CA certificate by catalogue name (plus ``LabClientCA``); identical at every call and start."""
    made: dict[str, x509.Certificate] = {}
    for spec in _CAS:
        key = _load_key(spec.key)
        issuer_spec = _CA_SPECS[spec.issuer] if spec.issuer else spec
        issuer_key = _load_key(issuer_spec.key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_lab_name(spec.common_name))
            .issuer_name(_lab_name(issuer_spec.common_name))
            .public_key(key.public_key())
            .serial_number(spec.serial)
            .not_valid_before(spec.not_before)
            .not_valid_after(spec.not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=spec.path_length), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(_ski(key.public_key()), critical=False)
        )
        if spec.issuer:  # RFC 5280 section 4.2.1.1: AKI may be omitted only in self-signed certificates
            builder = builder.add_extension(_aki(issuer_key), critical=False)
        if spec.role is CatalogRole.INTERMEDIATE:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
        made[spec.name] = _sign(builder, issuer_key, issuer_spec.hash_name)
    return made


def lab_catalog() -> Catalog:
    """The lab catalogue: same entry names, roles and statuses as ``data/aws-ca``, lab certificates."""
    certs = lab_ca_certificates()
    folder = {CatalogRole.ROOT: "root", CatalogRole.CROSS_SIGNED: "cross", CatalogRole.INTERMEDIATE: "intermediate"}
    specs = sorted((s for s in _CAS if s.in_catalog), key=lambda s: _CATALOG_ORDER.index(s.name))
    entries = [
        CatalogEntry(name=s.name, display_name=s.display_name, role=s.role, status=s.status,
                     certificate=certs[s.name], source=f"{folder[s.role]}/{s.name}.pem")
        for s in specs
    ]
    return Catalog(entries, kind="lab")


def write_identities(path: str | Path | None = None) -> Path:
    """Write the table of lab CA fingerprints and SPKI pins (``data/lab/IDENTITIES.md`` by default).

    Returns:
        The file written.
    """
    path = Path(path) if path is not None else lab_data_directory() / "IDENTITIES.md"
    certs = lab_ca_certificates()
    lines = [
        "# Lab CA identities",
        "",
        "Generated by `iotaudit.lab.write_identities()` from the committed lab keys in `keys/`.",
        "These are **lab** certificates (subject `O=" + LAB_ORGANIZATION + "`), never real roots.",
        "They are identical at every lab start, so inventories may pin them.",
        "",
        "| catalogue name | subject CN | SHA-256 (DER) | SPKI pin |",
        "|---|---|---|---|",
    ]
    for spec in _CAS:
        cert = certs[spec.name]
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        lines.append(f"| {spec.name} | {cn} | `{cert_sha256(cert)}` | `{spki_pin(cert)}` |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _leaf(issuer_name: str, key_stem: str, region: str, not_before: datetime, not_after: datetime) -> x509.Certificate:
    """A server leaf for ``*.iot.<region>.amazonaws.com`` issued by lab CA ``issuer_name``."""
    spec = _CA_SPECS[issuer_name]
    key = _load_key(key_stem)
    issuer_key = _load_key(spec.key)
    usage_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, LAB_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, f"*.iot.{region}.amazonaws.com"),
        ]))
        .issuer_name(_lab_name(spec.common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=usage_rsa, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(f"*.iot.{region}.amazonaws.com"), x509.DNSName(f"iot.{region}.amazonaws.com"),
        ]), critical=False)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(_aki(issuer_key), critical=False)
    )
    return _sign(builder, issuer_key, spec.hash_name)


def _client_certificate(not_before: datetime, not_after: datetime) -> x509.Certificate:
    ca_spec = _CA_SPECS["LabClientCA"]
    key = _load_key("client")
    ca_key = _load_key(ca_spec.key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_lab_name("iotaudit-lab-device"))
        .issuer_name(_lab_name(ca_spec.common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(_aki(ca_key), critical=False)
    )
    return _sign(builder, ca_key)


@dataclass(frozen=True, slots=True)
class LabPki:
    """The lab's certificates at one ``as_of``.

    Attributes:
        as_of: The time the leaves were issued relative to (tz-aware UTC).
        cas: Every CA certificate by catalogue name (deterministic, see :func:`lab_ca_certificates`).
        leaves: Server leaves by ``(kind, region)``; kinds ``rsa``, ``ec``, ``legacy``, ``rsa-expiring``,
            ``ec-expiring``, ``rsa-future``, ``ec-future``, ``rsa-expired-intermediate``.
        client_certificate: The lab device certificate (issued by ``LabClientCA``).
    """

    as_of: datetime
    cas: Mapping[str, x509.Certificate] = field(repr=False)
    leaves: Mapping[tuple[str, str], x509.Certificate] = field(repr=False)
    client_certificate: x509.Certificate = field(repr=False)

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise LabError("as_of", "must be a tz-aware UTC datetime")


# Leaf kind -> (issuing lab CA, leaf key stem)
_LEAF_KINDS: dict[str, tuple[str, str]] = {
    "rsa": ("AmazonRSA2048M01", "leaf-rsa"),
    "ec": ("AmazonECDSA256M01", "leaf-ec"),
    "legacy": ("SymantecClass3ECC256G2", "leaf-rsa"),
    "rsa-expiring": ("AmazonRSA2048M02", "leaf-rsa"),
    "ec-expiring": ("AmazonECDSA256M02", "leaf-ec"),
    "rsa-future": ("AmazonRSA4096M01", "leaf-rsa"),
    "ec-future": ("AmazonECDSA384M01", "leaf-ec"),
    "rsa-expired-intermediate": ("AmazonServerCA1B", "leaf-rsa"),
}
_REGION_KINDS = ("rsa", "ec", "legacy")


def lab_pki(as_of: datetime, regions: Sequence[str] = DEFAULT_REGIONS) -> LabPki:
    """Issue the lab's leaves for ``regions`` at ``as_of`` (the bad-case leaves for the first region).

    Args:
        as_of: tz-aware time the leaves are valid at (13-month leaves backdated 30 days;
            the ``*-expiring`` leaves have 20 days left).
        regions: AWS region names; the leaves carry ``*.iot.<region>.amazonaws.com``.
    """
    if as_of.tzinfo is None:
        raise LabError("as_of", "must be a tz-aware UTC datetime")
    if not regions:
        raise LabError("regions", "at least one region is needed")
    now = as_of.astimezone(timezone.utc).replace(microsecond=0)
    start, end = now - LEAF_BACKDATE, now - LEAF_BACKDATE + LEAF_LIFETIME
    leaves: dict[tuple[str, str], x509.Certificate] = {}
    for region in regions:
        for kind in _REGION_KINDS:
            issuer, key = _LEAF_KINDS[kind]
            leaves[(kind, region)] = _leaf(issuer, key, region, start, end)
    first = regions[0]
    for kind, (issuer, key) in _LEAF_KINDS.items():
        if kind in _REGION_KINDS:
            continue
        if kind.endswith("-expiring"):
            leaves[(kind, first)] = _leaf(issuer, key, first, now + EXPIRING_LEAF_LEFT - LEAF_LIFETIME,
                                          now + EXPIRING_LEAF_LEFT)
        else:
            leaves[(kind, first)] = _leaf(issuer, key, first, start, end)
    return LabPki(as_of=now, cas=lab_ca_certificates(), leaves=leaves,
                  client_certificate=_client_certificate(start, end))


# --------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One lab endpoint: a case in a region, its chains (served order) and TLS options."""

    case: str
    region: str
    host: str
    endpoint_type: EndpointType
    chains: Mapping[str, tuple[x509.Certificate, ...]] = field(repr=False)  # "rsa"/"ec" -> leaf first
    alpn: tuple[str, ...] = ()
    client_auth: bool = False
    hostile: str = ""  # "", "silent", "garbage", "slow-drip", "refused"

    def __post_init__(self) -> None:
        if bool(self.hostile) == bool(self.chains):
            raise LabError(self.host, "an endpoint either serves chains or is hostile, not both")


def _host(case: str, region: str, ats: bool = True) -> str:
    return f"lab-{case}{'-ats' if ats else ''}.iot.{region}.amazonaws.com"


HOSTILE_CASES = ("silent", "garbage", "slow-drip", "refused")


def _endpoints(pki: LabPki, regions: Sequence[str], hostile: bool, extra_endpoints: int) -> list[_Endpoint]:
    ca, leaf = pki.cas, pki.leaves
    top = (ca["G2-RootCA1"], ca["SFSRootCAG2-Class2"])
    top_ec = (ca["G2-RootCA3"], ca["SFSRootCAG2-Class2"])
    ats = EndpointType.DATA_ATS

    def dual(region: str, rsa_leaf: str = "rsa", ec_leaf: str = "ec") -> dict[str, tuple[x509.Certificate, ...]]:
        # What a real ATS endpoint served: leaf <- intermediate <- Root CA issued by
        # Starfield Services G2 <- Starfield Services G2 issued by Starfield Class 2.
        return {
            "rsa": (leaf[(rsa_leaf, region)], ca[_LEAF_KINDS[rsa_leaf][0]], *top),
            "ec": (leaf[(ec_leaf, region)], ca[_LEAF_KINDS[ec_leaf][0]], *top_ec),
        }

    out: list[_Endpoint] = []
    for region in regions:
        out += [
            _Endpoint("ats-dual", region, _host("ats-dual", region), ats, dual(region)),
            _Endpoint("ats-mtls", region, _host("ats-mtls", region), ats, dual(region), client_auth=True),
            _Endpoint("ats-alpn", region, _host("ats-alpn", region), ats, dual(region), alpn=(ALPN_MQTT,)),
            # Legacy iot:Data endpoints did not serve the VeriSign G5 root.
            _Endpoint("legacy", region, _host("legacy", region, ats=False), EndpointType.DATA,
                      {"rsa": (leaf[("legacy", region)], ca["SymantecClass3ECC256G2"])}),
        ]
    first = regions[0]
    normal = dual(first)
    out += [
        _Endpoint("expired-intermediate", first, _host("expired-intermediate", first), ats,
                  {"rsa": (leaf[("rsa-expired-intermediate", first)], ca["AmazonServerCA1B"], *top)}),
        _Endpoint("missing-intermediate", first, _host("missing-intermediate", first), ats,
                  {kt: chain[:1] for kt, chain in normal.items()}),
        _Endpoint("out-of-order", first, _host("out-of-order", first), ats,
                  {kt: (chain[0], chain[2], chain[1]) for kt, chain in normal.items()}),
        _Endpoint("leaf-expiring", first, _host("leaf-expiring", first), ats,
                  dual(first, "rsa-expiring", "ec-expiring")),
        # A chain to the reserved roots, as AWS may serve one day: leaf <- intermediate,
        # anchored only by Amazon Root CA 2 (RSA 4096) / Root CA 4 (P-384).
        _Endpoint("future-roots", first, _host("future-roots", first), ats, {
            "rsa": (leaf[("rsa-future", first)], ca["AmazonRSA4096M01"]),
            "ec": (leaf[("ec-future", first)], ca["AmazonECDSA384M01"]),
        }),
    ]
    if hostile:
        out += [_Endpoint(case, first, _host(case, first), ats, {}, hostile=case) for case in HOSTILE_CASES]
    out += [
        _Endpoint("bench", first, _host(f"bench{n:02d}", first), ats, normal) for n in range(1, extra_endpoints + 1)
    ]
    return out


def _served(endpoint: _Endpoint) -> dict[str, list[str]]:
    return {kt: [cert_sha256(cert) for cert in chain] for kt, chain in endpoint.chains.items()}


# --------------------------------------------------------------------------
# Servers: one asyncio loop in a background thread
# --------------------------------------------------------------------------

LINGER_SECONDS = 2.0  # how long a failed handshake waits for the client to close first


class _Connection(asyncio.Protocol):
    """One accepted connection of a lab endpoint.

    TLS is driven here with :class:`ssl.SSLObject` over memory BIOs rather than
    asyncio's built-in ``ssl=`` support, because asyncio closes the socket on a
    failed handshake without flushing the alert OpenSSL wrote (CPython
    ``sslproto._fatal_error``); a real server sends it, e.g. handshake_failure
    (RFC 5246 section 7.2.2) or certificate_required (RFC 8446 section 6.2), and
    collectors classify probes by it.
    """

    def __init__(self, owner: _Servers, behaviour: str, context: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.behaviour = behaviour  # "tls", "silent", "garbage", "slow-drip"
        self.context = context
        self.transport: asyncio.Transport | None = None
        self.tls: ssl.SSLObject | None = None
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.handshaken = False
        self.failed = False
        self.dripped = 0
        self.timer: asyncio.TimerHandle | None = None
        # --latency-ms: what the client sends is handled, and what we send goes out, half the round trip late
        # (the first flight a whole round trip more: the TCP handshake before it). Queues keep the order.
        self.inbox: collections.deque[bytes] = collections.deque()
        self.outbox: collections.deque[Callable[[], None]] = collections.deque()
        self.first_read = True

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.owner.connections.add(self)
        loop = self.owner.loop
        bound = HANDSHAKE_TIMEOUT_SECONDS if self.behaviour == "tls" else HOLD_SECONDS
        self.timer = loop.call_later(bound, self.abort)
        if self.behaviour == "tls":
            assert self.context is not None
            self.tls = self.context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        elif self.behaviour == "slow-drip":
            self._drip()

    def data_received(self, data: bytes) -> None:
        delay = self.owner.latency / 2
        if not delay:
            self._received(data)
            return
        if self.first_read:
            self.first_read = False
            delay += self.owner.latency
        self.inbox.append(data)
        self.owner.loop.call_later(delay, lambda: self._received(self.inbox.popleft()))

    def _send(self, action: Callable[[], None]) -> None:
        """Do ``action`` (a write or a close) now, or half a round trip late under --latency-ms, in order."""
        if not self.owner.latency:
            action()
            return
        self.outbox.append(action)
        self.owner.loop.call_later(self.owner.latency / 2, lambda: self.outbox.popleft()())

    def _received(self, data: bytes) -> None:
        if self.behaviour == "garbage":
            if self.dripped == 0 and self.transport is not None:
                self.dripped = 1
                self.transport.write(GARBAGE)  # then keep the socket open until the client leaves
            return
        if self.behaviour != "tls" or self.tls is None or self.failed:
            return  # silent and slow-drip ignore what the client says; so does a failed handshake
        self.incoming.write(data)
        try:
            if not self.handshaken:
                self.tls.do_handshake()
                self.handshaken = True
                self._rearm(HOLD_SECONDS)
            while self.tls.read(65536):  # application data after the handshake: ignored
                pass
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            self._flush()
            return
        except ssl.SSLZeroReturnError:
            pass
        except (ssl.SSLError, OSError, ValueError):
            self._flush()  # the alert OpenSSL wrote goes out before the close
            self._linger()
            return
        # read() returned b"" (or raised SSLZeroReturnError): the client's close_notify.
        # Answer it, as RFC 8446 section 6.1 asks, then close.
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.tls.unwrap()
        self._flush()
        self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.owner.connections.discard(self)

    # -- helpers ------------------------------------------------------------
    def _flush(self) -> None:
        pending = self.outgoing.read()
        if pending:
            self._send(lambda: self._write(pending))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _rearm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.owner.loop.call_later(seconds, self.abort)

    def _drip(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(DRIP[self.dripped:self.dripped + 1] if self.dripped < len(DRIP) else b"\x00")
        self.dripped += 1
        self.owner.loop.call_later(DRIP_INTERVAL_SECONDS, self._drip)

    def _linger(self) -> None:
        """After a fatal alert: half-close and let the client close first.

        Closing at once while the client's next flight is still arriving makes
        the kernel answer with a TCP RST, which can overtake the alert on a busy
        machine; the client would then see a reset instead of handshake_failure.
        """
        self.failed = True
        self._send(self._half_close)

    def _half_close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._rearm(LINGER_SECONDS)
        else:
            self._close_now()

    def close(self) -> None:
        self._send(self._close_now)

    def _close_now(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()  # flushes what was written, then closes

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _Servers:
    """Every lab listener on one asyncio loop in a daemon thread.

    Non-blocking sockets: a silent or slow client costs a socket, never a
    thread, and every connection is bounded by a timer.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency  # seconds per simulated round trip (--latency-ms / 1000)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._quiet)
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._blocked: list[socket.socket] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="iotaudit-lab", daemon=True)
        self._thread.start()

    @staticmethod
    def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Clients resetting connections are the lab's daily business, not errors.
        if isinstance(context.get("exception"), OSError):
            return
        loop.default_exception_handler(context)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def start(self, endpoint: _Endpoint, context: ssl.SSLContext | None) -> int:
        """Start one endpoint's listener; returns its port."""
        if endpoint.hostile == "refused":
            # A bound socket that never listens: connect() gets a RST (ECONNREFUSED),
            # and no other process can take the port while the lab runs.
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            self._blocked.append(sock)
            return int(sock.getsockname()[1])
        behaviour = endpoint.hostile or "tls"
        server = self.run(self.loop.create_server(
            lambda: _Connection(self, behaviour, context), LOOPBACK, 0, backlog=1024))
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        await asyncio.sleep(0)

    def close(self) -> None:
        """Stop every listener and connection, then the loop and its thread."""
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        for sock in self._blocked:
            sock.close()
        if not self._thread.is_alive():
            self.loop.close()


def _server_context(endpoint: _Endpoint, directory: Path, client_ca: Path) -> ssl.SSLContext:
    """An SSLContext holding every chain of ``endpoint``; OpenSSL picks RSA or ECDSA by the client's offer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for kt, chain in endpoint.chains.items():
        # load_cert_chain sends the file's certificates in file order (leaf first):
        # that is how the out-of-order and missing-intermediate cases are served as written.
        path = directory / "served" / f"{endpoint.case}-{endpoint.region}-{kt}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(cert_pem(cert) for cert in chain), encoding="ascii")
        leaf_key = "leaf-rsa" if kt == "rsa" else "leaf-ec"
        context.load_cert_chain(path, _key_path(leaf_key))
    if endpoint.alpn:
        context.set_alpn_protocols(list(endpoint.alpn))
    if endpoint.client_auth:
        # Like AWS IoT on port 8883: a client certificate is required (RFC 8446 section 4.3.2).
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client_ca)
    return context


# --------------------------------------------------------------------------
# The Lab
# --------------------------------------------------------------------------

def _write_json_atomically(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_ports_file(path: str | Path) -> dict[str, Any]:
    """Read a lab ports file (``lab.json``, format ``iotaudit-lab/1``).

    Raises:
        LabError: when the file is missing, not JSON, or not a lab ports file.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LabError(path, f"not a readable lab ports file ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LabError(path, f"not a lab ports file (format must be {FORMAT!r})")
    return doc


def _targets_from_doc(doc: Mapping[str, Any]) -> list[Target]:
    return [
        Target(host=t["host"], port=int(t["port"]), address=t["address"], alpn=tuple(t["alpn"]),
               region=t["region"], endpoint_type=EndpointType(t["endpoint_type"]), label=t["label"])
        for t in doc["targets"]
    ]


class Lab:
    """The loopback lab, started on ``__enter__`` and stopped on ``__exit__``.

    Example::

        with Lab(tmp_path) as running:
            running.targets   # list[iotaudit.discover.Target], all on 127.0.0.1
            running.catalog   # the lab Catalog (same entry names as the real one)

    Args:
        directory: Where to write ``lab.json``, ``catalog/``, ``client/`` and the served chain files.
        regions: AWS region names; each gets ``ats-dual``, ``ats-mtls``, ``ats-alpn`` and ``legacy``;
            the bad and hostile cases go in the first region only.
        hostile: Add the ``silent``, ``garbage``, ``slow-drip`` and ``refused`` endpoints.
        extra_endpoints: Extra ``ats-dual``-like endpoints (``lab-benchNN-ats``), for benchmarks.
        as_of: Time the leaves are issued relative to; default: the time the lab starts.
        latency_ms: Simulated network round trip, applied server-side: each read is handled and each write
            sent ``latency_ms / 2`` late, the first read a whole ``latency_ms`` more (the TCP handshake it
            followed), so a TLS 1.2 handshake costs about 3 round trips as over a real network.
        process: Serve from a child process (``python -m iotaudit.lab``) so a benchmark's client
            and the servers use different cores; default: a thread of this process.

    Attributes:
        targets: One :class:`iotaudit.discover.Target` per endpoint (address ``127.0.0.1``,
            ``label`` = case name: ``ats-dual``, ``ats-mtls``, ``ats-alpn``, ``legacy``,
            ``expired-intermediate``, ``missing-intermediate``, ``out-of-order``, ``leaf-expiring``,
            ``future-roots``, ``silent``, ``garbage``, ``slow-drip``, ``refused``, ``bench``).
        served: Host -> {"rsa": [sha256, ...], "ec": [...]}: every certificate served, in served
            order, per server key type (``{}`` for the hostile cases); the same as in ``lab.json``.
        catalog: The lab :class:`iotaudit.catalog.Catalog` (``kind == "lab"``).
        pki: The lab's certificates (:class:`LabPki`), when serving in this process.
    """

    def __init__(self, directory: str | Path, *, regions: Sequence[str] = DEFAULT_REGIONS, hostile: bool = True,
                 extra_endpoints: int = 0, as_of: datetime | None = None, process: bool = False,
                 latency_ms: float = 0.0) -> None:
        if isinstance(regions, str):
            regions = [r for r in regions.split(",") if r]
        if not regions or any(not r or any(ch.isspace() or ch == "." for ch in r) for r in regions):
            raise LabError(directory, f"regions must be non-empty names without dots or spaces, got {regions!r}")
        if extra_endpoints < 0:
            raise LabError(directory, f"extra_endpoints must be >= 0, got {extra_endpoints}")
        if as_of is not None and as_of.tzinfo is None:
            raise LabError(directory, "as_of must be tz-aware (UTC)")
        if not latency_ms >= 0:
            raise LabError(directory, f"latency_ms must be >= 0, got {latency_ms!r}")
        self.latency_ms = float(latency_ms)
        self.directory = Path(directory).resolve()
        self.regions = tuple(regions)
        self.hostile = hostile
        self.extra_endpoints = extra_endpoints
        self.as_of = as_of
        self.process = process
        self.targets: list[Target] = []
        self.served: dict[str, dict[str, list[str]]] = {}
        self.catalog: Catalog = lab_catalog()
        self.pki: LabPki | None = None
        self._servers: _Servers | None = None
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def ports_file(self) -> Path:
        """``<directory>/lab.json``: what ``iotaudit collect --lab`` reads."""
        return self.directory / PORTS_FILE

    @property
    def catalog_directory(self) -> Path:
        """``<directory>/catalog``: the lab catalogue (``Catalog.from_directory`` reads it)."""
        return self.directory / "catalog"

    @property
    def client_certificate(self) -> Path:
        """PEM file of the lab device certificate the mTLS endpoints accept."""
        return self.directory / "client" / "cert.pem"

    @property
    def client_key(self) -> Path:
        """PEM file of the lab device private key."""
        return self.directory / "client" / "key.pem"

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Write the lab files and start every endpoint; ``lab.json`` appears once all listen.

        Raises:
            LabError: when the lab is already started or its keys are missing.
        """
        if self._servers is not None or self._child is not None:
            raise LabError(self.directory, "this lab is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.process:
            doc = serve_in_background(self.directory, regions=self.regions, hostile=self.hostile,
                                      extra_endpoints=self.extra_endpoints, as_of=self.as_of, _keep_handle=self,
                                      latency_ms=self.latency_ms)
        else:
            doc = self._start_here()
        self.targets = _targets_from_doc(doc)
        self.served = {t["host"]: t["served"] for t in doc["targets"]}

    def _start_here(self) -> dict[str, Any]:
        as_of = self.as_of or datetime.now(timezone.utc)
        self.pki = pki = lab_pki(as_of, self.regions)
        self.catalog.write_directory(self.catalog_directory,
                                     description=f"iotaudit loopback lab CAs ({LAB_ORGANIZATION}); not real CAs")
        self.client_certificate.parent.mkdir(parents=True, exist_ok=True)
        self.client_certificate.write_text(
            cert_pem(pki.client_certificate) + cert_pem(pki.cas["LabClientCA"]), encoding="ascii")
        self.client_key.write_bytes(_key_path("client").read_bytes())
        client_ca = self.directory / "client" / "ca.pem"
        client_ca.write_text(cert_pem(pki.cas["LabClientCA"]), encoding="ascii")

        endpoints = _endpoints(pki, self.regions, self.hostile, self.extra_endpoints)
        self._servers = servers = _Servers(latency=self.latency_ms / 1000.0)
        records = []
        try:
            for endpoint in endpoints:
                context = _server_context(endpoint, self.directory, client_ca) if endpoint.chains else None
                port = servers.start(endpoint, context)
                records.append({
                    "host": endpoint.host, "port": port, "address": LOOPBACK, "alpn": list(endpoint.alpn),
                    "region": endpoint.region, "endpoint_type": endpoint.endpoint_type.value,
                    "label": endpoint.case, "served": _served(endpoint),
                })
        except BaseException:
            self.close()
            raise
        doc = {
            "format": FORMAT,
            "pid": os.getpid(),
            "catalog_dir": str(self.catalog_directory),
            "client_certificate": str(self.client_certificate),
            "client_key": str(self.client_key),
            "targets": records,
        }
        _write_json_atomically(self.ports_file, doc)
        return doc

    def close(self) -> None:
        """Stop every endpoint and remove ``lab.json`` (the rest of the directory is kept)."""
        if self._child is not None:
            child, self._child = self._child, None
            stop(self.directory)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=10)
            if child.poll() is None:
                child.kill()
                child.wait()
        if self._servers is not None:
            servers, self._servers = self._servers, None
            servers.close()
            with contextlib.suppress(FileNotFoundError):
                doc = read_ports_file(self.ports_file)
                if doc.get("pid") == os.getpid():
                    self.ports_file.unlink()

    def target(self, label: str, region: str | None = None) -> Target:
        """The first target with this case ``label`` (in ``region`` if given).

        Raises:
            LabError: when the lab has no such endpoint.
        """
        for t in self.targets:
            if t.label == label and (region is None or t.region == region):
                return t
        raise LabError(self.directory, f"no endpoint labelled {label!r}" + (f" in {region}" if region else ""))


# --------------------------------------------------------------------------
# Background service: lab serve / lab stop
# --------------------------------------------------------------------------

def _child_command(directory: Path, regions: Sequence[str], hostile: bool, extra_endpoints: int,
                   as_of: datetime | None, latency_ms: float = 0.0) -> list[str]:
    cmd = [sys.executable, "-m", "iotaudit.lab", "--dir", str(directory), "--regions", ",".join(regions),
           "--extra-endpoints", str(extra_endpoints)]
    if latency_ms:
        cmd += ["--latency-ms", repr(float(latency_ms))]
    if not hostile:
        cmd.append("--no-hostile")
    if as_of is not None:
        cmd += ["--as-of", as_of.isoformat()]
    return cmd


def _is_lab_process(pid: int) -> bool | None:
    """True/False when ``/proc`` says whether ``pid`` runs the lab; None when it cannot tell."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    if stat.rpartition(")")[2].split()[:1] == ["Z"]:  # exited, not yet reaped
        return False
    args = [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]
    joined = " ".join(args)
    return "iotaudit.lab" in joined or (any(a.endswith("iotaudit") for a in args) and "lab" in args)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _is_lab_process(pid) is not False


def serve_in_background(directory: str | Path, *, regions: Sequence[str] = DEFAULT_REGIONS, hostile: bool = True,
                        extra_endpoints: int = 0, as_of: datetime | None = None, timeout: float = 60.0,
                        _keep_handle: Lab | None = None, latency_ms: float = 0.0) -> dict[str, Any]:
    """Start the lab in a detached ``python -m iotaudit.lab`` process and wait until it serves.

    Args:
        directory: Lab directory; the child writes ``lab.json`` there once every endpoint listens,
            and its output to ``lab.log``.
        regions, hostile, extra_endpoints, as_of, latency_ms: As for :class:`Lab`.
        timeout: Seconds to wait for the child's ``lab.json``.

    Returns:
        The ports document (``lab.json`` contents, with the child's ``pid``).

    Raises:
        LabError: when a lab already runs in ``directory``, or the child exits or times out first.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ports = directory / PORTS_FILE
    if ports.exists():
        with contextlib.suppress(LabError):
            old = read_ports_file(ports)
            if isinstance(old.get("pid"), int) and old["pid"] != os.getpid() and _alive(old["pid"]):
                raise LabError(directory, f"a lab already runs here (pid {old['pid']}); run 'iotaudit lab stop' first")
        ports.unlink(missing_ok=True)
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(directory / LOG_FILE, "wb") as log:
        child = subprocess.Popen(
            _child_command(directory, regions, hostile, extra_endpoints, as_of, latency_ms),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    if _keep_handle is not None:
        _keep_handle._child = child
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ports.exists():
            with contextlib.suppress(LabError):
                doc = read_ports_file(ports)
                if doc.get("pid") == child.pid:
                    return doc
        if child.poll() is not None:
            tail = (directory / LOG_FILE).read_text(errors="replace")[-2000:]
            raise LabError(directory, f"lab process exited with status {child.returncode}:\n{tail}")
        time.sleep(0.05)
    child.terminate()
    child.wait(timeout=10)
    raise LabError(directory, f"lab process did not write {PORTS_FILE} within {timeout:g} s")


def stop(directory: str | Path, *, timeout: float = 10.0) -> bool:
    """Stop the lab serving from ``directory`` (its ``lab.json`` names the pid) and remove ``lab.json``.

    A stale ``lab.json`` (process gone, or the pid now belongs to something
    that is not a lab) is removed without signalling anyone.

    Returns:
        True when a running lab process was stopped, False when there was nothing to stop.

    Raises:
        LabError: when ``lab.json`` exists but is not a lab ports file, or names another user's lab.
    """
    ports = Path(directory).resolve() / PORTS_FILE
    if not ports.exists():
        return False
    doc = read_ports_file(ports)
    pid = doc.get("pid")
    stopped = False
    if isinstance(pid, int) and pid > 0 and pid != os.getpid() and _alive(pid) and _is_lab_process(pid) is not False:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError as err:
            raise LabError(ports, f"lab process {pid} belongs to another user; stop it as that user") from err
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped = True
    ports.unlink(missing_ok=True)
    return stopped


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def _endpoint_table(doc: Mapping[str, Any]) -> str:
    rows = [("LABEL", "REGION", "TYPE", "TARGET", "SERVES")]
    for t in doc["targets"]:
        serves = "+".join(t["served"]) or "(hostile)"
        rows.append((t["label"], t["region"], t["endpoint_type"], f"{t['host']}:{t['port']}@{t['address']}", serves))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _parse_as_of(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise LabError("--as-of", f"{text!r} is not an ISO 8601 date or time") from err
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--latency-ms {text!r} is not a number of milliseconds") from err
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"--latency-ms {text!r} must be between 0 and 60000")
    return value


def _regions(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


def _serve_foreground(directory: Path, regions: Sequence[str], hostile: bool, extra_endpoints: int,
                      as_of: datetime | None, quiet: bool = False, latency_ms: float = 0.0) -> int:
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with Lab(directory, regions=regions, hostile=hostile, extra_endpoints=extra_endpoints, as_of=as_of,
                 latency_ms=latency_ms) as lab:
            if not quiet:
                print(f"lab serving {len(lab.targets)} endpoints on {LOOPBACK}; ports file: {lab.ports_file}")
                print(_endpoint_table(read_ports_file(lab.ports_file)), flush=True)
            while not done.wait(1.0):
                pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    regions = _regions(args.regions)
    as_of = _parse_as_of(getattr(args, "as_of", None))
    if args.foreground:
        return _serve_foreground(directory, regions, not args.no_hostile, args.extra_endpoints, as_of,
                                 latency_ms=args.latency_ms)
    doc = serve_in_background(directory, regions=regions, hostile=not args.no_hostile,
                              extra_endpoints=args.extra_endpoints, as_of=as_of, latency_ms=args.latency_ms)
    print(f"lab serving {len(doc['targets'])} endpoints on {LOOPBACK} (pid {doc['pid']})")
    print(f"ports file: {directory / PORTS_FILE}")
    print(f"catalogue:  {doc['catalog_dir']}")
    print(_endpoint_table(doc))
    print(f"stop it with: iotaudit lab stop --dir {args.dir}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if stop(directory):
        print(f"lab in {directory} stopped")
    else:
        print(f"no running lab in {directory} (stale or missing {PORTS_FILE} cleaned up)")
    return 0


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="lab", help="lab directory (lab.json, catalog/, client/); default ./lab")
    parser.add_argument("--regions", default=",".join(DEFAULT_REGIONS),
                        help="comma-separated regions (default %(default)s); bad cases go in the first")
    parser.add_argument("--extra-endpoints", type=int, default=0, metavar="N",
                        help="add N identical ats-dual endpoints lab-benchNN-ats (benchmarks)")
    parser.add_argument("--no-hostile", action="store_true",
                        help="leave out the silent, garbage, slow-drip and refused endpoints")
    parser.add_argument("--as-of", default=None, help="issue the leaves relative to this ISO time (default: now)")
    parser.add_argument("--latency-ms", type=_latency, default=0.0, metavar="N",
                        help="simulate an N ms network round trip: every read and write is delayed server-side "
                             "(N/2 each way, the first read N more for the TCP handshake); default 0")


def register(subparsers: Any) -> None:
    """Add ``iotaudit lab serve`` and ``iotaudit lab stop`` (see :mod:`iotaudit.cli`)."""
    lab = subparsers.add_parser(
        "lab", help="start/stop the loopback lab of AWS-IoT-like endpoints on 127.0.0.1",
        description="The loopback lab: AWS-IoT-like endpoints with lab certificates (marked "
                    f"'{LAB_ORGANIZATION}') on {LOOPBACK}, for tests and the demo.",
    )
    actions = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    serve = actions.add_parser("serve", help="start the lab in the background and write DIR/lab.json",
                               description="Start the lab (in the background unless --foreground); "
                                           "prints the ports file and the endpoint table.")
    _add_serve_options(serve)
    serve.add_argument("--foreground", action="store_true", help="serve in this process until Ctrl-C / SIGTERM")
    serve.set_defaults(func=_cmd_serve)
    halt = actions.add_parser("stop", help="stop the lab serving from DIR and remove DIR/lab.json")
    halt.add_argument("--dir", default="lab", help="lab directory; default ./lab")
    halt.set_defaults(func=_cmd_stop)
    lab.set_defaults(func=lambda args: (lab.print_help(), 2)[1])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m iotaudit.lab``: serve the lab in the foreground until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m iotaudit.lab", description=main.__doc__)
    _add_serve_options(parser)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    try:
        return _serve_foreground(Path(args.dir).resolve(), _regions(args.regions), not args.no_hostile,
                                 args.extra_endpoints, _parse_as_of(args.as_of), quiet=args.quiet,
                                 latency_ms=args.latency_ms)
    except IotauditError as err:
        print(f"iotaudit lab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
