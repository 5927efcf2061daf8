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
device: DuckDB groups the device table into distinct profiles out of core
(see "the reading and grouping engine" below), so memory stays flat in
devices.  Bad rows are reported with their row number (CSV: the physical
line where the row starts, header = line 1; Parquet and JSON: the 1-based
record number), column and reason: by default loading stops
with :class:`iotaudit.errors.InventoryError`; with ``skip_bad_rows=True`` the
bad rows are left out, counted in ``bad_rows`` and listed in ``problems``.
"""

from __future__ import annotations

import enum
import glob
import json
import os
import re
import shutil
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
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
from .csvlines import record_lines
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
    text that :func:`_nested_problem` turns into a bad row naming the column.
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



# --- the reading and grouping engine (DuckDB) ---------------------------------------------------------
# DuckDB reads CSV, Parquet and partitioned Parquet datasets out of core (spilling to temp_directory past
# memory_limit), so memory stays flat in devices: the device table never enters Python.  One GROUP BY
# pass turns it into distinct raw tuples (a few hundred to a few thousand rows, whatever the fleet size);
# the normalisers above run once per distinct value of each column; per-device outputs are a DuckDB join
# of the device table with that small tuple -> profile mapping.  Record numbers come from
# row_number() OVER () under preserve_insertion_order, which DuckDB keeps in file order for a scan
# (https://duckdb.org/docs/sql/dialect/order_preservation).

MEMORY_LIMIT = "1GB"            # DuckDB's memory_limit for inventory queries; past it, it spills to temp_directory
DEVICE_FILE_ROWS = 5_000_000    # devices.parquet is one file up to this many devices, else a directory of files
_REC = "__rec"                  # 1-based record number in the source (files in the order read)
_ROW_BAD = "__row_bad"          # a problem of the row itself: empty device_id, or a profile row's device count
_N = "__n"                      # devices of a tuple
_FIRST = "__first"              # first record of a tuple
_WEIGHT = "__weight"            # profile tables: the devices column as an integer
_MIN_ID = "__min_id"            # device tables: the smallest stored device_id of a tuple
_IDS = "__ids"                  # device tables: how many devices of a tuple have a device_id (not NULL)
_FRAME = "__iotaudit_frame"     # the registered pandas frame of an in-memory table
_GLOB = re.compile(r"[*?\[]")


class TableKind(enum.StrEnum):
    """What one row of an inventory table is."""

    DEVICES = "devices"     # one row per device (load_inventory)
    PROFILES = "profiles"   # one row per profile (x group), with a ``devices`` count (load_profiles)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class DeviceTable:
    """Where an inventory's rows live, so DuckDB can read them again (``devices``, ``devices.parquet``).

    Attributes:
        fmt: ``csv``, ``parquet`` or ``frame`` (an all-text pandas frame: JSON, :func:`inventory_from_frame`).
        paths: The files read, in order (a glob or dataset directory expanded and sorted).
        columns: (name in the source, inventory column) of every column read.
        frame: The all-text table when ``fmt`` is ``frame``.
        memory_limit: DuckDB ``memory_limit`` for every query of this table.
        temp_directory: Where DuckDB spills (default: a fresh directory under the system temp dir).
        cache: A Parquet copy of a CSV source (rows in file order), made by :func:`_cache_csv`
            so the CSV is parsed once, not once per pass; removed when the table is.
        rows: How many records DuckDB read into ``cache`` (the check of :func:`iotaudit.csvlines.record_lines`).
    """

    fmt: str
    paths: tuple[str, ...] = ()
    columns: tuple[tuple[str, str], ...] = ()
    frame: pd.DataFrame | None = None
    memory_limit: str = MEMORY_LIMIT
    temp_directory: str | None = None
    cache: str | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.fmt not in ("csv", "parquet", "frame"):
            raise ValueError(f"DeviceTable.fmt {self.fmt!r} is not csv, parquet or frame")
        if (self.fmt == "frame") != (self.frame is not None):
            raise ValueError("DeviceTable.frame is given exactly when fmt is 'frame'")

    def reader_sql(self) -> str:
        """The DuckDB table expression that reads the source (a CSV's Parquet copy, once made)."""
        if self.cache is not None:
            return f"read_parquet({_sql_text(self.cache)})"
        files = "[" + ", ".join(_sql_text(p) for p in self.paths) + "]"
        if self.fmt == "csv":
            # all_varchar: the normalisers see text, as a pandas dtype=str read did; blank lines are skipped.
            return (f"read_csv({files}, header = true, all_varchar = true, delim = ',', quote = '\"', "
                    f"escape = '\"', union_by_name = true)")
        if self.fmt == "parquet":
            return f"read_parquet({files}, union_by_name = true)"
        return _FRAME

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DuckDB connection with this table as two views, both with ``__rec``: ``__source`` (the columns as
        stored, missing ones NULL) and ``__raw`` (every column as text, as :func:`_as_text` writes it)."""
        spill = tempfile.mkdtemp(prefix="iotaudit-duckdb-", dir=self.temp_directory)
        # Record numbers are explicit (a CSV's copy keeps them, Parquet has file_row_number), so DuckDB may
        # reorder rows and run every pass in parallel out of core; only an in-memory frame is numbered in order.
        ordered = self.fmt == "frame" or (self.fmt == "csv" and self.cache is None)
        con = duckdb.connect(":memory:", config={
            "memory_limit": self.memory_limit, "temp_directory": spill, "preserve_insertion_order": ordered})
        try:
            if self.frame is not None:
                con.register(_FRAME, self.frame)
            present = {col for _, col in self.columns}
            source = [(col, _q(name)) for name, col in self.columns]
            source += [(col, "CAST(NULL AS VARCHAR)") for col in _NORMALISED if col not in present]
            columns = ", ".join(f"{expr} AS {_q(col)}" for col, expr in source)
            if self.cache is not None:
                view = (f"SELECT file_row_number + 1 AS {_REC}, {columns} "
                        f"FROM read_parquet({_sql_text(self.cache)}, file_row_number = true)")
            elif self.fmt == "parquet":  # record = rows of the files before this one + row in this file + 1
                files = "[" + ", ".join(_sql_text(p) for p in self.paths) + "]"
                counts = con.execute(f"SELECT file_name, num_rows FROM parquet_file_metadata({files})").fetchall()
                rows = dict(counts)
                before = np.cumsum([0] + [int(rows[p]) for p in self.paths])[:-1]
                con.register("__files", pd.DataFrame({"filename": list(self.paths), "base": before.astype(np.int64)}))
                view = (f"SELECT f.base + r.file_row_number + 1 AS {_REC}, {columns} FROM read_parquet({files}, "
                        f"union_by_name = true, filename = true, file_row_number = true) r JOIN __files f USING (filename)")
            else:
                view = f"SELECT row_number() OVER () AS {_REC}, {columns} FROM {self.reader_sql()}"
            con.execute(f"CREATE TEMP VIEW __source AS {view}")
            text = list(self.text_sql(con).items())
            if DEVICES in present:  # a profile table: its device count as an integer (NULL when it is not one)
                text.append((_WEIGHT, f"TRY_CAST({dict(text)[DEVICES]} AS BIGINT)"))
            con.execute(f"CREATE TEMP VIEW __raw AS SELECT {_REC}, "
                        f"{', '.join(f'{expr} AS {_q(col)}' for col, expr in text)} FROM __source")
            yield con
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)

    def text_sql(self, con: Any) -> dict[str, str]:
        """Column of ``__source`` -> the SQL expression of it as text (over a row, or a grouped row)."""
        types = {row[0]: str(row[1]) for row in con.execute("DESCRIBE SELECT * FROM __source").fetchall()}
        return {col: _as_text_sql(_q(col), types[col], csv=self.fmt == "csv") for col in types if col != _REC}


def _hashes_distinct(con: Any) -> bool:
    """Whether the distinct stored tuples (``__keys``) have distinct hashes, so a hash join is exact."""
    return bool(con.execute("SELECT count(*) = count(DISTINCT __h) FROM __keys").fetchall()[0][0])


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _as_text_sql(col: str, sql_type: str, *, csv: bool) -> str:
    """One column as text in SQL, as :func:`_as_text` writes a cell: lists ';'-joined, missing as ''."""
    if sql_type == "VARCHAR":
        # pandas' skipinitialspace=True, as the CSV reader before DuckDB did.
        return f"coalesce(ltrim({col}, ' '), '')" if csv else f"coalesce({col}, '')"
    if sql_type.endswith("[]"):
        return f"coalesce(array_to_string({col}, ';'), '')"
    if sql_type.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"coalesce(strftime(CAST({col} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%f') || '+00:00', '')"
    if sql_type.startswith("TIMESTAMP"):
        # A typed timestamp without a zone (Parquet written from naive datetimes) is UTC, as in _as_text.
        return f"coalesce(strftime(CAST({col} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%f') || '+00:00', '')"
    return f"coalesce(CAST({col} AS VARCHAR), '')"


def _blank_sql(col: str) -> str:
    return f"(trim({col}, chr(32) || chr(9) || chr(10) || chr(13)) = '')"


def _bad_id_sql(col: str) -> str:
    """A device_id no device can have: empty, or a nested JSON value (:data:`_NESTED`).

    The first character is tested first (a blank or nested id starts with a blank or NUL), so the trim
    runs on almost no row: the test is on every row of every pass over the device table.
    """
    return (f"(({col} = '' OR ascii({col}) IN (0, 9, 10, 13, 32)) AND "
            f"({_blank_sql(col)} OR starts_with({col}, chr(0) || {_sql_text(_NESTED[1:])})))")


def _expand(path: Path) -> tuple[str, tuple[str, ...]]:
    """The format and the files of an inventory path: a file, a glob, or a (partitioned) Parquet dataset directory."""
    text = str(path)
    if _GLOB.search(text):
        files = tuple(sorted(glob.glob(text, recursive=True)))
        suffix = Path(text).suffix.lower()
    elif path.is_dir():
        files = tuple(sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".parquet", ".pq")))
        suffix = ".parquet"
    else:
        files = (text,)
        suffix = path.suffix.lower()
    fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json"}.get(suffix)
    if fmt is None:
        raise InventoryError(path, [(None, None, f"unknown inventory format {suffix!r} (use .csv, .parquet or .json, "
                                                 "a glob of them, or a directory of Parquet files)")])
    if not files:
        raise InventoryError(path, [(None, None, "no inventory file matches")])
    if fmt != "json":
        for file in files:
            if not Path(file).is_file():
                raise InventoryError(file, [(None, None, "cannot read inventory (no such file)")])
    return fmt, files


def _text_column(series: pd.Series) -> np.ndarray:
    """A column as text, one :func:`_as_text` call per distinct value (lists joined with ';', missing as '')."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes, uniques = series.cat.codes.to_numpy(), list(series.cat.categories)
    else:
        if series.dtype == object and any(isinstance(v, (list, tuple, np.ndarray, dict)) for v in series.iloc[:1000]):
            series = series.map(_as_text)
        try:
            codes, uniques = pd.factorize(series, use_na_sentinel=True)
        except TypeError:  # unhashable cells further down (JSON objects or arrays): every cell as text
            codes, uniques = pd.factorize(series.map(_as_text), use_na_sentinel=True)
    text = np.array([_as_text(v) for v in uniques] + [""], dtype=object)
    return text[np.where(codes < 0, len(uniques), codes)]


def _source_table(fmt: str, files: Sequence[str], path: Path, kind: TableKind, memory_limit: str,
                  temp_directory: str | None) -> tuple[DeviceTable, int]:
    """The :class:`DeviceTable` of an inventory file and the row number of its first record."""
    if fmt == "json":
        try:
            doc = json.loads(Path(files[0]).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise InventoryError(path, [(None, None, f"cannot read inventory ({err})")]) from err
        if isinstance(doc, dict):
            doc = doc.get(kind.value)
        if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
            raise InventoryError(path, [(None, None, f"JSON inventory must be a list of {kind.value[:-1]} objects, "
                                                     f"or {{\"{kind.value}\": [...]}}")])
        return _frame_table(pd.DataFrame.from_records(doc), kind, memory_limit, temp_directory), 1
    table = DeviceTable(fmt, tuple(files), memory_limit=memory_limit, temp_directory=temp_directory)
    try:
        with duckdb.connect(":memory:", config={"memory_limit": memory_limit}) as con:
            names = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {table.reader_sql()}").fetchall()]
    except duckdb.Error as err:
        raise InventoryError(path, [(None, None, f"cannot read inventory ({err})")]) from err
    wanted = _wanted_columns(kind)
    columns = tuple((name, name.strip()) for name in names if name.strip() in wanted)
    table = DeviceTable(fmt, tuple(files), columns, memory_limit=memory_limit, temp_directory=temp_directory)
    if fmt == "csv":
        table = _cache_csv(table, path)
    return table, (2 if fmt == "csv" else 1)


def _cache_csv(table: DeviceTable, path: Path) -> DeviceTable:
    """Parse a CSV source once into a Parquet copy, rows in file order, for every later pass.

    The grouping, the id check and ``devices.parquet`` each scan the rows; a columnar copy costs one
    CSV parse instead of one per scan.  The copy lives in a temporary directory removed with the table.
    """
    directory = tempfile.mkdtemp(prefix="iotaudit-inventory-", dir=table.temp_directory)
    target = str(Path(directory) / "rows.parquet")
    select = ", ".join(f"{_q(name)} AS {_q(col)}" for name, col in table.columns)
    try:
        with duckdb.connect(":memory:", config={"memory_limit": table.memory_limit, "temp_directory": directory,
                                                "preserve_insertion_order": True}) as con:
            # In file order (preserve_insertion_order; no window, so the CSV is parsed in parallel): the
            # copy's file_row_number is the record number.
            rows = con.execute(f"COPY (SELECT {select} FROM {table.reader_sql()}) TO {_sql_text(target)} "
                               "(FORMAT parquet)").fetchall()[0][0]
    except duckdb.Error as err:
        shutil.rmtree(directory, ignore_errors=True)
        raise InventoryError(path, [(None, None, f"cannot read inventory ({err})")]) from err
    cached = DeviceTable(table.fmt, table.paths, tuple((col, col) for _, col in table.columns), memory_limit=table.memory_limit,
                         temp_directory=table.temp_directory, cache=target, rows=int(rows))
    weakref.finalize(cached, shutil.rmtree, directory, ignore_errors=True)
    return cached


def _wanted_columns(kind: TableKind) -> tuple[str, ...]:
    if kind is TableKind.DEVICES:
        return INVENTORY_COLUMNS
    return (*(col for col in INVENTORY_COLUMNS if col != DEVICE_ID), DEVICES)


def _frame_table(raw: pd.DataFrame, kind: TableKind, memory_limit: str, temp_directory: str | None) -> DeviceTable:
    raw = raw.rename(columns=lambda col: str(col).strip())
    wanted = [col for col in _wanted_columns(kind) if col in raw.columns]
    frame = pd.DataFrame({col: _text_column(raw[col]) for col in wanted}, index=pd.RangeIndex(len(raw)))
    return DeviceTable("frame", columns=tuple((col, col) for col in wanted), frame=frame,
                       memory_limit=memory_limit, temp_directory=temp_directory)


@dataclass(frozen=True, slots=True)
class Inventory:
    """A loaded inventory: the distinct profiles its devices fall into, and how many devices each has.

    Holds no per-device array: the device table stays where it is (a file DuckDB reads again when
    per-device output is asked for: :attr:`devices`, :meth:`write_devices`).

    Attributes:
        profiles: One row per distinct profile (:data:`PROFILE_DTYPES`):
            ``profile_key`` (unique; the profile name, with ``~2``, ``~3`` ...
            for further variants of the same name), ``profile``, ``devices``,
            ``groups``, ``region``, ``endpoints`` (``["*"]`` = all in region),
            ``trust_store``, ``key_types`` (``rsa``/``ec``), ``tls_stack`` (a stack id),
            ``pins``, ``pin_scope``, ``pin_expiry``, ``first_row``.
        source: The inventory file (or glob, or dataset directory).
        bad_rows: Rows left out because they had problems (``skip_bad_rows``).
        problems: (row, column, reason) for every problem found.
        group_counts: Devices per profile x group: ``profile_key``, ``group`` (categoricals, groups in
            order of first appearance) and ``devices``, sorted by profile then group.
        table: Where the rows live (None for an inventory built without one).
        kind: Whether a row of ``table`` is a device or a profile with a device count.
        mapping: Each distinct raw row (the inventory columns as text) that was kept, with its
            ``profile_key`` and normalised group: the join that maps devices to profiles.
        dropped_records: Records of ``table`` left out although their values are good (later duplicates).
        first_record_row: The row number of the first record of ``table`` (2 for CSV: the header is line 1).
        trust_stores: Where trust-store files may be read from; None = inside the inventory's directory.
        stored_keys: Each distinct tuple of ``table``'s stored values: its 64-bit ``hash`` (``__h``, distinct)
            and its text, so per-device output joins rows to ``mapping`` on one hash without grouping
            the table again; None when two tuples share a hash (the join is then on the text).
    """

    profiles: pd.DataFrame
    source: Path
    bad_rows: int = 0
    problems: list[Problem] = field(default_factory=list)
    group_counts: pd.DataFrame = field(default_factory=lambda: _group_counts_frame([], [], []))
    table: DeviceTable | None = None
    kind: TableKind = TableKind.DEVICES
    mapping: pd.DataFrame | None = None
    dropped_records: tuple[int, ...] = ()
    first_record_row: int = 1
    trust_stores: TrustStorePolicy | None = None
    stored_keys: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        missing = [col for col in PROFILE_DTYPES if col not in self.profiles.columns]
        missing += [col for col in (PROFILE_KEY, GROUP, DEVICES) if col not in self.group_counts.columns]
        if missing:
            raise InventoryError(self.source, [(None, col, "column missing from the loaded inventory") for col in missing])
        if self.bad_rows < 0:
            raise InventoryError(self.source, [(None, None, "bad_rows cannot be negative")])
        if not self.profiles[PROFILE_KEY].is_unique:
            raise InventoryError(self.source, [(None, PROFILE_KEY, "profile keys must be unique")])
        if int(self.group_counts[DEVICES].sum()) != int(self.profiles[DEVICES].sum()):
            raise InventoryError(self.source, [(None, DEVICES, "group counts do not add up to the profiles' devices")])
        object.__setattr__(self, "kind", TableKind(self.kind))

    @property
    def device_count(self) -> int:
        """Number of devices loaded (bad rows excluded)."""
        return int(self.profiles[DEVICES].sum())

    @property
    def has_devices(self) -> bool:
        """True when the rows are devices that DuckDB can read again (not a profile table)."""
        return self.table is not None and self.kind is TableKind.DEVICES and self.mapping is not None

    @property
    def devices(self) -> pd.DataFrame:
        """One row per device, read again from the source by DuckDB (in file order): the inventory columns
        (normalised, categoricals; lists ";"-joined) plus ``profile_key``.

        This is the whole device table in memory: for small inventories and tests.  For any size, use
        :meth:`write_devices` (DuckDB writes Parquet without the table entering Python).

        Raises:
            InventoryError: when the inventory has no device rows (built from a profile table).
        """
        with self._device_query([f"__norm_{col}" for col in _NORMALISED] + [PROFILE_KEY]) as (con, sql):
            frame = con.execute(f"SELECT * FROM ({sql}) ORDER BY {_REC}").df()
        out = pd.DataFrame({DEVICE_ID: frame[DEVICE_ID].astype("string")})
        for column in _NORMALISED:
            values = frame[f"__norm_{column}"]
            if column == PIN_EXPIRY:
                out[column] = pd.to_datetime(values.replace("", None), utc=True).astype(c.TIME)
            elif column == GROUP:  # the groups in the order of group_counts (first appearance)
                out[column] = pd.Categorical(values, categories=self.group_counts[GROUP].cat.categories)
            else:
                out[column] = pd.Categorical(values)
        out[PROFILE_KEY] = pd.Categorical(frame[PROFILE_KEY], categories=list(self.profiles[PROFILE_KEY]))
        return out

    @contextmanager
    def _device_query(self, extra: Sequence[str], *, group_as: str = "", profile_as: str = "") -> Iterator[tuple[Any, str]]:
        """A connection and the SELECT of every kept device: ``__rec``, ``device_id`` and the mapping's ``extra`` columns
        (plus the normalised group and the profile key under ``group_as`` / ``profile_as``)."""
        if not self.has_devices:
            raise InventoryError(self.source, [(None, DEVICE_ID, "this inventory has no device rows "
                                                                 "(it was built from a profile table)")])
        with self.table.connect() as con:
            con.register("__map", self.mapping)
            text = self.table.text_sql(con)
            ids = text[DEVICE_ID]
            where = f"NOT {_bad_id_sql(ids)}"
            if self.dropped_records:
                con.register("__dropped", pd.DataFrame({"rec": np.asarray(self.dropped_records, dtype=np.int64)}))
                where += f" AND s.{_REC} NOT IN (SELECT rec FROM __dropped)"
            select = [f"s.{_REC} AS {_REC}", f"{ids} AS {_q(DEVICE_ID)}"] + [f"k.{_q(col)}" for col in extra]
            if group_as:
                select.append(f"k.{_q('__norm_' + GROUP)} AS {_q(group_as)}")
            if profile_as:
                select.append(f"k.{_q(PROFILE_KEY)} AS {_q(profile_as)}")
            # Each distinct stored tuple gets its profile once (text conversion on the distinct tuples only);
            # devices then join on one 64-bit hash of their stored values, exact because the distinct
            # tuples' hashes are checked to be distinct (else the join is on the text of every column).
            stored = ", ".join(_q(col) for col in _NORMALISED)
            on = " AND ".join(f"t.{_q(col)} = m.{_q(col)}" for col in _NORMALISED)
            if self.stored_keys is not None:  # the load's distinct stored tuples: no second group-by
                con.register("__stored_keys", self.stored_keys)
                con.execute(f"CREATE TEMP TABLE __keyed AS SELECT t.__h, m.* FROM __stored_keys t JOIN __map m ON {on}")
                distinct = True
            else:
                con.execute(f"CREATE TEMP TABLE __keys AS SELECT {stored}, hash({stored}) AS __h FROM __source GROUP BY ALL")
                as_text = ", ".join(f"{text[col]} AS {_q(col)}" for col in _NORMALISED)
                con.execute(f"CREATE TEMP TABLE __keyed AS SELECT t.__h, m.* FROM (SELECT __h, {as_text} FROM __keys) t "
                            f"JOIN __map m ON {on}")
                distinct = _hashes_distinct(con)
            if distinct:
                stored_s = ", ".join(f"s.{_q(col)}" for col in _NORMALISED)
                yield con, f"SELECT {', '.join(select)} FROM __source s JOIN __keyed k ON hash({stored_s}) = k.__h WHERE {where}"
            else:
                on = " AND ".join(f"{text[col].replace(_q(col), 's.' + _q(col))} = k.{_q(col)}" for col in _NORMALISED)
                yield con, f"SELECT {', '.join(select)} FROM __source s JOIN __map k ON {on} WHERE {where}"

    def write_devices(self, target: str | Path, per_profile: pd.DataFrame, *, file_rows: int = DEVICE_FILE_ROWS) -> Path:
        """Write one row per device (``device_id``, ``group``, ``profile``, then ``per_profile``'s columns) as Parquet.

        DuckDB joins the device table with the profile mapping and ``per_profile`` and COPYs the result,
        so no device row enters Python.  Up to ``file_rows`` devices it is one file at ``target``;
        beyond, ``target`` is a directory of Parquet files (one dataset for pandas, pyarrow, DuckDB,
        Spark and Athena).

        Args:
            target: ``devices.parquet`` path.
            per_profile: One row per profile: a ``profile`` column (the profile key) and the columns to add.
            file_rows: Devices per file before the output becomes a directory.

        Returns:
            ``target``.
        """
        target = Path(target)
        extra = [col for col in per_profile.columns if col != PROFILE]
        with self._device_query([], group_as=GROUP, profile_as=PROFILE) as (con, sql):
            con.register("__per_profile", per_profile)
            select = ", ".join([f"d.* EXCLUDE ({_REC})"] + [f"p.{_q(col)}" for col in extra])
            sql = f"SELECT {select} FROM ({sql}) d LEFT JOIN __per_profile p ON p.{_q(PROFILE)} = d.{_q(PROFILE)}"
            if self.device_count <= file_rows:
                con.execute(f"COPY ({sql} ORDER BY d.{_REC}) TO {_sql_text(str(target))} (FORMAT parquet)")
            else:
                con.execute(f"COPY ({sql}) TO {_sql_text(str(target))} "
                            f"(FORMAT parquet, PER_THREAD_OUTPUT true, FILE_SIZE_BYTES '256MB')")
        return target

    def rows_as_in_file(self, records: Sequence[int]) -> dict[int, int]:
        """Record number -> the row number to report (CSV: the physical line where the record starts)."""
        if self.table is not None and self.table.fmt == "csv":
            return {rec: line for rec, (_, line) in record_lines(self.table.paths, records, total=self.table.rows).items()}
        return {rec: rec + self.first_record_row - 1 for rec in records}

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




def _rejecting_nested(column: str, norm: Callable[[str], tuple[str, str]]) -> Callable[[str], tuple[str, str]]:
    """``norm``, with a nested JSON cell (:func:`_as_text`) a bad value naming ``column``."""
    def check(value: str) -> tuple[str, str]:
        return _nested_problem(column, value) or norm(value)
    return check


def _normalisers(policy: TrustStorePolicy | Path) -> dict[str, Callable[[str], tuple[str, str]]]:
    """Column -> its normaliser, for every inventory column but device_id (profile identity and group)."""
    plain = {
        GROUP: _norm_group, PROFILE: _norm_required(PROFILE), REGION: _norm_region, ENDPOINTS: _norm_endpoints,
        TRUST_STORE: _norm_trust_store(policy), KEY_TYPES: _norm_key_types, PATH_BUILDER: _norm_path_builder,
        TLS_STACK: _norm_tls_stack, PINS: _norm_pins, PIN_SCOPE: _norm_pin_scope, PIN_EXPIRY: _norm_pin_expiry,
    }
    return {col: _rejecting_nested(col, norm) for col, norm in plain.items()}


_NORMALISED = tuple(_normalisers(Path()))                      # the columns grouped on
# The columns that make a profile: tls_stack (resolved with path_builder, which only names a stack) and the rest.
_IDENTITY = tuple(col for col in _NORMALISED if col not in (GROUP, PATH_BUILDER))
_LIST_COLUMNS = (ENDPOINTS, KEY_TYPES, PINS)                   # ';'-joined text in the mapping, lists in profiles


def _group_counts_frame(keys: Sequence[str], groups: Sequence[str], rows: Sequence[tuple[str, str, int]]) -> pd.DataFrame:
    frame = pd.DataFrame({
        PROFILE_KEY: pd.Categorical([r[0] for r in rows], categories=list(keys)),
        GROUP: pd.Categorical([r[1] for r in rows], categories=pd.Index(list(groups), dtype=object)),
        DEVICES: np.asarray([r[2] for r in rows], dtype=np.int64),
    })
    if len(frame):
        order = np.lexsort((frame[GROUP].cat.codes.to_numpy(), frame[PROFILE_KEY].cat.codes.to_numpy()))
        frame = frame.iloc[order].reset_index(drop=True)
    return frame


def _group_rows(
    table: DeviceTable, kind: TableKind, source: Path, base: Path, *, skip_bad_rows: bool, first_row: int,
    trust_stores: TrustStorePolicy | None = None,
) -> Inventory:
    """Group a device (or profile) table into distinct profiles with DuckDB; every bad row is a problem."""
    present = {col for _, col in table.columns}
    required = REQUIRED_COLUMNS if kind is TableKind.DEVICES else (
        *(col for col in REQUIRED_COLUMNS if col not in (DEVICE_ID, GROUP)), DEVICES)
    missing = [col for col in required if col not in present]
    if missing:
        raise InventoryError(source, [
            (None, col, f"required column missing (an inventory has {', '.join(required)})") for col in missing
        ])
    normalisers = _normalisers(trust_stores or base)
    keys = ", ".join(_q(col) for col in _NORMALISED)
    if kind is TableKind.DEVICES:
        row_bad = _bad_id_sql(_q(DEVICE_ID))
    else:
        row_bad = f"({_WEIGHT} IS NULL OR {_WEIGHT} <= 0)"

    def tuples_sql(text: dict[str, str]) -> str:
        if kind is TableKind.PROFILES:  # a profile table is small: group its text directly
            return (f"SELECT {keys}, {row_bad} AS {_ROW_BAD}, CAST(sum(coalesce({_WEIGHT}, 0)) AS BIGINT) AS {_N}, "
                    f"min({_REC}) AS {_FIRST} FROM __raw GROUP BY ALL")
        # Devices: the distinct stored tuples (__stored, grouped with no per-row expression), then their
        # text; rows whose device_id is empty or repeated are found by the id pass below.
        return (f"SELECT {', '.join(f'{text[col]} AS {_q(col)}' for col in _NORMALISED)}, false AS {_ROW_BAD}, "
                f"CAST(sum({_N}) AS BIGINT) AS {_N}, min({_FIRST}) AS {_FIRST}, min({_MIN_ID}) AS {_MIN_ID}, "
                f"CAST(sum({_IDS}) AS BIGINT) AS {_IDS} FROM __stored GROUP BY ALL")

    located: list[tuple[Any, ...]] = []
    dropped: list[int] = []
    try:
        with table.connect() as con:
            text = table.text_sql(con)
            stored_keys = None
            if kind is TableKind.DEVICES:
                # The smallest stored id and the ids present tell whether a tuple may hold an empty id: a blank
                # or nested id starts with a blank or NUL, below every printable character (or it is NULL).
                con.execute(f"CREATE TEMP TABLE __stored AS SELECT {keys}, count(*) AS {_N}, min({_REC}) AS {_FIRST}, "
                            f"min({_q(DEVICE_ID)}) AS {_MIN_ID}, count({_q(DEVICE_ID)}) AS {_IDS} FROM __source GROUP BY ALL")
                # Each distinct stored tuple's hash and text: devices.parquet joins rows to profiles on it
                # without grouping the table again (exact only when the hashes are distinct; else None).
                stored_keys = con.execute(f"SELECT hash({keys}) AS __h, "
                                          f"{', '.join(f'{text[col]} AS {_q(col)}' for col in _NORMALISED)} FROM __stored").df()
                if not stored_keys["__h"].is_unique:
                    stored_keys = None
            tuples = con.execute(tuples_sql(text)).df()
            every_row = tuples
            results = {col: {v: normalisers[col](v) for v in tuples[col].unique()} for col in _NORMALISED}
            bad_values = {col: {v: why for v, (_, why) in res.items() if why} for col, res in results.items()}
            stack_of, bad_pairs = _stacks_of_pairs(tuples, results)
            suspects = 0
            if kind is TableKind.DEVICES:  # ids that may repeat (same 64-bit hash) and the empty or nested ones
                # One pass over 64-bit hashes of the ids, not the ids themselves: a quarter of the memory,
                # and DuckDB's aggregate spills past memory_limit, so 100M ids take one pass, not ten chunks.
                # The exact duplicates are then counted among the rows located below, which hold every row
                # of a suspect hash (a collision of two distinct ids only locates them; it reports nothing).
                con.execute(f"CREATE TEMP TABLE __suspects AS SELECT hash({text[DEVICE_ID]}) AS h FROM __source "
                            f"GROUP BY h HAVING count(*) > 1")
                suspects = con.execute("SELECT count(*) FROM __suspects").fetchall()[0][0]
            if suspects or tuples[_ROW_BAD].any() or any(bad_values.values()) or bad_pairs or _may_lack_ids(tuples, kind):
                # Only now is the device table searched for the bad rows themselves (their record numbers).
                con.register("__bad", pd.DataFrame([(col, v) for col, vals in bad_values.items() for v in vals],
                                                   columns=["col", "v"], dtype=object))
                cond = [row_bad] + [f"{_q(col)} IN (SELECT v FROM __bad WHERE col = {_sql_text(col)})"
                                    for col, vals in bad_values.items() if vals]
                if suspects:
                    cond.append(f"hash({_q(DEVICE_ID)}) IN (SELECT h FROM __suspects)")
                if bad_pairs:  # tls_stack and path_builder naming different stacks
                    con.register("__pairs", pd.DataFrame(list(bad_pairs), columns=["ts", "pb"], dtype=object))
                    cond.append(f"EXISTS (SELECT 1 FROM __pairs b WHERE b.ts = __raw.{_q(TLS_STACK)} "
                                f"AND b.pb = __raw.{_q(PATH_BUILDER)})")
                ident = _q(DEVICE_ID) if kind is TableKind.DEVICES else _q(DEVICES)
                select = f"SELECT {_REC}, {ident}, {row_bad} AS {_ROW_BAD}, {keys} FROM __raw WHERE {' OR '.join(cond)}"
                if kind is TableKind.PROFILES:  # a profile table is small
                    located = con.execute(f"{select} ORDER BY {_REC}").fetchall()
                else:
                    # Each located row's cells as its tuple's (one shared Python tuple per distinct row, found
                    # by a join on the text), not eleven fresh strings per row: a doubled 1M-device export
                    # locates 2M rows.
                    con.register("__tuples", tuples[list(_NORMALISED)].assign(__t=np.arange(len(tuples), dtype=np.int64)))
                    on = " AND ".join(f"l.{_q(col)} = t.{_q(col)}" for col in _NORMALISED)
                    shared = list(tuples[list(_NORMALISED)].itertuples(index=False, name=None))
                    located = [(rec, device_id, bad, *shared[t]) for rec, device_id, bad, t in con.execute(
                        f"SELECT l.{_REC}, l.{ident}, l.{_ROW_BAD}, t.__t FROM ({select}) l JOIN __tuples t ON {on} "
                        f"ORDER BY l.{_REC}").fetchall()]
            dups = _repeated_ids(located) if kind is TableKind.DEVICES else set()
            problem_recs, first_of, dropped = _scan_located(located, kind, dups)
            if dropped and skip_bad_rows:  # rows with an empty or repeated id out: their tuples count them no more
                tuples = _without_records(con, tuples, located, dropped)
    except duckdb.OutOfMemoryException as err:  # a local limit, not a fact about the inventory
        raise InventoryError(source, [(None, None, f"DuckDB needs more than memory_limit {table.memory_limit} "
                                                   f"here (raise --memory-limit, or free the temp directory): {err}")]) from err
    except duckdb.Error as err:
        raise InventoryError(source, [(None, None, f"cannot read inventory ({err})")]) from err

    problems, bad_rows = _problems(located, kind, dups, bad_values, table, first_row, problem_recs, first_of,
                                   bad_pairs)
    if problems and not skip_bad_rows:
        raise InventoryError(source, problems)
    # Groups in order of first appearance over every row (bad ones included), as a factorised column had them.
    group_first = every_row[GROUP].map(lambda v: results[GROUP][v][0])
    firsts = pd.Series(every_row[_FIRST].to_numpy(), index=group_first.to_numpy()).groupby(level=0).min()
    group_order = [str(g) for g in firsts.sort_values(kind="stable").index]
    return _profiles_from_tuples(tuples, results, group_order, table, kind, source, first_row, bad_rows, problems,
                                 dropped, stack_of, trust_stores, stored_keys)


def _may_lack_ids(tuples: pd.DataFrame, kind: TableKind) -> bool:
    """Whether some device row may have an empty or nested device_id (then the rows are searched for it)."""
    if kind is not TableKind.DEVICES or tuples.empty:
        return False
    if (tuples[_IDS] < tuples[_N]).any():  # a NULL id
        return True
    def may_be_blank(v: Any) -> bool:
        if isinstance(v, str):
            return v == "" or ord(v[0]) <= 32
        if isinstance(v, (int, np.integer)):  # a number's text is never blank
            return False
        return True  # NULL, NaN, a list (whose text may be empty) ...: search the rows
    return bool(tuples[_MIN_ID].map(may_be_blank).any())


def _repeated_ids(located: Sequence[tuple[Any, ...]]) -> set[str]:
    """The device ids (not empty, not nested) that more than one located row carries.

    Exact because every row whose id hash repeats is located: an id that repeats in the file repeats here.
    """
    seen: set[str] = set()
    repeated: set[str] = set()
    for _, device_id, *_ in located:
        if device_id in seen:
            repeated.add(device_id)
        seen.add(device_id)
    return {v for v in repeated if v.strip() and not v.startswith(_NESTED)}


def _without_records(con: Any, tuples: pd.DataFrame, located: Sequence[tuple[Any, ...]], dropped: Sequence[int]) -> pd.DataFrame:
    """``tuples`` (distinct raw rows with ``__n`` and ``__first``) without the ``dropped`` records.

    The dropped records are located rows, so their tuples are known: each loses one device, a tuple left
    with none goes, and only a tuple whose first record went is searched again for its new first record
    (instead of grouping the whole table a second time).
    """
    out = tuples.copy()
    row_of = {tuple(row): i for i, row in enumerate(out[list(_NORMALISED)].itertuples(index=False, name=None))}
    gone = set(dropped)
    counts = out[_N].to_numpy(dtype=np.int64).copy()
    firsts = out[_FIRST].to_numpy(dtype=np.int64).copy()
    lost = np.zeros(len(out), dtype=np.int64)  # devices each tuple loses (arrays: a doubled 1M export drops 1M rows)
    moved: set[int] = set()
    for rec, _, _, *values in located:
        if int(rec) in gone:
            i = row_of[tuple(values)]
            lost[i] += 1
            if firsts[i] == int(rec):
                moved.add(i)
    counts -= lost
    moved = {i for i in moved if counts[i] > 0}
    if moved:
        con.register("__dropped", pd.DataFrame({"rec": np.asarray(sorted(gone), dtype=np.int64)}))
        con.register("__moved", out.iloc[sorted(moved)][list(_NORMALISED)].reset_index(drop=True))
        on = " AND ".join(f"r.{_q(col)} = m.{_q(col)}" for col in _NORMALISED)
        found = con.execute(f"SELECT {', '.join(f'm.{_q(col)}' for col in _NORMALISED)}, min(r.{_REC}) FROM __raw r "
                            f"JOIN __moved m ON {on} WHERE r.{_REC} NOT IN (SELECT rec FROM __dropped) GROUP BY ALL").fetchall()
        for *values, first in found:
            firsts[row_of[tuple(values)]] = int(first)
    out[_N] = counts
    out[_FIRST] = firsts
    return out[out[_N] > 0].reset_index(drop=True)


def _stacks_of_pairs(
    tuples: pd.DataFrame, results: dict[str, dict[str, tuple[str, str]]],
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """The stack id of each distinct raw (tls_stack, path_builder) pair whose cells are good, and the
    pairs that name two different stacks, with the reason (:func:`_resolve_stack`): one check per pair."""
    stack_of: dict[tuple[str, str], str] = {}
    bad: dict[tuple[str, str], str] = {}
    for pair in dict.fromkeys(zip(tuples[TLS_STACK], tuples[PATH_BUILDER], strict=True)):
        (tls_stack, why_stack), (builder, why_builder) = results[TLS_STACK][pair[0]], results[PATH_BUILDER][pair[1]]
        if why_stack or why_builder:
            continue  # the cell's own problem is reported
        stack, why = _resolve_stack(tls_stack, builder)
        if why:
            bad[pair] = why
        else:
            stack_of[pair] = stack
    return stack_of, bad


def _scan_located(located: Sequence[tuple[Any, ...]], kind: TableKind, dups: set[str]) -> tuple[set[int], dict[str, int], list[int]]:
    """Records that need a row number, the first record of each duplicated id, and the rows a device
    inventory leaves out whatever their values (empty ids, later duplicates)."""
    first_of: dict[str, int] = {}
    later: list[int] = []
    recs = {int(rec) for rec, *_ in located}
    if kind is TableKind.DEVICES:
        for rec, device_id, row_bad, *_ in located:
            if row_bad:
                later.append(int(rec))
            elif device_id in dups:
                if device_id in first_of:
                    later.append(int(rec))
                else:
                    first_of[device_id] = int(rec)
    return recs, first_of, later


def _problems(
    located: Sequence[tuple[Any, ...]], kind: TableKind, dups: set[str], bad_values: dict[str, dict[str, str]],
    table: DeviceTable, first_row: int, recs: set[int], first_of: dict[str, int],
    bad_pairs: dict[tuple[str, str], str] | None = None,
) -> tuple[list[Problem], int]:
    """(row, column, reason) for every problem of the located records, and how many records are bad."""
    if not located:
        return [], 0
    if table.fmt == "csv":
        lines = record_lines(table.paths, sorted(recs), total=table.rows)
        many = len(table.paths) > 1
        row_of = {rec: line for rec, (_, line) in lines.items()}
        prefix = {rec: (f"{Path(path).name}: " if many else "") for rec, (path, _) in lines.items()}
    else:
        row_of = {rec: rec + first_row - 1 for rec in recs}
        prefix = {rec: "" for rec in recs}
    problems: list[Problem] = []
    bad_rows = 0
    for rec, ident, row_bad, *values in located:
        rec = int(rec)
        row, pre = row_of[rec], prefix[rec]
        mine: list[Problem] = []
        for col, value in zip(_NORMALISED, values, strict=True):
            why = bad_values[col].get(value)
            if why:
                mine.append((row, col, pre + why))
        cells = dict(zip(_NORMALISED, values, strict=True))
        why = (bad_pairs or {}).get((cells[TLS_STACK], cells[PATH_BUILDER]))
        if why:
            mine.append((row, TLS_STACK, pre + why))
        if kind is TableKind.DEVICES:
            if row_bad:
                nested = _nested_problem(DEVICE_ID, str(ident or ""))
                mine.append((row, DEVICE_ID, pre + (nested[1] if nested else "device_id is empty")))
            elif ident in dups and first_of[ident] != rec:
                mine.append((row, DEVICE_ID, pre + f"duplicate device_id {ident!r} (first on row {row_of[first_of[ident]]})"))
        elif row_bad:
            mine.append((row, DEVICES, pre + f"devices {ident!r} is not a positive whole number of devices"))
        problems.extend(mine)
        bad_rows += bool(mine)
    problems.sort(key=lambda p: (p[0] if p[0] is not None else -1, p[1] or ""))
    return problems, bad_rows


def _profiles_from_tuples(
    tuples: pd.DataFrame, results: dict[str, dict[str, tuple[str, str]]], group_order: list[str], table: DeviceTable,
    kind: TableKind,
    source: Path, first_row: int, bad_rows: int, problems: list[Problem], dropped: Sequence[int],
    stack_of: dict[tuple[str, str], str], trust_stores: TrustStorePolicy | None, stored_keys: pd.DataFrame | None = None,
) -> Inventory:
    """The profiles, group counts and device -> profile mapping from the distinct raw tuples."""
    norm = {col: tuples[col].map(lambda v, col=col: results[col][v][0]) for col in _NORMALISED}
    pairs = list(zip(tuples[TLS_STACK], tuples[PATH_BUILDER], strict=True))
    norm[TLS_STACK] = pd.Series([stack_of.get(pair, "") for pair in pairs], index=tuples.index, dtype=object)
    bad = tuples[_ROW_BAD].to_numpy(dtype=bool).copy()
    bad |= np.array([pair not in stack_of for pair in pairs], dtype=bool)
    for col in _NORMALISED:
        bad |= tuples[col].map(lambda v, col=col: bool(results[col][v][1])).to_numpy(dtype=bool)
    kept = pd.DataFrame({f"__norm_{col}": norm[col] for col in _NORMALISED})
    kept[_N] = tuples[_N].astype(np.int64)
    kept[_FIRST] = tuples[_FIRST].astype(np.int64)
    kept = kept[~bad]
    raw_kept = tuples.loc[~bad, list(_NORMALISED)]
    ident_cols = [f"__norm_{col}" for col in _IDENTITY]
    prof = kept.groupby(ident_cols, sort=False).agg(n=(_N, "sum"), first=(_FIRST, "min")).reset_index()
    prof = prof.sort_values("first", kind="stable").reset_index(drop=True)
    variants: dict[str, int] = {}
    keys = []
    for name in prof[f"__norm_{PROFILE}"]:
        variants[name] = variants.get(name, 0) + 1
        keys.append(name if variants[name] == 1 else f"{name}~{variants[name]}")
    prof[PROFILE_KEY] = keys
    key_of = kept[ident_cols].merge(prof[[*ident_cols, PROFILE_KEY]], on=ident_cols, how="left")[PROFILE_KEY].to_numpy()
    kept = kept.assign(**{PROFILE_KEY: key_of})
    counts = kept.groupby([PROFILE_KEY, f"__norm_{GROUP}"], sort=False)[_N].sum()
    groups_of: dict[str, list[str]] = {}
    for key, group in counts.index:
        groups_of.setdefault(key, []).append(group)
    records = []
    for row in prof.to_dict("records"):
        value = {col: row[f"__norm_{col}"] for col in _IDENTITY}
        record: dict[str, Any] = {PROFILE_KEY: row[PROFILE_KEY], DEVICES: int(row["n"]),
                                  GROUPS: sorted(groups_of[row[PROFILE_KEY]]), FIRST_ROW: int(row["first"]) + first_row - 1}
        for col in _IDENTITY:
            if col in _LIST_COLUMNS:
                record[col] = _split(value[col])
            elif col == PIN_EXPIRY:
                record[col] = pd.Timestamp(value[col]) if value[col] else pd.NaT
            else:
                record[col] = value[col]
        records.append(record)
    profiles = c.typed_frame(records, PROFILE_DTYPES) if records else c.typed_frame([], PROFILE_DTYPES)
    group_counts = _group_counts_frame(keys, group_order, [(k, g, int(n)) for (k, g), n in counts.items()])
    mapping = None
    if kind is TableKind.DEVICES:
        mapping = pd.concat([raw_kept.reset_index(drop=True), kept.drop(columns=[_N, _FIRST]).reset_index(drop=True)],
                            axis=1)
    return Inventory(profiles=profiles, source=source, bad_rows=bad_rows, problems=problems, group_counts=group_counts,
                     table=table, kind=kind, mapping=mapping, dropped_records=tuple(dropped), first_record_row=first_row,
                     trust_stores=trust_stores, stored_keys=stored_keys if mapping is not None else None)


def inventory_from_frame(
    raw: pd.DataFrame, *, source: str | Path = "<memory>", base_dir: str | Path | None = None,
    skip_bad_rows: bool = False, first_row: int = 1, trust_stores: TrustStorePolicy | None = None,
) -> Inventory:
    """Build an :class:`Inventory` from a raw device table in memory (JSON inventories come this way).

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
    table = _frame_table(raw, TableKind.DEVICES, MEMORY_LIMIT, None)
    return _group_rows(table, TableKind.DEVICES, source, base, skip_bad_rows=skip_bad_rows, first_row=first_row,
                       trust_stores=trust_stores)


def _load(path: str | Path, kind: TableKind, skip_bad_rows: bool, memory_limit: str, temp_directory: str | Path | None,
          allow_outside: Sequence[str | Path], max_store_certificates: int, allow_empty: bool) -> Inventory:
    path = Path(path)
    fmt, files = _expand(path)
    base = path if path.is_dir() else (Path(files[0]).parent if _GLOB.search(str(path)) else path.parent)
    policy = TrustStorePolicy(base_dir=base, allow_outside=tuple(Path(p) for p in allow_outside),
                              max_certificates=max_store_certificates)
    table, first_row = _source_table(fmt, files, path, kind, memory_limit, None if temp_directory is None else str(temp_directory))
    inventory = _group_rows(table, kind, path, base, skip_bad_rows=skip_bad_rows, first_row=first_row,
                            trust_stores=policy)
    if inventory.device_count == 0 and not allow_empty:
        if inventory.problems:
            raise InventoryError(path, [*inventory.problems, (None, None, "every row was bad: no device left to audit")])
        raise InventoryError(path, [(None, None, "no device: the inventory has no rows (an audit of nothing "
                                                 "would report nothing broken)")])
    return inventory


def load_inventory(
    path: str | Path, *, skip_bad_rows: bool = False, memory_limit: str = MEMORY_LIMIT,
    temp_directory: str | Path | None = None, allow_outside: Sequence[str | Path] = (),
    max_store_certificates: int = MAX_TRUST_STORE_CERTIFICATES, allow_empty: bool = False,
) -> Inventory:
    """Load a device inventory from CSV, Parquet or JSON and group it into distinct profiles.

    DuckDB reads the file (out of core: memory stays near ``memory_limit`` whatever the device count)
    and groups it; the inventory keeps the profiles and their device counts, not the devices.

    Args:
        path: ``.csv`` (header line, ``;`` inside list cells), ``.parquet``/``.pq``, a glob of either
            (``fleet/*.parquet``), a directory of Parquet files (a partitioned dataset), or ``.json``
            (a list of device objects, or ``{"devices": [...]}``; list values may be JSON arrays).
        skip_bad_rows: Leave bad rows out (counted in ``bad_rows`` and listed
            in ``problems``) instead of stopping.
        memory_limit: DuckDB's ``memory_limit`` (e.g. ``"1GB"``); past it, DuckDB spills to disk.
        temp_directory: Where DuckDB spills (default: the system temp directory).
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
            problem with its row number (CSV: the physical line where the row
            starts) and column.
    """
    return _load(path, TableKind.DEVICES, skip_bad_rows, memory_limit, temp_directory, allow_outside,
                 max_store_certificates, allow_empty)


def load_profiles(
    path: str | Path, *, skip_bad_rows: bool = False, memory_limit: str = MEMORY_LIMIT,
    temp_directory: str | Path | None = None, allow_outside: Sequence[str | Path] = (),
    max_store_certificates: int = MAX_TRUST_STORE_CERTIFICATES, allow_empty: bool = False,
) -> Inventory:
    """Load a pre-aggregated profile table: the inventory's columns without ``device_id``, plus ``devices``.

    One row per distinct profile, or per profile x ``group`` when the (optional) ``group`` column is
    there: what ``SELECT <columns>, count(*) AS devices FROM devices GROUP BY ALL`` gives in Athena,
    Spark, BigQuery or DuckDB (``docs/profile-table.md``).  Rows naming the same profile and group add up.

    Args:
        path: As for :func:`load_inventory`.
        skip_bad_rows: Leave bad rows out instead of stopping (``bad_rows`` counts profile-table rows).
        memory_limit: DuckDB's ``memory_limit``.
        temp_directory: Where DuckDB spills.
        allow_outside: As for :func:`load_inventory`.
        max_store_certificates: As for :func:`load_inventory`.
        allow_empty: As for :func:`load_inventory`.

    Returns:
        An :class:`Inventory` without device rows (``devices`` and ``write_devices`` raise).

    Raises:
        InventoryError: as :func:`load_inventory`; a ``devices`` value that is not a positive whole
            number is a bad row.
    """
    return _load(path, TableKind.PROFILES, skip_bad_rows, memory_limit, temp_directory, allow_outside,
                 max_store_certificates, allow_empty)
