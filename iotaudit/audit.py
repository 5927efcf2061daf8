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
summary.json                headline numbers
=========================== ==============================================================

Every verdict is computed once per distinct profile and joined back to
devices by ``profile_key``; the device table is touched only by vectorised
group-bys, which is what makes a 10M-device inventory cheap.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as c
from .columns import as_utc
from .coverage import VERDICT, VERDICT_OF_RANK, VERDICT_ORDER, Verdict, analyse_coverage, chain_observations, meets
from .errors import OptionError, RunError
from .inventory import Inventory, load_inventory
from .options import ExitStatus, FailOn, crosses

SUMMARY = "summary.json"
FORMAT = "iotaudit-audit/1"
# The last instant X.509 can express (RFC 5280 section 4.1.2.5: 99991231235959Z): as_of plus the
# horizon must stay before it.
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
SKIPPED_ROWS_LISTED = 1000  # summary.json lists at most this many skipped rows (all are counted)


def check_horizon(as_of: datetime, horizon_years: int, *, option: str = "as_of") -> None:
    """Raise :class:`~iotaudit.errors.OptionError` when ``as_of`` + ``horizon_years`` passes :data:`LAST_INSTANT`."""
    if horizon_years < 1:
        raise OptionError("horizon_years", horizon_years, "must be at least 1")
    if as_of.year + horizon_years > LAST_INSTANT.year:
        raise OptionError(option, as_of.date().isoformat(),
                          f"plus a {horizon_years}-year horizon passes 9999-12-31, the last date a certificate "
                          f"can express (RFC 5280 section 4.1.2.5); use a date before {LAST_INSTANT.year - horizon_years + 1}")


def unknown_observations(run: Any, inventory: Inventory) -> dict[str, Any]:
    """What the run could not tell: observations with no fact about the endpoint, and the devices they leave unknown.

    ``chain-incomplete`` imports (a transcript that names certificates it does not carry) and
    ``local-error`` probes (our own file descriptors or memory ran out) are never judged
    (:data:`iotaudit.columns.UNKNOWN_STATUSES`): a device that meets one has, for that chain, an
    unknown verdict, not a broken one.

    Returns:
        ``observations_unknown`` (status -> count), ``devices_unknown`` (devices whose profile meets at
        least one chain-incomplete observation) and ``profiles_unknown`` (their profile keys).
    """
    statuses = run.observations[c.STATUS].astype(str)
    counts = {status: int((statuses == status).sum()) for status in sorted(c.UNKNOWN_STATUSES)}
    incomplete = [c.ProbeStatus.CHAIN_INCOMPLETE.value]
    carrying = (statuses == incomplete[0]) & run.observations[c.CHAIN_LENGTH].gt(0)
    keys: list[str] = []
    devices = 0
    if carrying.any():
        partial = chain_observations(run, statuses=incomplete)
        for prow in inventory.profiles.to_dict("records"):
            if meets(prow, partial, statuses=incomplete).any():
                keys.append(str(prow[c.PROFILE_KEY]))
                devices += int(prow[c.DEVICES])
    return {"observations_unknown": counts, "devices_unknown": devices, "profiles_unknown": keys}
FRAMES = (
    "coverage", "fleet", "profiles", "roots_to_add", "expiry", "chain_breaks", "certificates_expiry",
    "anchors_expiry", "cliff", "pins", "pin_risks_ranked",
)


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
    pairs = inventory.devices.groupby([c.GROUP, c.PROFILE_KEY], observed=True).size().reset_index()[[c.GROUP, c.PROFILE_KEY]]
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
    unknown = unknown_observations(run, inventory)
    if unknown["devices_unknown"]:
        notes.append(f"{unknown['devices_unknown']} device(s) meet a chain the run could not record in full "
                     "(chain-incomplete): unknown, not broken, for that chain")
    if unknown["observations_unknown"].get(c.ProbeStatus.LOCAL_ERROR.value):
        notes.append(f"{unknown['observations_unknown'][c.ProbeStatus.LOCAL_ERROR.value]} probe(s) failed on the "
                     "collecting machine (local-error): those endpoints are unknown")
    skipped = [{"row": r, "column": col, "reason": why} for r, col, why in inventory.problems[:SKIPPED_ROWS_LISTED]]
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
        "skipped_rows": skipped,
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
        **unknown,
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
        OptionError: when ``horizon_years`` is not positive or ``as_of`` plus it passes 9999-12-31.
        ValueError: when ``as_of`` is naive.
    """
    from . import expiry as ex
    from . import pinning as pn
    from .coverage import DEFAULT_AT_RISK_DAYS

    as_of = as_utc(as_of) if as_of is not None else as_utc(run.created_at)
    check_horizon(as_of, horizon_years)
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
        anchors_expiry=anchors_expiry, cliff=cliff, pins=pins, pin_risks_ranked=ranked, summary=summary,
    )


def _csv_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists as ';'-joined text (the inventory's own list syntax) so CSV readers see plain cells."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object and any(isinstance(v, (list, tuple)) for v in out[col].head(50)):
            out[col] = [";".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in out[col]]
    return out


def write_audit(result: AuditResult, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write every frame as ``<name>.parquet`` and ``<name>.csv`` plus ``summary.json``, atomically.

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


def audit_command(args: argparse.Namespace) -> int:
    """``iotaudit audit`` (arguments defined in :mod:`iotaudit.cli`); returns the exit status (0, or 1 over ``--fail-on``)."""
    from .store import load_run

    if args.as_of is not None:
        check_horizon(args.as_of, args.horizon_years, option="--as-of")
    run = load_run(args.run)
    inventory = load_inventory(args.inventory, skip_bad_rows=args.skip_bad_rows, allow_outside=args.allow_outside,
                               max_store_certificates=args.max_store_certificates)
    if inventory.bad_rows:
        print(f"iotaudit audit: skipped {inventory.bad_rows} bad row(s) of {inventory.source}:", file=sys.stderr)
        for row, column, reason in inventory.problems[:SKIPPED_ROWS_LISTED]:
            print(f"  row {row if row is not None else '-'}, column {column or '-'}: {reason}", file=sys.stderr)
        if len(inventory.problems) > SKIPPED_ROWS_LISTED:
            print(f"  ... and {len(inventory.problems) - SKIPPED_ROWS_LISTED} more (all in summary.json's bad_rows "
                  "count)", file=sys.stderr)
    if args.as_of is None:
        check_horizon(as_utc(run.created_at), args.horizon_years, option="the run's time")
    result = audit(run, inventory, as_of=args.as_of, horizon_years=args.horizon_years)
    crossed = crosses(result.summary["devices_by_verdict"], args.fail_on)
    summary = {**result.summary, "fail_on": str(args.fail_on), "threshold_crossed": crossed}
    result = AuditResult(**{name: getattr(result, name) for name in FRAMES}, summary=summary)
    out = write_audit(result, args.out, overwrite=args.overwrite)
    s = result.summary
    print(
        f"{s['devices']} devices in {s['profiles']} profiles: {s['devices_covered']} covered, "
        f"{s['devices_at_risk']} at risk, {s['devices_broken']} broken, {s['devices_not_applicable']} meet no chain; "
        f"earliest break {s['earliest_break_date'] or 'none within horizon'}"
    )
    unknown = {k: v for k, v in s["observations_unknown"].items() if v}
    if unknown or s["devices_unknown"]:
        print(f"unknown: {s['devices_unknown']} device(s) meet a chain the run could not record in full; "
              f"observations not judged: {', '.join(f'{v} {k}' for k, v in unknown.items())}")
    print(f"audit written to {out}")
    print(f"fail-on {args.fail_on}: {'threshold crossed, exit 1' if crossed else 'nothing crosses it, exit 0'}",
          file=sys.stderr)
    return ExitStatus.THRESHOLD if crossed else ExitStatus.OK


__all__ = ["AuditResult", "FailOn", "audit", "crosses", "audit_command", "load_audit", "unknown_observations",
           "write_audit"]
