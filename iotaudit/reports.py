"""The report set: papermill-executed notebooks rendered to self-contained HTML.

``iotaudit report --run RUN --inventory FILE --out DIR`` audits the run once
(:func:`iotaudit.audit.audit`, written to ``DIR/audit/``), executes each
notebook of ``notebooks/`` with papermill (kernels read that audit, they do
not recompute it), keeps the executed ``.ipynb``, renders HTML with nbconvert
(code hidden, figures embedded as base64 PNG, no script, font or style
fetched from the network), and writes ``index.html`` and ``summary.json``.
The whole directory is written atomically (:func:`iotaudit.store.write_atomically`).

Notebooks stay thin: a ``parameters`` cell of primitives, one
:func:`load_inputs` call, then one call per cell to the section functions
below, each returning an object Jupyter displays (:class:`Html` or
:class:`Png`).

Exit status of ``iotaudit report``: 0 when nothing crosses ``--fail-on``,
1 when something does, 2 for usage or input errors.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import importlib
import io
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from . import __version__
from .errors import IotauditError, ReportError
from .metrics import VERDICTS, profile_verdicts
from .store import Run, load_run, write_atomically

# --- the report set --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotebookSpec:
    """One notebook of the report set."""

    name: str          # file stem in notebooks/, also the stem of the .ipynb/.html written
    title: str         # what index.html and the summary call it
    description: str   # one line under the link
    needs_baseline: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_]+", self.name):
            raise ValueError(f"notebook name {self.name!r} must be lowercase letters and underscores")


NOTEBOOKS: tuple[NotebookSpec, ...] = (
    NotebookSpec("summary", "Summary", "Headline numbers and what to do first."),
    NotebookSpec("root_coverage", "Root coverage",
                 "Which endpoint chains each firmware can validate, to which anchor, and which roots to add."),
    NotebookSpec("expiry_timeline", "Expiry timeline",
                 "Served certificates, validated paths and trust anchors: when each expires, and the device cliff."),
    NotebookSpec("pinning_risk", "Pinning risk",
                 "Which pins match today and which break under each likely AWS change."),
    NotebookSpec("drift", "Drift since the baseline run",
                 "What the endpoints serve differently from the previous run.", needs_baseline=True),
)
AUDIT_SUBDIR = "audit"
NOTEBOOK_ONLY_TAG = "notebook-only"  # cells removed from the rendered HTML
SUMMARY_JSON = "summary.json"
INDEX_HTML = "index.html"


class FailOn(str, Enum):
    """``--fail-on`` threshold: the exit status is 1 when any device has this verdict or worse."""

    BROKEN = "broken"
    AT_RISK = "at-risk"
    NEVER = "never"

    def __str__(self) -> str:
        return self.value


def notebooks_dir() -> Path:
    """Directory holding the report notebooks (``_notebooks`` inside a wheel, else the checkout's ``notebooks/``)."""
    packaged = Path(__file__).parent / "_notebooks"
    if (packaged / "summary.ipynb").exists():
        return packaged
    return Path(__file__).resolve().parent.parent / "notebooks"


# --- what a notebook displays ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Html:
    """An HTML fragment Jupyter displays as is (the fragment must already be escaped)."""

    markup: str

    def __post_init__(self) -> None:
        if not isinstance(self.markup, str):
            raise TypeError("Html markup must be a str")

    def _repr_html_(self) -> str:
        return self.markup


@dataclass(frozen=True, slots=True)
class Png:
    """A rendered figure: PNG bytes that Jupyter shows and nbconvert embeds as base64."""

    data: bytes
    alt: str = ""

    def __post_init__(self) -> None:
        if not self.data.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("Png data is not a PNG image")

    def _repr_png_(self) -> bytes:
        return self.data

    @classmethod
    def from_figure(cls, figure: Any, alt: str = "", dpi: int = 110) -> Png:
        """Render a matplotlib Figure to PNG and release it."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        import matplotlib.pyplot as plt  # only to release the figure if pyplot tracks it

        plt.close(figure)
        return cls(buffer.getvalue(), alt)


# --- inputs of a notebook kernel -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """Everything a report notebook shows, loaded once per kernel by :func:`load_inputs`.

    Attributes:
        run: The collection.
        audit: The :class:`iotaudit.audit.AuditResult` (group-filtered when ``group`` is set).
        as_of: Evaluation time (tz-aware UTC).
        horizon_years: Horizon of break dates and the cliff.
        title: Report title.
        group: Device group filter ("" = all devices).
        baseline: The earlier run to compare with, if any.
        run_dir: Where the run was loaded from.
    """

    run: Run
    audit: Any
    as_of: datetime
    horizon_years: int = 15
    title: str = "iotaudit report"
    group: str = ""
    baseline: Run | None = None
    run_dir: str = ""

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("ReportInputs.as_of must be timezone-aware")
        if self.horizon_years < 1:
            raise ValueError("ReportInputs.horizon_years must be at least 1")

    def frame(self, name: str) -> pd.DataFrame:
        """One audit frame by name; an empty frame when the audit has no such frame."""
        value = getattr(self.audit, name, None)
        return value if isinstance(value, pd.DataFrame) else pd.DataFrame()

    @property
    def summary(self) -> Mapping[str, Any]:
        return getattr(self.audit, "summary", None) or {}


def parse_as_of(text: str | datetime | None, default: datetime) -> datetime:
    """``""``/None -> ``default``; ``YYYY-MM-DD`` -> midnight UTC; ISO 8601 -> UTC (naive means UTC).

    Raises:
        ReportError: when the text is not an ISO 8601 date or time.
    """
    if text is None or text == "":
        return default
    if isinstance(text, datetime):
        moment = text
    else:
        try:
            moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError as err:
            raise ReportError("as_of", None, f"{text!r} is not an ISO 8601 date (YYYY-MM-DD) or time") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


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
) -> ReportInputs:
    """Load what a report notebook needs: the run, and the audit (read from ``audit_dir`` or computed).

    Args:
        run_dir: Run directory.
        inventory: Device inventory; needed unless ``audit_dir`` is given and ``group`` is empty.
        audit_dir: A directory written by :func:`iotaudit.audit.write_audit`; "" computes the audit here.
        as_of: ISO date/time, "" for the run's time (ignored for the audit when ``audit_dir`` is given:
            the audit was made at its own ``as_of``, recorded in its summary).
        horizon_years: Horizon of break dates and the cliff.
        title: Report title ("" = "iotaudit report").
        group: Keep only devices of this group ("" = all).
        baseline_run: An earlier run directory for the drift notebook ("" = none).

    Returns:
        A :class:`ReportInputs`.
    """
    # Not `from . import audit`: the package front door re-exports the audit() function under that name.
    audit_module = importlib.import_module("iotaudit.audit")

    run = load_run(run_dir)
    moment = parse_as_of(as_of, run.created_at)
    inv = None
    if inventory and not audit_dir:  # an audit_dir has the group counts (group_devices): no device table per kernel
        from .inventory import load_inventory

        inv = load_inventory(inventory)
    if audit_dir:
        result = audit_module.load_audit(audit_dir)
        recorded = (getattr(result, "summary", None) or {}).get("as_of")
        if recorded and not as_of:
            moment = parse_as_of(str(recorded), moment)
    else:
        if inv is None:
            raise ReportError("load_inputs", None, "an inventory is needed when no audit_dir is given")
        result = audit_module.audit(run, inv, as_of=moment, horizon_years=horizon_years)
    if group:
        result = filter_group(result, inv, group, as_of=moment, horizon_years=horizon_years)
    baseline = load_run(baseline_run) if baseline_run else None
    return ReportInputs(run=run, audit=result, as_of=moment, horizon_years=int(horizon_years),
                        title=title or "iotaudit report", group=group, baseline=baseline, run_dir=str(run_dir))


def filter_group(result: Any, inventory: Any, group: str, *, as_of: datetime, horizon_years: int = 15) -> Any:
    """The audit restricted to one device group: profiles outside it dropped, device counts the group's own.

    Verdicts are per profile, so filtering is a join of the group's per-profile
    device counts onto every frame that has a ``profile`` column; the cliff is
    recomputed from the filtered break dates.

    Raises:
        ReportError: when no device of the inventory is in ``group``.
    """
    import dataclasses

    # Devices per group x profile: the audit's own frame, else the inventory's counts (never the device table).
    per_group = getattr(result, "group_devices", None)
    if per_group is None:
        per_group = inventory.group_counts.rename(columns={"profile_key": "profile"})
    in_group = per_group[per_group["group"].astype(str) == group]
    if in_group.empty:
        known = sorted(per_group["group"].astype(str).unique())[:20]
        raise ReportError("group filter", None, f"no device in group {group!r}; groups: {', '.join(known)}")
    counts = in_group.groupby(in_group["profile"].astype(str))["devices"].sum()
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        frame = getattr(result, f.name)
        if isinstance(frame, pd.DataFrame) and "profile" in frame.columns:
            keep = frame[frame["profile"].astype(str).isin(counts.index)].copy()
            if "devices" in keep.columns:
                keep["devices"] = keep["profile"].astype(str).map(counts).astype("int64").to_numpy()
            changes[f.name] = keep.reset_index(drop=True)
    if "group_devices" in changes:
        changes["group_devices"] = in_group.reset_index(drop=True)
    if "cliff" in {f.name for f in dataclasses.fields(result)} and "expiry" in changes:
        from .expiry import cliff

        changes["cliff"] = cliff(changes["expiry"], as_of=as_of, horizon_years=horizon_years)
    summary = dict(getattr(result, "summary", None) or {})
    summary.update({"group": group, "devices": int(counts.sum()), "profiles": int(len(counts))})
    if "summary" in {f.name for f in dataclasses.fields(result)}:
        changes["summary"] = summary
    return dataclasses.replace(result, **changes)


# --- tables ----------------------------------------------------------------------------


def _fmt_date(value: Any) -> str:
    if value is None or value is pd.NaT or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return "—"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _fmt_time(value: Any) -> str:
    if not value:
        return "—"
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _fmt_cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        listed = value.tolist()
        if isinstance(listed, list):
            return ", ".join(str(v) for v in listed)
    if isinstance(value, (pd.Timestamp, datetime)):
        return _fmt_date(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return "—"
    if isinstance(value, float) and pd.isna(value):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(frame: pd.DataFrame, columns: Mapping[str, str], *, caption: str = "", empty: str = "Nothing to show.",
          limit: int = 200, sort: Sequence[str] = (), ascending: bool | Sequence[bool] = True) -> Html:
    """An escaped HTML table of a few chosen columns with human labels.

    Args:
        frame: Source frame.
        columns: Column -> label, in display order; columns absent from ``frame`` are skipped.
        caption: Shown above the table.
        empty: Shown instead of an empty table.
        limit: Show at most this many rows (the caption says how many were left out).
        sort: Columns to sort by before cutting.
        ascending: Sort direction(s).

    Returns:
        :class:`Html`; every value is escaped (``to_html(escape=True)``).
    """
    present = [col for col in columns if col in frame.columns]
    if frame.empty or not present:
        return Html(f'<p class="iotaudit-empty">{html.escape(empty)}</p>')
    shown = frame
    sort_cols = [s for s in sort if s in frame.columns]
    if sort_cols:
        shown = shown.sort_values(sort_cols, ascending=ascending, kind="stable", na_position="last")
    total = len(shown)
    shown = shown.head(limit)
    view = pd.DataFrame({columns[col]: [_fmt_cell(v) for v in shown[col]] for col in present})
    more = f" (first {limit} of {total} rows)" if total > limit else ""
    cap = f"<p class=\"iotaudit-caption\">{html.escape(caption + more)}</p>" if caption or more else ""
    markup = view.to_html(index=False, escape=True, border=0, classes=["iotaudit-table"], na_rep="—")
    return Html(cap + markup)


def title_block(inputs: ReportInputs, section: str) -> Html:
    """The page heading: report title, section, evaluation time, run and group."""
    manifest = inputs.run.manifest
    facts = [
        ("Evaluated at", inputs.as_of.strftime("%Y-%m-%d %H:%M UTC")),
        ("Run collected", inputs.run.created_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("Catalogue", str(manifest.get("catalog", ""))),
        ("Devices", "all groups" if not inputs.group else f"group {inputs.group}"),
    ]
    items = "".join(f"<li><b>{html.escape(k)}:</b> {html.escape(v)}</li>" for k, v in facts)
    return Html(f'<h1 class="iotaudit-title">{html.escape(inputs.title)}</h1>'
                f'<p class="iotaudit-section">{html.escape(section)}</p><ul class="iotaudit-facts">{items}</ul>')


def headline_numbers(inputs: ReportInputs) -> dict[str, Any]:
    """The numbers summary.json and the summary page lead with."""
    coverage = inputs.frame("coverage")
    verdicts = profile_verdicts(coverage) if not coverage.empty else profile_verdicts(pd.DataFrame())
    by_verdict = verdicts.groupby("verdict")["devices"].sum() if not verdicts.empty else pd.Series(dtype="int64")
    devices_by_verdict = {v: int(by_verdict.get(v, 0)) for v in VERDICTS}
    total = int(inputs.summary.get("devices", int(verdicts["devices"].sum()) if not verdicts.empty else 0))
    expiry = inputs.frame("expiry")
    earliest_date, earliest_profile, devices_breaking = None, "", 0
    if not expiry.empty and "break_date" in expiry.columns:
        dated = expiry.dropna(subset=["break_date"]).sort_values("break_date", kind="stable")
        if not dated.empty:
            earliest_date = pd.Timestamp(dated["break_date"].iloc[0]).isoformat()
            earliest_profile = str(dated["profile"].iloc[0])
            horizon = inputs.as_of + timedelta(days=365)
            soon = dated[pd.to_datetime(dated["break_date"], utc=True) <= pd.Timestamp(horizon)]
            devices_breaking = int(soon["devices"].sum()) if "devices" in soon.columns else 0
    # "If AWS keeps renewing leaf certificates": the first date a firmware must be updated by.
    renewed_date, renewed_profiles, renewed_devices = None, [], 0
    if not expiry.empty and "renewed_break_date" in expiry.columns:
        when = pd.to_datetime(expiry["renewed_break_date"], utc=True)
        if when.notna().any():
            first = expiry[when == when.min()]
            renewed_date = pd.Timestamp(when.min()).isoformat()
            renewed_profiles = sorted(first["profile"].astype(str))
            renewed_devices = int(first["devices"].sum()) if "devices" in first.columns else 0
    certs = inputs.frame("certificates_expiry")
    expiring = 0
    if not certs.empty and "not_after" in certs.columns:
        limit = pd.Timestamp(inputs.as_of + timedelta(days=30))
        expiring = int((pd.to_datetime(certs["not_after"], utc=True) <= limit).sum())
    ranked = inputs.frame("pin_risks_ranked")
    worst_pin = ""
    if not ranked.empty:
        first = ranked.iloc[0]
        worst_pin = " / ".join(str(first[col]) for col in ("profile", "risk") if col in ranked.columns)
        if "devices" in ranked.columns:
            worst_pin += f" ({int(first['devices']):,} devices)"
    numbers = {
        "devices": total,
        "profiles": int(inputs.summary.get("profiles", len(verdicts))),
        "devices_by_verdict": devices_by_verdict,
        "earliest_break_date": earliest_date,
        "earliest_break_profile": earliest_profile,
        "earliest_renewed_break_date": renewed_date,
        "earliest_renewed_break_profiles": renewed_profiles,
        "earliest_renewed_break_devices": renewed_devices,
        "devices_breaking_within_365_days": devices_breaking,
        "certificates_expiring_within_30_days": expiring,
        "worst_pin_risk": worst_pin,
    }
    return numbers


def _profiles_and_devices(profiles: Sequence[str], devices: int, most: int = 3) -> str:
    """``"fw-a, fw-b and 3 more: 120 devices"``."""
    shown = ", ".join(profiles[:most]) + (f" and {len(profiles) - most} more" if len(profiles) > most else "")
    return f"{shown}: {devices:,} devices"


def headline_table(inputs: ReportInputs) -> Html:
    """Headline numbers as a two-column table."""
    n = headline_numbers(inputs)
    rows = [
        ("Devices", f"{n['devices']:,}"),
        ("Firmware profiles", f"{n['profiles']:,}"),
        ("Devices broken today", f"{n['devices_by_verdict']['broken']:,}"),
        ("Devices at risk", f"{n['devices_by_verdict']['at-risk']:,}"),
        ("Devices covered", f"{n['devices_by_verdict']['covered']:,}"),
        ("First firmware break if AWS keeps renewing leaves", _fmt_date(n["earliest_renewed_break_date"]) +
         (f" ({_profiles_and_devices(n['earliest_renewed_break_profiles'], n['earliest_renewed_break_devices'])})"
          if n["earliest_renewed_break_profiles"] else "")),
        ("Earliest break if nothing changes", _fmt_date(n["earliest_break_date"]) +
         (f" ({n['earliest_break_profile']})" if n["earliest_break_profile"] else "")),
        ("Devices losing every path within a year", f"{n['devices_breaking_within_365_days']:,}"),
        ("Served certificates expiring within 30 days", f"{n['certificates_expiring_within_30_days']:,}"),
        ("Worst pinning risk", n["worst_pin_risk"] or "none"),
    ]
    frame = pd.DataFrame(rows, columns=["measure", "value"])
    return table(frame, {"measure": "Measure", "value": "Value"})


def report_links(inputs: ReportInputs) -> Html:
    """Links to the other reports of the set (relative, so the directory can be moved)."""
    items = []
    for spec in NOTEBOOKS:
        if spec.name == "summary" or (spec.needs_baseline and inputs.baseline is None):
            continue
        items.append(f'<li><a href="{spec.name}.html">{html.escape(spec.title)}</a> — {html.escape(spec.description)}</li>')
    return Html(f'<ul class="iotaudit-links">{"".join(items)}</ul>')


def verdict_table(inputs: ReportInputs) -> Html:
    """Profiles with their worst verdict and device count, worst first."""
    verdicts = profile_verdicts(inputs.frame("coverage"))
    if not verdicts.empty:
        rank = {v: i for i, v in enumerate(VERDICTS)}
        verdicts = verdicts.assign(_rank=verdicts["verdict"].map(rank)).sort_values(["_rank", "devices"], ascending=[True, False])
    return table(verdicts, {"profile": "Firmware profile", "devices": "Devices", "verdict": "Worst verdict"},
                 caption="Each profile takes the worst verdict over the chains it may meet.",
                 empty="No profile in the inventory.")


def fleet_table(inputs: ReportInputs) -> Html:
    """Devices covered / at risk / broken per endpoint and key type."""
    coverage = inputs.frame("coverage")
    if coverage.empty:
        return table(coverage, {}, empty="No chain was met by any profile.")
    frame = coverage.copy()
    frame["endpoint"] = frame["host"].astype(str) + ":" + frame["port"].astype(str)
    frame["verdict"] = frame["verdict"].astype(str)
    pivot = frame.pivot_table(index=["endpoint", "key_type"], columns="verdict", values="devices",
                              aggfunc="sum", fill_value=0, observed=True).reset_index()
    for v in ("covered", "at-risk", "broken"):
        if v not in pivot.columns:
            pivot[v] = 0
    pivot.columns = [str(col) for col in pivot.columns]
    return table(pivot, {"endpoint": "Endpoint", "key_type": "Key type", "covered": "Covered",
                         "at-risk": "At risk", "broken": "Broken"},
                 caption="Devices per endpoint and chain key type (a device counts once per chain it may meet).",
                 sort=["broken", "at-risk"], ascending=[False, False])


def failures_table(inputs: ReportInputs) -> Html:
    """Profile x chain pairs that do not validate or are at risk, with the reason."""
    coverage = inputs.frame("coverage")
    if not coverage.empty:
        coverage = coverage[coverage["verdict"].astype(str).isin(["broken", "at-risk"])].copy()
        coverage["endpoint"] = coverage["host"].astype(str) + ":" + coverage["port"].astype(str)
    return table(coverage, {"profile": "Firmware profile", "devices": "Devices", "endpoint": "Endpoint",
                            "probe": "Probe", "key_type": "Key type", "verdict": "Verdict",
                            "anchor_name": "Anchor", "reason": "Why", "risks": "Risks"},
                 sort=["verdict", "devices"], ascending=[True, False],
                 empty="Every chain validates for every profile that may meet it.")


def roots_to_add_table(inputs: ReportInputs) -> Html:
    """The smallest set of catalogue roots each profile should add, today and for each future scenario."""
    frame = inputs.frame("roots_to_add")
    if not frame.empty and "roots_to_add" in frame.columns:
        needs = frame["roots_to_add"].map(lambda v: len(v) > 0 if hasattr(v, "__len__") and not isinstance(v, str) else bool(v))
        unfixable = frame["unfixable"] > 0 if "unfixable" in frame.columns else False
        frame = frame[needs | unfixable]
    return table(frame, {"profile": "Firmware profile", "devices": "Devices", "scenario": "Scenario",
                         "failing": "Chains failing", "roots_to_add": "Roots to add",
                         "unfixable_reasons": "Not fixable by adding a root"},
                 sort=["devices"], ascending=False, empty="No profile needs another root, today or in any scenario.")


def coverage_figure(inputs: ReportInputs) -> Png:
    """The coverage heatmap (profiles x endpoint chains)."""
    from .plots import coverage_heatmap

    return Png.from_figure(coverage_heatmap(inputs.frame("coverage"), title=f"Root coverage — {inputs.title}"),
                           alt="coverage heatmap")


def expiry_figure(inputs: ReportInputs) -> Png:
    """The expiry timeline with the cliff curve."""
    from .plots import expiry_timeline

    figure = expiry_timeline(inputs.frame("certificates_expiry"), inputs.frame("expiry"), inputs.frame("anchors_expiry"),
                             inputs.frame("cliff"), as_of=inputs.as_of, horizon_years=inputs.horizon_years,
                             title=f"Expiry timeline — {inputs.title}")
    return Png.from_figure(figure, alt="expiry timeline")


def break_dates_table(inputs: ReportInputs) -> Html:
    """Per profile: when it must be updated (AWS keeps renewing leaves) and when it breaks if nothing changes."""
    return table(inputs.frame("expiry"), {
        "profile": "Firmware profile", "devices": "Devices", "state": "State",
        "renewed_break_date": "Update firmware by (AWS renewing leaves)",
        "renewed_break_cause_name": "Because of (firmware side)",
        "renewed_dark_date": "Loses every path (AWS renewing leaves)",
        "break_date": "First break if nothing changes",
        "dark_date": "Loses every path if nothing changes", "break_cause_name": "Because of (as served)",
        "first_break_host": "First endpoint to break",
    }, sort=["renewed_break_date", "break_date"], empty="No profile.",
        caption="Validated-path break dates, found by validating at each future date (not by the soonest not_after). "
                "\"AWS renewing leaves\": AWS keeps renewing its leaf certificates under the same issuing CA, so the "
                "served chain is validated from the certificate that issued its leaf and only the issuing CA, a "
                "cross-sign or an anchor the firmware depends on can end it: the date to update the firmware by. "
                "\"Nothing changes\": the chain exactly as served, so every chain also ends when today's leaf expires.")


def certificates_expiry_table(inputs: ReportInputs) -> Html:
    """Every served certificate with its role and days left."""
    return table(inputs.frame("certificates_expiry"),
                 {"subject_cn": "Certificate", "role": "Role", "catalog_name": "Catalogue name",
                  "not_after": "Expires", "days_left": "Days left", "devices": "Devices validating through it",
                  "hosts": "Served by"},
                 sort=["not_after"], caption="Served-certificate expiry: this is not when devices break.")


def anchors_expiry_table(inputs: ReportInputs) -> Html:
    """Anchors inside each firmware's trust store and when they expire."""
    return table(inputs.frame("anchors_expiry"),
                 {"profile": "Firmware profile", "devices": "Devices", "anchor_name": "Anchor",
                  "not_after": "Expires", "days_left": "Days left", "in_use": "Used today"}, sort=["not_after"],
                 caption="Trust anchors inside each firmware's store.")


def cliff_table(inputs: ReportInputs) -> Html:
    """Dates on which devices lose their last valid path."""
    frame = inputs.frame("cliff")
    if not frame.empty and "devices_losing" in frame.columns:
        losing = frame["devices_losing"] > 0
        if "devices_losing_renewed" in frame.columns:
            losing |= frame["devices_losing_renewed"] > 0
        frame = frame[losing]
    return table(frame, {"date": "Date",
                         "devices_losing_renewed": "Devices losing every path (AWS keeps renewing leaves)",
                         "devices_connected_renewed": "Still connected (AWS keeps renewing leaves)",
                         "profiles_renewed": "Firmware losing every path (AWS keeps renewing leaves)",
                         "devices_losing": "Devices losing every path (nothing changes)",
                         "devices_connected": "Still connected (nothing changes)"}, sort=["date"],
                 empty="No device loses its last valid path within the horizon.")


def pin_figure(inputs: ReportInputs) -> Png:
    """The pinning risk matrix (pins x scenarios)."""
    from .plots import pin_risk_matrix

    return Png.from_figure(pin_risk_matrix(inputs.frame("pins"), title=f"Pinning risk — {inputs.title}"),
                           alt="pinning risk matrix")


def pin_risks_table(inputs: ReportInputs) -> Html:
    """Ranked pin risks with device counts."""
    return table(inputs.frame("pin_risks_ranked"),
                 {"rank": "Rank", "profile": "Firmware profile", "devices": "Devices", "risk": "Risk",
                  "detail": "What happens", "pins": "Pins concerned"},
                 empty="No pinned profile.")


def pins_today_table(inputs: ReportInputs) -> Html:
    """Pins and whether they match today, on which certificate."""
    pins = inputs.frame("pins")
    if not pins.empty:
        keep = [col for col in ("profile", "devices", "pin", "matches", "matched_name", "flags") if col in pins.columns]
        pins = pins[keep].drop_duplicates(subset=[k for k in ("profile", "pin") if k in keep])
    return table(pins, {"profile": "Firmware profile", "devices": "Devices", "pin": "Pin", "matches": "Matches today",
                        "matched_name": "On certificate", "flags": "Flags"}, empty="No pinned profile.")


def drift_table(inputs: ReportInputs) -> Html:
    """Changes since the baseline run, most alarming first."""
    from .drift import drift

    if inputs.baseline is None:
        return Html('<p class="iotaudit-empty">No baseline run was given.</p>')
    return table(drift(inputs.baseline, inputs.run),
                 {"change": "Change", "host": "Host", "port": "Port", "key_type": "Key type", "probe": "Probe",
                  "certificate": "Certificate", "role": "Role", "old": "Before", "new": "After"},
                 empty="Nothing changed since the baseline run.")


def drift_counts_table(inputs: ReportInputs) -> Html:
    """Number of changes per kind since the baseline run."""
    from .drift import drift, drift_summary

    if inputs.baseline is None:
        return Html('<p class="iotaudit-empty">No baseline run was given.</p>')
    counts = drift_summary(drift(inputs.baseline, inputs.run))
    frame = pd.DataFrame({"change": list(counts), "count": list(counts.values())})
    return table(frame, {"change": "Change", "count": "Count"})


# --- rendering -------------------------------------------------------------------------

# The lab template with every remote reference removed: require.js, MathJax,
# mermaid and the widget manager are loaded from a CDN by nbconvert's default
# lab template (templates/lab/index.html.j2, base/mathjax.html.j2).  Reports
# have no widgets, math or diagrams, so the blocks are simply dropped.
_TEMPLATE_NAME = "iotaudit_offline.html.j2"
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">""" + """
body { max-width: 1200px; margin: 0 auto; }
h1.iotaudit-title { margin-bottom: 0.1em; }
p.iotaudit-section { font-size: 1.2em; color: #555; margin-top: 0; }
ul.iotaudit-facts { list-style: none; padding-left: 0; color: #444; }
ul.iotaudit-facts li { display: inline-block; margin-right: 1.5em; }
table.iotaudit-table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; font-size: 0.92em; }
table.iotaudit-table th { background: #eef2f7; text-align: left; padding: 4px 10px; border-bottom: 2px solid #9aa9bc; }
table.iotaudit-table th::after { content: " \\2195"; color: #9aa9bc; font-size: 0.8em; }
.jp-RenderedHTMLCommon table.iotaudit-table td, .jp-RenderedHTMLCommon table.iotaudit-table th { text-align: left; }
table.iotaudit-table td { padding: 3px 10px; border-bottom: 1px solid #e3e7ec; vertical-align: top;
  max-width: 38em; overflow-wrap: anywhere; }
table.iotaudit-table tr:nth-child(even) td { background: #f8f9fb; }
p.iotaudit-caption { color: #555; margin-bottom: 0.2em; }
p.iotaudit-empty { color: #2a7; font-style: italic; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
</style>{%- endblock extra_css -%}
"""

# A resource the browser would fetch: src/href/poster/data attributes and CSS url()/@import.
_EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|poster|data|action|srcset)\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|(?:@import\s+(?:url\()?["']?\s*(?:https?:)?//)""",
    re.IGNORECASE,
)
_ANCHOR_HREF = re.compile(r"""<a\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def external_references(page: str) -> list[str]:
    """Every place in ``page`` that would make a browser fetch something from the network.

    Plain ``<a href>`` links to other sites are navigation, not fetches, and
    are not listed.  Returns snippets around each hit (empty when the page is
    self-contained).
    """
    anchors = {m.start() for m in _ANCHOR_HREF.finditer(page)}
    hits = []
    for match in _EXTERNAL.finditer(page):
        tag_start = page.rfind("<", 0, match.start())
        if tag_start in anchors and page[tag_start:match.start()].lower().startswith("<a"):
            continue
        hits.append(page[max(0, match.start() - 40): match.end() + 60])
    return hits


def html_exporter() -> Any:
    """An nbconvert HTMLExporter: lab template without CDN scripts, code and prompts hidden."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(
        template_name="lab",
        template_file=_TEMPLATE_NAME,
        extra_loaders=[DictLoader({_TEMPLATE_NAME: _TEMPLATE})],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    # Cells tagged "notebook-only" talk to JupyterLab users (how to change parameters); readers don't need them.
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={NOTEBOOK_ONLY_TAG}), enabled=True)
    return exporter


def notebook_to_html(executed: str | Path, title: str) -> str:
    """Render an executed notebook to self-contained HTML.

    Raises:
        ReportError: when the page would fetch anything from the network.
    """
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    nb.metadata["title"] = title
    body, _resources = html_exporter().from_notebook_node(nb)
    refs = external_references(body)
    if refs:
        raise ReportError(executed, None, f"rendered HTML references network resources: {refs[:3]}")
    return body


def _this_python_kernel_manager() -> type:
    """A kernel manager that starts the kernel on the interpreter running iotaudit.

    papermill's ``kernel_name="python3"`` resolves through the machine's
    kernelspecs, where a user-level ``python3`` spec (``~/.local/share/jupyter``
    comes before the virtual environment's) can point at another Python that
    has no iotaudit; the report would then fail in its first cell.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (iotaudit)",
                              language="python", env={})

    return ThisPythonKernelManager


def execute_notebook(source: str | Path, executed: str | Path, parameters: Mapping[str, Any], *,
                     failed_dir: Path | None = None, cwd: str | Path | None = None) -> Path:
    """Execute one notebook with papermill into ``executed``.

    Raises:
        ReportError: naming the notebook and its failing cell (1-based, as in the source
            notebook); the executed notebook, with papermill's error marker, is copied to
            ``failed_dir`` when given and the message says where.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, executed = Path(source), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=dict(parameters), kernel_name="python3",
            progress_bar=False, cwd=str(cwd or source.parent),
            # The kernel's own log (e.g. ipykernel's "running over TCP without encryption" on every
            # start) is noise in a cron mail; cell errors still reach us through papermill.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            kernel_manager_class=_this_python_kernel_manager(),
        )
    except PapermillExecutionError as err:
        cells = nbformat.read(str(source), as_version=4).cells
        number = next((i + 1 for i, cell in enumerate(cells) if cell.source == err.source), None)
        kept = _keep_failed(executed, failed_dir)
        first_line = (err.source.strip().splitlines() or [""])[0][:120]
        raise ReportError(source, number, f"{err.ename}: {err.evalue} (in `{first_line}`)", kept) from err
    except Exception as err:  # kernel died, bad notebook JSON, missing kernel...
        kept = _keep_failed(executed, failed_dir) if executed.exists() else None
        raise ReportError(source, None, f"{type(err).__name__}: {err}", kept) from err
    return executed


def _keep_failed(executed: Path, failed_dir: Path | None) -> Path | None:
    if failed_dir is None or not executed.exists():
        return executed if executed.exists() else None
    failed_dir.mkdir(parents=True, exist_ok=True)
    target = failed_dir / executed.name
    shutil.copy2(executed, target)
    return target


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What :func:`render_reports` produced.

    Attributes:
        out: The report directory.
        summary: The content of ``summary.json``.
        exit_status: 0 (nothing crosses ``fail_on``) or 1.
        reports: Notebook name -> HTML path.
        seconds: Wall time per step (``audit``, each notebook, ``total``).
    """

    out: Path
    summary: Mapping[str, Any]
    exit_status: int
    reports: Mapping[str, Path] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.exit_status not in (0, 1):
            raise ValueError(f"exit_status {self.exit_status} is not 0 or 1")


def crosses(devices_by_verdict: Mapping[str, int], fail_on: FailOn | str) -> bool:
    """True when any device has the ``fail_on`` verdict or a worse one."""
    fail_on = FailOn(fail_on)
    if fail_on is FailOn.NEVER:
        return False
    worse = ["broken"] if fail_on is FailOn.BROKEN else ["broken", "at-risk"]
    return any(int(devices_by_verdict.get(v, 0)) > 0 for v in worse)


def render_reports(
    run_dir: str | Path,
    inventory: str | Path,
    out: str | Path,
    *,
    as_of: str | datetime | None = None,
    horizon_years: int = 15,
    title: str = "",
    group: str = "",
    baseline_run: str | Path | None = None,
    fail_on: FailOn | str = FailOn.BROKEN,
    metrics: str | Path | None = None,
    skip_bad_rows: bool = False,
    overwrite: bool = False,
    notebooks: str | Path | None = None,
    parallel: int = 2,
    progress: Callable[[str], None] | None = None,
) -> ReportOutcome:
    """Audit once, execute every notebook, render HTML, write index.html and summary.json atomically.

    Args:
        run_dir: Run directory.
        inventory: Device inventory (CSV, Parquet or JSON).
        out: Report directory to create (atomically).
        as_of: Evaluation time; None/"" = the run's time.
        horizon_years: Horizon of break dates and the cliff.
        title: Report title.
        group: Only devices of this group ("" = all).
        baseline_run: An earlier run: adds the drift report.
        fail_on: Threshold for ``exit_status`` 1.
        metrics: Also write Prometheus textfile gauges to this file.
        skip_bad_rows: Skip (and count) bad inventory rows instead of stopping.
        overwrite: Replace an existing ``out`` (only once the new one is complete).
        notebooks: Directory of the notebooks (default :func:`notebooks_dir`).
        parallel: How many notebook kernels run at once.
        progress: Called with one line per step.

    Returns:
        A :class:`ReportOutcome`.

    Raises:
        IotauditError: bad run, inventory or parameters (exit status 2), or a failing notebook
            (:class:`ReportError`; the executed notebook is kept in ``<out>.failed/``).
    """
    from .audit import audit, write_audit
    from .inventory import load_inventory

    started = time.perf_counter()
    say = progress or (lambda _line: None)
    out = Path(out).absolute()
    fail_on = FailOn(fail_on)
    if out.exists() and not overwrite:
        raise ReportError(out, None, "the report directory already exists (choose a new one or pass --overwrite)")
    nb_dir = Path(notebooks).absolute() if notebooks else notebooks_dir()
    specs = [s for s in NOTEBOOKS if not s.needs_baseline or baseline_run]
    missing = [str(nb_dir / f"{s.name}.ipynb") for s in specs if not (nb_dir / f"{s.name}.ipynb").is_file()]
    if missing:
        raise ReportError(missing[0], None, "report notebook not found")
    run = load_run(run_dir)
    moment = parse_as_of(as_of, run.created_at)
    inv = load_inventory(inventory, skip_bad_rows=skip_bad_rows)
    baseline = load_run(baseline_run) if baseline_run else None
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    result = audit(run, inv, as_of=moment, horizon_years=horizon_years)
    seconds["audit"] = time.perf_counter() - t0
    say(f"audited {len(inv.profiles)} profile(s) in {seconds['audit']:.1f} s")
    failed_dir = out.with_name(out.name + ".failed")
    reports: dict[str, Path] = {}
    summary_holder: dict[str, Any] = {}

    def fill(tmp: Path) -> None:
        audit_dir = tmp / AUDIT_SUBDIR
        write_audit(result, audit_dir, inventory=inv)
        params = {
            "run_dir": str(Path(run_dir).absolute()),
            "inventory": str(Path(inventory).absolute()),
            "audit_dir": str(audit_dir),
            "as_of": moment.isoformat(),
            "horizon_years": int(horizon_years),
            "title": title or "iotaudit report",
            "group": group,
            "baseline_run": str(Path(baseline_run).absolute()) if baseline_run else "",
        }

        def one(spec: NotebookSpec) -> tuple[str, float]:
            t = time.perf_counter()
            # papermill (nbclient, via jupyter_core.utils.run_sync) runs its coroutines on the loop that
            # jupyter_core.utils.ensure_event_loop keeps for this thread, and never closes it; a worker
            # thread's loop would leak (ResourceWarning), so take that same loop and close it afterwards.
            from jupyter_core.utils import ensure_event_loop

            loop = ensure_event_loop()
            try:
                executed = execute_notebook(nb_dir / f"{spec.name}.ipynb", tmp / f"{spec.name}.ipynb", params,
                                            failed_dir=failed_dir, cwd=nb_dir)
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                asyncio.set_event_loop(None)
            page = notebook_to_html(executed, f"{params['title']} — {spec.title}")
            (tmp / f"{spec.name}.html").write_text(page, encoding="utf-8")
            return spec.name, time.perf_counter() - t

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for name, spent in pool.map(one, specs):
                seconds[name] = spent
                say(f"rendered {name}.html in {spent:.1f} s")
        # Headline numbers come from the audit just written, exactly as the notebooks saw it.
        inputs = ReportInputs(run=run, audit=_group_view(result, inv, group, moment, horizon_years),
                              as_of=moment, horizon_years=int(horizon_years), title=params["title"],
                              group=group, baseline=baseline, run_dir=str(run_dir))
        numbers = headline_numbers(inputs)
        summary = {
            "format": "iotaudit-report/1",
            "tool_version": __version__,
            "title": params["title"],
            "as_of": moment.isoformat(),
            "run": params["run_dir"],
            "run_created_at": run.created_at.isoformat(),
            "inventory": params["inventory"],
            "group": group,
            "horizon_years": int(horizon_years),
            **numbers,
            "fail_on": fail_on.value,
            "threshold_crossed": crosses(numbers["devices_by_verdict"], fail_on),
            "reports": {spec.name: f"{spec.name}.html" for spec in specs},
            "audit": _jsonable(dict(getattr(result, "summary", {}) or {})),
        }
        if baseline is not None:
            from .drift import drift, drift_summary

            summary["drift"] = drift_summary(drift(baseline, run))
            summary["baseline_run"] = params["baseline_run"]
        (tmp / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        (tmp / INDEX_HTML).write_text(index_page(summary, specs), encoding="utf-8")
        summary_holder.update(summary)

    write_atomically(out, fill, overwrite=overwrite)
    shutil.rmtree(failed_dir, ignore_errors=True)  # a stale failure from an earlier attempt
    reports = {spec.name: out / f"{spec.name}.html" for spec in specs}
    if metrics:
        from .metrics import render_metrics, write_metrics

        text = render_metrics(run, as_of=moment, coverage=getattr(result, "coverage", None),
                              expiry=getattr(result, "expiry", None), anchors_expiry=getattr(result, "anchors_expiry", None))
        write_metrics(metrics, text)
        say(f"wrote metrics to {metrics}")
    seconds["total"] = time.perf_counter() - started
    status = 1 if summary_holder["threshold_crossed"] else 0
    return ReportOutcome(out=out, summary=summary_holder, exit_status=status, reports=reports, seconds=seconds)


def _group_view(result: Any, inventory: Any, group: str, as_of: datetime, horizon_years: int) -> Any:
    return filter_group(result, inventory, group, as_of=as_of, horizon_years=horizon_years) if group else result


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (pd.Timestamp, datetime)):
        return None if pd.isna(value) else value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    return value


def index_page(summary: Mapping[str, Any], specs: Sequence[NotebookSpec]) -> str:
    """``index.html``: title, headline numbers and links to every report (all text escaped, no remote resource)."""
    esc = html.escape
    verdicts = summary.get("devices_by_verdict", {})
    cards = [
        ("Devices", f"{summary.get('devices', 0):,}", ""),
        ("Broken today", f"{verdicts.get('broken', 0):,}", "bad" if verdicts.get("broken") else "good"),
        ("At risk", f"{verdicts.get('at-risk', 0):,}", "warn" if verdicts.get("at-risk") else "good"),
        ("Covered", f"{verdicts.get('covered', 0):,}", ""),
        ("Firmware update due (AWS keeps renewing leaves)", _fmt_date(summary.get("earliest_renewed_break_date")), ""),
        ("Earliest break (nothing changes)", _fmt_date(summary.get("earliest_break_date")), ""),
    ]
    card_html = "".join(f'<div class="card {cls}"><div class="num">{esc(value)}</div><div class="lbl">{esc(label)}</div></div>'
                        for label, value, cls in cards)
    links = "".join(
        f'<li><a href="{esc(spec.name)}.html">{esc(spec.title)}</a> <span class="desc">— {esc(spec.description)}</span>'
        f' <a class="nb" href="{esc(spec.name)}.ipynb">executed notebook</a></li>'
        for spec in specs
    )
    status = ("threshold crossed" if summary.get("threshold_crossed") else "nothing crosses the threshold")
    group = f" · group {summary['group']}" if summary.get("group") else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{esc(str(summary.get('title', 'iotaudit report')))}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; max-width: 960px;
  margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ margin-bottom: 0.1em; }}
.meta {{ color: #555; margin-top: 0; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 1.5em 0; }}
.card {{ border: 1px solid #d5dbe3; border-radius: 6px; padding: 10px 16px; min-width: 120px; }}
.card .num {{ font-size: 1.6em; font-weight: bold; }}
.card .lbl {{ color: #555; }}
.card.bad {{ border-color: #d55e00; background: #fdf0e8; }}
.card.warn {{ border-color: #e69f00; background: #fdf7e8; }}
.card.good {{ border-color: #009e73; background: #eaf7f2; }}
li {{ margin: 0.5em 0; }}
.desc {{ color: #555; }}
a.nb {{ font-size: 0.85em; color: #777; }}
footer {{ margin-top: 3em; color: #777; font-size: 0.85em; }}
</style>
</head>
<body>
<h1>{esc(str(summary.get('title', 'iotaudit report')))}</h1>
<p class="meta">Evaluated at {esc(_fmt_time(summary.get('as_of')))}{esc(group)} · fail-on {esc(str(summary.get('fail_on', '')))}: {esc(status)}</p>
<div class="cards">{card_html}</div>
<h2>Reports</h2>
<ul>{links}</ul>
<h2>Data</h2>
<ul>
<li><a href="{SUMMARY_JSON}">summary.json</a> — the headline numbers, machine-readable</li>
<li><a href="{AUDIT_SUBDIR}/">audit/</a> — every audit table as Parquet and CSV</li>
</ul>
<footer>iotaudit {esc(__version__)} · run {esc(str(summary.get('run', '')))}</footer>
</body>
</html>
"""


# --- command line ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``iotaudit report``."""
    parser = subparsers.add_parser(
        "report",
        help="audit a run against an inventory and render the HTML report set",
        description="Audit RUN against the inventory once, execute every report notebook with papermill, render "
                    "self-contained HTML (no network needed to read it), index.html and summary.json into DIR. "
                    "Exit status: 0 nothing crosses --fail-on, 1 something does, 2 usage or input error.",
    )
    parser.add_argument("--run", required=True, type=Path, metavar="RUN", help="run directory (iotaudit collect --out)")
    parser.add_argument("--inventory", required=True, type=Path, metavar="FILE", help="device inventory (CSV, Parquet, JSON)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="report directory to create")
    parser.add_argument("--as-of", default="", metavar="DATE", help="evaluate at this ISO date/time (default: the run's time)")
    parser.add_argument("--horizon-years", type=int, default=15, metavar="N", help="horizon of break dates and the cliff (default 15)")
    parser.add_argument("--fail-on", choices=[f.value for f in FailOn], default=FailOn.BROKEN.value,
                        help="exit 1 when any device is broken (default), at risk or worse, or never")
    parser.add_argument("--metrics", type=Path, metavar="FILE", help="also write Prometheus textfile gauges here")
    parser.add_argument("--baseline", type=Path, metavar="RUN", help="an earlier run: adds the drift report")
    parser.add_argument("--title", default="", metavar="T", help="report title")
    parser.add_argument("--group", default="", metavar="G", help="only devices of this group")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip and count bad inventory rows instead of stopping")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR once the new report set is complete")
    parser.add_argument("--notebooks", type=Path, metavar="DIR",
                        help="directory of report notebooks to execute instead of the shipped ones (same names)")
    parser.add_argument("--quiet", action="store_true", help="print only the path of index.html")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.horizon_years < 1:
        print("iotaudit report: error: --horizon-years must be at least 1", file=sys.stderr)
        return 2
    progress = None if args.quiet else (lambda line: print(f"  {line}", file=sys.stderr))
    try:
        outcome = render_reports(
            args.run, args.inventory, args.out, as_of=args.as_of, horizon_years=args.horizon_years, title=args.title,
            group=args.group, baseline_run=args.baseline, fail_on=args.fail_on, metrics=args.metrics,
            skip_bad_rows=args.skip_bad_rows, overwrite=args.overwrite, progress=progress, notebooks=args.notebooks,
        )
    except IotauditError:
        raise
    except (OSError, ValueError) as err:
        raise ReportError(args.out, None, str(err)) from err
    print(outcome.out / INDEX_HTML)
    if not args.quiet:
        v = outcome.summary["devices_by_verdict"]
        print(f"  {outcome.summary['devices']:,} devices: {v['broken']:,} broken, {v['at-risk']:,} at risk, "
              f"{v['covered']:,} covered; fail-on {args.fail_on}: exit {outcome.exit_status}", file=sys.stderr)
    return outcome.exit_status
