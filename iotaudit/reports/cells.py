"""The notebook cells: one typed function per section of a report page.

Each takes the :class:`~iotaudit.reports.inputs.ReportInputs` of its kernel
and returns an object Jupyter displays (:class:`Html` or :class:`Png`);
notebooks call exactly one of them per cell.  Frames are typed attributes
of the audit and columns are :mod:`iotaudit.columns` constants, so a
misspelt name fails loudly instead of rendering "Nothing to show.".

Every table and figure that must cut is ordered worst first (broken, at
risk, then the most devices; soonest first for dates) and says what it left
out, with counts; every table says where every row is (see
:mod:`iotaudit.reports.render`).
"""

from __future__ import annotations

import html
import io
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from .. import columns as c
from ..columns import TLS_STACK, NoteSeverity
from ..run_drift import CERT_ROLE, CERTIFICATE, CHANGE, NEW, OLD, drift, drift_summary
from ..auditing import SKIPPED_ROWS_LISTED
from ..errors import ReportError
from ..scan_notes import SEVERITY_COUNTS
from ..metrics import VERDICTS, profile_verdicts
from ..plots import (
    MEMBERS,
    PANEL,
    PATTERN,
    REPORT_DPI,
    coverage_grid,
    coverage_heatmap,
    expiry_timeline,
    pin_grid,
    pin_risk_matrix,
    text_geometry,
)
from .inputs import CROSSCHECK as CROSSCHECK_FRAME
from .inputs import FIRMWARE_NOTES as FIRMWARE_NOTES_FRAME
from .inputs import STACK_ALTERNATIVES as STACK_ALTERNATIVES_FRAME
from .inputs import ReportInputs
from .pages import AUDIT_SUBDIR, NOTEBOOKS
from .render import TableRows, empty_markup, profiles_and_devices, skipped_rows_markup, table_markup

ROW_LIMIT = 2000  # rows a table carries in the page; beyond that the page links the complete CSV

# Columns made here for display (not audit columns).
ENDPOINT = "endpoint"
MEASURE, VALUE, COUNT = "measure", "value", "count"


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


# PNG text chunks carrying the figure's own text geometry (plots.text_geometry), read back by the browser test.
PNG_MIN_FONT_PX = "iotaudit-min-font-px"
PNG_CLIPPED = "iotaudit-clipped-texts"
PNG_OVERLAPPING = "iotaudit-overlapping-labels"


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
    def from_figure(cls, figure: Any, alt: str = "", dpi: int = REPORT_DPI, *, measure: bool = True) -> Png:
        """Render a matplotlib Figure to PNG; with ``measure``, its text geometry goes in the PNG's text chunks.

        The geometry is measured on the layout ``savefig`` has just drawn, not by drawing the figure a
        second time: at 300 profiles on 13 stacks that second draw was half of the root-coverage page.
        """
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        data = buffer.getvalue()
        if measure:
            geometry = text_geometry(figure, dpi, drawn=True)
            data = _with_text_chunks(data, {PNG_MIN_FONT_PX: f"{geometry.min_font_px:.2f}",
                                            PNG_CLIPPED: str(geometry.clipped), PNG_OVERLAPPING: str(geometry.overlapping)})
        return cls(data, alt)


def _with_text_chunks(data: bytes, items: Mapping[str, str]) -> bytes:
    """PNG ``data`` with one ``tEXt`` chunk per item, placed just before ``IEND``.

    PNG specification (third edition) 11.3.3.3: a tEXt chunk is a Latin-1 keyword, a NUL and Latin-1
    text, and may appear anywhere between IHDR and IEND; each chunk is length, type, data, CRC-32 of type + data.
    """
    if data[-8:-4] != b"IEND":
        raise ValueError("PNG data does not end with an IEND chunk")
    chunks = b""
    for key, value in items.items():
        body = b"tEXt" + key.encode("latin-1") + b"\0" + value.encode("latin-1")
        chunks += struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return data[:-12] + chunks + data[-12:]


# --- tables ----------------------------------------------------------------------------


def _fmt_date(value: Any) -> str:
    if value is None or value is pd.NaT or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return "—"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


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


def _sort_keys(series: pd.Series) -> list[str | None]:
    """Keys the table script sorts by: numbers and ISO dates; None sorts by the cell text."""
    if pd.api.types.is_bool_dtype(series.dtype):
        return [None] * len(series)
    if pd.api.types.is_numeric_dtype(series.dtype):
        return [None if pd.isna(v) else repr(float(v)) for v in series]
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return [None if pd.isna(v) else pd.Timestamp(v).isoformat() for v in series]
    return [None] * len(series)


def table(frame: pd.DataFrame, columns: Mapping[str, str], *, caption: str = "", empty: str = "Nothing to show.",
          source: str = "", limit: int = ROW_LIMIT, order: str = "worst first") -> Html:
    """An escaped, sortable and filterable HTML table of chosen columns, in the frame's order.

    Args:
        frame: Source frame, already in display order (see :func:`worst_first`).
        columns: Column -> label, in display order; every column must exist in ``frame``.
        caption: Shown above the table.
        empty: Shown instead of a table with no rows.
        source: The audit frame the rows come from (``audit/<source>.csv``): a table longer than
            ``limit`` keeps its first rows and links that file; without a source every row is kept.
        limit: Rows carried in the page when ``source`` is given.
        order: How the rows are ordered, said above the table.

    Raises:
        ReportError: when a column is not in the frame (a misspelt name is a bug, not "Nothing to show").
    """
    missing = [col for col in columns if col not in frame.columns]
    if missing:
        raise ReportError("report table", None, f"columns {missing} are not in the frame (it has {list(frame.columns)})")
    if frame.empty:
        return Html(empty_markup(empty))
    total = len(frame)
    shown = frame.head(limit) if source and total > limit else frame
    cells = list(zip(*[[_fmt_cell(v) for v in shown[col]] for col in columns], strict=True))
    keys = list(zip(*[_sort_keys(shown[col]) for col in columns], strict=True))
    rows = TableRows(labels=tuple(columns.values()), cells=tuple(cells), sort_keys=tuple(keys), total=total,
                     complete_csv=f"{AUDIT_SUBDIR}/{source}.csv" if len(shown) < total else "")
    return Html(table_markup(rows, caption=caption, order=order))


def worst_first(frame: pd.DataFrame, *, then: Sequence[str] = ()) -> pd.DataFrame:
    """Rows by verdict (broken, at risk, covered, not met), then most devices, then ``then`` columns."""
    keys: dict[str, Any] = {}
    if c.VERDICT in frame.columns:
        keys["_verdict"] = pd.Categorical(frame[c.VERDICT].astype(str), categories=list(VERDICTS), ordered=True)
    if c.DEVICES in frame.columns:
        keys["_devices"] = -frame[c.DEVICES].astype("int64")
    ranked = frame.assign(**keys)
    by = list(keys) + [col for col in then if col in frame.columns]
    return ranked.sort_values(by, kind="stable", na_position="last").drop(columns=list(keys)) if by else frame


def soonest_first(frame: pd.DataFrame, *dates: str) -> pd.DataFrame:
    """Rows by the given date columns, soonest first (no date last), then most devices."""
    extra = {"_devices": -frame[c.DEVICES].astype("int64")} if c.DEVICES in frame.columns else {}
    return frame.assign(**extra).sort_values([*dates, *extra], kind="stable", na_position="last").drop(columns=list(extra))


# --- page heading and headline numbers ------------------------------------------------------


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
    audit = inputs.audit
    verdicts = profile_verdicts(audit.coverage)
    by_verdict = verdicts.groupby(c.VERDICT)[c.DEVICES].sum() if not verdicts.empty else pd.Series(dtype="int64")
    devices_by_verdict = {v: int(by_verdict.get(v, 0)) for v in VERDICTS}
    total = int(inputs.summary.get("devices", int(verdicts[c.DEVICES].sum()) if not verdicts.empty else 0))
    expiry = audit.expiry
    earliest_date, earliest_profile, devices_breaking = None, "", 0
    dated = expiry.dropna(subset=[c.BREAK_DATE]).sort_values(c.BREAK_DATE, kind="stable")
    if not dated.empty:
        earliest_date = pd.Timestamp(dated[c.BREAK_DATE].iloc[0]).isoformat()
        earliest_profile = str(dated[c.PROFILE].iloc[0])
        soon = dated[pd.to_datetime(dated[c.BREAK_DATE], utc=True) <= pd.Timestamp(inputs.as_of + timedelta(days=365))]
        devices_breaking = int(soon[c.DEVICES].sum())
    # The firmware-side date: the first day nothing AWS could serve under the roots and cross-signs that
    # still exist validates with a profile's store, stack and pins, i.e. the date to update the firmware by.
    firmware_date, firmware_profiles, firmware_devices = None, [], 0
    when = pd.to_datetime(expiry[c.FIRMWARE_BREAK_DATE], utc=True)
    if when.notna().any():
        first = expiry[when == when.min()]
        firmware_date = pd.Timestamp(when.min()).isoformat()
        firmware_profiles = sorted(first[c.PROFILE].astype(str))
        firmware_devices = int(first[c.DEVICES].sum())
    certs = audit.certificates_expiry
    limit = pd.Timestamp(inputs.as_of + timedelta(days=30))
    expiring = int((pd.to_datetime(certs[c.NOT_AFTER], utc=True) <= limit).sum()) if not certs.empty else 0
    ranked = audit.pin_risks_ranked
    worst_pin = ""
    if not ranked.empty:
        first_risk = ranked.iloc[0]
        worst_pin = f"{first_risk[c.PROFILE]} / {first_risk[c.RISK]} ({int(first_risk[c.DEVICES]):,} devices)"
    return {
        "devices": total,
        "profiles": int(inputs.summary.get("profiles", len(verdicts))),
        "devices_by_verdict": devices_by_verdict,
        "earliest_break_date": earliest_date,
        "earliest_break_profile": earliest_profile,
        "earliest_firmware_break_date": firmware_date,
        "earliest_firmware_break_profiles": firmware_profiles,
        "earliest_firmware_break_devices": firmware_devices,
        "devices_breaking_within_365_days": devices_breaking,
        "certificates_expiring_within_30_days": expiring,
        "worst_pin_risk": worst_pin,
        "skipped_rows": int(inputs.summary.get("bad_rows", len(inputs.skipped_rows))),
        "firmware_notes": _firmware_note_counts(inputs.firmware_notes),
    }


def _firmware_note_counts(notes: pd.DataFrame | None) -> dict[str, Any] | None:
    """Notes of ``iotaudit scan`` by severity, and the devices of profiles with an error; None without a scan."""
    if notes is None:
        return None
    severity = notes[c.SEVERITY_COL].astype(str)
    with_errors = notes[severity == NoteSeverity.ERROR.value].drop_duplicates(subset=[c.PROFILE])
    return {**{key: int((severity == value).sum()) for key, value in SEVERITY_COUNTS.items()},  # as the audit counts
            "profiles_with_errors": int(len(with_errors)),
            "devices_with_errors": int(with_errors[c.DEVICES].sum()) if len(with_errors) else 0}


def _firmware_notes_text(counts: Mapping[str, Any] | None) -> str:
    """``"2 errors (fw-a: 30 devices) · 1 warning"``-style text of :func:`_firmware_note_counts`; "" without a scan."""
    if counts is None:
        return ""
    def plural(n: int, word: str) -> str:
        return f"{n:,} {word}{'' if n == 1 else 's'}"
    text = f"{plural(counts['errors'], 'error')} · {plural(counts['warnings'], 'warning')}"
    if counts["errors"]:
        text += f" ({plural(counts['devices_with_errors'], 'device')} run firmware with an error)"
    return text


def headline_table(inputs: ReportInputs) -> Html:
    """Headline numbers as a two-column table."""
    n = headline_numbers(inputs)
    rows = [
        ("Devices", f"{n['devices']:,}"),
        ("Firmware profiles", f"{n['profiles']:,}"),
        ("Devices broken today", f"{n['devices_by_verdict']['broken']:,}"),
        ("Devices at risk", f"{n['devices_by_verdict']['at-risk']:,}"),
        ("Devices covered", f"{n['devices_by_verdict']['covered']:,}"),
        ("Inventory rows left out (--skip-bad-rows)", f"{n['skipped_rows']:,}"),
        ("Update firmware by (firmware side: its anchors, stack and pins)", _fmt_date(n["earliest_firmware_break_date"]) +
         (f" ({profiles_and_devices(n['earliest_firmware_break_profiles'], n['earliest_firmware_break_devices'])})"
          if n["earliest_firmware_break_profiles"] else "")),
        ("Earliest break if nothing changes", _fmt_date(n["earliest_break_date"]) +
         (f" ({n['earliest_break_profile']})" if n["earliest_break_profile"] else "")),
        ("Devices losing every path within a year", f"{n['devices_breaking_within_365_days']:,}"),
        ("Served certificates expiring within 30 days", f"{n['certificates_expiring_within_30_days']:,}"),
        ("Worst pinning risk", n["worst_pin_risk"] or "none"),
    ]
    if n["firmware_notes"] is not None:
        rows.append(("Firmware notes (iotaudit scan)", _firmware_notes_text(n["firmware_notes"])))
    return table(pd.DataFrame(rows, columns=[MEASURE, VALUE]), {MEASURE: "Measure", VALUE: "Value"},
                 order="as listed")


def skipped_rows_table(inputs: ReportInputs) -> Html:
    """Inventory rows ``--skip-bad-rows`` left out, with their row numbers and reasons."""
    count = int(inputs.summary.get("bad_rows", len(inputs.skipped_rows)))
    records = inputs.skipped_rows.head(SKIPPED_ROWS_LISTED).to_dict("records")
    return Html(skipped_rows_markup(records, count, str(inputs.summary.get("inventory", "")),
                                    problems=len(inputs.skipped_rows)))


def report_links(inputs: ReportInputs) -> Html:
    """Links to the other reports of the set and to the index (relative, so the directory can be moved)."""
    items = ['<li><a href="index.html">Index</a> — every page and the complete data files</li>']
    for spec in NOTEBOOKS:
        if spec.name == "summary" or (spec.needs_baseline and inputs.baseline is None):
            continue
        items.append(f'<li><a href="{spec.name}.html">{html.escape(spec.title)}</a> — {html.escape(spec.description)}</li>')
    return Html(f'<ul class="iotaudit-links">{"".join(items)}</ul>')


def verdict_table(inputs: ReportInputs) -> Html:
    """Profiles with their worst verdict and device count, worst first."""
    return table(worst_first(profile_verdicts(inputs.audit.coverage), then=[c.PROFILE]),
                 {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.VERDICT: "Worst verdict"},
                 caption="Each profile takes the worst verdict over the chains it may meet.",
                 empty="No profile in the inventory.", source="profiles")


# --- root coverage -----------------------------------------------------------------------------


def fleet_table(inputs: ReportInputs) -> Html:
    """Devices covered / at risk / broken per endpoint and key type, most broken first."""
    coverage = inputs.audit.coverage
    if coverage.empty:
        return Html(empty_markup("No chain was met by any profile."))
    frame = coverage.assign(**{ENDPOINT: coverage[c.HOST].astype(str) + ":" + coverage[c.PORT].astype(str),
                               c.VERDICT: coverage[c.VERDICT].astype(str)})
    pivot = frame.pivot_table(index=[ENDPOINT, c.KEY_TYPE], columns=c.VERDICT, values=c.DEVICES,
                              aggfunc="sum", fill_value=0, observed=True).reset_index()
    pivot.columns = [str(col) for col in pivot.columns]
    for verdict in VERDICTS:
        if verdict not in pivot.columns:
            pivot[verdict] = 0
    broken, at_risk, covered = VERDICTS[0], VERDICTS[1], VERDICTS[2]
    pivot = pivot.sort_values([broken, at_risk, ENDPOINT], ascending=[False, False, True], kind="stable")
    return table(pivot, {ENDPOINT: "Endpoint", c.KEY_TYPE: "Key type", broken: "Broken", at_risk: "At risk",
                         covered: "Covered"},
                 caption="Devices per endpoint and chain key type (a device counts once per chain it may meet).",
                 order="most broken first")


def failures_table(inputs: ReportInputs) -> Html:
    """Profile x chain pairs that do not validate or are at risk, with the reason, worst first."""
    coverage = inputs.audit.coverage
    bad = coverage[coverage[c.VERDICT].astype(str).isin(VERDICTS[:2])]
    bad = bad.assign(**{ENDPOINT: bad[c.HOST].astype(str) + ":" + bad[c.PORT].astype(str)})
    columns = {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", ENDPOINT: "Endpoint", c.PROBE: "Probe",
               c.KEY_TYPE: "Key type", c.VERDICT: "Verdict", c.ANCHOR_NAME: "Anchor", c.REASON: "Why",
               c.RISKS: "Risks"}
    if TLS_STACK in bad.columns:
        columns = {**columns, TLS_STACK: "TLS stack"}
    return table(worst_first(bad, then=[c.PROFILE, ENDPOINT]), columns, source="coverage",
                 empty="Every chain validates for every profile that may meet it.",
                 caption="The complete coverage frame (every verdict, not only these) is audit/coverage.csv.")


def roots_to_add_table(inputs: ReportInputs) -> Html:
    """The smallest set of catalogue roots each profile should add, today and for each future scenario."""
    frame = inputs.audit.roots_to_add
    needs = frame[c.ROOTS_TO_ADD].map(lambda v: len(v) > 0 if hasattr(v, "__len__") and not isinstance(v, str) else bool(v))
    frame = frame[needs | (frame[c.UNFIXABLE] > 0)]
    return table(worst_first(frame, then=[c.PROFILE]),
                 {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.SCENARIO: "Scenario",
                  c.FAILING: "Chains failing", c.ROOTS_TO_ADD: "Roots to add",
                  c.UNFIXABLE_REASONS: "Not fixable by adding a root"},
                 source="roots_to_add", order="most devices first",
                 empty="No profile needs another root, today or in any scenario.")


def coverage_figure(inputs: ReportInputs) -> Png:
    """The coverage heatmap: verdict patterns x endpoint chains (per TLS stack when the audit knows stacks)."""
    return Png.from_figure(coverage_heatmap(inputs.audit.coverage, title=f"Root coverage — {inputs.title}"),
                           alt="coverage heatmap")


def _patterns_table(grid: Any, *, member_label: str, caption: str, panel_label: str = "") -> Html:
    pats = grid.patterns
    if pats.empty:
        return Html(empty_markup("Nothing to group."))
    frame = pd.DataFrame({
        PATTERN: pats[PATTERN], PANEL: pats[PANEL], c.DEVICES: pats[c.DEVICES].astype("int64"),
        COUNT: pats[MEMBERS].map(len).astype("int64"), MEMBERS: pats[MEMBERS],
    })
    columns = {PATTERN: "Pattern", c.DEVICES: "Devices", COUNT: member_label.capitalize() + "s", MEMBERS: member_label.capitalize() + "s, all"}
    if panel_label:
        columns = {PATTERN: "Pattern", PANEL: panel_label, **{k: v for k, v in columns.items() if k != PATTERN}}
    return table(frame, columns, caption=caption, order="worst first, as in the figure")


def coverage_patterns_table(inputs: ReportInputs) -> Html:
    """Every profile of each heatmap row (verdict pattern), so grouped rows can be expanded."""
    coverage = inputs.audit.coverage
    met = coverage[coverage[c.VERDICT].astype(str) != VERDICTS[3]]
    if met.empty:
        return Html(empty_markup("No profile meets any served chain."))
    return _patterns_table(coverage_grid(coverage), member_label="profile",
                           panel_label="TLS stack" if TLS_STACK in coverage.columns else "",
                           caption="Each heatmap row is a verdict pattern: profiles with the same verdict on every "
                                   "chain they meet. Filter this table by a profile name to find its row.")


# --- expiry -----------------------------------------------------------------------------------------


def expiry_figure(inputs: ReportInputs) -> Png:
    """The expiry timeline with the cliff curve."""
    audit = inputs.audit
    figure = expiry_timeline(audit.certificates_expiry, audit.expiry, audit.anchors_expiry, audit.cliff,
                             as_of=inputs.as_of, horizon_years=inputs.horizon_years,
                             title=f"Expiry timeline — {inputs.title}")
    return Png.from_figure(figure, alt="expiry timeline", measure=False)  # not a grid: its text is drawn as before


def break_dates_table(inputs: ReportInputs) -> Html:
    """Per profile: the firmware-side date to update by, and when it breaks if nothing changes."""
    return table(soonest_first(inputs.audit.expiry, c.FIRMWARE_BREAK_DATE, c.BREAK_DATE), {
        c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.TLS_STACK: "TLS stack", c.STATE: "State",
        c.FIRMWARE_BREAK_DATE: "Update firmware by (firmware side)",
        c.FIRMWARE_BREAK_CAUSE: "Because of (firmware side)",
        c.BREAK_DATE: "First break if nothing changes",
        c.DARK_DATE: "Loses every path if nothing changes", c.BREAK_CAUSE_NAME: "Because of (as served)",
        c.FIRST_BREAK_HOST: "First endpoint to break",
    }, source="expiry", order="soonest update first", empty="No profile.",
        caption="\"Firmware side\": the first day on which nothing AWS could serve under the roots and cross-signs "
                "that still exist (every served certificate renewed) validates with this profile's store, TLS stack "
                "and pins: only an anchor, a cross-sign or a pin the firmware depends on can end it, so this is the "
                "date to update the firmware by. \"Nothing changes\": the chain exactly as served, validated at each "
                "future date, so every chain also ends when today's leaf expires.")


def certificates_expiry_table(inputs: ReportInputs) -> Html:
    """Every served certificate with its role and days left, soonest first."""
    return table(soonest_first(inputs.audit.certificates_expiry, c.NOT_AFTER),
                 {c.SUBJECT_CN: "Certificate", c.ROLE: "Role", c.CATALOG_NAME: "Catalogue name",
                  c.NOT_AFTER: "Expires", c.DAYS_LEFT: "Days left", c.DEVICES: "Devices validating through it",
                  c.HOSTS: "Served by"},
                 source="certificates_expiry", order="soonest first",
                 caption="Served-certificate expiry: this is not when devices break.")


def anchors_expiry_table(inputs: ReportInputs) -> Html:
    """Anchors inside each firmware's trust store and when they expire, soonest first."""
    return table(soonest_first(inputs.audit.anchors_expiry, c.NOT_AFTER),
                 {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.ANCHOR_NAME: "Anchor",
                  c.NOT_AFTER: "Expires", c.DAYS_LEFT: "Days left", c.IN_USE: "Used today"},
                 source="anchors_expiry", order="soonest first", caption="Trust anchors inside each firmware's store.")


def cliff_table(inputs: ReportInputs) -> Html:
    """Dates on which devices lose their last valid path, soonest first."""
    frame = inputs.audit.cliff
    frame = frame[(frame[c.DEVICES_LOSING] > 0) | (frame[c.DEVICES_LOSING_FIRMWARE] > 0)]
    return table(frame.sort_values(c.DATE, kind="stable"),
                 {c.DATE: "Date",
                  c.DEVICES_LOSING_FIRMWARE: "Devices whose firmware stops validating anything AWS could serve",
                  c.DEVICES_CONNECTED_FIRMWARE: "Still able to connect (firmware side)",
                  c.PROFILES_FIRMWARE: "Firmware profiles reaching their update-by date",
                  c.DEVICES_LOSING: "Devices losing every path (nothing changes)",
                  c.DEVICES_CONNECTED: "Still connected (nothing changes)"},
                 source="cliff", order="soonest first", empty="No device loses its last valid path within the horizon.")


# --- pinning ------------------------------------------------------------------------------------


def pin_figure(inputs: ReportInputs) -> Png:
    """The pinning risk matrix: pin patterns x scenarios."""
    return Png.from_figure(pin_risk_matrix(inputs.audit.pins, title=f"Pinning risk — {inputs.title}"),
                           alt="pinning risk matrix")


def pin_patterns_table(inputs: ReportInputs) -> Html:
    """Every profile · pin of each pin-matrix row."""
    pins = inputs.audit.pins
    if pins.empty:
        return Html(empty_markup("No pinned profile."))
    return _patterns_table(pin_grid(pins), member_label="profile · pin",
                           caption="Each matrix row is a pattern: profile · pin pairs with the same outcome under "
                                   "every scenario.")


def pin_risks_table(inputs: ReportInputs) -> Html:
    """Ranked pin risks with device counts (rank 1 first)."""
    return table(inputs.audit.pin_risks_ranked.sort_values(c.RANK, kind="stable"),
                 {c.RANK: "Rank", c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.RISK: "Risk",
                  c.DETAIL: "What happens", c.PINS: "Pins concerned"},
                 source="pin_risks_ranked", order="worst risk first", empty="No pinned profile.")


def pins_today_table(inputs: ReportInputs) -> Html:
    """Pins and whether they match today, on which certificate; non-matching pins first."""
    pins = inputs.audit.pins
    keep = [c.PROFILE, c.DEVICES, c.PIN, c.MATCHES, c.MATCHED_NAME, c.FLAGS]
    pins = pins[keep].drop_duplicates(subset=[c.PROFILE, c.PIN])
    pins = pins.assign(_m=pins[c.MATCHES].astype(bool), _d=-pins[c.DEVICES].astype("int64")).sort_values(
        ["_m", "_d", c.PROFILE], kind="stable").drop(columns=["_m", "_d"])
    return table(pins, {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", c.PIN: "Pin", c.MATCHES: "Matches today",
                        c.MATCHED_NAME: "On certificate", c.FLAGS: "Flags"},
                 source="pins", order="not matching first, then most devices", empty="No pinned profile.")


# --- drift -----------------------------------------------------------------------------------------


def drift_table(inputs: ReportInputs) -> Html:
    """Changes since the baseline run, most alarming first."""
    if inputs.baseline is None:
        return Html(empty_markup("No baseline run was given."))
    return table(drift(inputs.baseline, inputs.run),
                 {CHANGE: "Change", c.HOST: "Host", c.PORT: "Port", c.KEY_TYPE: "Key type", c.PROBE: "Probe",
                  CERTIFICATE: "Certificate", CERT_ROLE: "Role", OLD: "Before", NEW: "After"},
                 order="most alarming first", empty="Nothing changed since the baseline run.")


def drift_counts_table(inputs: ReportInputs) -> Html:
    """Number of changes per kind since the baseline run."""
    if inputs.baseline is None:
        return Html(empty_markup("No baseline run was given."))
    counts = drift_summary(drift(inputs.baseline, inputs.run))
    frame = pd.DataFrame({CHANGE: list(counts), COUNT: list(counts.values())})
    return table(frame, {CHANGE: "Change", COUNT: "Count"}, order="most alarming kind first")


# --- frames other parts of the audit add (/work/team/STACKS.md "Frames the report will show") -------------
# Each section renders only when the audit has its frame (or the column); it carries its own heading so
# an audit without it shows nothing at all.  Column names as agreed there; they move to columns.py with
# the frames.
from ..columns import (  # noqa: E402  the frames' own column names, in one place
    FILE,
    LIBRARY,
    LIBRARY_ERROR,
    LIBRARY_VALID,
    MODEL_VALID,
    NOTE,
    OFFSET,
    OTHER_STACK,
    OTHER_VERDICT,
)
SEVERITIES_WORST_FIRST = ("error", "warning", "info")


def _section(heading: str, body: Html, intro: str = "") -> Html:
    lead = f"<p>{html.escape(intro)}</p>" if intro else ""
    return Html(f'<h2 class="iotaudit-optional">{html.escape(heading)}</h2>{lead}{body.markup}')


def stack_section(inputs: ReportInputs) -> Html:
    """Devices per TLS stack and verdict, worst first, when the coverage frame has ``tls_stack``."""
    coverage = inputs.audit.coverage
    if TLS_STACK not in coverage.columns:
        return Html("")
    profiles = coverage.assign(**{TLS_STACK: coverage[TLS_STACK].astype(str)})
    per_profile = profile_verdicts(coverage).merge(
        profiles.drop_duplicates(c.PROFILE)[[c.PROFILE, TLS_STACK]], on=c.PROFILE, how="left")
    pivot = per_profile.pivot_table(index=TLS_STACK, columns=c.VERDICT, values=c.DEVICES, aggfunc="sum",
                                    fill_value=0, observed=True).reset_index()
    pivot.columns = [str(col) for col in pivot.columns]
    for verdict in VERDICTS:
        if verdict not in pivot.columns:
            pivot[verdict] = 0
    counts = per_profile.groupby(TLS_STACK).size()
    pivot[COUNT] = pivot[TLS_STACK].map(counts).astype("int64")
    pivot = pivot.sort_values([VERDICTS[0], VERDICTS[1], TLS_STACK], ascending=[False, False, True], kind="stable")
    body = table(pivot, {TLS_STACK: "TLS stack", COUNT: "Profiles", VERDICTS[0]: "Devices broken",
                         VERDICTS[1]: "Devices at risk", VERDICTS[2]: "Devices covered"}, order="most broken first")
    return _section("Devices per TLS stack", body,
                    "Each profile's worst verdict, summed by the TLS stack its firmware ships; the heatmap above "
                    "has one panel per stack.")


def stack_alternatives_section(inputs: ReportInputs) -> Html:
    """"Same store, other stacks": how each profile's trust store would fare under another TLS stack."""
    frame = inputs.stack_alternatives
    if frame is None:
        return Html("")
    total = len(frame)
    if c.CHANGED in frame.columns:  # only where another stack gives another verdict: the rest says nothing new
        frame = frame[frame[c.CHANGED].astype(bool).to_numpy()]
    order = {v: i for i, v in enumerate(VERDICTS)}
    frame = frame.assign(_now=frame[c.VERDICT].astype(str).map(order), _other=frame[OTHER_VERDICT].astype(str).map(order),
                         _d=-frame[c.DEVICES].astype("int64"))
    frame = frame.sort_values(["_now", "_other", "_d", c.PROFILE], ascending=[True, False, True, True],
                              kind="stable").drop(columns=["_now", "_other", "_d"])
    body = table(frame, {c.PROFILE: "Firmware profile", c.DEVICES: "Devices", TLS_STACK: "TLS stack",
                         c.VERDICT: "Verdict today", OTHER_STACK: "Same store on stack",
                         OTHER_VERDICT: "Verdict on that stack"},
                 source=STACK_ALTERNATIVES_FRAME, order="worst today first, best alternative first",
                 empty="No other TLS stack changes any profile's verdict with the same trust store.")
    return _section("Same store, other stacks", body,
                    "The same trust store under another TLS stack's path building: where a firmware update of the "
                    "TLS library alone, or one build flag (alternative chains, cross-signed verify), would fix (or "
                    f"break) a profile. Shown: the {len(frame):,} of {total:,} profile x stack pairs whose verdict "
                    "differs from the profile's own stack.")


def firmware_notes_section(inputs: ReportInputs) -> Html:
    """Findings of ``iotaudit scan`` about the firmware images, errors first."""
    frame = inputs.firmware_notes
    if frame is None:
        return Html("")
    rank = {s: i for i, s in enumerate(SEVERITIES_WORST_FIRST)}
    frame = frame.assign(_s=frame[c.SEVERITY_COL].astype(str).map(rank).fillna(len(rank))).sort_values(
        ["_s", c.PROFILE, FILE, OFFSET], kind="stable").drop(columns=["_s"])
    counts = frame[c.SEVERITY_COL].astype(str).value_counts()
    intro = "From the firmware images: " + ", ".join(f"{int(counts.get(s, 0)):,} {s}" for s in SEVERITIES_WORST_FIRST) + "."
    outside = int((inputs.summary.get(FIRMWARE_NOTES_FRAME) or {}).get("notes_outside_inventory", 0))
    if outside:  # iotaudit audit --scan counts the notes of scanned profiles the inventory does not have
        intro += f" {outside:,} note(s) of scanned profiles no device of the inventory runs are left out."
    shown = {c.SEVERITY_COL: "Severity", c.PROFILE: "Firmware profile"}
    if c.DEVICES in frame.columns:  # the audit's frame (iotaudit audit --scan) counts each profile's devices
        shown[c.DEVICES] = "Devices"
    shown |= {NOTE: "Note", FILE: "File", OFFSET: "Offset"}
    body = table(frame, shown, source=FIRMWARE_NOTES_FRAME, order="errors first",
                 empty="The scan found nothing to note.")
    return _section("From the firmware", body, intro)


def crosscheck_section(inputs: ReportInputs) -> Html:
    """Cases where the stack model and the real TLS library disagree (or the library failed), counted."""
    frame = inputs.crosscheck
    asked = bool((inputs.summary.get("crosscheck") or {}).get("asked", True))
    if frame is None or (frame.empty and not asked):  # not asked for (--cross-check): nothing to say
        return Html("")
    # library_error is the library's own reason for rejecting a chain, not a failure to ask it: a library that
    # cannot be asked is listed in the summary's crosscheck.unavailable and has no rows here.
    disagree = (frame[MODEL_VALID].astype("boolean") != frame[LIBRARY_VALID].astype("boolean")).fillna(False)
    shown = frame[disagree.to_numpy()]
    shown = shown.assign(**{ENDPOINT: shown[c.HOST].astype(str) + ":" + shown[c.PORT].astype(str)})
    shown = shown.sort_values([TLS_STACK, c.PROFILE, ENDPOINT], kind="stable")
    unavailable = (inputs.summary.get("crosscheck") or {}).get("unavailable") or {}
    missing = f" Not asked (library not installed here): {', '.join(sorted(unavailable))}." if unavailable else ""
    intro = (f"{int(disagree.sum()):,} of {len(frame):,} cases disagree between the model and the real library."
             f"{missing} The complete cross-check is audit/{CROSSCHECK_FRAME}.csv.")
    body = table(shown, {TLS_STACK: "TLS stack", c.PROFILE: "Firmware profile", ENDPOINT: "Endpoint",
                         c.PROBE: "Probe", MODEL_VALID: "Model says valid", LIBRARY_VALID: "Library says valid",
                         LIBRARY: "Library", LIBRARY_ERROR: "Library error"},
                 order="by stack", empty="The model and the real libraries agree on every case.")
    return _section("Cross-check against the real TLS libraries", body, intro)
