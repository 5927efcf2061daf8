"""The audit: one run x one inventory x one ``as_of`` -> every analysis frame, a summary and files.

``iotaudit audit RUN --inventory FILE [--as-of DATE] [--horizon-years N] [--skip-bad-rows] --out DIR``
writes, atomically (``store.write_atomically``), one Parquet and one CSV file
per frame of :class:`AuditResult` plus ``summary.json``:

=========================== ==============================================================
file                        content
=========================== ==============================================================
coverage                    profile x observation it may meet (:mod:`iotaudit.coverage`)
fleet                       devices per group x endpoint x key type x verdict
profiles                    one row per profile: worst verdict, risks, roots to add
roots_to_add                per profile x scenario (today, no-cross-sign, reserved-roots)
expiry                      per profile: state, break_date (:func:`iotaudit.expiry.break_dates`)
chain_breaks                per profile x chain: break date
certificates_expiry         every certificate met: role, not_after, days_left
anchors_expiry              per profile x anchor in its store
cliff                       devices losing every valid path, by date
pins                        per profile x pin x scenario (:func:`iotaudit.pinning.pin_risks`)
pin_risks_ranked            ranked pinning risks with device counts
group_devices               devices per group x profile (what a group filter needs)
summary.json                headline numbers
devices.parquet             one row per device: device_id, group, profile, verdict,
                            firmware_break_date, worst_pin_risk (a directory of Parquet
                            files past ``inventory.DEVICE_FILE_ROWS`` devices; absent for
                            ``--profiles``, which has no devices)
=========================== ==============================================================

``--profiles FILE`` audits a pre-aggregated profile table instead of a device
inventory (:func:`iotaudit.inventory.load_profiles`; the SQL that makes one in a
warehouse is in ``docs/profile-table.md``): the verdicts are the same.

Every verdict is computed once per distinct profile and joined back to
devices by ``profile_key``; the device table is touched only by vectorised
group-bys, which is what makes a 10M-device inventory cheap.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as c
from .columns import as_utc
from .coverage import VERDICT, VERDICT_OF_RANK, VERDICT_ORDER, Verdict, analyse_coverage
from .errors import RunError
from .inventory import Inventory, load_inventory, load_profiles

SUMMARY = "summary.json"
FORMAT = "iotaudit-audit/1"
FRAMES = (
    "coverage", "fleet", "profiles", "roots_to_add", "expiry", "chain_breaks", "certificates_expiry",
    "anchors_expiry", "cliff", "pins", "pin_risks_ranked", "group_devices",
)
DEVICES_FILE = "devices.parquet"
# The per-profile date written to devices.parquet as firmware_break_date: today the expiry frame's renewed
# break date (the firmware-side update-by date); one line to change when expiry gains its own column.
DEVICE_BREAK_DATE_SOURCE = c.RENEWED_BREAK_DATE


@dataclass(frozen=True, slots=True)
class AuditResult:
    """Every frame of one audit, and its headline numbers.

    Attributes:
        coverage: One row per profile x observation it may meet.
        fleet: Devices per group x endpoint x key type x verdict.
        profiles: One row per profile: worst verdict, risks, reasons, roots to add, future readiness.
        roots_to_add: Minimal catalogue roots to add, per profile x scenario.
        expiry: Per profile break state and break date.
        chain_breaks: Per profile x chain break date.
        certificates_expiry: Every certificate met with role, not_after, days left.
        anchors_expiry: Per profile x anchor in its store.
        cliff: Devices losing every valid path by date.
        pins: Per profile x pin x scenario.
        pin_risks_ranked: Ranked pinning risks.
        group_devices: Devices per group x profile (:data:`iotaudit.columns.GROUP_DEVICES_DTYPES`).
        summary: Headline numbers (JSON-serialisable).
    """

    coverage: pd.DataFrame
    fleet: pd.DataFrame
    profiles: pd.DataFrame
    roots_to_add: pd.DataFrame
    expiry: pd.DataFrame
    chain_breaks: pd.DataFrame
    certificates_expiry: pd.DataFrame
    anchors_expiry: pd.DataFrame
    cliff: pd.DataFrame
    pins: pd.DataFrame
    pin_risks_ranked: pd.DataFrame
    group_devices: pd.DataFrame
    summary: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in FRAMES:
            if not isinstance(getattr(self, name), pd.DataFrame):
                raise TypeError(f"AuditResult.{name} must be a DataFrame")
        if not isinstance(self.summary, Mapping):
            raise TypeError("AuditResult.summary must be a mapping")


def _iso(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return pd.Timestamp(value).isoformat()


def _earliest(expiry: pd.DataFrame, column: str) -> str | None:
    if column not in expiry.columns or not len(expiry):
        return None
    dates = pd.to_datetime(expiry[column], utc=True).dropna()
    return _iso(dates.min()) if len(dates) else None


def _summary(
    run: Any, inventory: Inventory, as_of: datetime, horizon_years: int, cov: Any, expiry: pd.DataFrame,
    ranked: pd.DataFrame, notes: list[str],
) -> dict[str, Any]:
    prof = cov.profiles
    verdict_of = dict(zip(prof[c.PROFILE].astype(str), prof[VERDICT].astype(str), strict=True))
    devices_by_verdict = {v.value: 0 for v in Verdict}
    for key, devices in zip(prof[c.PROFILE].astype(str), prof[c.DEVICES], strict=True):
        devices_by_verdict[verdict_of[key]] += int(devices)
    # Groups: a group's verdict is the worst verdict of any of its devices (coverage's verdict order);
    # a group none of whose devices meets a chain is not-applicable, not covered.
    pairs = inventory.group_counts[[c.GROUP, c.PROFILE_KEY]].copy()
    pairs["rank"] = pairs[c.PROFILE_KEY].astype(str).map(lambda k: VERDICT_ORDER[verdict_of[k]])
    pairs["meets_none"] = pairs[c.PROFILE_KEY].astype(str).map(lambda k: verdict_of[k] == Verdict.NOT_APPLICABLE.value)
    per_group = pairs.groupby(c.GROUP, observed=True).agg(rank=("rank", "max"), meets_none=("meets_none", "all"))
    group_rank = per_group["rank"]
    groups_by_verdict = {verdict: 0 for verdict in VERDICT_OF_RANK.values()} | {Verdict.NOT_APPLICABLE.value: 0}
    for rank, meets_none in zip(per_group["rank"], per_group["meets_none"], strict=True):
        groups_by_verdict[Verdict.NOT_APPLICABLE.value if meets_none else VERDICT_OF_RANK[rank]] += 1
    earliest = _earliest(expiry, c.BREAK_DATE)                   # if nothing changes (served chain as is)
    earliest_renewed = _earliest(expiry, c.RENEWED_BREAK_DATE)   # if AWS keeps renewing leaf certificates
    worst_pin = None
    if len(ranked):
        top = ranked.iloc[0].to_dict()
        worst_pin = {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                     for k, v in top.items() if k in (c.PROFILE, c.DEVICES, c.RISK, c.SEVERITY_COL)}
        worst_pin = {k: (int(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v) for k, v in worst_pin.items()}
    ready_reserved = int(prof.loc[prof[c.READY_RESERVED_ROOTS], c.DEVICES].sum())
    ready_no_cross = int(prof.loc[prof[c.READY_NO_CROSS_SIGN], c.DEVICES].sum())
    return {
        "format": FORMAT,
        "as_of": as_of.isoformat(),
        "horizon_years": horizon_years,
        "run": str(run.path) if getattr(run, "path", None) else "",
        "run_created_at": run.manifest.get("created_at", ""),
        "catalog": run.manifest.get("catalog", ""),
        "inventory": str(inventory.source),
        "devices": int(inventory.device_count),
        "bad_rows": int(inventory.bad_rows),
        "profiles": len(prof),
        "groups": int(len(group_rank)),
        "devices_by_verdict": devices_by_verdict,
        "groups_by_verdict": groups_by_verdict,
        "devices_covered": devices_by_verdict[Verdict.COVERED.value],
        "devices_at_risk": devices_by_verdict[Verdict.AT_RISK.value],
        "devices_broken": devices_by_verdict[Verdict.BROKEN.value],
        "devices_not_applicable": devices_by_verdict[Verdict.NOT_APPLICABLE.value],
        "devices_ready_for_reserved_roots": ready_reserved,
        "devices_ready_without_cross_sign": ready_no_cross,
        "earliest_break_date": earliest,
        "earliest_renewed_break_date": earliest_renewed,
        "worst_pin_risk": worst_pin,
        "validations": int(cov.validations),
        "notes": notes,
    }


def audit(
    run: Any, inventory: Inventory, *, as_of: datetime | None = None, horizon_years: int = 15,
    at_risk_days: int | None = None,
) -> AuditResult:
    """Audit ``inventory`` against ``run``: coverage, fleet, roots to add, expiry, cliff, pins, summary.

    Args:
        run: The collected run (:class:`iotaudit.store.Run`).
        inventory: The device inventory (:func:`iotaudit.inventory.load_inventory`).
        as_of: When the verdicts hold (tz-aware); default the run's ``created_at``, so
            the same run gives the same audit tomorrow.
        horizon_years: How far ahead break dates and the cliff look.
        at_risk_days: A chain that stops validating within this many days is ``at-risk``
            (default :data:`iotaudit.coverage.DEFAULT_AT_RISK_DAYS`).

    Returns:
        An :class:`AuditResult`.

    Raises:
        InventoryError: when trust stores do not resolve against the run's catalogue.
        ValueError: when ``as_of`` is naive or ``horizon_years`` is not positive.
    """
    from . import expiry as ex
    from . import pinning as pn
    from .coverage import DEFAULT_AT_RISK_DAYS

    as_of = as_utc(as_of) if as_of is not None else as_utc(run.created_at)
    if horizon_years <= 0:
        raise ValueError("horizon_years must be positive")
    anchors = inventory.resolve(run.catalog_object())
    cov = analyse_coverage(run, inventory, as_of=as_of, anchors=anchors,
                           at_risk_days=DEFAULT_AT_RISK_DAYS if at_risk_days is None else at_risk_days)
    notes: list[str] = []
    chain_breaks = ex.chain_break_dates(run, inventory, anchors, as_of=as_of, horizon_years=horizon_years,
                                        coverage=cov.coverage)
    expiry = ex.break_dates(run, inventory, anchors, as_of=as_of, horizon_years=horizon_years,
                            coverage=cov.coverage, chain_breaks=chain_breaks)
    certificates_expiry = ex.certificate_expiry(run, cov.coverage, as_of=as_of, anchors=anchors)
    anchors_expiry = ex.anchor_expiry(run, inventory, anchors, as_of=as_of, coverage=cov.coverage)
    cliff = ex.cliff(expiry, as_of=as_of, horizon_years=horizon_years)
    pins = pn.pin_risks(run, inventory, cov.coverage, anchors, as_of=as_of)
    ranked = pn.ranked_risks(pins)
    summary = _summary(run, inventory, as_of, horizon_years, cov, expiry, ranked, notes)
    return AuditResult(
        coverage=cov.coverage, fleet=cov.fleet, profiles=cov.profiles, roots_to_add=cov.roots_to_add,
        expiry=expiry, chain_breaks=chain_breaks, certificates_expiry=certificates_expiry,
        anchors_expiry=anchors_expiry, cliff=cliff, pins=pins, pin_risks_ranked=ranked,
        group_devices=c.typed_frame(inventory.group_counts.rename(columns={c.PROFILE_KEY: c.PROFILE}).astype(
            {c.GROUP: str, c.PROFILE: str}), c.GROUP_DEVICES_DTYPES),
        summary=summary,
    )


def device_results(result: AuditResult) -> pd.DataFrame:
    """Per profile, what ``devices.parquet`` says of each of its devices (:data:`~iotaudit.columns.DEVICE_RESULT_DTYPES`).

    ``verdict`` is the profile's worst verdict, ``firmware_break_date`` the expiry frame's
    :data:`DEVICE_BREAK_DATE_SOURCE`, ``worst_pin_risk`` the most severe of the profile's ranked pinning
    risks (the first in rank order among equals; "" when none).
    """
    out = result.profiles[[c.PROFILE, VERDICT]].astype({c.PROFILE: str, VERDICT: str})
    dates = result.expiry[[c.PROFILE, DEVICE_BREAK_DATE_SOURCE]].astype({c.PROFILE: str})
    out = out.merge(dates.rename(columns={DEVICE_BREAK_DATE_SOURCE: c.FIRMWARE_SIDE_BREAK_DATE}), on=c.PROFILE, how="left")
    ranked = result.pin_risks_ranked
    worst = ranked.sort_values([c.SEVERITY_COL, c.RANK], ascending=[False, True], kind="stable").drop_duplicates(c.PROFILE)
    worst = dict(zip(worst[c.PROFILE].astype(str), worst[c.RISK].astype(str), strict=True))
    out[c.WORST_PIN_RISK] = out[c.PROFILE].map(lambda key: worst.get(key, ""))
    return c.typed_frame(out, c.DEVICE_RESULT_DTYPES)


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists as ';'-joined text (the inventory's own list syntax) so CSV readers see plain cells."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and any(isinstance(v, (list, tuple)) for v in out[col].head(50)):
            out[col] = [";".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in out[col]]
    return out


def write_audit(
    result: AuditResult, out_dir: str | Path, *, overwrite: bool = False, inventory: Inventory | None = None,
) -> Path:
    """Write every frame as ``<name>.parquet`` and ``<name>.csv`` plus ``summary.json``, atomically.

    With the ``inventory`` the audit was made from (one with device rows), also ``devices.parquet``:
    DuckDB joins the device table with :func:`device_results` and writes it, no device entering Python.

    Returns:
        The audit directory.

    Raises:
        RunError: when ``out_dir`` exists and ``overwrite`` is false.
    """
    from .store import write_atomically

    def fill(tmp: Path) -> None:
        for name in FRAMES:
            frame = getattr(result, name)
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
            _csv_ready(frame).to_csv(tmp / f"{name}.csv", index=False)
        (tmp / SUMMARY).write_text(json.dumps(dict(result.summary), indent=2, default=str) + "\n", encoding="utf-8")
        if inventory is not None and inventory.has_devices:
            inventory.write_devices(tmp / DEVICES_FILE, device_results(result))

    return write_atomically(out_dir, fill, overwrite=overwrite)


def load_audit(path: str | Path) -> AuditResult:
    """Load an audit directory written by :func:`write_audit` (list columns come back as lists).

    Raises:
        RunError: when the directory or one of its files is missing or unreadable.
    """
    path = Path(path)
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(path, f"not a complete audit directory: no readable {SUMMARY} ({err})") from err
    frames: dict[str, pd.DataFrame] = {}
    for name in FRAMES:
        try:
            frame = pd.read_parquet(path / f"{name}.parquet")
        except (OSError, ValueError) as err:
            raise RunError(path, f"cannot read {name}.parquet ({err})") from err
        for col in frame.columns:
            if frame[col].dtype == object and any(hasattr(v, "tolist") and not isinstance(v, str) for v in frame[col].head(50)):
                frame[col] = [list(v.tolist()) if hasattr(v, "tolist") else v for v in frame[col]]
        frames[name] = frame
    return AuditResult(summary=summary, **frames)


def _parse_as_of(text: str) -> datetime:
    try:
        stamp = pd.Timestamp(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--as-of {text!r} is not a date (use YYYY-MM-DD or ISO 8601)") from err
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _command(args: argparse.Namespace) -> int:
    from .store import load_run

    run = load_run(args.run)
    if args.profiles:
        inventory = load_profiles(args.profiles, skip_bad_rows=args.skip_bad_rows, memory_limit=args.memory_limit)
    else:
        inventory = load_inventory(args.inventory, skip_bad_rows=args.skip_bad_rows, memory_limit=args.memory_limit)
    if inventory.bad_rows:
        print(f"iotaudit audit: skipped {inventory.bad_rows} bad row(s) of {inventory.source}")
    result = audit(run, inventory, as_of=args.as_of, horizon_years=args.horizon_years)
    out = write_audit(result, args.out, overwrite=args.overwrite, inventory=inventory)
    s = result.summary
    print(
        f"{s['devices']} devices in {s['profiles']} profiles: {s['devices_covered']} covered, "
        f"{s['devices_at_risk']} at risk, {s['devices_broken']} broken, {s['devices_not_applicable']} meet no chain; "
        f"earliest break {s['earliest_break_date'] or 'none within horizon'}"
    )
    print(f"audit written to {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``iotaudit audit`` to the CLI."""
    parser = subparsers.add_parser(
        "audit", help="audit a device inventory against a collected run",
        description="Validate every chain each firmware profile may meet, at --as-of (default: the run's time), "
                    "and write coverage, fleet, roots to add, expiry, cliff and pinning frames "
                    "(Parquet + CSV) and summary.json to --out.",
    )
    parser.add_argument("run", help="run directory (iotaudit collect / import)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inventory", help="device inventory: .csv, .parquet, .json, a glob of them, "
                                            "or a directory of Parquet files (a partitioned dataset)")
    source.add_argument("--profiles", help="pre-aggregated profile table instead: the inventory's columns without "
                                           "device_id, plus devices (docs/profile-table.md)")
    parser.add_argument("--as-of", type=_parse_as_of, default=None, help="validate at this date (default: run time)")
    parser.add_argument("--horizon-years", type=int, default=15, help="how far ahead to look for break dates")
    parser.add_argument("--skip-bad-rows", action="store_true", help="leave bad inventory rows out (they are counted)")
    parser.add_argument("--memory-limit", default="1GB", metavar="SIZE",
                        help="DuckDB's memory limit for reading the inventory (default 1GB); past it, it spills to "
                             "the temp directory (TMPDIR)")
    parser.add_argument("--out", required=True, help="audit directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(func=_command)


__all__ = ["AuditResult", "audit", "device_results", "load_audit", "register", "write_audit"]
