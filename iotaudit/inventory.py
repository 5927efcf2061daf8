"""Device inventories: devices -> distinct firmware profiles -> trust stores.

An inventory is a CSV, Parquet or JSON table with one row per device and the
columns of :data:`INVENTORY_COLUMNS` (the public contract, documented with an
example in ``data/sample_inventory.md``)::

    device_id   unique id of the device (thing name)
    group       fleet / thing group ("" allowed)
    profile     firmware or profile name, as the fleet owner writes it
    region      AWS region the device connects to, or "*" for any
    endpoints   ";"-separated host names (or host:port) it connects to, or "*" = every endpoint of its region
    trust_store ";"-separated catalogue names (AmazonRootCA1;AmazonRootCA3) or a PEM bundle path
                relative to the inventory file
    key_types   ";"-separated key types its TLS stack offers: rsa, ecdsa (ec is accepted for ecdsa)
    tls_stack   the device's TLS stack: one of iotaudit.stacks.STACK_IDS (default
                openssl-3-partial-chain)                                [optional column]
    path_builder  old inventories: modern (= openssl-3-partial-chain) or legacy-chain-top
                (= openssl-1.0.1); a row giving both must agree         [optional column]
    pins        ";"-separated pins: sha256/<base64>, spki-sha256:<hex>,
                cert-sha256:<hex>, cert-sha1:<hex> ("" = no pinning; any syntax
                iotaudit.pinning.parse_pin accepts)                     [optional column]
    pin_scope   any (default), served, leaf or root                     [optional column]
    pin_expiry  date after which the app stops enforcing its pins (ISO 8601; "" = never) [optional column]

Every check runs once per *distinct value* of a column, never once per
device, and devices are grouped into distinct profiles with integer codes, so
loading 10M devices costs a few pandas passes.  Bad rows are reported with
their row number (CSV: the line in the file, header = line 1; Parquet and
JSON: the 1-based record number), column and reason: by default loading stops
with :class:`iotaudit.errors.InventoryError`; with ``skip_bad_rows=True`` the
bad rows are left out, counted in ``bad_rows`` and listed in ``problems``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cryptography import x509

from . import columns as c
from .columns import (
    DEVICE_ID,
    DEVICES,
    ENDPOINTS,
    FIRST_ROW,
    GROUP,
    GROUPS,
    KEY_TYPES,
    PATH_BUILDER,
    PIN_EXPIRY,
    PIN_SCOPE,
    PINS,
    TLS_STACK,
    PROFILE,
    PROFILE_DTYPES,
    PROFILE_KEY,
    REGION,
    TRUST_STORE,
    PathBuilder,
    PinScope,
)
from .catalog import Catalog
from .errors import CatalogError, InventoryError, PemError
from .options import MAX_TRUST_STORE_BYTES, MAX_TRUST_STORE_CERTIFICATES, parse_iso_instant
from .pins import pin_syntax_problem
from .profiles import Profile, profiles_from_frame
from .stacks import DEFAULT_STACK_ID, PATH_BUILDER_STACKS, STACK_IDS

REQUIRED_COLUMNS = (DEVICE_ID, GROUP, PROFILE, REGION, ENDPOINTS, TRUST_STORE, KEY_TYPES)
OPTIONAL_COLUMNS = {TLS_STACK: "", PATH_BUILDER: "", PINS: "", PIN_SCOPE: "any", PIN_EXPIRY: ""}
INVENTORY_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)

ALL = "*"
PIN_SCOPES = tuple(scope.value for scope in PinScope)
PATH_BUILDERS = tuple(builder.value for builder in PathBuilder)
_KEY_TYPE_ALIASES = {"rsa": c.KeyType.RSA.value, "ecdsa": c.KeyType.EC.value, "ec": c.KeyType.EC.value}
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_HOST = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9*.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_CATALOG_NAME = re.compile(r"^[A-Za-z0-9._+-]+$")
_PEM_SUFFIXES = (".pem", ".crt", ".cer", ".bundle")

Problem = tuple[int | None, str | None, str]


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def is_pem_path(spec: str) -> bool:
    """True when a ``trust_store`` value names a PEM bundle file rather than catalogue names."""
    return "/" in spec or "\\" in spec or spec.lower().endswith(_PEM_SUFFIXES)


# Each normaliser maps one distinct raw value to (normalised value, problem or "").
def _norm_required(column: str) -> Callable[[str], tuple[str, str]]:
    def norm(value: str) -> tuple[str, str]:
        value = value.strip()
        return (value, "") if value else ("", f"{column} is empty")
    return norm


def _norm_group(value: str) -> tuple[str, str]:
    return value.strip(), ""


def _norm_region(value: str) -> tuple[str, str]:
    value = value.strip().lower()
    if not value:
        return "", "region is empty (write a region such as us-east-1, or * for any)"
    if value != ALL and not _REGION.match(value):
        return "", f"region {value!r} is not a region name"
    return value, ""


def _norm_endpoints(value: str) -> tuple[str, str]:
    parts = _split(value)
    if not parts:
        return "", "endpoints is empty (write host names separated by ';', or * for every endpoint of the region)"
    if ALL in parts:
        if len(parts) > 1:
            return "", "endpoints mixes * with host names"
        return ALL, ""
    bad = [p for p in parts if not _HOST.match(p)]
    if bad:
        return "", f"endpoints: {bad[0]!r} is not a host name or host:port"
    return ";".join(sorted(dict.fromkeys(p.lower() for p in parts))), ""


def _norm_key_types(value: str) -> tuple[str, str]:
    parts = [p.lower() for p in _split(value)]
    if not parts:
        return "", "key_types is empty (write rsa, ecdsa or rsa;ecdsa)"
    bad = [p for p in parts if p not in _KEY_TYPE_ALIASES]
    if bad:
        return "", f"key_types: unknown key type {bad[0]!r} (use rsa and/or ecdsa)"
    kinds = {_KEY_TYPE_ALIASES[p] for p in parts}
    return ";".join(k for k in (c.KeyType.RSA.value, c.KeyType.EC.value) if k in kinds), ""


def _norm_path_builder(value: str) -> tuple[str, str]:
    value = value.strip().lower()
    if value and value not in PATH_BUILDERS:
        return "", f"path_builder {value!r} is not one of {', '.join(PATH_BUILDERS)}"
    return value, ""


def _norm_tls_stack(value: str) -> tuple[str, str]:
    value = value.strip().lower()
    if value and value not in STACK_IDS:
        return "", f"tls_stack {value!r} is not a known TLS stack (known: {', '.join(STACK_IDS)})"
    return value, ""


def _resolve_stack(tls_stack: str, path_builder: str) -> tuple[str, str]:
    """The stack id of a row from its normalised ``tls_stack`` and ``path_builder`` cells, or a problem.

    ``path_builder`` maps onto a stack (:data:`iotaudit.stacks.PATH_BUILDER_STACKS`);
    a row that gives both must name the same stack; neither gives the default stack.
    """
    mapped = PATH_BUILDER_STACKS.get(path_builder, "") if path_builder else ""
    if tls_stack and mapped and tls_stack != mapped:
        return "", (f"tls_stack {tls_stack!r} disagrees with path_builder {path_builder!r} "
                    f"(which means tls_stack {mapped!r}); give one of them, or make them agree")
    return tls_stack or mapped or DEFAULT_STACK_ID, ""


def _norm_pins(value: str) -> tuple[str, str]:
    parts = list(dict.fromkeys(_split(value)))
    for pin in parts:
        problem = pin_syntax_problem(pin)
        if problem:
            return "", problem
    return ";".join(parts), ""


def _norm_pin_scope(value: str) -> tuple[str, str]:
    value = value.strip().lower() or OPTIONAL_COLUMNS[PIN_SCOPE]
    if value not in PIN_SCOPES:
        return "", f"pin_scope {value!r} is not one of {', '.join(PIN_SCOPES)}"
    return value, ""


def _norm_pin_expiry(value: str) -> tuple[str, str]:
    value = value.strip()
    if not value:
        return "", ""
    stamp = parse_iso_instant(value)
    if stamp is None:
        return "", (f"pin_expiry {value!r} is not a date: write an ISO 8601 date or a date-time with a time "
                    "zone (2025-06-30, 2025-06-30T12:30:00Z or 2025-06-30T14:30:00+02:00)")
    # One fixed textual form for every value, whatever its precision, so the column parses as one format.
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"), ""


@dataclass(frozen=True, slots=True)
class TrustStorePolicy:
    """Where ``trust_store`` PEM paths may point, and how big a store may be.

    Attributes:
        base_dir: Relative paths are relative to this directory (the inventory's), and must stay inside it.
        allow_outside: Further directories a path may resolve into (``--allow-outside``); symbolic links
            are followed before the check, so a link cannot lead out either.
        max_bytes: Largest store file read (:data:`MAX_TRUST_STORE_BYTES`).
        max_certificates: Most certificates in one store (:data:`MAX_TRUST_STORE_CERTIFICATES`).
    """

    base_dir: Path
    allow_outside: tuple[Path, ...] = ()
    max_bytes: int = MAX_TRUST_STORE_BYTES
    max_certificates: int = MAX_TRUST_STORE_CERTIFICATES

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        object.__setattr__(self, "allow_outside", tuple(Path(p) for p in self.allow_outside))
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        if self.max_certificates < 1:
            raise ValueError(f"max_certificates must be >= 1, got {self.max_certificates}")

    @property
    def roots(self) -> tuple[Path, ...]:
        """Resolved directories a store may live in."""
        return tuple(p.resolve() for p in (self.base_dir, *self.allow_outside))

    def load(self, spec: str) -> list[x509.Certificate]:
        """The certificates of trust-store file ``spec``, checked against this policy.

        Raises:
            PemError: naming the path and the rule it broke (outside the allowed directories, not a
                regular file, too large, too many certificates) or the malformed PEM block.
        """
        from .certs import load_pem_x509_certificates

        path = self.base_dir / spec
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError) as err:
            raise PemError(path, None, f"cannot read file ({getattr(err, 'strerror', None) or err})") from err
        roots = self.roots
        if not any(real.is_relative_to(root) for root in roots):
            raise PemError(path, None, f"resolves to {real}, outside the inventory's directory {roots[0]} "
                                       "(allow another directory with --allow-outside DIR)")
        try:
            # O_NONBLOCK: opening a FIFO must not hang; fstat on the open file (not the name) decides.
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as err:
            raise PemError(path, None, f"cannot read file ({err.strerror or err})") from err
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise PemError(path, None, "is not a regular file (a trust store is a PEM file)")
            if info.st_size > self.max_bytes:
                raise PemError(path, None, f"is {info.st_size} bytes, more than the {self.max_bytes} a trust store "
                                           "may have")
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise PemError(path, None, f"is more than the {self.max_bytes} bytes a trust store may have")
        certs = load_pem_x509_certificates(data, path)
        if len(certs) > self.max_certificates:
            raise PemError(path, None, f"holds {len(certs)} certificates, more than the {self.max_certificates} a "
                                       "firmware trust store may have (a system bundle?); raise the limit "
                                       "with --max-store-certificates N")
        return certs


def _norm_trust_store(policy: TrustStorePolicy | Path) -> Callable[[str], tuple[str, str]]:
    if not isinstance(policy, TrustStorePolicy):
        policy = TrustStorePolicy(base_dir=policy)

    def norm(value: str) -> tuple[str, str]:
        value = value.strip()
        if not value:
            return "", "trust_store is empty (write catalogue names such as AmazonRootCA1;AmazonRootCA3, or a PEM file)"
        if is_pem_path(value):
            try:
                policy.load(value)
            except PemError as err:
                return "", f"trust_store PEM bundle {value!r} is unusable: {err}"
            return value, ""
        names = list(dict.fromkeys(_split(value)))
        bad = [n for n in names if not _CATALOG_NAME.match(n)]
        if bad:
            return "", f"trust_store: {bad[0]!r} is neither a catalogue name nor a PEM file path"
        return ";".join(names), ""
    return norm


_NESTED = "\x00nested:"  # prefix of a JSON object / nested array cell, which no column accepts


def _nested_problem(column: str, value: str) -> tuple[str, str] | None:
    """A bad-value result for a nested JSON cell (see :func:`_as_text`), else None."""
    if not value.startswith(_NESTED):
        return None
    return "", f"{column} holds a nested JSON value ({value[len(_NESTED):]}); write text, or a list of texts"


def _as_text(value: Any) -> str:
    """One cell as text: lists (JSON arrays, Parquet list columns) joined with ';', missing as ''.

    A JSON object, or an array holding arrays or objects, is no inventory value: it becomes a marked
    text that :func:`_rejecting_nested` turns into a bad row naming the column.
    """
    if value is None:
        return ""
    if isinstance(value, dict) or (isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value)):
        return _NESTED + json.dumps(value, default=str, sort_keys=True)[:60]
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(_as_text(v) for v in value)
    if isinstance(value, float) and np.isnan(value):
        return ""
    if value is pd.NaT or value is pd.NA:
        return ""
    if isinstance(value, pd.Timestamp):
        # A typed timestamp without a zone (a Parquet column written from naive datetimes) is UTC, as
        # iotaudit writes every time; text without a zone stays a bad row (see parse_iso_instant).
        return (value.tz_localize("UTC") if value.tzinfo is None else value).isoformat()
    return str(value)


@dataclass(frozen=True, slots=True)
class Inventory:
    """A loaded device inventory: the devices, and the distinct profiles they fall into.

    Attributes:
        devices: One row per device: the inventory columns (normalised, as
            categoricals; list values ";"-joined) plus ``profile_key``.
        profiles: One row per distinct profile (:data:`PROFILE_DTYPES`):
            ``profile_key`` (unique; the profile name, with ``~2``, ``~3`` ...
            for further variants of the same name), ``profile``, ``devices``,
            ``groups``, ``region``, ``endpoints`` (``["*"]`` = all in region),
            ``trust_store``, ``key_types`` (``rsa``/``ec``), ``tls_stack`` (a stack id),
            ``pins``, ``pin_scope``, ``pin_expiry``, ``first_row``.
        source: The inventory file.
        bad_rows: Rows left out because they had problems (``skip_bad_rows``).
        problems: (row, column, reason) for every problem found.
        trust_stores: Where trust-store files may be read from; None = inside the inventory's directory.
    """

    devices: pd.DataFrame
    profiles: pd.DataFrame
    source: Path
    bad_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    trust_stores: TrustStorePolicy | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        missing = [col for col in (*INVENTORY_COLUMNS, PROFILE_KEY) if col not in self.devices.columns]
        missing += [col for col in PROFILE_DTYPES if col not in self.profiles.columns]
        if missing:
            raise InventoryError(self.source, [(None, col, "column missing from the loaded inventory") for col in missing])
        if self.bad_rows < 0:
            raise InventoryError(self.source, [(None, None, "bad_rows cannot be negative")])
        if not self.profiles[PROFILE_KEY].is_unique:
            raise InventoryError(self.source, [(None, PROFILE_KEY, "profile keys must be unique")])

    @property
    def device_count(self) -> int:
        """Number of devices loaded (bad rows excluded)."""
        return len(self.devices)

    def resolve(self, catalog: Catalog, base_dir: str | Path | None = None) -> dict[str, list[x509.Certificate]]:
        """Each profile's trust anchors as certificates.

        Args:
            catalog: The catalogue to resolve names against: the *run's*
                (``run.catalog_object()``), so lab runs resolve to lab roots.
            base_dir: Directory PEM bundle paths are relative to; default the
                inventory file's directory.

        Returns:
            ``profile_key`` -> the certificates of its store, in the order written.

        Raises:
            InventoryError: listing every unknown catalogue name (with the row
                of the profile's first device and the profile) and every
                unreadable PEM bundle.
        """
        policy = self.trust_stores or TrustStorePolicy(base_dir=self.source.parent)
        if base_dir is not None:
            policy = TrustStorePolicy(Path(base_dir), policy.allow_outside, policy.max_bytes, policy.max_certificates)
        cache: dict[str, list[x509.Certificate] | str] = {}
        problems: list[Problem] = []
        out: dict[str, list[x509.Certificate]] = {}
        for key, spec, row in zip(self.profiles[PROFILE_KEY], self.profiles[TRUST_STORE], self.profiles[FIRST_ROW], strict=True):
            if spec not in cache:
                if is_pem_path(spec):
                    try:
                        cache[spec] = policy.load(spec)
                    except PemError as err:
                        cache[spec] = f"PEM bundle {spec!r} is unusable: {err}"
                else:
                    unknown = []
                    certs = []
                    for name in _split(spec):
                        try:
                            certs.append(catalog.entry(name).certificate)
                        except CatalogError:
                            unknown.append(name)
                    cache[spec] = certs if not unknown else (
                        f"unknown catalogue name(s) {', '.join(map(repr, unknown))} "
                        f"(the {catalog.kind} catalogue knows {', '.join(catalog.names)})"
                    )
            value = cache[spec]
            if isinstance(value, str):
                problems.append((int(row), TRUST_STORE, f"profile {key!r}: {value}"))
            else:
                out[str(key)] = list(value)
        if problems:
            raise InventoryError(self.source, problems)
        return out

    def build_profiles(self, catalog: Catalog, base_dir: str | Path | None = None) -> tuple[Profile, ...]:
        """Every distinct profile as a frozen :class:`iotaudit.profiles.Profile`, its store resolved.

        Args:
            catalog: The catalogue to resolve trust-store names against (the run's).
            base_dir: Directory PEM bundle paths are relative to; default the inventory file's directory.

        Raises:
            InventoryError: as :meth:`resolve`.
        """
        return profiles_from_frame(self.profiles, self.resolve(catalog, base_dir))


def _read(path: Path) -> tuple[pd.DataFrame, int]:
    """Read the raw table; returns it and the row number of its first record."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
            frame.columns = [str(col).strip() for col in frame.columns]
            return frame, 2
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), 1
        if suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(doc, dict):
                doc = doc.get("devices")
            if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
                raise InventoryError(path, [(None, None, "JSON inventory must be a list of device objects, or {\"devices\": [...]}")])
            return pd.DataFrame.from_records(doc), 1
    except InventoryError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InventoryError(path, [(None, None, f"cannot read inventory ({err})")]) from err
    raise InventoryError(path, [(None, None, f"unknown inventory format {suffix!r} (use .csv, .parquet or .json)")])


def _code_dtype(n_values: int) -> type[np.signedinteger]:
    """The smallest signed integer type that holds codes 0..n_values (a 10M-device column of int64 codes is 80 MB)."""
    for dtype in (np.int8, np.int16, np.int32):
        if n_values < np.iinfo(dtype).max:
            return dtype
    return np.int64


def _factorize(series: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes per row (the smallest integer type that fits) and the distinct values as text (lists joined with ';')."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        cats = [_as_text(v) for v in series.cat.categories]
        if (codes < 0).any():
            codes = np.where(codes < 0, len(cats), codes)
            cats.append("")
        return codes.astype(_code_dtype(len(cats)), copy=False), cats
    if series.dtype == object and len(series) and any(isinstance(v, (list, tuple, np.ndarray)) for v in series.iloc[:1000]):
        series = series.map(_as_text)
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable cells further down (JSON objects or arrays): every cell as text
        codes, uniques = pd.factorize(series.map(_as_text), use_na_sentinel=True)
    cats = [_as_text(v) for v in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(cats), codes)
        cats.append("")
    return codes.astype(_code_dtype(len(cats)), copy=False), cats


def _combine(code_arrays: Sequence[np.ndarray]) -> np.ndarray:
    """One dense group id per distinct tuple of codes (order of first appearance).

    The codes are packed mixed-radix into one int64 per row (exact while the
    product of the columns' widths fits; past that the ids so far are
    re-densified first), then factorised once: one hash pass over the rows
    instead of one per column.
    """
    ids = np.zeros(len(code_arrays[0]), dtype=np.int64)
    span = 1  # every id is < span
    for codes in code_arrays:
        width = int(codes.max()) + 1 if len(codes) else 1
        if span * width >= 2**62:
            ids, uniques = pd.factorize(ids)
            ids = ids.astype(np.int64, copy=False)
            span = len(uniques)
        ids *= width
        ids += codes
        span *= width
    ids, _ = pd.factorize(ids)
    return ids.astype(np.int64, copy=False)


def inventory_from_frame(
    raw: pd.DataFrame, *, source: str | Path = "<memory>", base_dir: str | Path | None = None,
    skip_bad_rows: bool = False, first_row: int = 1, trust_stores: TrustStorePolicy | None = None,
) -> Inventory:
    """Build an :class:`Inventory` from a raw device table (what :func:`load_inventory` reads).

    Args:
        raw: One row per device with the inventory columns.
        source: Where the table came from (for messages and relative PEM paths).
        base_dir: Directory PEM bundle paths are relative to; default ``source``'s directory.
        skip_bad_rows: Leave bad rows out (counted and listed) instead of raising.
        first_row: Row number of the first record in ``source`` (2 for CSV: header is line 1).
        trust_stores: Where trust-store files may be read from (default: inside ``base_dir``).

    Raises:
        InventoryError: for missing columns (always), and for bad rows unless ``skip_bad_rows``.
    """
    source = Path(source)
    base = Path(base_dir) if base_dir is not None else source.parent
    missing = [col for col in REQUIRED_COLUMNS if col not in raw.columns]
    if missing:
        raise InventoryError(source, [
            (None, col, f"required column missing (an inventory has {', '.join(REQUIRED_COLUMNS)})") for col in missing
        ])
    n = len(raw)
    normalisers: dict[str, Callable[[str], tuple[str, str]]] = {
        GROUP: _norm_group, PROFILE: _norm_required(PROFILE), REGION: _norm_region, ENDPOINTS: _norm_endpoints,
        TRUST_STORE: _norm_trust_store(trust_stores or base), KEY_TYPES: _norm_key_types, PATH_BUILDER: _norm_path_builder,
        TLS_STACK: _norm_tls_stack,
        PINS: _norm_pins, PIN_SCOPE: _norm_pin_scope, PIN_EXPIRY: _norm_pin_expiry,
    }
    problems: list[Problem] = []
    bad = np.zeros(n, dtype=bool)
    norm_codes: dict[str, np.ndarray] = {}
    norm_cats: dict[str, list[str]] = {}
    for column, normalise in normalisers.items():
        if column in raw.columns:
            codes, values = _factorize(raw[column])
        else:
            codes, values = np.zeros(n, dtype=np.int8), [OPTIONAL_COLUMNS[column]]
        results = [_nested_problem(column, v) or normalise(v) for v in values]
        bad_values = [i for i, (_, why) in enumerate(results) if why]
        if bad_values:
            hit = np.isin(codes, bad_values)
            bad |= hit
            for row in np.flatnonzero(hit):
                problems.append((int(row) + first_row, column, results[codes[row]][1]))
        # Map raw distinct values onto distinct normalised values.
        remap, cats = pd.factorize(pd.Series([norm for norm, _ in results], dtype=object))
        norm_codes[column] = remap.astype(_code_dtype(len(cats)))[codes] if len(codes) else codes
        norm_cats[column] = [str(v) for v in cats]

    # tls_stack and path_builder together name one stack: one check per distinct pair of values.
    pair_ids = _combine([norm_codes[TLS_STACK], norm_codes[PATH_BUILDER]]) if n else np.zeros(0, np.int64)
    pair_first = np.full(int(pair_ids.max()) + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(pair_first, pair_ids, np.arange(n, dtype=np.int64))
    resolved = [_resolve_stack(norm_cats[TLS_STACK][norm_codes[TLS_STACK][i]],
                               norm_cats[PATH_BUILDER][norm_codes[PATH_BUILDER][i]]) for i in pair_first]
    for pair in [p for p, (_, why) in enumerate(resolved) if why]:
        hit = pair_ids == pair
        bad |= hit
        problems.extend((int(row) + first_row, TLS_STACK, resolved[pair][1]) for row in np.flatnonzero(hit))
    stack_codes, stack_cats = pd.factorize(pd.Series([stack for stack, _ in resolved], dtype=object))
    norm_codes[TLS_STACK] = stack_codes.astype(_code_dtype(len(stack_cats)))[pair_ids] if n else norm_codes[TLS_STACK]
    norm_cats[TLS_STACK] = [str(v) for v in stack_cats]

    ids = raw[DEVICE_ID]
    if isinstance(ids.dtype, pd.CategoricalDtype) or ids.dtype == object:
        ids = ids.map(_as_text) if ids.dtype == object else ids.astype(str)
    ids = ids.astype("string")
    empty = (ids.isna() | (ids.str.strip() == "")).to_numpy(dtype=bool)
    for row in np.flatnonzero(empty):
        problems.append((int(row) + first_row, DEVICE_ID, "device_id is empty"))
    nested = ids.str.startswith(_NESTED).fillna(False).to_numpy(dtype=bool)
    for row in np.flatnonzero(nested):
        problems.append((int(row) + first_row, DEVICE_ID, _nested_problem(DEVICE_ID, str(ids.iloc[row]))[1]))
    empty |= nested
    bad |= empty
    # Device ids are unique in any sane inventory: one distinct-count pass says so (pandas' unique is
    # about twice as fast as duplicated on 10M arrow strings); only then is every duplicate located.
    if len(ids.unique()) < len(ids):
        dup = ids.duplicated(keep="first").to_numpy(dtype=bool) & ~empty
    else:
        dup = np.zeros(n, dtype=bool)
    if dup.any():
        dup_values = set(ids[dup])
        first_seen = {}
        for row, value in zip(np.flatnonzero(ids.isin(dup_values).to_numpy(dtype=bool)), ids[ids.isin(dup_values)], strict=True):
            first_seen.setdefault(value, int(row) + first_row)
        for row in np.flatnonzero(dup):
            value = ids.iloc[row]
            problems.append((int(row) + first_row, DEVICE_ID, f"duplicate device_id {value!r} (first on row {first_seen[value]})"))
        bad |= dup

    problems.sort(key=lambda p: (p[0] if p[0] is not None else -1, p[1] or ""))
    if problems and not skip_bad_rows:
        raise InventoryError(source, problems)

    keep = ~bad
    rows = np.flatnonzero(keep)
    if len(rows) < n:  # every row kept (the usual case): the code arrays are already the kept rows
        for column in norm_codes:
            norm_codes[column] = norm_codes[column][rows]
    identity = (PROFILE, REGION, ENDPOINTS, TRUST_STORE, KEY_TYPES, TLS_STACK, PINS, PIN_SCOPE, PIN_EXPIRY)
    if len(rows):
        gid = _combine([norm_codes[col] for col in identity])
        n_profiles = int(gid.max()) + 1
    else:
        gid = np.zeros(0, dtype=np.int64)
        n_profiles = 0
    counts = np.bincount(gid, minlength=n_profiles)
    first_index = np.full(n_profiles, len(rows), dtype=np.int64)
    np.minimum.at(first_index, gid, np.arange(len(rows), dtype=np.int64))  # ids are in order of first appearance
    group_pairs = np.unique(gid * (len(norm_cats[GROUP]) + 1) + norm_codes[GROUP]) if len(rows) else np.zeros(0, np.int64)
    groups_of: list[list[str]] = [[] for _ in range(n_profiles)]
    for pair in group_pairs:
        groups_of[int(pair) // (len(norm_cats[GROUP]) + 1)].append(norm_cats[GROUP][int(pair) % (len(norm_cats[GROUP]) + 1)])

    keys: list[str] = []
    variants: dict[str, int] = {}
    records = []
    for p in range(n_profiles):
        i = first_index[p]
        value = {col: norm_cats[col][norm_codes[col][i]] for col in identity}
        name = value[PROFILE]
        variants[name] = variants.get(name, 0) + 1
        key = name if variants[name] == 1 else f"{name}~{variants[name]}"
        keys.append(key)
        records.append({
            PROFILE_KEY: key, PROFILE: name, DEVICES: int(counts[p]), GROUPS: sorted(groups_of[p]),
            REGION: value[REGION], ENDPOINTS: _split(value[ENDPOINTS]), TRUST_STORE: value[TRUST_STORE],
            KEY_TYPES: _split(value[KEY_TYPES]), TLS_STACK: value[TLS_STACK], PINS: _split(value[PINS]),
            PIN_SCOPE: value[PIN_SCOPE], PIN_EXPIRY: pd.Timestamp(value[PIN_EXPIRY]) if value[PIN_EXPIRY] else pd.NaT,
            FIRST_ROW: int(rows[i]) + first_row,
        })
    profiles = c.typed_frame(records, PROFILE_DTYPES) if records else c.typed_frame([], PROFILE_DTYPES)

    devices = pd.DataFrame({DEVICE_ID: (ids.iloc[rows] if len(rows) < n else ids).reset_index(drop=True)})
    for column in (GROUP, PROFILE, REGION, ENDPOINTS, TRUST_STORE, KEY_TYPES, PATH_BUILDER, TLS_STACK, PINS, PIN_SCOPE):
        # Distinct normalised values are unique by construction (pd.factorize), so codes map straight on.
        devices[column] = pd.Categorical.from_codes(norm_codes[column], categories=pd.Index(norm_cats[column], dtype=object))
    expiry_values = pd.to_datetime(pd.Series([v or None for v in norm_cats[PIN_EXPIRY]], dtype=object), utc=True).astype(c.TIME)
    devices[PIN_EXPIRY] = pd.Series(expiry_values.array.take(norm_codes[PIN_EXPIRY]), dtype=c.TIME)
    devices[PROFILE_KEY] = pd.Categorical.from_codes(gid, categories=keys) if n_profiles else pd.Categorical([])
    return Inventory(devices=devices, profiles=profiles, source=source, bad_rows=int(bad.sum()), problems=problems,
                     trust_stores=trust_stores)


def load_inventory(
    path: str | Path, *, skip_bad_rows: bool = False, allow_outside: Sequence[str | Path] = (),
    max_store_certificates: int = MAX_TRUST_STORE_CERTIFICATES, allow_empty: bool = False,
) -> Inventory:
    """Load a device inventory from CSV, Parquet or JSON and group it into distinct profiles.

    Args:
        path: ``.csv`` (header line, ``;`` inside list cells), ``.parquet``/``.pq``
            or ``.json`` (a list of device objects, or ``{"devices": [...]}``;
            list values may be JSON arrays).
        skip_bad_rows: Leave bad rows out (counted in ``bad_rows`` and listed
            in ``problems``) instead of stopping.
        allow_outside: Directories besides the inventory's own that ``trust_store`` files may resolve into.
        max_store_certificates: Most certificates one trust-store file may hold.
        allow_empty: Accept an inventory with no device (by default that is an error: an audit of
            nothing would report "nothing broken").

    Returns:
        The :class:`Inventory`.

    Raises:
        InventoryError: when the file cannot be read, lacks a required column
            (always fatal), has bad rows (unless ``skip_bad_rows``), or has no
            device left (unless ``allow_empty``); the message lists every
            problem with its row number and column.
    """
    path = Path(path)
    policy = TrustStorePolicy(base_dir=path.parent, allow_outside=tuple(Path(p) for p in allow_outside),
                              max_certificates=max_store_certificates)
    raw, first_row = _read(path)
    inventory = inventory_from_frame(raw, source=path, skip_bad_rows=skip_bad_rows, first_row=first_row,
                                     trust_stores=policy)
    if inventory.device_count == 0 and not allow_empty:
        if inventory.problems:
            raise InventoryError(path, [*inventory.problems, (None, None, "every row was bad: no device left to audit")])
        raise InventoryError(path, [(None, None, "no device: the inventory has no rows (an audit of nothing "
                                                 "would report nothing broken)")])
    return inventory
