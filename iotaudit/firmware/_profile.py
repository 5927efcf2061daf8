"""From one firmware's findings to its profile row, its trust store and the fleet owner's notes.

The trust store is what a config names when one does (Greengrass
``rootCaPath``, an SDK sample's ``ca_filepath``, Android ``@raw`` trust
anchors), else every CA certificate and bundle root found.  Leaf
certificates join the store only when they look like server certificates
(serverAuth or a DNS name): a device's own client certificate is not an
anchor.  A name + key anchor (ESP bundle entry) enters the PEM store as the
catalogue certificate with the same key, since a verifier needs a
certificate; the anchor's lack of dates is a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from .. import columns as c
from ..catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from ..certs import cert_sha256, certificate_record, spki_pin_from_hex
from ..columns import CertRole, FindingKind, NoteSeverity, ScanFormat
from ._model import Finding
from .configs import idf_version_tuple
from .espbundle import BundleLayout
from .stack import guess_stack

STORE_DIRECTORY = "trust_stores"
_AWS_ROOT_STATUSES = {CatalogStatus.IN_USE.value, CatalogStatus.RESERVED.value, CatalogStatus.CROSS_SIGNER.value,
                      CatalogStatus.LEGACY.value}
_SELECTING = {"system.rootCaPath", "caPath", "trust-anchors", "ca_filepath", "CAFilePath", "ca_file", "cafile",
              "root_ca_path", "rootCAPath", "ROOT_CA_CERT_PATH", "ROOT_CA_PATH", "ca-file", "root-ca", "root_ca",
              "ca-path", "ca_path"}


@dataclass(frozen=True, slots=True)
class Profile:
    """One scanned firmware: its profile row, findings rows and trust store certificates."""

    name: str
    row: dict[str, Any]
    rows: list[dict[str, Any]] = field(repr=False)
    store: tuple[x509.Certificate, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a profile needs a name")


def store_file(profile: str) -> str:
    """The trust store path, relative to ``profiles.csv``, of ``profile``."""
    return f"{STORE_DIRECTORY}/{re.sub(r'[^A-Za-z0-9._-]', '_', profile)}.pem"


def _is_server_leaf(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
        return ExtendedKeyUsageOID.SERVER_AUTH in eku
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        return False
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        return bool(san.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        return False


def _same_key_name(catalog: Catalog, spki: str) -> tuple[CatalogEntry | None, str]:
    entries = catalog.by_spki(spki)
    if not entries:
        return None, ""
    return entries[0], entries[0].display_name


def _certificate_row(finding: Finding, catalog: Catalog, as_of: datetime) -> dict[str, Any]:
    cert = finding.certificate
    assert cert is not None
    rec = certificate_record(cert)
    entry, match = catalog.identify(rec[c.SHA256], rec[c.SPKI_SHA256])
    key_entry, same_key = _same_key_name(catalog, rec[c.SPKI_SHA256])
    if not rec[c.IS_CA]:
        role = CertRole.LEAF
    elif rec[c.SELF_SIGNED]:
        role = CertRole.ROOT
    elif (entry is not None and entry.role is CatalogRole.CROSS_SIGNED) or (
            key_entry is not None and key_entry.role is CatalogRole.ROOT):
        role = CertRole.CROSS_SIGNED_ROOT
    else:
        role = CertRole.INTERMEDIATE
    return {
        c.SHA256: rec[c.SHA256], c.SPKI_SHA256: rec[c.SPKI_SHA256], c.SPKI_PIN: rec[c.SPKI_PIN],
        c.SUBJECT: rec[c.SUBJECT], c.SUBJECT_CN: rec[c.SUBJECT_CN], c.ISSUER: rec[c.ISSUER],
        c.NOT_AFTER: rec[c.NOT_AFTER], c.KEY_TYPE: rec[c.KEY_TYPE],
        c.CATALOG_NAME: entry.name if entry else "", c.CATALOG_MATCH: match.value,
        c.CATALOG_STATUS: entry.status.value if entry else "", c.SAME_KEY_AS: same_key,
        c.ROLE: role.value, c.EXPIRED: rec[c.NOT_AFTER] < as_of,
    }


def _anchor_row(finding: Finding, catalog: Catalog) -> dict[str, Any]:
    anchor = finding.anchor
    assert anchor is not None
    spki = anchor.spki_sha256
    entry, same_key = _same_key_name(catalog, spki)
    role = ""
    if entry is not None:
        role = CertRole.INTERMEDIATE.value if entry.role is CatalogRole.INTERMEDIATE else CertRole.ROOT.value
    return {
        c.SHA256: "", c.SPKI_SHA256: spki, c.SPKI_PIN: spki_pin_from_hex(spki), c.SUBJECT: anchor.subject,
        c.SUBJECT_CN: anchor.subject_cn, c.ISSUER: "", c.NOT_AFTER: None, c.KEY_TYPE: anchor.key_type,
        c.CATALOG_NAME: entry.name if entry else "", c.CATALOG_MATCH: "key" if entry else "",
        c.CATALOG_STATUS: entry.status.value if entry else "", c.SAME_KEY_AS: same_key, c.ROLE: role,
        c.EXPIRED: None,
    }


def _row(finding: Finding, profile: str, catalog: Catalog, as_of: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        c.PROFILE: profile, c.FILE: finding.file, c.OFFSET: finding.offset, c.LINE: finding.line,
        c.SCAN_FORMAT: finding.format.value, c.FINDING: finding.kind.value, c.EMBEDDED_AS: finding.embedded_as,
        c.CONTAINER: finding.container, c.SHA256: "", c.SPKI_SHA256: "", c.SPKI_PIN: "", c.SUBJECT: "",
        c.SUBJECT_CN: "", c.ISSUER: "", c.NOT_AFTER: None, c.KEY_TYPE: "", c.CATALOG_NAME: "", c.CATALOG_MATCH: "",
        c.CATALOG_STATUS: "", c.SAME_KEY_AS: "", c.ROLE: "", c.EXPIRED: None, c.IN_STORE: False,
        c.TLS_STACK: finding.tls_stack, c.EVIDENCE: finding.evidence, c.DETAIL: finding.detail, c.PIN: finding.pin,
        c.PIN_EXPIRY: finding.pin_expiry, c.IDF_VERSION: finding.idf_version,
    }
    if finding.kind is FindingKind.CERTIFICATE:
        row.update(_certificate_row(finding, catalog, as_of))
    elif finding.kind is FindingKind.ANCHOR:
        row.update(_anchor_row(finding, catalog))
    return row


def _candidate(finding: Finding, row: dict[str, Any]) -> bool:
    if finding.kind is FindingKind.ANCHOR:
        return True
    if finding.kind is not FindingKind.CERTIFICATE:
        return False
    return row[c.ROLE] != CertRole.LEAF.value or _is_server_leaf(finding.certificate)


def _anchor_certificate(finding: Finding, catalog: Catalog) -> x509.Certificate | None:
    """The catalogue certificate that stands for a name + key anchor: same key, same subject preferred."""
    anchor = finding.anchor
    assert anchor is not None
    entries = catalog.by_spki(anchor.spki_sha256)
    for entry in entries:
        if entry.certificate.subject.public_bytes() == anchor.name_der:
            return entry.certificate
    return entries[0].certificate if entries else None


def build_profile(name: str, scanned_path: str, findings: Sequence[Finding], catalog: Catalog,
                  as_of: datetime) -> Profile:
    """The profile row, finding rows and trust store of one scanned firmware."""
    rows = [_row(f, name, catalog, as_of) for f in findings]
    notes: list[str] = []
    selecting = [f for f in findings if f.kind is FindingKind.CONFIG and f.setting in _SELECTING and f.value]
    selected = {path for f in selecting for path in f.ca_files}
    for f in selecting:
        if not f.ca_files and f.setting != "trust-anchors system":
            notes.append(f"{f.file}: {f.evidence}, but that file is not in the scanned tree")
    for f in findings:
        if f.kind is FindingKind.CONFIG and f.setting == "trust-anchors system":
            notes.append(f"{f.file}: {f.evidence}")
    store: dict[str, x509.Certificate] = {}
    unresolved: list[str] = []
    certificate_anchors: set[str] = set()
    for finding, row in zip(findings, rows, strict=True):
        if not _candidate(finding, row):
            if finding.kind is FindingKind.CERTIFICATE and row[c.ROLE] == CertRole.LEAF.value:
                row[c.DETAIL] = (row[c.DETAIL] + "; " if row[c.DETAIL] else "") + (
                    "leaf without serverAuth or a DNS name: taken as a client certificate, not an anchor")
            continue
        if selected and finding.file not in selected:
            continue
        row[c.IN_STORE] = True
        if finding.kind is FindingKind.CERTIFICATE:
            store.setdefault(row[c.SHA256], finding.certificate)
            certificate_anchors.add(row[c.SHA256])
        else:
            cert = _anchor_certificate(finding, catalog)
            if cert is None:
                unresolved.append(row[c.SUBJECT_CN])
            else:
                store.setdefault(cert_sha256(cert), cert)
    if unresolved:
        notes.append(f"{len(unresolved)} bundle root(s) not in the {catalog.kind} catalogue, left out of the PEM "
                     f"store (name + key only): {', '.join(sorted(set(unresolved))[:5])}")
    bundle_on = [f for f in findings if f.kind is FindingKind.STACK and f.family == "esp-idf-bundle"
                 and f.setting.startswith("CONFIG_")]
    if bundle_on and not any(f.kind is FindingKind.ANCHOR for f in findings):
        notes.append(f"{bundle_on[0].file}: the certificate bundle is enabled but no x509_crt_bundle was found: "
                     "scan the build directory (build/x509_crt_bundle) or the firmware image")
    guess = guess_stack(findings, certificate_anchors=len(certificate_anchors))
    if guess.note:
        notes.append(("tls_stack left empty: " if not guess.tls_stack else "") + guess.note)
    key_types = next((";".join(f.key_types) for f in findings if f.key_types), "")
    pins = list(dict.fromkeys(f.pin for f in findings if f.kind is FindingKind.PIN and f.pin))
    expiries = [f.pin_expiry for f in findings if f.kind is FindingKind.PIN and f.pin_expiry is not None]
    row = {
        c.PROFILE: name, c.TRUST_STORE: store_file(name) if store else "", c.TLS_STACK: guess.tls_stack,
        c.KEY_TYPES: key_types, c.PINS: ";".join(pins), c.PIN_SCOPE: "any" if pins else "",
        c.PIN_EXPIRY: min(expiries).isoformat() if expiries else "", c.ANCHORS: len(store),
        c.STACK_EVIDENCE: guess.evidence, c.NOTES: " | ".join(dict.fromkeys(notes)), c.SCANNED_PATH: scanned_path,
    }
    return Profile(name, row, rows, tuple(store.values()))


# --- notes for the fleet owner -------------------------------------------------------------


def _note(profile: str, severity: NoteSeverity, note: str, file: str = "", offset: Any = None) -> dict[str, Any]:
    return {c.PROFILE: profile, c.SEVERITY_COL: severity.value, c.NOTE: note, c.FILE: file,
            c.OFFSET: None if offset is None or pd.isna(offset) else int(offset)}


def _label(row: Any) -> str:
    return row[c.SAME_KEY_AS] or row[c.SUBJECT_CN] or row[c.SUBJECT] or "(unnamed)"


def firmware_notes(findings: pd.DataFrame, *, as_of: datetime | None = None) -> pd.DataFrame:
    """The findings a fleet owner must see, one row each (:data:`iotaudit.columns.FIRMWARE_NOTE_COLUMNS`).

    Args:
        findings: The scan findings (``ScanResult.findings`` or ``scan.parquet``).
        as_of: Judge anchor expiry at this time (tz-aware); default the ``expired`` column the scan wrote.

    Returns:
        One row per note: accidental pins (an Amazon intermediate or a leaf as anchor), expired anchors,
        a single root, no AWS root, the same root twice in one store, a bundle layout that the ESP-IDF
        version found cannot read, name + key anchors without dates, files that could not be read,
        and paths skipped.  Ordered by profile, then worst first.
    """
    out: list[dict[str, Any]] = []
    if as_of is not None:
        as_of = c.as_utc(as_of)
    for profile, rows in findings.groupby(c.PROFILE, sort=True, observed=True):
        profile = str(profile)
        store = rows[rows[c.IN_STORE].astype(bool)]
        for _, row in store.iterrows():
            status, role = str(row[c.CATALOG_STATUS]), str(row[c.ROLE])
            if role == CertRole.INTERMEDIATE.value and status == CatalogStatus.ISSUING_CA.value:
                out.append(_note(profile, NoteSeverity.WARNING, f"accidental pin: Amazon intermediate {_label(row)} is "
                                 "a trust anchor; AWS rotates its intermediates, and this firmware fails when AWS IoT "
                                 "serves another one", row[c.FILE], row[c.OFFSET]))
            elif role == CertRole.LEAF.value:
                out.append(_note(profile, NoteSeverity.ERROR, f"accidental pin: leaf certificate {_label(row)} is a "
                                 "trust anchor; it stops matching when the server's certificate is renewed",
                                 row[c.FILE], row[c.OFFSET]))
            expired = row[c.EXPIRED]
            if as_of is not None and not pd.isna(row[c.NOT_AFTER]):
                expired = row[c.NOT_AFTER] < as_of
            if expired is True or (not pd.isna(expired) and bool(expired)):
                out.append(_note(profile, NoteSeverity.WARNING, f"expired anchor: {_label(row)} (not after "
                                 f"{pd.Timestamp(row[c.NOT_AFTER]).date().isoformat()})", row[c.FILE], row[c.OFFSET]))
        keys = store.drop_duplicates([c.SPKI_SHA256, c.SUBJECT])
        if store.empty:
            out.append(_note(profile, NoteSeverity.ERROR, "no trust anchor found: nothing to validate AWS IoT Core's "
                             "chains with (or the store lives outside the scanned files)"))
        else:
            if not (store[c.CATALOG_STATUS].astype(str).isin(_AWS_ROOT_STATUSES)).any():
                out.append(_note(profile, NoteSeverity.ERROR, "no AWS root in the store (no key of Amazon Root CA 1-4, "
                                 "Starfield or VeriSign G5): AWS IoT Core's chains cannot validate"))
            if len(keys) == 1:
                row = keys.iloc[0]
                out.append(_note(profile, NoteSeverity.WARNING, f"single root: {_label(row)} is the only anchor; "
                                 "a root change on the AWS side (RSA -> ECC, Root CA 2/4) leaves no fallback",
                                 row[c.FILE], row[c.OFFSET]))
            twice = store[store.duplicated([c.CONTAINER, c.SPKI_SHA256, c.SUBJECT], keep="first")]
            for _, row in twice.iterrows():
                out.append(_note(profile, NoteSeverity.WARNING, f"duplicate root: {_label(row)} is in the same store "
                                 "twice", row[c.FILE], row[c.OFFSET]))
            anchors = store[store[c.FINDING].astype(str) == FindingKind.ANCHOR.value]
            for container, group in anchors.groupby(c.CONTAINER, sort=True):
                first = group.iloc[0]
                out.append(_note(profile, NoteSeverity.INFO, f"name+key anchor: no dates ({len(group)} roots of the "
                                 "ESP-IDF bundle carry only a subject and a key; esp_crt_bundle does not check anchor "
                                 "expiry, and the firmware cannot tell it)", first[c.FILE], first[c.OFFSET]))
        versions = [idf_version_tuple(v) for v in rows[c.IDF_VERSION].astype(str) if v]
        versions = [v for v in versions if v]
        bundles = rows[rows[c.FINDING].astype(str).eq(FindingKind.STACK.value)
                       & rows[c.SCAN_FORMAT].astype(str).isin([ScanFormat.ESP_BUNDLE.value,
                                                               ScanFormat.ESP_BUNDLE_LEGACY.value])]
        if versions:
            version = max(versions)
            for _, row in bundles.iterrows():
                layout = (BundleLayout.LEGACY if str(row[c.SCAN_FORMAT]) == ScanFormat.ESP_BUNDLE_LEGACY.value
                          else BundleLayout.CURRENT)
                if not layout.matches_idf(version):
                    out.append(_note(profile, NoteSeverity.ERROR, f"bundle layout mismatch: a {layout} bundle, but "
                                     f"ESP-IDF {'.'.join(map(str, version))} reads only the "
                                     f"{'current' if layout is BundleLayout.LEGACY else 'legacy'} layout; "
                                     "esp_crt_bundle_attach() fails (\"Failed to attach bundle\")",
                                     row[c.FILE], row[c.OFFSET]))
        for _, row in rows[rows[c.FINDING].astype(str) == FindingKind.ERROR.value].iterrows():
            out.append(_note(profile, NoteSeverity.WARNING, f"could not read: {row[c.DETAIL]}", row[c.FILE], row[c.OFFSET]))
        skipped = rows[rows[c.FINDING].astype(str) == FindingKind.SKIPPED.value]
        for _, row in skipped.iterrows():
            out.append(_note(profile, NoteSeverity.INFO, f"skipped: {row[c.DETAIL]}", row[c.FILE]))
    frame = c.typed_frame(out, c.FIRMWARE_NOTE_COLUMNS)
    # severity is an ordered categorical (info < warning < error): worst first within each profile
    return frame.sort_values([c.PROFILE, c.SEVERITY_COL], ascending=[True, False], kind="stable").reset_index(drop=True)
