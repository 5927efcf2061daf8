"""Run directories: Parquet tables plus a manifest, written atomically.

A run directory holds::

    manifest.json          tool version, time, parameters, table row counts
    observations.parquet   one row per target x probe
    chains.parquet         one row per observation x served certificate, in served order
    certificates.parquet   one row per distinct certificate met
    catalog.parquet        the CA catalogue the run was labelled with (real AWS or lab)

It is first written to a hidden sibling directory and renamed into place, so
a crash never leaves a directory that looks like a complete run.
"""

from __future__ import annotations

import fcntl
import glob
import importlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from . import __version__
from . import columns as c
from .catalog import Catalog
from .certs import load_pem_x509_certificates
from .errors import RunError, WriteError

if TYPE_CHECKING:
    import pandas as pd  # imported where frames are made: a collection is written with pyarrow alone (RunRecords)

MANIFEST = "manifest.json"
FORMAT = "iotaudit-run/1"
TABLES: dict[str, dict[str, Any]] = {
    "observations": c.OBSERVATION_DTYPES,
    "chains": c.CHAIN_DTYPES,
    "certificates": c.CERTIFICATE_DTYPES,
    "catalog": c.CATALOG_DTYPES,
}


@dataclass(frozen=True, slots=True)
class Run:
    """One collection: what every target served, as DataFrames.

    Attributes:
        observations: One row per target x probe (:data:`iotaudit.columns.OBSERVATION_DTYPES`).
        chains: One row per observation x served certificate (:data:`iotaudit.columns.CHAIN_DTYPES`).
        certificates: One row per distinct certificate (:data:`iotaudit.columns.CERTIFICATE_DTYPES`).
        catalog: The catalogue the certificates were labelled with (:data:`iotaudit.columns.CATALOG_DTYPES`).
        manifest: Tool version, ``created_at`` (ISO 8601 UTC), ``catalog`` kind, ``parameters``.
        path: Where the run was loaded from or written to, if anywhere.
    """

    observations: pd.DataFrame
    chains: pd.DataFrame
    certificates: pd.DataFrame
    catalog: pd.DataFrame
    manifest: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        for name, dtypes in TABLES.items():
            frame = getattr(self, name)
            missing = [col for col in dtypes if col not in frame.columns]
            if missing:
                raise RunError(self.path or "<memory>", f"table {name} lacks columns {missing}")

    @property
    def created_at(self) -> datetime:
        """When the collection was made (tz-aware UTC); the default ``as_of`` of an analysis."""
        return datetime.fromisoformat(self.manifest["created_at"])

    def catalog_object(self) -> Catalog:
        """The run's catalogue as a :class:`iotaudit.catalog.Catalog`."""
        return Catalog.from_frame(self.catalog, kind=str(self.manifest.get("catalog", "aws")))

    def certificate_objects(self) -> dict[str, x509.Certificate]:
        """Every certificate of the run parsed once: lowercase hex SHA-256 -> ``x509.Certificate``.

        Raises:
            RunError: when a row of the certificates table has no PEM (a damaged run).
            PemError: when a stored PEM does not parse.
        """
        import pandas as pd

        out: dict[str, x509.Certificate] = {}
        for sha, pem in zip(self.certificates[c.SHA256], self.certificates[c.PEM], strict=True):
            if pem is None or pd.isna(pem):
                raise RunError(self.path or "<memory>", f"certificate {sha} has no PEM in certificates.parquet")
            out[str(sha)] = load_pem_x509_certificates(str(pem), f"run certificate {sha}")[0]
        return out

    def certificate_pem(self, sha256: str) -> str:
        """PEM text of one certificate of the run, by DER SHA-256."""
        hit = self.certificates.loc[self.certificates[c.SHA256] == sha256, c.PEM]
        if hit.empty:
            raise RunError(self.path or "<memory>", f"no certificate with sha256 {sha256}")
        return str(hit.iloc[0])


def make_manifest(*, catalog_kind: str, parameters: Mapping[str, Any], created_at: datetime | None = None) -> dict[str, Any]:
    """A run manifest: format, tool version, creation time (UTC) and the parameters used."""
    created = created_at or datetime.now(timezone.utc)
    if created.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return {
        "format": FORMAT,
        "tool": "iotaudit",
        "tool_version": __version__,
        "created_at": created.astimezone(timezone.utc).isoformat(),
        "catalog": catalog_kind,
        "parameters": dict(parameters),
    }


def write_atomically(path: str | Path, fill: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Create directory ``path`` by filling a hidden temporary sibling, then renaming it into place.

    Args:
        path: Final directory.
        fill: Called with the temporary directory; writes everything into it.
        overwrite: Replace an existing ``path`` (it is removed only after the new one is complete).

    Returns:
        ``path``.

    Raises:
        RunError: when ``path`` exists and ``overwrite`` is false.
        WriteError: when the directory cannot be written (full disk, read-only file system, permissions),
            naming ``path`` and the operating system's reason; nothing is left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise RunError(path, "already exists (choose a new directory, or overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    except (FileExistsError, NotADirectoryError) as err:  # a file where a parent directory should be
        raise WriteError(path, f"{err.filename or path.parent} is not a directory") from err
    except OSError as err:
        raise WriteError(path, _reason(err)) from err
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a run is shared like any directory
        fill(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, WriteError):
            raise
        raise WriteError(path, _reason(err)) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _reason(err: OSError) -> str:
    """The operating system's words for ``err`` (``No space left on device``), else its text."""
    if err.errno:
        return os.strerror(err.errno)  # pyarrow sets errno but puts its own sentence in strerror
    # pyarrow's IO errors carry the errno only in their text: "... Detail: [errno 28] No space left on device".
    found = re.search(r"\[errno (\d+)\]", str(err))
    if found:
        return os.strerror(int(found.group(1)))
    return str(err) or type(err).__name__


def fallback_directories() -> list[Path]:
    """Where :func:`write_run_or_keep` saves a run its destination refused, in order of preference.

    ``$IOTAUDIT_FALLBACK_DIR`` when set, the system temporary directory (``$TMPDIR``), then
    ``~/.cache/iotaudit/unsaved`` (usually on another file system than ``/tmp``).
    """
    out = []
    if os.environ.get("IOTAUDIT_FALLBACK_DIR"):
        out.append(Path(os.environ["IOTAUDIT_FALLBACK_DIR"]))
    out.append(Path(tempfile.gettempdir()))
    out.append(Path.home() / ".cache" / "iotaudit" / "unsaved")
    return out


def _write_either(run: Run | RunRecords, path: str | Path, *, overwrite: bool = False) -> Run | Path:
    """:func:`write_run` for a :class:`Run`, :meth:`RunRecords.write` (pyarrow, no pandas) for rows."""
    if isinstance(run, RunRecords):
        return run.write(path, overwrite=overwrite)
    return write_run(run, path, overwrite=overwrite)


def write_run_or_keep(run: Run | RunRecords, path: str | Path, *, overwrite: bool = False,
                      fallbacks: list[Path] | None = None) -> Run | Path:
    """:func:`write_run`, and when ``path`` cannot be written, keep the collection in a fallback directory.

    A collection costs minutes of handshakes and is a fact about one moment: a full disk must not lose it.
    ``run`` may be :class:`RunRecords` (what ``iotaudit collect`` holds): it is written with pyarrow alone.

    Returns:
        The run as written to ``path`` (for :class:`RunRecords`: the path written).

    Raises:
        WriteError: when ``path`` cannot be written; ``kept`` names the directory the run was saved to
            instead (None when every fallback failed too).
        RunError: when ``path`` exists and ``overwrite`` is false.
    """
    try:
        return _write_either(run, path, overwrite=overwrite)
    except WriteError as err:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        for directory in fallbacks if fallbacks is not None else fallback_directories():
            target = directory / f"iotaudit-unsaved-{Path(path).name}-{stamp}-{os.getpid()}"
            try:
                _write_either(run, target)
            except (WriteError, RunError):
                continue
            raise WriteError(err.path, err.reason, kept=target) from err
        raise


@contextmanager
def claim_directory(path: str | Path) -> Iterator[Path]:
    """Hold the exclusive right to create directory ``path`` while the block runs.

    The claim is an ``flock`` on a hidden sibling ``.NAME.lock``, which the
    kernel releases when the holder dies, so a killed run never leaves a
    stale claim.  Once claimed, ``.NAME.partial-*`` directories (left by
    :func:`write_atomically` in a killed run) are removed: no live writer can
    own them.

    Raises:
        RunError: "already exists" when another process holds the claim.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(path, "already exists: another iotaudit is writing it right now") from None
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino  # not a lock file the last holder unlinked
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        for stale in path.parent.glob(f".{glob.escape(path.name)}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield path
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def write_run(run: Run, path: str | Path, *, overwrite: bool = False) -> Run:
    """Write ``run`` as a run directory at ``path``, atomically.

    Returns:
        The same run with ``path`` set.
    """

    def fill(tmp: Path) -> None:
        counts = {}
        for name, dtypes in TABLES.items():
            frame = c.typed_frame(getattr(run, name), dtypes)
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
            counts[name] = len(frame)
        manifest = dict(run.manifest)
        manifest["tables"] = counts
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")

    final = write_atomically(path, fill, overwrite=overwrite)
    return Run(run.observations, run.chains, run.certificates, run.catalog, run.manifest, final)


def _arrow_type(dtype: Any) -> Any:
    """The Parquet (Arrow) type a column of this pandas dtype is written as (:func:`write_run` writes the same)."""
    import pyarrow as pa

    if isinstance(dtype, c.CategoricalOf) or dtype == "category":
        return pa.dictionary(pa.int32(), pa.string())
    return {
        "string": pa.string(), "int64": pa.int64(), "int32": pa.int32(), "Int32": pa.int32(),
        "float64": pa.float64(), "bool": pa.bool_(), c.TIME: pa.timestamp("us", tz="UTC"),
        "object": pa.list_(pa.string()),  # the run tables' object columns are lists of text (chain_sha256, san)
    }[dtype]


@dataclass(frozen=True, slots=True)
class RunRecords:
    """A collection as plain rows, written with pyarrow alone: what ``iotaudit collect`` stores.

    :meth:`to_run` gives the :class:`Run` (pandas); :meth:`write` writes the same run directory as
    :func:`write_run` without importing pandas, so a scheduled collect starts and ends fast.

    Attributes:
        tables: Table name (:data:`TABLES`) -> its rows, as dicts keyed by column.
        manifest: As :attr:`Run.manifest`.
    """

    tables: Mapping[str, list[dict[str, Any]]]
    manifest: Mapping[str, Any]

    def __post_init__(self) -> None:
        missing = [name for name in TABLES if name not in self.tables]
        if missing:
            raise RunError("<memory>", f"run records lack tables {missing}")

    def to_run(self) -> Run:
        """The :class:`Run` with typed frames."""
        return Run(manifest=dict(self.manifest),
                   **{name: c.typed_frame(self.tables[name], dtypes) for name, dtypes in TABLES.items()})

    def write(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the run directory at ``path`` atomically (as :func:`write_run`); returns ``path``."""
        import pyarrow.parquet as pq

        def fill(tmp: Path) -> None:
            counts = {}
            for name, dtypes in TABLES.items():
                pq.write_table(_arrow_table(self.tables[name], dtypes), tmp / f"{name}.parquet")
                counts[name] = len(self.tables[name])
            manifest = dict(self.manifest)
            manifest["tables"] = counts
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")

        return write_atomically(path, fill, overwrite=overwrite)


def preload_writer() -> threading.Thread:
    """Import pyarrow's Parquet writer in a background thread, so the import overlaps the network.

    pyarrow takes a few hundred milliseconds to import; a collection spends its time waiting on
    sockets, so ``iotaudit collect`` starts this first and :meth:`RunRecords.write` finds it loaded.
    """
    def load() -> None:
        for name in ("pyarrow", "pyarrow.compute", "pyarrow.json", "pyarrow.parquet"):
            importlib.import_module(name)

    thread = threading.Thread(target=load, name="iotaudit-preload-pyarrow", daemon=True)
    thread.start()
    return thread


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to a run table")


def _arrow_table(rows: list[dict[str, Any]], dtypes: Mapping[str, Any]) -> Any:
    """Rows as an Arrow table of the run schema, built without pandas.

    pyarrow's Python-object converters (``pa.array``, ``Table.from_pydict``) import pandas to check
    their input; its C++ JSON reader does not, so the rows go through newline-delimited JSON
    with the schema given (https://arrow.apache.org/docs/python/json.html).
    """
    import io

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    plain = pa.schema([(col, pa.string() if _is_dictionary(dtype) else _arrow_type(dtype)) for col, dtype in dtypes.items()])
    if rows:
        text = "".join(json.dumps({col: row.get(col) for col in dtypes}, default=_json_value) + "\n" for row in rows)
        data = text.encode("utf-8")
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=max(len(data), 1 << 20)),
                             parse_options=pj.ParseOptions(explicit_schema=plain, unexpected_field_behavior="error"))
    else:
        table = plain.empty_table()
    for i, (col, dtype) in enumerate(dtypes.items()):
        if _is_dictionary(dtype):  # categoricals as Parquet dictionary columns, sorted as pandas' astype("category")
            values = table.column(i).combine_chunks()
            distinct = pc.unique(values).drop_null()
            distinct = pc.take(distinct, pc.sort_indices(distinct))
            encoded = pa.DictionaryArray.from_arrays(pc.cast(pc.index_in(values, value_set=distinct), pa.int32()), distinct)
            table = table.set_column(i, pa.field(col, encoded.type), encoded)
    return table


def _is_dictionary(dtype: Any) -> bool:
    return isinstance(dtype, c.CategoricalOf) or dtype == "category"


def load_run(path: str | Path) -> Run:
    """Load a run directory written by :func:`write_run` (or ``iotaudit collect``/``import``).

    List columns (``chain_sha256``, ``san``) come back as Python lists; every
    other column has the dtype documented in :mod:`iotaudit.columns`.

    Raises:
        RunError: when the directory is missing, incomplete or not an iotaudit run.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError(path, "no such run directory")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(path, f"no readable {MANIFEST}: not a complete iotaudit run ({err})") from err
    if manifest.get("format") != FORMAT:
        raise RunError(path, f"unknown run format {manifest.get('format')!r} (expected {FORMAT})")
    import pandas as pd

    frames = {}
    for name, dtypes in TABLES.items():
        try:
            frame = pd.read_parquet(path / f"{name}.parquet")
        except (OSError, ValueError) as err:
            raise RunError(path, f"cannot read {name}.parquet ({err})") from err
        for col, dtype in dtypes.items():
            if dtype == "object" and col in frame.columns:
                frame[col] = [list(v) if v is not None else [] for v in frame[col]]
        frames[name] = c.typed_frame(frame, dtypes)
    return Run(manifest=manifest, path=path, **frames)
