"""Read the trust stores, pins and TLS stacks that devices really carry, from firmware.

``iotaudit.scan(path)`` (and ``iotaudit scan PATH... --out profiles.csv``)
takes a source tree, a build directory, an ELF file, a raw flash image or
any file, and returns one profile row per scanned firmware in the
inventory's own columns, plus one row per finding.  One reader per format:

================ =================================================================
module           finds
================ =================================================================
``pem``          PEM anywhere; C/C++ string literals (joined, escapes undone, raw strings)
``der``          DER files, C byte arrays and Zephyr ``.der.inc`` lists, DER inside binaries
``espbundle``    ESP-IDF ``x509_crt_bundle`` in both layouts (reader, writer, finder)
``elf``          ``_binary_<name>_start``/``_end`` embedded files
``configs``      ``sdkconfig``, wolfSSL ``options.h``, Greengrass / SDK CA file settings, CMake embeds
``pins``         Android network security config, TrustKit, OkHttp
``stack``        version strings, ESP-IDF app descriptor, and the ``tls_stack`` guess
================ =================================================================

Each reader returns :class:`~iotaudit.firmware._model.Finding` values; this
module labels them with the catalogue, resolves the CA files configs name,
and joins them into profiles (``_profile``).  Bad input is data: a
truncated bundle, garbage DER or an unreadable file is an ``error`` finding
with its file and offset; symlink loops and special files are ``skipped``
findings.  Only an unusable PATH raises :class:`iotaudit.errors.ScanError`.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from cryptography import x509
from tqdm import tqdm

from .. import columns as c
from ..catalog import Catalog, aws_catalog
from ..certs import cert_pem
from ..columns import FindingKind
from ..errors import ScanError
from ._model import Finding
from ._profile import STORE_DIRECTORY, build_profile, firmware_notes, store_file
from ._walk import iter_files, scan_file
from .espbundle import BundleLayout, EspBundle, read_esp_bundle, write_esp_bundle

FINDINGS_FILE = "scan.parquet"


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scan found.

    Attributes:
        profiles: One row per scanned firmware (:data:`iotaudit.columns.SCAN_PROFILE_COLUMNS`):
            ``profile``, ``trust_store`` (the PEM file :meth:`write` creates, relative to
            ``profiles.csv``), ``tls_stack``, ``key_types``, ``pins``, ``pin_scope``,
            ``pin_expiry``, plus ``anchors``, ``stack_evidence``, ``notes``, ``scanned_path``.
        findings: One row per finding (:data:`iotaudit.columns.SCAN_FINDING_COLUMNS`).
        stores: Profile name -> the certificates of its trust store.
        as_of: The time anchor expiry was judged at.
    """

    profiles: pd.DataFrame
    findings: pd.DataFrame
    stores: Mapping[str, tuple[x509.Certificate, ...]] = field(repr=False)
    as_of: datetime

    def __post_init__(self) -> None:
        c.as_utc(self.as_of)
        missing = [col for col in c.SCAN_PROFILE_COLUMNS if col not in self.profiles.columns]
        missing += [col for col in c.SCAN_FINDING_COLUMNS if col not in self.findings.columns]
        if missing:
            raise ScanError("<scan result>", None, f"columns missing: {', '.join(missing)}")

    @property
    def notes(self) -> pd.DataFrame:
        """The fleet owner's notes (:func:`firmware_notes` of :attr:`findings`)."""
        return firmware_notes(self.findings)

    def write(self, out: str | Path) -> Path:
        """Write ``profiles.csv`` (``out``), its ``trust_stores/`` and ``scan.parquet`` next to it.

        Returns:
            ``out``.

        Raises:
            ScanError: when a file cannot be written.
        """
        return write_scan(self, out)


def _resolve(value: str, config_file: str, files: Sequence[str], by_name: Mapping[str, list[str]]) -> tuple[str, ...]:
    """The scanned files a CA path written in ``config_file`` refers to."""
    value = value.strip().replace("\\", "/")
    known = set(files)
    here = posixpath.dirname(config_file)
    tries = [posixpath.normpath(posixpath.join(here, value)), posixpath.normpath(value.lstrip("/"))]
    for candidate in tries:
        if candidate in known:
            return (candidate,)
    # An absolute device path (/greengrass/v2/rootCA.pem) inside a rootfs scanned from elsewhere.
    tail = value.lstrip("/")
    suffixed = [f for f in files if f.endswith("/" + tail)]
    if suffixed:
        return tuple(suffixed)
    base = posixpath.basename(value)
    if value.startswith("res/raw/"):  # Android @raw/name: any extension
        return tuple(f for f in files if "/res/raw/" in f"/{f}" and posixpath.splitext(posixpath.basename(f))[0] == base)
    return tuple(by_name.get(base, ()))


def _with_ca_files(findings: list[Finding], files: Sequence[str]) -> list[Finding]:
    by_name: dict[str, list[str]] = {}
    for rel in files:
        by_name.setdefault(posixpath.basename(rel), []).append(rel)
    out = []
    for finding in findings:
        if finding.kind is FindingKind.CONFIG and finding.format is c.ScanFormat.CA_FILE_CONFIG or (
                finding.format is c.ScanFormat.ANDROID_NSC and finding.setting == "trust-anchors"):
            if finding.setting not in ("EMBED_TXTFILES", "EMBED_FILES", "target_add_binary_data"):
                finding = dataclasses.replace(finding, ca_files=_resolve(finding.value, finding.file, files, by_name))
        out.append(finding)
    return out


def _profile_names(paths: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(paths):
            raise ScanError("--profile", None, f"{len(names)} profile name(s) for {len(paths)} path(s): give one per PATH")
        if any(not n.strip() for n in names):
            raise ScanError("--profile", None, "a profile name cannot be empty")
        chosen = [n.strip() for n in names]
    else:
        chosen = [p.resolve().name or str(p) for p in paths]
    out, seen = [], {}
    for name in chosen:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}~{seen[name]}")
    return out


def scan(paths: str | Path | Sequence[str | Path], *, profiles: Sequence[str] | None = None,
         catalog: Catalog | None = None, as_of: datetime | None = None, progress: bool | None = False) -> ScanResult:
    """Scan firmware for trust stores, pins and TLS stacks; one profile per PATH.

    Args:
        paths: One PATH or several: a directory (source tree, build directory, rootfs), an ELF
            file, a raw flash image or any file.
        profiles: Profile names, one per PATH (default: each PATH's name).
        catalog: The catalogue anchors are named with (default: the real AWS one; the lab's
            for lab firmware).
        as_of: Judge anchor expiry at this tz-aware time (default: now, taken once here).
        progress: Show a byte progress bar; None = only on a terminal.

    Returns:
        The :class:`ScanResult`.

    Raises:
        ScanError: when a PATH does not exist or is not a file or directory, or the profile names
            do not match the paths.
    """
    path_list = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not path_list:
        raise ScanError("<paths>", None, "nothing to scan")
    as_of = c.as_utc(as_of) if as_of is not None else datetime.now(timezone.utc)
    catalog = catalog if catalog is not None else aws_catalog()
    names = _profile_names(path_list, profiles)
    listings = [list(iter_files(path)) for path in path_list]
    total = sum(item[2] for listing in listings for item in listing if not isinstance(item, Finding))
    rows: list[dict] = []
    profile_rows: list[dict] = []
    stores: dict[str, tuple[x509.Certificate, ...]] = {}
    with tqdm(total=total, unit="B", unit_scale=True, desc="iotaudit scan",
              disable=None if progress is None else not progress) as bar:
        for path, name, listing in zip(path_list, names, listings, strict=True):
            findings: list[Finding] = []
            files = [item[1] for item in listing if not isinstance(item, Finding)]
            for item in listing:
                if isinstance(item, Finding):
                    findings.append(item)
                else:
                    findings += scan_file(item[0], item[1], item[2], progress=bar.update)
            profile = build_profile(name, str(path), _with_ca_files(findings, files), catalog, as_of)
            rows += profile.rows
            profile_rows.append(profile.row)
            stores[name] = profile.store
    return ScanResult(
        profiles=c.typed_frame(profile_rows, c.SCAN_PROFILE_COLUMNS),
        findings=c.typed_frame(rows, c.SCAN_FINDING_COLUMNS),
        stores=stores,
        as_of=as_of,
    )


def _replace(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_scan(result: ScanResult, out: str | Path) -> Path:
    """Write ``out`` (profiles.csv), ``trust_stores/<profile>.pem`` and ``scan.parquet`` beside it.

    Each file is written to a temporary sibling and renamed into place.

    Raises:
        ScanError: when the directory or a file cannot be written.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        (out.parent / STORE_DIRECTORY).mkdir(exist_ok=True)
        for name, certs in result.stores.items():
            if certs:
                _replace(out.parent / store_file(name), "".join(cert_pem(cert) for cert in certs).encode("ascii"))
        parquet = out.parent / f".{FINDINGS_FILE}.partial"
        result.findings.to_parquet(parquet, index=False)
        os.replace(parquet, out.parent / FINDINGS_FILE)
        _replace(out, result.profiles.to_csv(index=False).encode("utf-8"))
    except OSError as err:
        raise ScanError(getattr(err, "filename", None) or out, None,
                        f"cannot write scan output ({err.strerror or err})") from err
    return out


def read_findings(path: str | Path) -> pd.DataFrame:
    """The findings :func:`write_scan` wrote: ``scan.parquet`` itself, or the ``profiles.csv`` (or its
    directory) that it sits next to.

    Args:
        path: A ``scan.parquet``, the ``profiles.csv`` written by ``iotaudit scan --out``, or their directory.

    Returns:
        The findings, typed as :data:`iotaudit.columns.SCAN_FINDING_COLUMNS` (what :func:`firmware_notes`
        reads); ``attrs["source"]`` is the Parquet file read.

    Raises:
        ScanError: naming the file, when it does not exist, is not Parquet, or lacks the scan's columns.
    """
    given = Path(path)
    if given.is_dir():
        target = given / FINDINGS_FILE
    elif given.suffix.lower() == ".csv":  # profiles.csv: the findings are written beside it
        target = given.with_name(FINDINGS_FILE)
    else:
        target = given
    if not target.is_file():
        why = f"no {FINDINGS_FILE} next to {given}" if target != given else "no such file"
        raise ScanError(target, None, f"{why} (give the scan.parquet or the profiles.csv that iotaudit scan wrote)")
    try:
        frame = pd.read_parquet(target)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ScanError(target, None, f"not a readable Parquet file of iotaudit scan findings ({err})") from err
    missing = [col for col in c.SCAN_FINDING_COLUMNS if col not in frame.columns]
    if missing:
        raise ScanError(target, None, f"not iotaudit scan findings: column(s) missing: {', '.join(missing)}")
    try:
        typed = c.typed_frame(frame, c.SCAN_FINDING_COLUMNS)
    except (TypeError, ValueError) as err:
        raise ScanError(target, None, f"a column of the findings has the wrong type ({err})") from err
    typed.attrs["source"] = str(target)
    return typed


__all__ = [
    "BundleLayout", "EspBundle", "ScanResult", "firmware_notes", "read_esp_bundle", "read_findings", "scan",
    "write_esp_bundle", "write_scan",
]
