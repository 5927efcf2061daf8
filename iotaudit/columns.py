"""Column names, enums and dtypes of every iotaudit table, in one place.

A newcomer looking for where a column is defined starts here; the module
that computes it is named in the comment beside each table.  Enum values are
the exact strings that appear in DataFrames, Parquet, JSON and HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

import pandas as pd

# Times are tz-aware UTC at microsecond resolution, not nanoseconds: RFC 5280
# section 4.1.2.5 lets a certificate say "no expiry" as 99991231235959Z, which
# is outside the datetime64[ns] range (year 2262).
TIME = "datetime64[us, UTC]"


class Probe(str, Enum):
    """One TLS handshake per target, restricted so the server must show one chain."""

    RSA_TLS12 = "rsa-tls12"      # TLS 1.2, only ECDHE-RSA suites offered
    ECDSA_TLS12 = "ecdsa-tls12"  # TLS 1.2, only ECDHE-ECDSA suites offered
    TLS13 = "tls13"              # TLS 1.3 default handshake
    IMPORT = "import"            # offline import of a PEM bundle or s_client transcript: no handshake made here

    def __str__(self) -> str:
        return self.value


class ProbeStatus(str, Enum):
    """Outcome of one probe.  Only ``ok`` and ``client-cert-required`` carry a chain."""

    OK = "ok"                                      # handshake completed, chain captured
    CLIENT_CERT_REQUIRED = "client-cert-required"  # server wanted a client certificate; chain captured anyway
    NO_SHARED_CIPHER = "no-shared-cipher"          # server has no chain/suite for this probe (handshake_failure alert)
    PROTOCOL_VERSION = "protocol-version"          # server refuses the offered TLS version
    TIMEOUT = "timeout"                            # nothing complete within the per-probe timeout
    REFUSED = "refused"                            # TCP connection refused
    DNS_FAILURE = "dns-failure"                    # name did not resolve
    UNREACHABLE = "unreachable"                    # network/host unreachable, other socket error
    CLOSED = "closed"                              # peer closed the connection during the handshake
    NOT_TLS = "not-tls"                            # peer answered with bytes that are not TLS
    TLS_ERROR = "tls-error"                        # any other TLS failure (alert, bad message)

    def __str__(self) -> str:
        return self.value


CHAIN_STATUSES = frozenset({ProbeStatus.OK.value, ProbeStatus.CLIENT_CERT_REQUIRED.value})


class KeyType(str, Enum):
    """Public-key algorithm of a certificate (``key_type`` column)."""

    RSA = "rsa"
    EC = "ec"
    ED25519 = "ed25519"
    ED448 = "ed448"
    DSA = "dsa"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


class EndpointType(str, Enum):
    """AWS IoT endpoint types (``aws iot describe-endpoint --endpoint-type``)."""

    DATA_ATS = "iot:Data-ATS"
    DATA = "iot:Data"                       # legacy VeriSign/Symantec endpoint
    CREDENTIAL_PROVIDER = "iot:CredentialProvider"
    JOBS = "iot:Jobs"
    OTHER = "other"                         # a plain host:port or an imported chain

    def __str__(self) -> str:
        return self.value


# --- observations: one row per target x probe (iotaudit.collect) -------------
OBSERVATION_ID = "observation_id"
HOST = "host"                  # the name: SNI and the name validated against
PORT = "port"
ADDRESS = "address"            # what was connected to (curl --resolve style); equals host if not given
REGION = "region"
ENDPOINT_TYPE = "endpoint_type"
LABEL = "label"                # free text from the target list (e.g. lab case name)
ALPN_OFFERED = "alpn_offered"  # ";"-joined protocols offered, "" if none
PROBE = "probe"
STATUS = "status"
ERROR = "error"                # human-readable detail for a non-ok status
TLS_VERSION = "tls_version"    # e.g. "TLSv1.2"
CIPHER = "cipher"              # OpenSSL name of the negotiated suite
ALPN = "alpn"                  # negotiated protocol, "" if none
CHAIN_SHA256 = "chain_sha256"  # list of lowercase hex SHA-256 of each DER, in served order
CHAIN_LENGTH = "chain_length"
HANDSHAKE_MS = "handshake_ms"
STARTED_AT = "started_at"

OBSERVATION_DTYPES: dict[str, Any] = {
    OBSERVATION_ID: "int64",
    HOST: "string",
    PORT: "int32",
    ADDRESS: "string",
    REGION: "category",
    ENDPOINT_TYPE: "category",
    LABEL: "string",
    ALPN_OFFERED: "string",
    PROBE: "category",
    STATUS: "category",
    ERROR: "string",
    TLS_VERSION: "category",
    CIPHER: "category",
    ALPN: "string",
    CHAIN_SHA256: "object",
    CHAIN_LENGTH: "int32",
    HANDSHAKE_MS: "float64",
    STARTED_AT: TIME,
}

# --- chain positions: one row per observation x served certificate ----------
POSITION = "position"          # 0 = first certificate served (the leaf, if in order)
SHA256 = "sha256"

CHAIN_DTYPES: dict[str, Any] = {
    OBSERVATION_ID: "int64",
    POSITION: "int32",
    SHA256: "string",
}

# --- certificates: one row per distinct certificate (iotaudit.certs) ---------
SPKI_SHA256 = "spki_sha256"    # lowercase hex SHA-256 of the DER SubjectPublicKeyInfo
SPKI_PIN = "spki_pin"          # "sha256/<base64>" (OkHttp, Android, TrustKit form)
SUBJECT = "subject"            # RFC 4514 string
ISSUER = "issuer"
SUBJECT_CN = "subject_cn"      # commonName, else last OU, else the whole subject
ISSUER_CN = "issuer_cn"
SERIAL = "serial"              # lowercase hex, may be "0"
NOT_BEFORE = "not_before"
NOT_AFTER = "not_after"
KEY_TYPE = "key_type"
KEY_SIZE = "key_size"          # bits (RSA modulus, EC field size)
CURVE = "curve"                # e.g. "secp256r1", "" for non-EC
SIGNATURE_ALGORITHM = "signature_algorithm"  # e.g. "sha256WithRSAEncryption"
IS_CA = "is_ca"                # basicConstraints cA
PATH_LENGTH = "path_length"    # basicConstraints pathLenConstraint, <NA> if absent
SELF_SIGNED = "self_signed"    # subject == issuer and the signature verifies with its own key
SKI = "ski"                    # subjectKeyIdentifier, lowercase hex, "" if absent
AKI = "aki"                    # authorityKeyIdentifier keyIdentifier, lowercase hex, "" if absent
SAN = "san"                    # list of DNS names and IP addresses
CATALOG_NAME = "catalog_name"  # catalogue entry with this exact certificate, or with this key; "" if none
CATALOG_MATCH = "catalog_match"  # "certificate" (same DER), "key" (same SPKI, other issuer), "" (unknown)
CATALOG_STATUS = "catalog_status"
PEM = "pem"

CERTIFICATE_DTYPES: dict[str, Any] = {
    SHA256: "string",
    SPKI_SHA256: "string",
    SPKI_PIN: "string",
    SUBJECT: "string",
    ISSUER: "string",
    SUBJECT_CN: "string",
    ISSUER_CN: "string",
    SERIAL: "string",
    NOT_BEFORE: TIME,
    NOT_AFTER: TIME,
    KEY_TYPE: "category",
    KEY_SIZE: "int32",
    CURVE: "string",
    SIGNATURE_ALGORITHM: "string",
    IS_CA: "bool",
    PATH_LENGTH: "Int32",
    SELF_SIGNED: "bool",
    SKI: "string",
    AKI: "string",
    SAN: "object",
    CATALOG_NAME: "string",
    CATALOG_MATCH: "category",
    CATALOG_STATUS: "category",
    PEM: "string",
}

# --- catalogue: one row per catalogue entry (iotaudit.catalog) --------------
NAME = "name"                  # stable short name used in inventories, e.g. "AmazonRootCA1"
DISPLAY_NAME = "display_name"  # what a report shows, e.g. "Amazon Root CA 1"
ROLE = "role"                  # root | cross-signed | intermediate
CATALOG_STATUS_COL = CATALOG_STATUS
SOURCE = "source"              # provenance: file name within the catalogue

CATALOG_DTYPES: dict[str, Any] = {
    NAME: "string",
    DISPLAY_NAME: "string",
    ROLE: "category",
    CATALOG_STATUS: "category",
    KEY_TYPE: "category",
    SHA256: "string",
    SPKI_SHA256: "string",
    SPKI_PIN: "string",
    SUBJECT: "string",
    ISSUER: "string",
    NOT_AFTER: TIME,
    SOURCE: "string",
    PEM: "string",
}


def typed_frame(records: Iterable[Mapping[str, Any]] | pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Build a DataFrame with exactly the columns of ``dtypes``, in that order, cast to those dtypes.

    Args:
        records: Row mappings (missing keys become NA) or an existing frame.
        dtypes: Column name -> pandas dtype, e.g. :data:`OBSERVATION_DTYPES`.

    Returns:
        A new DataFrame; list-valued ``object`` columns are left as Python lists.
    """
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    for column in dtypes:
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype="object")
    frame = frame[list(dtypes)]
    for column, dtype in dtypes.items():
        if dtype == "object":
            continue
        if dtype == TIME:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype(TIME)
        else:
            frame[column] = frame[column].astype(dtype)
    return frame.reset_index(drop=True)
