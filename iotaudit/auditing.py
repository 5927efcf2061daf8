"""The audit: one run x one inventory x one ``as_of`` -> every analysis frame, a summary and files.

``iotaudit audit RUN --inventory FILE [--as-of DATE] [--horizon-years N] [--skip-bad-rows] [--cross-check] --out DIR``
writes, atomically (``store.write_atomically``), one Parquet and one CSV file
per frame of :class:`AuditResult` plus ``summary.json``:

=========================== ==============================================================
file                        content
=========================== ==============================================================
coverage                    profile x observation it may meet, with its tls_stack (:mod:`iotaudit.root_coverage`)
fleet                       devices per group x endpoint x key type x verdict
profiles                    one row per profile: worst verdict, risks, roots to add
roots_to_add                per profile x scenario (today, no-cross-sign, reserved-roots)
stack_alternatives          per profile x other stack: the same store's verdict there ("same store, other stacks")
expiry                      per profile: firmware_break_date and its cause, state, break_date
                            (:func:`iotaudit.expiry.break_dates`)
chain_breaks                per profile x chain: break date
certificates_expiry         every certificate met: role, not_after, days_left
anchors_expiry              per profile x anchor in its store
cliff                       devices losing every valid path, by date
pins                        per profile x pin x scenario (:func:`iotaudit.pinning.pin_risks`)
pin_risks_ranked            ranked pinning risks with device counts
crosscheck                  per profile x chain: the model's verdict next to the real library's
                            (``--cross-check``; empty otherwise), :func:`cross_check`
firmware_notes              per profile x note of ``iotaudit scan`` (``--scan``; empty otherwise),
                            :func:`iotaudit.scan_notes.inventory_notes`
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

Every verdict is computed once per distinct profile; device counts come from the
inventory's per profile x group counts (DuckDB grouped the device table out of
core), and the device table is read again only to write ``devices.parquet``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from cryptography.hazmat.primitives.serialization import Encoding

from . import columns as c
from . import crosscheck
from . import expiry as ex
from . import pinning as pn
from . import scan_notes
from .columns import as_utc
from .errors import OptionError, RunError
from .firmware import read_findings
from .hypothetical import HypotheticalPki
from .inventory import Inventory, load_inventory, load_profiles
from .options import ExitStatus, FailOn, crosses
from .paths import PathEngine
from .profiles import Profile, chain_observations, meets
from .root_coverage import (
    DEFAULT_AT_RISK_DAYS,
    VERDICT,
    VERDICT_OF_RANK,
    VERDICT_ORDER,
    ChainJudge,
    Verdict,
    analyse_coverage,
    stack_alternatives,
)
from .store import load_run, write_atomically

SUMMARY = "summary.json"
# Frames added after the first audit format: an older audit directory without them loads them empty.
_ADDED_FRAMES = {"stack_alternatives": c.STACK_ALTERNATIVES_DTYPES, "crosscheck": c.CROSSCHECK_DTYPES,
                 "firmware_notes": c.FIRMWARE_NOTES_DTYPES, "group_devices": c.GROUP_DEVICES_DTYPES}
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


def unknown_observations(run: Any, profiles: Sequence[Profile]) -> dict[str, Any]:
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
        for profile in profiles:
            if meets(profile, partial, statuses=incomplete).any():
                keys.append(profile.key)
                devices += profile.devices
    return {"observations_unknown": counts, "devices_unknown": devices, "profiles_unknown": keys}
FRAMES = (
    "coverage", "fleet", "profiles", "roots_to_add", "stack_alternatives", "expiry", "chain_breaks",
    "certificates_expiry", "anchors_expiry", "cliff", "pins", "pin_risks_ranked", "crosscheck", "firmware_notes",
    "group_devices",
)
DEVICES_FILE = "devices.parquet"
# devices.parquet's per-device firmware-side break date: the expiry frame's firmware_break_date (update the
# firmware by then), joined on the device's profile.
DEVICE_BREAK_DATE_SOURCE = c.FIRMWARE_BREAK_DATE


@dataclass(frozen=True, slots=True)
class AuditResult:
    """Every frame of one audit, and its headline numbers.

    Attributes:
        coverage: One row per profile x observation it may meet.
        fleet: Devices per group x endpoint x key type x verdict.
        profiles: One row per profile: worst verdict, risks, reasons, roots to add, future readiness.
        roots_to_add: Minimal catalogue roots to add, per profile x scenario.
        stack_alternatives: Per profile x other stack, the same store's verdict there.
        expiry: Per profile firmware-side date and cause, break state and break date.
        chain_breaks: Per profile x chain break date.
        certificates_expiry: Every certificate met with role, not_after, days left.
        anchors_expiry: Per profile x anchor in its store.
        cliff: Devices losing every valid path by date.
        pins: Per profile x pin x scenario.
        pin_risks_ranked: Ranked pinning risks.
        crosscheck: Per profile x chain, the model's verdict and the real library's (``--cross-check``).
        firmware_notes: Per profile x note of the firmware scan (``--scan``; empty otherwise).
        group_devices: Devices per group x profile (:data:`iotaudit.columns.GROUP_DEVICES_DTYPES`).
        summary: Headline numbers (JSON-serialisable).
    """

    coverage: pd.DataFrame
    fleet: pd.DataFrame
    profiles: pd.DataFrame
    roots_to_add: pd.DataFrame
    stack_alternatives: pd.DataFrame
    expiry: pd.DataFrame
    chain_breaks: pd.DataFrame
    certificates_expiry: pd.DataFrame
    anchors_expiry: pd.DataFrame
    cliff: pd.DataFrame
    pins: pd.DataFrame
    pin_risks_ranked: pd.DataFrame
    crosscheck: pd.DataFrame = field(default_factory=lambda: c.typed_frame([], c.CROSSCHECK_DTYPES))
    firmware_notes: pd.DataFrame = field(default_factory=lambda: c.typed_frame([], c.FIRMWARE_NOTES_DTYPES))
    group_devices: pd.DataFrame = field(default_factory=lambda: c.typed_frame([], c.GROUP_DEVICES_DTYPES))
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


def _firmware_headline(expiry: pd.DataFrame) -> dict[str, Any]:
    """The earliest firmware-side date, the profiles and devices it hits, and what ends it."""
    out: dict[str, Any] = {"earliest_firmware_break_date": None, "earliest_firmware_break_profiles": [],
                           "earliest_firmware_break_devices": 0, "earliest_firmware_break_causes": []}
    if expiry.empty or c.FIRMWARE_BREAK_DATE not in expiry.columns:
        return out
    when = pd.to_datetime(expiry[c.FIRMWARE_BREAK_DATE], utc=True)
    if not when.notna().any():
        return out
    first = expiry[when == when.min()]
    out["earliest_firmware_break_date"] = _iso(when.min())
    out["earliest_firmware_break_profiles"] = sorted(first[c.PROFILE].astype(str))
    out["earliest_firmware_break_devices"] = int(first[c.DEVICES].sum())
    out["earliest_firmware_break_causes"] = sorted(set(first[c.FIRMWARE_BREAK_CAUSE].astype(str)))
    return out


def _crosscheck_summary(frame: pd.DataFrame, unavailable: Mapping[str, str], asked: bool) -> dict[str, Any]:
    disagree = frame[~frame[c.AGREE].astype(bool)] if len(frame) else frame
    return {
        "asked": asked,
        "cases": int(len(frame)),
        "disagreements": int(len(disagree)),
        "disagreeing": [
            {c.PROFILE: str(r[c.PROFILE]), c.OBSERVATION_ID: int(r[c.OBSERVATION_ID]), c.HOST: str(r[c.HOST]),
             c.TLS_STACK: str(r[c.TLS_STACK]), c.MODEL_VALID: bool(r[c.MODEL_VALID]),
             c.LIBRARY_VALID: bool(r[c.LIBRARY_VALID]), c.LIBRARY: str(r[c.LIBRARY]),
             c.LIBRARY_ERROR: str(r[c.LIBRARY_ERROR])}
            for r in disagree.to_dict("records")
        ],
        "libraries": sorted(set(frame[c.LIBRARY].astype(str))) if len(frame) else [],
        "unavailable": dict(sorted(unavailable.items())),
    }


def _summary(
    run: Any, inventory: Inventory, as_of: datetime, horizon_years: int, cov: Any, expiry: pd.DataFrame,
    ranked: pd.DataFrame, notes: list[str], engine: PathEngine, profiles: tuple[Profile, ...],
    cross: dict[str, Any], scanned: dict[str, Any],
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
    devices_by_stack: dict[str, int] = {}
    for profile in profiles:
        devices_by_stack[profile.stack.id] = devices_by_stack.get(profile.stack.id, 0) + profile.devices
    worst_pin = None
    if len(ranked):
        top = ranked.iloc[0].to_dict()
        worst_pin = {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                     for k, v in top.items() if k in (c.PROFILE, c.DEVICES, c.RISK, c.SEVERITY_COL)}
        worst_pin = {k: (int(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v) for k, v in worst_pin.items()}
    unknown = unknown_observations(run, profiles)
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
        **_firmware_headline(expiry),
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
        "worst_pin_risk": worst_pin,
        "devices_by_stack": dict(sorted(devices_by_stack.items())),
        "validations": int(engine.calls),
        "validations_by_stack": dict(sorted(engine.calls_by_stack.items())),
        "crosscheck": cross,
        "firmware_notes": scanned,
        **unknown,
        "notes": notes,
    }


def cross_check(
    judge: ChainJudge, profiles: Sequence[Profile],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Ask each profile's real TLS library (where installed here) about every chain the profile meets at ``as_of``.

    For every profile whose stack's library can be used on this machine
    (:func:`iotaudit.crosscheck.unavailable` is None), every chain it meets
    becomes a :class:`iotaudit.crosscheck.Case` (served DER in served order, the
    store in store order, the endpoint's host, ``as_of``); one batch per stack
    goes to :func:`iotaudit.crosscheck.verify_many`, and the library's verdict
    is set beside the model's (the path engine's, as in the coverage frame).

    Args:
        judge: The run's :class:`iotaudit.root_coverage.ChainJudge` (the model side, shared with coverage).
        profiles: The profiles.

    Returns:
        (frame with the columns of :data:`iotaudit.columns.CROSSCHECK_DTYPES`, one row per
        profile x chain, ``agree`` False where model and library differ; stack id -> why its
        library could not be asked here, for the stacks left out).
    """
    unavailable: dict[str, str] = {}
    asked: dict[str, list[tuple[Profile, int]]] = {}
    for profile in profiles:
        stack = profile.stack.id
        if stack not in asked and stack not in unavailable:
            reason = crosscheck.unavailable(stack)
            if reason is not None:
                unavailable[stack] = reason
                continue
            asked[stack] = []
        if stack in asked:
            asked[stack].extend((profile, i) for i in judge.met(profile))
    der: dict[str, bytes] = {}

    def encoded(shas: Sequence[str]) -> tuple[bytes, ...]:
        for sha in shas:
            if sha not in der:
                der[sha] = judge.engine.certificates[sha].public_bytes(Encoding.DER)
        return tuple(der[sha] for sha in shas)

    rows: list[dict[str, Any]] = []
    for stack, pairs in asked.items():
        cases: dict[tuple[Any, ...], crosscheck.Case] = {}
        for profile, i in pairs:
            key = (judge.chains[i], judge.store_of(profile), str(judge.rows[i][c.HOST]))
            if key not in cases:
                cases[key] = crosscheck.Case(served=encoded(key[0]), store=encoded(key[1]), host=key[2],
                                             as_of=judge.as_of)
        keys = list(cases)
        verdicts = dict(zip(keys, crosscheck.verify_many(stack, [cases[k] for k in keys]), strict=True))
        for profile, i in pairs:
            o = judge.rows[i]
            library = verdicts[(judge.chains[i], judge.store_of(profile), str(o[c.HOST]))]
            model = judge.outcome(i, judge.store_of(profile), profile.stack).verdict.valid
            rows.append({
                c.PROFILE: profile.key, c.OBSERVATION_ID: int(o[c.OBSERVATION_ID]), c.HOST: str(o[c.HOST]),
                c.PORT: int(o[c.PORT]), c.PROBE: str(o[c.PROBE]), c.TLS_STACK: stack, c.MODEL_VALID: model,
                c.LIBRARY_VALID: library.valid, c.LIBRARY: library.library, c.LIBRARY_ERROR: library.error,
                c.AGREE: model == library.valid,
            })
    frame = c.typed_frame(rows, c.CROSSCHECK_DTYPES)
    frame[c.PROFILE] = pd.Categorical(frame[c.PROFILE].astype(str), categories=[p.key for p in profiles])
    return frame, unavailable


def audit(
    run: Any, inventory: Inventory, *, as_of: datetime | None = None, horizon_years: int = 15,
    at_risk_days: int | None = None, cross_check_libraries: bool = False, scan_findings: pd.DataFrame | None = None,
) -> AuditResult:
    """Audit ``inventory`` against ``run``: coverage, stacks, fleet, roots to add, expiry, cliff, pins, summary.

    Every analysis asks the one path engine (:class:`iotaudit.paths.PathEngine`),
    shared here, so a question asked by coverage is not asked again by expiry
    or pinning.

    Args:
        run: The collected run (:class:`iotaudit.store.Run`).
        inventory: The device inventory (:func:`iotaudit.inventory.load_inventory`).
        as_of: When the verdicts hold (tz-aware); default the run's ``created_at``, so
            the same run gives the same audit tomorrow.
        horizon_years: How far ahead break dates and the cliff look.
        at_risk_days: A chain that stops validating within this many days is ``at-risk``
            (default :data:`iotaudit.root_coverage.DEFAULT_AT_RISK_DAYS`).
        cross_check_libraries: Also ask each profile's real TLS library, where installed
            here, about every chain it meets (the ``crosscheck`` frame; :func:`cross_check`).
        scan_findings: The findings of ``iotaudit scan`` (:func:`iotaudit.firmware.read_findings`): their
            notes, judged at ``as_of``, for the profiles the inventory has become the ``firmware_notes``
            frame (:func:`iotaudit.scan_notes.inventory_notes`).

    Returns:
        An :class:`AuditResult`.

    Raises:
        InventoryError: when trust stores do not resolve against the run's catalogue.
        OptionError: when ``horizon_years`` is not positive or ``as_of`` plus it passes 9999-12-31.
        ValueError: when ``as_of`` is naive.
    """
    as_of = as_utc(as_of) if as_of is not None else as_utc(run.created_at)
    check_horizon(as_of, horizon_years)
    catalog = run.catalog_object()
    profiles = inventory.build_profiles(catalog)
    engine = PathEngine(run.certificate_objects())
    judge = ChainJudge(run, as_of=as_of, engine=engine,
                       at_risk_days=DEFAULT_AT_RISK_DAYS if at_risk_days is None else at_risk_days)
    end = ex.horizon_end(as_of, horizon_years)
    hypothetical = HypotheticalPki(catalog, as_of, until=end + timedelta(days=2))
    cov = analyse_coverage(run, inventory, as_of=as_of, profiles=profiles, judge=judge, hypothetical=hypothetical)
    alternatives = stack_alternatives(judge, profiles)
    notes: list[str] = []
    chain_breaks = ex.chain_break_dates(run, profiles, as_of=as_of, horizon_years=horizon_years,
                                        coverage=cov.coverage, engine=engine)
    expiry = ex.break_dates(run, profiles, as_of=as_of, horizon_years=horizon_years, coverage=cov.coverage,
                            chain_breaks=chain_breaks, hypothetical=hypothetical, engine=engine)
    certificates_expiry = ex.certificate_expiry(run, cov.coverage, as_of=as_of, profiles=profiles)
    anchors_expiry = ex.anchor_expiry(run, profiles, as_of=as_of, coverage=cov.coverage)
    cliff = ex.cliff(expiry, as_of=as_of, horizon_years=horizon_years)
    pins = pn.pin_risks(run, profiles, cov.coverage, as_of=as_of, engine=engine)
    ranked = pn.ranked_risks(pins)
    if cross_check_libraries:
        checked, unavailable = cross_check(judge, profiles)
        for stack, reason in sorted(unavailable.items()):
            notes.append(f"cross-check: {stack} not checked against its real library: {reason}")
    else:
        checked, unavailable = c.typed_frame([], c.CROSSCHECK_DTYPES), {}
    cross = _crosscheck_summary(checked, unavailable, cross_check_libraries)
    if scan_findings is not None:
        firmware, scanned, lines = scan_notes.inventory_notes(scan_findings, profiles, as_of=as_of)
        notes += lines
    else:
        firmware, scanned = scan_notes.not_asked()
    summary = _summary(run, inventory, as_of, horizon_years, cov, expiry, ranked, notes, engine, profiles, cross,
                       scanned)
    return AuditResult(
        coverage=cov.coverage, fleet=cov.fleet, profiles=cov.profiles, roots_to_add=cov.roots_to_add,
        stack_alternatives=alternatives, expiry=expiry, chain_breaks=chain_breaks,
        certificates_expiry=certificates_expiry, anchors_expiry=anchors_expiry, cliff=cliff, pins=pins,
        pin_risks_ranked=ranked, crosscheck=checked, firmware_notes=firmware,
        group_devices=c.typed_frame(inventory.group_counts.rename(columns={c.PROFILE_KEY: c.PROFILE}).astype(
            {c.GROUP: str, c.PROFILE: str}), c.GROUP_DEVICES_DTYPES),
        summary=summary,
    )


def device_results(result: AuditResult) -> pd.DataFrame:
    """Per profile, what ``devices.parquet`` says of each of its devices (:data:`~iotaudit.columns.DEVICE_RESULT_DTYPES`).

    ``verdict`` is the profile's worst verdict, ``firmware_break_date`` the expiry frame's
    :data:`DEVICE_BREAK_DATE_SOURCE` (update the firmware by then), ``worst_pin_risk`` the most severe of
    the profile's ranked pinning risks (the first in rank order among equals; "" when none).
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
        if name in _ADDED_FRAMES and not (path / f"{name}.parquet").exists():
            frames[name] = c.typed_frame([], _ADDED_FRAMES[name])  # written before the frame existed
            continue
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
    findings = read_findings(args.scan) if args.scan else None
    load = load_profiles if args.profiles else load_inventory
    inventory = load(args.profiles or args.inventory, skip_bad_rows=args.skip_bad_rows,
                     allow_outside=args.allow_outside, max_store_certificates=args.max_store_certificates,
                     memory_limit=args.memory_limit)
    if inventory.bad_rows:
        print(f"iotaudit audit: skipped {inventory.bad_rows} bad row(s) of {inventory.source}:", file=sys.stderr)
        for row, column, reason in inventory.problems[:SKIPPED_ROWS_LISTED]:
            print(f"  row {row if row is not None else '-'}, column {column or '-'}: {reason}", file=sys.stderr)
        if len(inventory.problems) > SKIPPED_ROWS_LISTED:
            print(f"  ... and {len(inventory.problems) - SKIPPED_ROWS_LISTED} more (all in summary.json's bad_rows "
                  "count)", file=sys.stderr)
    if args.as_of is None:
        check_horizon(as_utc(run.created_at), args.horizon_years, option="the run's time")
    result = audit(run, inventory, as_of=args.as_of, horizon_years=args.horizon_years,
                   cross_check_libraries=args.cross_check, scan_findings=findings)
    crossed = crosses(result.summary["devices_by_verdict"], args.fail_on)
    summary = {**result.summary, "fail_on": str(args.fail_on), "threshold_crossed": crossed}
    result = AuditResult(**{name: getattr(result, name) for name in FRAMES}, summary=summary)
    out = write_audit(result, args.out, overwrite=args.overwrite, inventory=inventory)
    s = result.summary
    print(
        f"{s['devices']} devices in {s['profiles']} profiles: {s['devices_covered']} covered, "
        f"{s['devices_at_risk']} at risk, {s['devices_broken']} broken, {s['devices_not_applicable']} meet no chain; "
        f"update firmware by {s['earliest_firmware_break_date'] or 'no date within horizon'}; "
        f"earliest break as served {s['earliest_break_date'] or 'none within horizon'}"
    )
    unknown = {k: v for k, v in s["observations_unknown"].items() if v}
    if unknown or s["devices_unknown"]:
        print(f"unknown: {s['devices_unknown']} device(s) meet a chain the run could not record in full; "
              f"observations not judged: {', '.join(f'{v} {k}' for k, v in unknown.items())}")
    cross = s["crosscheck"]
    if cross["asked"]:
        print(f"cross-check: {cross['cases']} chain(s) asked of {', '.join(cross['libraries']) or 'no library'}, "
              f"{cross['disagreements']} disagreement(s); not checked here: {', '.join(cross['unavailable']) or 'none'}")
    if s["firmware_notes"]["asked"]:
        notes = s["firmware_notes"]
        print(f"firmware notes: {notes['errors']} error(s), {notes['warnings']} warning(s), {notes['infos']} info(s); "
              f"{notes['notes_outside_inventory']} note(s) of profiles not in the inventory left out")
    print(f"audit written to {out}")
    print(f"fail-on {args.fail_on}: {'threshold crossed, exit 1' if crossed else 'nothing crosses it, exit 0'}",
          file=sys.stderr)
    return ExitStatus.THRESHOLD if crossed else ExitStatus.OK


__all__ = ["AuditResult", "FailOn", "audit", "audit_command", "cross_check", "crosses", "device_results",
           "load_audit", "unknown_observations", "write_audit"]
