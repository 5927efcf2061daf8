"""What a report notebook reads: one typed :class:`ReportInputs`, made the same way for every use.

There is one load path.  The audit is computed by :func:`prepare_audit`
(:func:`iotaudit.auditing.audit`, then :func:`iotaudit.auditing.write_audit` into
an audit directory) and every reader opens that directory with
:func:`load_inputs`:

* ``iotaudit report`` calls :func:`prepare_audit` once into ``DIR/audit/``;
  each notebook kernel and the summary numbers then :func:`load_inputs` it;
* a notebook opened by hand in JupyterLab calls :func:`load_inputs` with
  ``audit_dir=""`` (or a directory that does not exist yet): it runs the same
  :func:`prepare_audit` once, into a temporary directory (or that one), and
  reads it back exactly as the scheduled report does -- the same Parquet
  round trip, the same dtypes, the same cells.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ..options import parse_iso_instant
from .. import columns as c
from ..auditing import AuditResult, audit, load_audit, write_audit
from ..errors import ReportError
from ..expiry import cliff
from ..firmware import read_findings
from ..inventory import Inventory, load_inventory
from ..store import Run, load_run
from .pages import SKIPPED_COLUMN, SKIPPED_REASON, SKIPPED_ROW, SKIPPED_ROWS

# Inventory rows left out with --skip-bad-rows: one row per problem (iotaudit.inventory.Inventory.problems).
ROW, COLUMN, REASON = SKIPPED_ROW, SKIPPED_COLUMN, SKIPPED_REASON
SKIPPED_COLUMNS = (ROW, COLUMN, REASON)

# Frames other parts of the audit are adding (docs: /work/team/STACKS.md "Frames the report will show").
# Each is shown only when the audit has it; an audit without it gives None, never an empty stand-in.
STACK_ALTERNATIVES, FIRMWARE_NOTES, CROSSCHECK = "stack_alternatives", "firmware_notes", "crosscheck"
OPTIONAL_FRAMES = (STACK_ALTERNATIVES, FIRMWARE_NOTES, CROSSCHECK)


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """Everything a report notebook shows, loaded once per kernel by :func:`load_inputs`.

    Frames are reached as typed attributes (``inputs.audit.coverage``): a
    misspelt frame is an ``AttributeError``, not an empty table.

    Attributes:
        run: The collection.
        audit: The audit (group-filtered when ``group`` is set).
        as_of: Evaluation time (tz-aware UTC).
        horizon_years: Horizon of break dates and the cliff.
        title: Report title.
        group: Device group filter ("" = all devices).
        baseline: The earlier run to compare with, if any.
        run_dir: Where the run was loaded from.
        audit_dir: The audit directory the frames were read from.
        skipped_rows: Inventory rows left out by ``--skip-bad-rows`` (``row``, ``column``, ``reason``).
        stack_alternatives: "Same store, other stacks", when the audit has it.
        firmware_notes: Findings of ``iotaudit scan``, when the audit has them.
        crosscheck: The model's verdict next to the real library's, when the audit has it.
    """

    run: Run
    audit: AuditResult
    as_of: datetime
    horizon_years: int = 15
    title: str = "iotaudit report"
    group: str = ""
    baseline: Run | None = None
    run_dir: str = ""
    audit_dir: str = ""
    skipped_rows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(SKIPPED_COLUMNS)))
    stack_alternatives: pd.DataFrame | None = None
    firmware_notes: pd.DataFrame | None = None
    crosscheck: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("ReportInputs.as_of must be timezone-aware")
        if self.horizon_years < 1:
            raise ValueError("ReportInputs.horizon_years must be at least 1")
        if not isinstance(self.run, Run):
            raise TypeError(f"ReportInputs.run must be a Run, not {type(self.run).__name__}")
        if not isinstance(self.audit, AuditResult):
            raise TypeError(f"ReportInputs.audit must be an AuditResult, not {type(self.audit).__name__}")
        missing = [col for col in SKIPPED_COLUMNS if col not in self.skipped_rows.columns]
        if missing:
            raise ValueError(f"ReportInputs.skipped_rows lacks columns {missing}")

    @property
    def summary(self) -> Mapping[str, Any]:
        """The audit's headline numbers (``summary.json`` of the audit directory)."""
        return self.audit.summary


def parse_as_of(text: str | datetime | None, default: datetime) -> datetime:
    """``""``/None -> ``default``; otherwise an ISO 8601 date (midnight UTC) or date-time with ``Z`` or an offset.

    The same rule as ``iotaudit audit --as-of`` (:func:`iotaudit.options.parse_iso_instant`): ``now``,
    ``today`` or a date-time without a time zone would make the same scheduled report mean something else
    tomorrow, or elsewhere.

    Raises:
        ReportError: when the text is not such a date or date-time.
    """
    if text is None or text == "":
        return default
    if isinstance(text, datetime):
        moment = text if text.tzinfo is not None else text.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    moment = parse_iso_instant(str(text))
    if moment is None:
        raise ReportError("as_of", None, f"{text!r} is not an ISO 8601 date (YYYY-MM-DD) or a date-time with a "
                                         "time zone (2026-01-15T12:00:00Z)")
    return moment


def skipped_rows_frame(inventory: Inventory) -> pd.DataFrame:
    """The inventory's skipped rows, one row per problem: ``row`` (as in the source), ``column``, ``reason``."""
    rows = [(row, column or "", reason) for row, column, reason in inventory.problems]
    frame = pd.DataFrame(rows, columns=list(SKIPPED_COLUMNS))
    return frame.astype({ROW: "Int64", COLUMN: "string", REASON: "string"})


def prepare_audit(run: Run, inventory: Inventory, audit_dir: str | Path, *, as_of: datetime,
                  horizon_years: int = 15, cross_check: bool = False,
                  scan_findings: pd.DataFrame | None = None) -> Path:
    """Audit ``run`` against ``inventory`` once and write it, with the skipped rows, to ``audit_dir``.

    The one place a report's audit is computed: ``iotaudit report`` and a
    notebook opened by hand both come here (see the module docstring).

    Args:
        cross_check: Also ask each profile's real TLS library, where installed, about every chain it meets
            (the audit's ``crosscheck`` frame; :func:`iotaudit.auditing.cross_check`).
        scan_findings: The findings of ``iotaudit scan`` (:func:`iotaudit.firmware.read_findings`): the
            audit's ``firmware_notes`` frame, at ``as_of``.

    Returns:
        ``audit_dir``.

    Raises:
        RunError: when ``audit_dir`` already exists.
    """
    result = audit(run, inventory, as_of=as_of, horizon_years=horizon_years, cross_check_libraries=cross_check,
                   scan_findings=scan_findings)
    out = write_audit(result, audit_dir, inventory=inventory)  # with devices.parquet
    skipped = skipped_rows_frame(inventory)
    skipped.to_csv(out / SKIPPED_ROWS, index=False)
    skipped.to_parquet(out / SKIPPED_ROWS.replace('.csv', '.parquet'), index=False)  # the pages link both
    return out


def _read_skipped(audit_dir: Path) -> pd.DataFrame:
    path = audit_dir / SKIPPED_ROWS
    if not path.is_file():  # an audit written by `iotaudit audit`: its summary counts them, without detail
        return pd.DataFrame(columns=list(SKIPPED_COLUMNS)).astype({ROW: "Int64", COLUMN: "string", REASON: "string"})
    try:
        frame = pd.read_csv(path, dtype={ROW: "Int64", COLUMN: "string", REASON: "string"}, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ReportError(path, None, f"cannot read the skipped rows ({err})") from err
    missing = [col for col in SKIPPED_COLUMNS if col not in frame.columns]
    if missing:
        raise ReportError(path, None, f"lacks columns {missing}")
    return frame


def _optional_frame(result: AuditResult, audit_dir: Path, name: str) -> pd.DataFrame | None:
    """One of :data:`OPTIONAL_FRAMES`: from the audit if it has the field, else its Parquet file, else None.

    An audit given no scan has an empty ``firmware_notes`` frame: that is None here (nothing to say), while
    an audit given a scan whose profiles have no note keeps its empty frame ("the scan found nothing").
    """
    if name in {f.name for f in dataclasses.fields(result)}:
        value = getattr(result, name)
        if name == FIRMWARE_NOTES and isinstance(value, pd.DataFrame) and value.empty and not (
                result.summary.get(FIRMWARE_NOTES) or {}).get("asked", False):
            return None
        return value if isinstance(value, pd.DataFrame) else None
    path = audit_dir / f"{name}.parquet"
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        raise ReportError(path, None, f"cannot read {name} ({err})") from err


def load_inputs(
    run_dir: str | Path,
    inventory: str | Path = "",
    *,
    audit_dir: str | Path = "",
    as_of: str = "",
    horizon_years: int = 15,
    title: str = "",
    group: str = "",
    baseline_run: str | Path = "",
    skip_bad_rows: bool = False,
    scan: str | Path = "",
    cross_check: bool = False,
) -> ReportInputs:
    """Load what a report notebook needs: the run and the audit directory (computed once if there is none).

    Args:
        run_dir: Run directory.
        inventory: Device inventory; needed to compute the audit and to filter on ``group``.
        audit_dir: An audit directory (``DIR/audit`` of ``iotaudit report``).  "" computes the audit
            into a temporary directory; a directory that does not exist yet is computed into.
        as_of: ISO date/time, "" for the run's time (or the existing audit's own ``as_of``).
        horizon_years: Horizon of break dates and the cliff.
        title: Report title ("" = "iotaudit report").
        group: Keep only devices of this group ("" = all).
        baseline_run: An earlier run directory for the drift notebook ("" = none).
        skip_bad_rows: When computing: leave bad inventory rows out (they are listed) instead of stopping.
        scan: When computing: the findings of ``iotaudit scan`` (``scan.parquet`` or the ``profiles.csv``
            beside it), as ``iotaudit report --scan`` takes them; "" = none.
        cross_check: When computing: also ask each profile's real TLS library, as ``--cross-check`` does.

    Returns:
        A :class:`ReportInputs`.

    Raises:
        ReportError: when an existing audit was made at another ``as_of`` or horizon than asked for,
            or the audit must be computed and no inventory is given.
        IotauditError: a bad run, inventory or audit directory.
    """
    run = load_run(run_dir)
    moment = parse_as_of(as_of, run.created_at)
    inv: Inventory | None = None
    target = Path(audit_dir) if audit_dir else Path(tempfile.mkdtemp(prefix="iotaudit-audit-")) / "audit"
    if not target.exists():
        if not inventory:
            raise ReportError("load_inputs", None, f"no audit at {target} and no inventory to compute it from")
        inv = load_inventory(inventory, skip_bad_rows=skip_bad_rows)
        prepare_audit(run, inv, target, as_of=moment, horizon_years=int(horizon_years), cross_check=bool(cross_check),
                      scan_findings=read_findings(scan) if scan else None)
    result = load_audit(target)
    recorded_as_of = parse_as_of(str(result.summary.get("as_of", "")), moment)
    if as_of and recorded_as_of != moment:
        raise ReportError(target, None, f"the audit was made at {recorded_as_of.isoformat()}, not at {moment.isoformat()}")
    recorded_horizon = int(result.summary.get("horizon_years", horizon_years))
    if recorded_horizon != int(horizon_years):
        raise ReportError(target, None, f"the audit looks {recorded_horizon} years ahead, not {horizon_years}")
    skipped = _read_skipped(target)
    optional = {name: _optional_frame(result, target, name) for name in OPTIONAL_FRAMES}
    if group:
        # The audit's group_devices has the group counts: no device table is read per kernel (issue 11).
        # Only an audit written before that frame existed needs the inventory for them.
        if inv is None and result.group_devices.empty:
            if not inventory:
                raise ReportError("load_inputs", None, f"filtering on group {group!r} needs the inventory")
            inv = load_inventory(inventory, skip_bad_rows=True)
        result = filter_group(result, inv, group, as_of=recorded_as_of, horizon_years=recorded_horizon)
        optional = {name: _profiles_in(frame, result) for name, frame in optional.items()}
    baseline = load_run(baseline_run) if baseline_run else None
    return ReportInputs(run=run, audit=result, as_of=recorded_as_of, horizon_years=recorded_horizon,
                        title=title or "iotaudit report", group=group, baseline=baseline, run_dir=str(run_dir),
                        audit_dir=str(target), skipped_rows=skipped, **optional)


def _profiles_in(frame: pd.DataFrame | None, result: AuditResult) -> pd.DataFrame | None:
    if frame is None or c.PROFILE not in frame.columns:
        return frame
    keep = set(result.profiles[c.PROFILE].astype(str))
    return frame[frame[c.PROFILE].astype(str).isin(keep)].reset_index(drop=True)


def filter_group(result: AuditResult, inventory: Inventory | None, group: str, *, as_of: datetime,
                 horizon_years: int = 15) -> AuditResult:
    """The audit restricted to one device group: profiles outside it dropped, device counts the group's own.

    Verdicts are per profile, so filtering is a join of the group's per-profile
    device counts onto every frame that has a ``profile`` column; the cliff is
    recomputed from the filtered break dates.

    Devices per group x profile come from the audit's ``group_devices`` frame, else (an audit written
    before it) from the inventory's ``group_counts``: never from the device table.

    Raises:
        ReportError: when no device of the inventory is in ``group``.
    """
    per_group = result.group_devices
    if per_group.empty and inventory is not None:
        per_group = inventory.group_counts.rename(columns={c.PROFILE_KEY: c.PROFILE})
    in_group = per_group[per_group[c.GROUP].astype(str) == group]
    if in_group.empty:
        known = sorted(per_group[c.GROUP].astype(str).unique())[:20]
        raise ReportError("group filter", None, f"no device in group {group!r}; groups: {', '.join(known)}")
    counts = in_group.groupby(in_group[c.PROFILE].astype(str))[c.DEVICES].sum()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        frame = getattr(result, f.name)
        if isinstance(frame, pd.DataFrame) and c.PROFILE in frame.columns:
            keep = frame[frame[c.PROFILE].astype(str).isin(counts.index)].copy()
            if c.DEVICES in keep.columns:
                keep[c.DEVICES] = keep[c.PROFILE].astype(str).map(counts).astype("int64").to_numpy()
            changes[f.name] = keep.reset_index(drop=True)
    changes["group_devices"] = c.typed_frame(in_group.astype({c.GROUP: str, c.PROFILE: str}), c.GROUP_DEVICES_DTYPES)
    changes["cliff"] = cliff(changes["expiry"], as_of=as_of, horizon_years=horizon_years)
    summary = dict(result.summary)
    summary.update({"group": group, "devices": int(counts.sum()), "profiles": int(len(counts))})
    changes["summary"] = summary
    return dataclasses.replace(result, **changes)


__all__ = ["ReportInputs", "filter_group", "load_inputs", "parse_as_of", "prepare_audit", "skipped_rows_frame"]
