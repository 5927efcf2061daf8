"""Column names, enums and dtypes of every iotaudit table, in one place.

A newcomer looking for where a column is defined starts here; the module
that computes it is named in the comment beside each table.  Enum values are
the exact strings that appear in DataFrames, Parquet, JSON and HTML.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported by the functions and the two dtypes that need it (module __getattr__ below,
# PEP 562), not here: every module imports this one, and ``iotaudit collect`` runs without pandas
# (issue 11: a scheduled collect of 20 endpoints starts in well under a second).

# Times are tz-aware UTC at microsecond resolution, not nanoseconds: RFC 5280
# section 4.1.2.5 lets a certificate say "no expiry" as 99991231235959Z, which
# is outside the datetime64[ns] range (year 2262).
TIME = "datetime64[us, UTC]"


@dataclass(frozen=True, slots=True)
class CategoricalOf:
    """A categorical dtype named without importing pandas; :func:`typed_frame` makes it a ``pd.CategoricalDtype``."""

    categories: tuple[str, ...]
    ordered: bool = False

    def __post_init__(self) -> None:
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be distinct: {self.categories}")

    def pandas(self) -> Any:
        """The ``pd.CategoricalDtype`` (these categories in this order; ordered if ``ordered``)."""
        import pandas as pd

        return pd.CategoricalDtype(list(self.categories), ordered=self.ordered)


class Probe(str, Enum):
    """One TLS handshake per target, restricted so the server must show one chain."""

    RSA_TLS12 = "rsa-tls12"      # TLS 1.2, only ECDHE-RSA suites offered
    ECDSA_TLS12 = "ecdsa-tls12"  # TLS 1.2, only ECDHE-ECDSA suites offered
    TLS13 = "tls13"              # TLS 1.3 default handshake
    TLS10 = "tls10"              # TLS 1.0 / 1.1 only, every suite (off by default: old endpoints, TLS proxies)
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
    # Not facts about the endpoint: the analysis never judges these, drift never compares them.
    CHAIN_INCOMPLETE = "chain-incomplete"          # import: the file names certificates it does not carry
    LOCAL_ERROR = "local-error"                    # our side failed (EMFILE, ENFILE, ENOMEM, ENOBUFS), after retries

    def __str__(self) -> str:
        return self.value


CHAIN_STATUSES = frozenset({ProbeStatus.OK.value, ProbeStatus.CLIENT_CERT_REQUIRED.value})
# Observations that say nothing about the endpoint's chain: reported as unknown, never as a verdict or a change.
UNKNOWN_STATUSES = frozenset({ProbeStatus.CHAIN_INCOMPLETE.value, ProbeStatus.LOCAL_ERROR.value})
# Statuses whose row may carry (part of) the served chain.
CARRIES_CHAIN_STATUSES = CHAIN_STATUSES | {ProbeStatus.CHAIN_INCOMPLETE.value}


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


# --- observations: one row per target x probe (iotaudit.collection) -------------
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


# --- inventory: devices (one row per device) and profiles (one row per distinct
# profile, PROFILE_DTYPES) (iotaudit.inventory) -------------------------------
DEVICE_ID = "device_id"
GROUP = "group"                # fleet / thing group
PROFILE = "profile"            # firmware or profile name as written in the inventory
ENDPOINTS = "endpoints"
TRUST_STORE = "trust_store"
KEY_TYPES = "key_types"
PATH_BUILDER = "path_builder"  # old inventories: modern | legacy-chain-top (mapped onto a tls_stack)
TLS_STACK = "tls_stack"        # the device's TLS stack id (iotaudit.stacks.STACK_IDS)
PINS = "pins"
PIN_SCOPE = "pin_scope"
PIN_EXPIRY = "pin_expiry"
PROFILE_KEY = "profile_key"    # unique per profile: the name, with ~2, ~3 ... for further variants
DEVICES = "devices"            # number of devices
GROUPS = "groups"              # list of group names
FIRST_ROW = "first_row"        # row number (as in the source) of the profile's first device


class PathBuilder(str, Enum):
    """How a device's TLS stack builds the path from the served chain to its store."""

    MODERN = "modern"                      # any path to any trusted certificate (trusted-first)
    LEGACY_CHAIN_TOP = "legacy-chain-top"  # the served chain to its top, then top-or-issuer in store

    def __str__(self) -> str:
        return self.value


class PinScope(str, Enum):
    """Which certificates a device compares its pins with (``pin_scope`` inventory column)."""

    ANY = "any"        # any certificate of the validated path, anchor included (OkHttp, Android NSC); default
    SERVED = "served"  # any certificate exactly as the server sent it (hand-rolled checks)
    LEAF = "leaf"      # the end-entity certificate only
    ROOT = "root"      # the trust anchor of the validated path only

    def __str__(self) -> str:
        return self.value


PROFILE_DTYPES: dict[str, Any] = {
    PROFILE_KEY: "string",
    PROFILE: "string",
    DEVICES: "int64",
    GROUPS: "object",
    REGION: "string",
    ENDPOINTS: "object",
    TRUST_STORE: "string",
    KEY_TYPES: "object",
    TLS_STACK: "string",
    PINS: "object",
    PIN_SCOPE: "string",
    PIN_EXPIRY: TIME,
    FIRST_ROW: "int64",
}

# --- coverage: one row per profile x observation it may meet (iotaudit.root_coverage) ---
VALID = "valid"
ANCHOR_SHA256 = "anchor_sha256"
ANCHOR_NAME = "anchor_name"
PATH_SHA256 = "path_sha256"    # list: the validated path, leaf first, anchor last
REASON = "reason"
VERDICT = "verdict"
RISKS = "risks"                # list of RISK_* values


class Verdict(str, Enum):
    """Verdict of one profile on one served chain (``verdict`` column).

    ``covered``
        Validates at ``as_of``, still validates ``at_risk_days`` later, and its
        anchor is neither a legacy root nor reached only through a cross-sign
        AWS may stop serving.
    ``at-risk``
        Validates at ``as_of`` but: the chain stops validating within
        ``at_risk_days`` (``expires-soon``), or every path ends at a root the
        AWS document calls legacy (``legacy-anchor``: VeriSign), or the path
        needs a Starfield cross-signed certificate that AWS serves today and
        may stop serving (``needs-cross-sign``).
    ``broken``
        Does not validate at ``as_of``.
    ``not-applicable``
        The profile meets no chain of the run (row with ``observation_id`` -1).
    """

    COVERED = "covered"
    AT_RISK = "at-risk"
    BROKEN = "broken"
    NOT_APPLICABLE = "not-applicable"

    def __str__(self) -> str:
        return self.value


VERDICT_CATEGORIES = CategoricalOf(tuple(v.value for v in Verdict))  # VERDICT_DTYPE: the pandas dtype (below)
# Worst first: the order reports, figures and metrics list verdicts in.
VERDICTS_WORST_FIRST = (Verdict.BROKEN.value, Verdict.AT_RISK.value, Verdict.COVERED.value, Verdict.NOT_APPLICABLE.value)

# Risk flags behind an ``at-risk`` verdict (``risks`` column).
RISK_EXPIRES_SOON = "expires-soon"
RISK_LEGACY_ANCHOR = "legacy-anchor"
RISK_NEEDS_CROSS_SIGN = "needs-cross-sign"

COVERAGE_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    DEVICES: "int64",
    TLS_STACK: "category",
    OBSERVATION_ID: "int64",
    HOST: "string",
    PORT: "int32",
    REGION: "category",
    PROBE: "category",
    KEY_TYPE: "category",
    VALID: "bool",
    ANCHOR_SHA256: "string",
    ANCHOR_NAME: "string",
    PATH_SHA256: "object",
    REASON: "string",
    VERDICT: VERDICT_CATEGORIES,
    RISKS: "object",
}

# --- roots to add: one row per profile x scenario (iotaudit.root_coverage) ---------
SCENARIO = "scenario"          # a RootsScenario value here; a PinScenario value in the pin risks
CHAINS = "chains"              # number of chains
FAILING = "failing"
READY = "ready"
ROOTS_TO_ADD = "roots_to_add"  # list of catalogue names
UNFIXABLE = "unfixable"
UNFIXABLE_REASONS = "unfixable_reasons"


class RootsScenario(str, Enum):
    """The question roots-to-add answers (``scenario`` column of ``roots_to_add``).

    ``today``
        The chains of the run, as served.
    ``no-cross-sign``
        The same chains without the Starfield cross-signed certificates
        (what a device meets if AWS stops serving them).
    ``reserved-roots``
        Hypothetical chains to Amazon Root CA 2 (RSA) and 4 (ECC), "reserved
        for future use" in the AWS document: served both as today's chains are
        (with the root cross-signed by Starfield Services Root G2, itself
        cross-signed by Starfield Class 2) and without the cross-signs.
    """

    TODAY = "today"
    NO_CROSS_SIGN = "no-cross-sign"
    RESERVED_ROOTS = "reserved-roots"

    def __str__(self) -> str:
        return self.value


ROOTS_TO_ADD_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    DEVICES: "int64",
    SCENARIO: "category",
    CHAINS: "int64",
    FAILING: "int64",
    READY: "bool",
    ROOTS_TO_ADD: "object",
    UNFIXABLE: "int64",
    UNFIXABLE_REASONS: "object",
}

# --- fleet: one row per group x endpoint x key type x verdict (iotaudit.root_coverage) ---
PROFILES = "profiles"          # list of profile names

FLEET_DTYPES: dict[str, Any] = {
    GROUP: "category",
    HOST: "string",
    PORT: "int32",
    KEY_TYPE: "category",
    VERDICT: VERDICT_CATEGORIES,
    DEVICES: "int64",
    PROFILES: "object",
}

# --- profile verdicts: one row per profile (iotaudit.root_coverage) ---------------
COVERED = "covered"            # number of chains covered
AT_RISK = "at_risk"            # number of chains at risk
BROKEN = "broken"              # number of chains broken
REASONS = "reasons"
READY_NO_CROSS_SIGN = "ready_no_cross_sign"
READY_RESERVED_ROOTS = "ready_reserved_roots"

PROFILE_VERDICT_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    DEVICES: "int64",
    GROUPS: "object",
    TLS_STACK: "category",
    VERDICT: VERDICT_CATEGORIES,
    CHAINS: "int64",
    COVERED: "int64",
    AT_RISK: "int64",
    BROKEN: "int64",
    RISKS: "object",
    REASONS: "object",
    ROOTS_TO_ADD: "object",
    READY_NO_CROSS_SIGN: "bool",
    READY_RESERVED_ROOTS: "bool",
}

# --- certificate expiry: one row per certificate (iotaudit.expiry) -----------
DAYS_LEFT = "days_left"
EXPIRED = "expired"
HOSTS = "hosts"
SERVED = "served"
ON_VALID_PATH = "on_valid_path"


class CertRole(str, Enum):
    """Where a certificate sits (``role`` column of :func:`certificate_expiry`)."""

    LEAF = "leaf"                            # end-entity (no basicConstraints cA)
    INTERMEDIATE = "intermediate"            # issuing CA that is not a root key
    CROSS_SIGNED_ROOT = "cross-signed root"  # a root's key certified by another root (Starfield cross-sign)
    ROOT = "root"                            # self-signed

    def __str__(self) -> str:
        return self.value


CERTIFICATE_EXPIRY_COLUMNS: dict[str, Any] = {
    SHA256: "string",
    SUBJECT_CN: "string",
    ISSUER_CN: "string",
    ROLE: "category",
    KEY_TYPE: "category",
    NOT_BEFORE: TIME,
    NOT_AFTER: TIME,
    DAYS_LEFT: "int64",          # whole days from as_of to not_after (negative: expired)
    EXPIRED: "bool",
    CATALOG_NAME: "string",
    HOSTS: "object",             # list[str]: endpoints that serve it (empty: only reached as an anchor)
    SERVED: "bool",
    ON_VALID_PATH: "bool",       # on some path a profile validates at as_of
    DEVICES: "int64",            # devices whose profile validates some chain through it at as_of
}

# --- chain breaks: one row per profile x chain it meets (iotaudit.expiry) ----
VALID_AT_AS_OF = "valid_at_as_of"
BREAK_DATE = "break_date"
LAST_PATH_SHA256 = "last_path_sha256"
BREAK_CAUSE_SHA256 = "break_cause_sha256"
BREAK_CAUSE_NAME = "break_cause_name"
BREAK_REASON = "break_reason"
CHAIN_BREAK_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    DEVICES: "int64",
    TLS_STACK: "category",
    OBSERVATION_ID: "int64",
    HOST: "string",
    PORT: "int32",
    PROBE: "category",
    KEY_TYPE: "category",
    VALID_AT_AS_OF: "bool",
    BREAK_DATE: TIME,            # first instant with no valid path (NaT: invalid at as_of, or not within horizon)
    PATH_SHA256: "object",       # list: path at as_of
    LAST_PATH_SHA256: "object",  # list: the last valid path before break_date (or at the horizon)
    BREAK_CAUSE_SHA256: "string",  # certificate(s) of the last path whose expiry is break_date, ";"-joined
    BREAK_CAUSE_NAME: "string",
    BREAK_REASON: "string",      # the validator's reason at break_date (or at as_of when invalid then)
}

# --- break dates: one row per profile (iotaudit.expiry) ----------------------
STATE = "state"
DARK_DATE = "dark_date"
CHAINS_VALID = "chains_valid"
FIRST_BREAK_HOST = "first_break_host"
FIRST_BREAK_PROBE = "first_break_probe"
# The firmware-side date (iotaudit.expiry module docstring): the first instant at which nothing AWS
# could serve under the catalogue's roots and cross-signs (every served certificate renewed) validates
# with the profile's store, stack and pins; and what ends it.
FIRMWARE_BREAK_DATE = "firmware_break_date"
FIRMWARE_BREAK_CAUSE = "firmware_break_cause"            # plain words: which anchor, cross-sign or pin ends it
FIRMWARE_BREAK_CAUSE_KIND = "firmware_break_cause_kind"  # a FirmwareCause value
FIRMWARE_BREAK_CAUSE_NAME = "firmware_break_cause_name"  # the anchor / cross-sign / pin, as named on every page
FIRMWARE_BREAK_CAUSE_SHA256 = "firmware_break_cause_sha256"  # the certificate(s) whose expiry ends it, ";"-joined


class FirmwareCause(StrEnum):
    """What ends a profile's firmware-side date (``firmware_break_cause_kind`` column of ``expiry``).

    ``anchor``
        A root in the store expires and the stack checks anchor dates.
    ``cross-sign``
        A cross-signed certificate in the store (e.g. the Starfield-issued
        Amazon Root CA 1 the AWS document suggests adding) expires.
    ``pin``
        No pin of the enforced pin set can match anything AWS could serve any more.
    ``no-chain``
        Already at ``as_of`` nothing AWS could serve validates (the store holds
        no catalogue root or cross-sign this stack can anchor on).
    ``none``
        Nothing ends it within the horizon.
    """

    ANCHOR = "anchor"
    CROSS_SIGN = "cross-sign"
    PIN = "pin"
    NO_CHAIN = "no-chain"
    NONE = "none"


FIRMWARE_CAUSE_CATEGORIES = CategoricalOf(tuple(k.value for k in FirmwareCause))  # FIRMWARE_CAUSE_DTYPE: pandas


class BreakState(str, Enum):
    """Per-profile state over the horizon (``state`` column of :func:`break_dates`)."""

    OK = "ok"                        # every chain it meets validates at as_of and through the horizon
    BREAKS = "breaks"                # every chain validates at as_of; one stops within the horizon (break_date)
    PARTLY_BROKEN = "partly-broken"  # some chain it meets already has no valid path at as_of, others do
    BROKEN = "broken"                # no chain it meets validates at as_of
    NO_CHAINS = "no-chains"          # the run holds no chain this profile meets

    def __str__(self) -> str:
        return self.value


BREAK_DATE_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    DEVICES: "int64",
    GROUPS: "object",
    TLS_STACK: "category",
    FIRMWARE_BREAK_DATE: TIME,   # update the firmware by then: nothing AWS could serve validates after it (NaT: not within horizon)
    FIRMWARE_BREAK_CAUSE_KIND: FIRMWARE_CAUSE_CATEGORIES,
    FIRMWARE_BREAK_CAUSE_NAME: "string",
    FIRMWARE_BREAK_CAUSE_SHA256: "string",
    FIRMWARE_BREAK_CAUSE: "string",
    STATE: "category",
    BREAK_DATE: TIME,            # some chain valid at as_of loses its last path (NaT: none within horizon)
    DARK_DATE: TIME,             # every chain has lost its paths (NaT: not within horizon, or already dark)
    CHAINS: "int32",
    CHAINS_VALID: "int32",
    FIRST_BREAK_HOST: "string",
    FIRST_BREAK_PROBE: "string",
    LAST_PATH_SHA256: "object",  # the last valid path of the first chain to break
    BREAK_CAUSE_SHA256: "string",
    BREAK_CAUSE_NAME: "string",
    BREAK_REASON: "string",
}

# --- anchor expiry: one row per profile x trust anchor (iotaudit.expiry) -----
IN_USE = "in_use"

ANCHOR_EXPIRY_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    DEVICES: "int64",
    ANCHOR_SHA256: "string",
    ANCHOR_NAME: "string",
    SUBJECT_CN: "string",
    KEY_TYPE: "category",
    NOT_AFTER: TIME,
    DAYS_LEFT: "int64",
    EXPIRED: "bool",
    IN_USE: "boolean",           # anchor of a path the profile validates at as_of (<NA> without coverage)
}

# --- cliff: one row per date devices lose or break paths (iotaudit.expiry) ---
DATE = "date"
DEVICES_LOSING = "devices_losing"
DEVICES_CONNECTED = "devices_connected"
DEVICES_BREAKING = "devices_breaking"
DEVICES_INTACT = "devices_intact"
DEVICES_LOSING_FIRMWARE = "devices_losing_firmware"
DEVICES_CONNECTED_FIRMWARE = "devices_connected_firmware"
PROFILES_FIRMWARE = "profiles_firmware"

CLIFF_COLUMNS: dict[str, Any] = {
    DATE: TIME,
    DEVICES_LOSING_FIRMWARE: "int64",     # devices whose firmware_break_date is this date (at as_of: already there)
    DEVICES_CONNECTED_FIRMWARE: "int64",  # devices whose firmware can still validate something AWS could serve
    PROFILES_FIRMWARE: "object",          # list[str]: profiles whose firmware_break_date is this date
    DEVICES_LOSING: "int64",     # devices whose dark_date is this date (at as_of: already dark)
    DEVICES_CONNECTED: "int64",  # devices with at least one valid path after this date
    DEVICES_BREAKING: "int64",   # devices whose break_date is this date (at as_of: already partly broken)
    DEVICES_INTACT: "int64",     # devices with every chain still valid after this date
    PROFILES: "object",          # list[str]: profiles losing or breaking at this date
}

# --- same store, other stacks: one row per profile x other stack (iotaudit.root_coverage) ---
OTHER_STACK = "other_stack"
OTHER_VERDICT = "other_verdict"
CHANGED = "changed"            # the verdict differs from the profile's own stack's
STACK_ALTERNATIVES_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    TLS_STACK: "category",       # the profile's own stack
    OTHER_STACK: "category",
    VERDICT: VERDICT_CATEGORIES,      # the profile's worst verdict on its own stack
    OTHER_VERDICT: VERDICT_CATEGORIES,  # its worst verdict with the same store on other_stack
    CHANGED: "bool",
    DEVICES: "int64",
    CHAINS: "int64",             # chains it meets
    VALID: "int64",              # of which other_stack validates at as_of
    REASONS: "object",           # list[str]: other_stack's reasons on the chains it rejects
}

# --- cross-check: one row per profile x chain it meets, model vs real library (iotaudit.auditing) ---
MODEL_VALID = "model_valid"
LIBRARY_VALID = "library_valid"
LIBRARY = "library"            # the library and version that answered, as it reports itself
LIBRARY_ERROR = "library_error"  # the library's own error text ("" when it accepted)
AGREE = "agree"
CROSSCHECK_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    OBSERVATION_ID: "int64",
    HOST: "string",
    PORT: "int32",
    PROBE: "category",
    TLS_STACK: "category",
    MODEL_VALID: "bool",
    LIBRARY_VALID: "bool",
    LIBRARY: "string",
    LIBRARY_ERROR: "string",
    AGREE: "bool",
}

# --- pin risks: one row per profile x pin x scenario (iotaudit.pinning) -----
PIN = "pin"
PIN_KIND = "pin_kind"
ENFORCED = "enforced"
MATCHES = "matches"
MATCHED_SHA256 = "matched_sha256"
MATCHED_NAME = "matched_name"
BREAKS = "breaks"
SET_BREAKS = "set_breaks"
CHAINS_BROKEN = "chains_broken"
FLAGS = "flags"


class PinKind(str, Enum):
    """What a pin hashes."""

    SPKI_SHA256 = "spki-sha256"  # SHA-256 of the DER SubjectPublicKeyInfo (RFC 7469 section 2.4)
    CERT_SHA256 = "cert-sha256"  # SHA-256 of the whole certificate DER
    CERT_SHA1 = "cert-sha1"      # SHA-1 of the whole certificate DER (legacy fingerprints)

    def __str__(self) -> str:
        return self.value


class PinScenario(str, Enum):
    """A likely change on the AWS side (``scenario`` column of the pin risks)."""

    LEAF_REKEY = "leaf-rekey"                    # new leaf key, same chain above
    INTERMEDIATE_CHANGE = "intermediate-change"  # another issuing CA (e.g. Amazon RSA 2048 M01 -> M04)
    ISSUER_CHANGE = "issuer-change"              # same root key under its other issuer (self-signed <-> Starfield cross-sign)
    KEY_TYPE_SWITCH = "key-type-switch"          # the RSA chain replaced by the ECDSA chain, or vice versa
    RESERVED_ROOTS = "reserved-roots"            # a move to Amazon Root CA 2 (RSA) or 4 (EC), "reserved for future use"

    def __str__(self) -> str:
        return self.value


class PinFlag(str, Enum):
    """Findings about a pin or its set (``flags`` column, a list of these values)."""

    NO_BACKUP = "no-backup"                        # the set has one pin, or all its pins are on one key
    PIN_SET_EXPIRED = "pin-set-expired"            # pin_expiry < as_of: the pins are silently not enforced
    WHOLE_CERT_UNDER_TWO_ISSUERS = "whole-cert-under-two-issuers"  # cert pin on a key that exists under two issuers
    NO_MATCH_TODAY = "no-match-today"              # some chain the profile validates today matches no pin of the set
    UNKNOWN_PIN = "unknown-pin"                    # the pin matches no certificate known to the run or catalogue
    NO_VALID_CHAIN = "no-valid-chain"              # the profile validates no chain today: pins are moot
    MALFORMED = "malformed"                        # the pin text could not be parsed (see ``reason``)

    def __str__(self) -> str:
        return self.value


PIN_RISK_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    DEVICES: "int64",
    GROUPS: "object",            # list[str]
    PIN: "string",               # as written in the inventory
    PIN_KIND: "category",
    PIN_SCOPE: "category",
    SCENARIO: "category",
    ENFORCED: "bool",            # False when the pin set expired before as_of
    MATCHES: "bool",             # the pin matches a certificate in scope on a chain validated today
    MATCHED_SHA256: "object",    # list[str]: certificates it matches today
    MATCHED_NAME: "object",      # list[str]: their catalogue names (or subject CN)
    BREAKS: "bool",              # it matched a chain today and does not match that chain after the scenario
    SET_BREAKS: "bool",          # some chain matched by the set today is matched by no pin after the scenario
    CHAINS: "int32",             # chains the profile validates today
    CHAINS_BROKEN: "int32",      # of those, how many the whole set stops matching after the scenario
    FLAGS: "object",             # list[str] of PinFlag values
    REASON: "string",            # why a pin is malformed, else ""
}

# --- ranked risks: one row per profile x risk, worst first (iotaudit.pinning) ---
RANK = "rank"
RISK = "risk"                  # a PinScenario value (the set breaks under it) or a PinFlag value
SEVERITY_COL = "severity"      # named _COL: iotaudit.pinning.SEVERITY is the severity table
SCORE = "score"
DETAIL = "detail"

RANKED_RISK_COLUMNS: dict[str, Any] = {
    RANK: "int32",
    PROFILE: "string",
    DEVICES: "int64",
    GROUPS: "object",
    RISK: "category",            # a PinScenario value (the set breaks under it) or a PinFlag value
    SEVERITY_COL: "int32",
    SCORE: "int64",              # devices x severity
    PINS: "object",              # list[str]: the pins concerned
    DETAIL: "string",            # one sentence for a report
}

# --- collect summary: one row per observation, for people (iotaudit.collection.summarize) ---
SUMMARY_CHAIN = "chain"                  # subject CNs in served order joined by " <- "
SUMMARY_TOP = "top_catalog_name"         # catalogue name of the last certificate served ("(key)": key match only)
SUMMARY_EARLIEST = "earliest_not_after"


def as_utc(as_of: datetime) -> datetime:
    """``as_of`` in UTC; a naive datetime is refused rather than guessed (every ``as_of`` is explicit).

    Raises:
        ValueError: when ``as_of`` is not a timezone-aware datetime.
    """
    if not isinstance(as_of, datetime) or as_of.tzinfo is None:
        raise ValueError(f"as_of must be a timezone-aware datetime (UTC), got {as_of!r}")
    return as_of.astimezone(timezone.utc)


def as_list(value: Any) -> list[Any]:
    """A list cell as a Python list: ``None``/NA -> ``[]``, ``"a;b"`` -> ``["a", "b"]``, arrays -> lists."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (p.strip() for p in value.split(";")) if v]
    import pandas as pd

    try:
        if pd.isna(value):
            return []
    except (TypeError, ValueError):
        pass  # array-likes: pd.isna is element-wise
    return list(value)


def typed_frame(records: Iterable[Mapping[str, Any]] | pd.DataFrame, dtypes: Mapping[str, Any]) -> pd.DataFrame:
    """Build a DataFrame with exactly the columns of ``dtypes``, in that order, cast to those dtypes.

    Args:
        records: Row mappings (missing keys become NA) or an existing frame.
        dtypes: Column name -> pandas dtype, e.g. :data:`OBSERVATION_DTYPES`.

    Returns:
        A new DataFrame; list-valued ``object`` columns are left as Python lists.
    """
    import pandas as pd

    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame.from_records(list(records))
    for column in dtypes:
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype="object")
    frame = frame[list(dtypes)]
    for column, dtype in dtypes.items():
        if dtype == "object":
            continue
        if isinstance(dtype, CategoricalOf):
            frame[column] = frame[column].astype(dtype.pandas())
        elif dtype == TIME:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype(TIME)
        else:
            frame[column] = frame[column].astype(dtype)
    return frame.reset_index(drop=True)


# =============================================================================
# --- firmware scan (iotaudit.firmware, issue 8): appended block --------------
# One row per finding (``scan.parquet``), one row per scanned firmware
# (``profiles.csv``), one row per fleet-owner note (``firmware_notes``).
# =============================================================================
FILE = "file"                  # the file the finding is in, relative to the scanned PATH
OFFSET = "offset"              # byte offset in that file (<NA>: not a byte position)
LINE = "line"                  # 1-based line in a text file (<NA>: binary)
SCAN_FORMAT = "format"         # a ScanFormat value: how the thing was stored
FINDING = "finding"            # a FindingKind value
EMBEDDED_AS = "embedded_as"    # ELF ``_binary_<name>_start`` stem, C variable or macro name, "" if none
CONTAINER = "container"        # "file@offset" of the store container (one PEM file, one bundle, one blob)
SAME_KEY_AS = "same_key_as"    # display name of the catalogue root with this key ("same key as Amazon Root CA 1")
IN_STORE = "in_store"          # the certificate / anchor is part of the profile's trust store
EVIDENCE = "evidence"          # what the finding says about the stack / store, in plain words
SCANNED_PATH = "scanned_path"  # the PATH given to ``iotaudit scan``
ANCHORS = "anchors"            # number of anchors in the profile's store
STACK_EVIDENCE = "stack_evidence"
NOTES = "notes"
NOTE = "note"
IDF_VERSION = "idf_version"    # ESP-IDF version a finding tells (sdkconfig header, esp_app_desc_t), "" if none


class ScanFormat(str, Enum):
    """How a certificate, key, pin or setting was stored (``format`` column of the scan findings)."""

    PEM = "pem"                          # PEM text in a file or binary
    PEM_C_STRING = "pem-c-string"        # PEM inside C/C++ string literals (joined, escapes undone, raw strings)
    DER = "der"                          # a DER certificate file, or DER found inside a binary
    DER_C_ARRAY = "der-c-array"          # C byte array / xxd -i / Zephyr ``.der.inc`` hex list
    ESP_BUNDLE_LEGACY = "esp-bundle-legacy"  # ESP-IDF x509_crt_bundle, u16 BE count layout (IDF < 5.4)
    ESP_BUNDLE = "esp-bundle"            # ESP-IDF x509_crt_bundle, u32 LE offset table layout (IDF >= 5.4)
    ELF_EMBED = "elf-embed"              # an ELF ``_binary_<name>_start``/``_end`` pair
    SDKCONFIG = "sdkconfig"              # ESP-IDF sdkconfig
    WOLFSSL_OPTIONS = "wolfssl-options"  # wolfSSL options.h / user_settings.h
    VERSION_STRING = "version-string"    # a TLS library version string (binary or header)
    ESP_APP_DESC = "esp-app-desc"        # ESP-IDF esp_app_desc_t (idf_ver) in an image
    CA_FILE_CONFIG = "ca-file-config"    # Greengrass config.yaml/json, SDK sample, CMake embed list
    ANDROID_NSC = "android-nsc"          # Android network_security_config.xml
    TRUSTKIT = "trustkit"                # TrustKit TSKConfiguration (plist / JSON)
    OKHTTP = "okhttp"                    # OkHttp CertificatePinner pins in sources
    FILE = "file"                        # the file itself (skipped, unreadable)

    def __str__(self) -> str:
        return self.value


class FindingKind(str, Enum):
    """What a scan finding is (``finding`` column)."""

    CERTIFICATE = "certificate"  # a whole X.509 certificate
    ANCHOR = "anchor"            # a name + key trust anchor without a certificate (ESP bundle entry)
    PIN = "pin"                  # a pin (SPKI hash) and its expiry
    STACK = "stack"              # evidence about the TLS stack (tls_stack column: the stack it points to)
    CONFIG = "config"            # a setting that decides the store (a CA file path, bundle options, IDF version)
    SKIPPED = "skipped"          # a path not scanned (symlink loop, special file, ...): counted, with the reason
    ERROR = "error"              # something that could not be read (truncated bundle, garbage DER, unreadable file)

    def __str__(self) -> str:
        return self.value


class NoteSeverity(str, Enum):
    """Severity of a firmware note (``severity`` column of ``firmware_notes``)."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


SCAN_FINDING_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    FILE: "string",
    OFFSET: "Int64",
    LINE: "Int64",
    SCAN_FORMAT: "category",
    FINDING: "category",
    EMBEDDED_AS: "string",
    CONTAINER: "string",
    SHA256: "string",          # "" for name+key anchors (no certificate)
    SPKI_SHA256: "string",
    SPKI_PIN: "string",
    SUBJECT: "string",
    SUBJECT_CN: "string",
    ISSUER: "string",
    NOT_AFTER: TIME,           # NaT for name+key anchors: they carry no dates
    KEY_TYPE: "category",
    CATALOG_NAME: "string",    # catalogue entry with this exact certificate, else with this key
    CATALOG_MATCH: "category",  # certificate | key | ""
    CATALOG_STATUS: "category",
    SAME_KEY_AS: "string",
    ROLE: "category",          # a CertRole value, "" if not a certificate
    EXPIRED: "boolean",        # not_after before the scan's as_of (<NA>: no dates)
    IN_STORE: "bool",
    TLS_STACK: "string",
    EVIDENCE: "string",
    DETAIL: "string",          # the reason of an error / skip, or more about the finding
    PIN: "string",
    PIN_EXPIRY: TIME,
    IDF_VERSION: "string",
}

SCAN_PROFILE_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    TRUST_STORE: "string",     # PEM bundle path relative to profiles.csv, "" if no anchor was found
    TLS_STACK: "string",       # "" when the evidence is missing or ambiguous (see notes)
    KEY_TYPES: "string",       # ";"-joined rsa / ecdsa, "" when it cannot be told
    PINS: "string",
    PIN_SCOPE: "string",
    PIN_EXPIRY: "string",      # ISO 8601, "" for none
    ANCHORS: "int64",
    STACK_EVIDENCE: "string",
    NOTES: "string",
    SCANNED_PATH: "string",
}

FIRMWARE_NOTE_COLUMNS: dict[str, Any] = {
    PROFILE: "string",
    SEVERITY_COL: CategoricalOf(tuple(s.value for s in NoteSeverity), ordered=True),
    NOTE: "string",
    FILE: "string",
    OFFSET: "Int64",
}

# The audit's ``firmware_notes`` frame (``iotaudit audit --scan``): the notes of the scanned profiles the
# inventory has, one row per inventory profile (key) x note, with its device count.
FIRMWARE_NOTES_DTYPES: dict[str, Any] = {
    PROFILE: "category",         # the inventory's profile key (the scanned name; ``~2`` ... for its variants)
    SEVERITY_COL: FIRMWARE_NOTE_COLUMNS[SEVERITY_COL],
    NOTE: "string",
    FILE: "string",
    OFFSET: "Int64",
    DEVICES: "int64",            # devices of that profile
}
# --- end of the firmware scan block ------------------------------------------


# --- fleet scale: devices per group x profile, and the per-device output (iotaudit.auditing) ---
GROUP_DEVICES_DTYPES: dict[str, Any] = {   # the audit's group_devices frame: what a group filter needs
    GROUP: "string",
    PROFILE: "string",           # the profile key
    DEVICES: "int64",
}
# devices.parquet's firmware-side break date is the expiry frame's FIRMWARE_BREAK_DATE column (same name).
FIRMWARE_SIDE_BREAK_DATE = FIRMWARE_BREAK_DATE
WORST_PIN_RISK = "worst_pin_risk"                 # devices.parquet: the profile's most severe pinning risk ("" = none)
DEVICE_RESULT_DTYPES: dict[str, Any] = {   # devices.parquet, after device_id, group, profile
    PROFILE: "string",
    VERDICT: "string",
    FIRMWARE_SIDE_BREAK_DATE: TIME,
    WORST_PIN_RISK: "string",
}


def __getattr__(name: str) -> Any:
    """``VERDICT_DTYPE`` and ``FIRMWARE_CAUSE_DTYPE``: pandas categorical dtypes, built on first use (PEP 562)."""
    lazy = {"VERDICT_DTYPE": VERDICT_CATEGORIES, "FIRMWARE_CAUSE_DTYPE": FIRMWARE_CAUSE_CATEGORIES}
    if name in lazy:
        dtype = lazy[name].pandas()
        globals()[name] = dtype
        return dtype
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
