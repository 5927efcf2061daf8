"""Figures of the report set, drawn with matplotlib's Agg backend from audit frames.

Each function takes frames and returns a :class:`matplotlib.figure.Figure`
(not registered with pyplot, so nothing leaks between calls).  Colours are
the Okabe-Ito palette, distinguishable with the common colour-vision
deficiencies (Okabe & Ito, "Color Universal Design", 2008); verdicts also
carry a symbol so they survive a grey-scale print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import columns as c  # noqa: E402
from .columns import TLS_STACK, VERDICTS_WORST_FIRST, Verdict  # noqa: E402


# Okabe-Ito
BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE, YELLOW, GREY = (
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#DDDDDD")

VERDICT_STYLE = {  # verdict -> (colour, symbol, legend text)
    "covered": (GREEN, "✓", "covered"),
    "at-risk": (ORANGE, "!", "at risk"),
    "broken": (VERMILLION, "✗", "broken"),
    "not-applicable": (GREY, "", "not met"),
}
VERDICT_RANK = {verdict: rank for rank, verdict in enumerate(VERDICTS_WORST_FIRST)}


def _empty(message: str, title: str) -> Figure:
    figure = Figure(figsize=(8, 2.2))
    ax = figure.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12)
    if title:
        figure.suptitle(title, fontsize=13, fontweight="bold")
    return figure


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


MARKER_LABEL = "The same profile's first break if nothing changes (served chain as is, leaf included)"


def _utc(values: Sequence | pd.Series) -> pd.Series:
    return pd.to_datetime(pd.Series(values), utc=True)


def expiry_timeline(
    certificates_expiry: pd.DataFrame,
    break_dates: pd.DataFrame,
    anchors_expiry: pd.DataFrame,
    cliff: pd.DataFrame,
    *,
    as_of: datetime,
    horizon_years: int = 15,
    title: str = "Expiry timeline",
    max_bars: int = 45,
) -> Figure:
    """One bar per served certificate, validated path and anchor, with the ``as_of`` line and the cliff.

    The three kinds of date are drawn differently (blackbox_exporter issues
    340/589/637 are what happens when they are mixed up): served-certificate
    validity in blue, each profile's first break in vermillion with hatching,
    anchor validity in green.  A profile's bar ends at its firmware-side date
    (``firmware_break_date``: the first day nothing AWS could serve under the
    roots and cross-signs that still exist validates with its store, stack and
    pins, i.e. the date to update the firmware by); a black diamond marks its break "if nothing changes"
    (``break_date``, the served chain as is) when that is earlier.  Bars that
    run past the horizon end in an arrow.  The lower panel is the cliff:
    devices still connected over time, solid on the firmware side, dashed if
    nothing changes.  Frames without the firmware-side
    columns are drawn with the as-served dates only.

    Args:
        certificates_expiry: ``subject_cn``, ``role``, ``not_after`` (``not_before`` optional; with a
            ``served`` column only served certificates get a blue bar: anchors have their own).
        break_dates: Per profile ``profile``, ``devices``, ``break_date`` (NaT: not within the horizon),
            ``firmware_break_date`` (optional).
        anchors_expiry: ``anchor_name``, ``anchor_sha256``, ``not_after``.
        cliff: ``date``, ``devices_losing``, ``devices_connected`` (``devices_losing_firmware``,
            ``devices_connected_firmware`` optional).
        as_of: The evaluation time (tz-aware).
        horizon_years: The right edge of the plot.
        title: Figure title.
        max_bars: Cap on the number of bars (the soonest kept); the title says when some are left out.
    """
    start = pd.Timestamp(as_of).tz_convert("UTC")
    end = start + pd.DateOffset(years=horizon_years)
    left = start - pd.DateOffset(years=1)
    bars: list[tuple[str, pd.Timestamp, pd.Timestamp, str]] = []  # label, from, to, kind
    served_breaks: dict[str, pd.Timestamp] = {}  # path bar label -> as-served break when before the bar's end

    certs = certificates_expiry
    if "served" in certs.columns:  # anchors met only in trust stores are drawn once, as anchors
        certs = certs[certs["served"].astype(bool)]
    if not certs.empty and "not_after" in certs.columns:
        certs = certs.assign(_na=_utc(certs["not_after"]).to_numpy()).sort_values("_na")
        for row in certs.to_dict("records"):
            name = str(row.get("catalog_name") or row.get("subject_cn") or row.get("sha256", "")[:12])
            role = str(row.get("role", ""))
            since = pd.Timestamp(row["not_before"]) if "not_before" in row and not pd.isna(row["not_before"]) else left
            bars.append((f"{_short(name, 38)} ({role})" if role else _short(name, 44), since, row["_na"], "served"))
    renewed = "firmware_break_date" in break_dates.columns
    # Profiles that break the same way on the same dates share one bar: broken first, then the soonest,
    # then the most devices; what does not fit is counted in the title.
    groups: dict[tuple[bool, pd.Timestamp, pd.Timestamp | None], dict[str, Any]] = {}
    if not break_dates.empty and "break_date" in break_dates.columns:
        for row in break_dates.to_dict("records"):
            broken = str(row.get("state", "")) == "broken"  # no valid path at as_of: nothing left to expire
            when = row["firmware_break_date"] if renewed else row["break_date"]
            until = start if broken else (end + pd.Timedelta(days=1) if pd.isna(when) else pd.Timestamp(when))
            served = row["break_date"]
            early = (pd.Timestamp(served) if renewed and not broken and not pd.isna(served)
                     and pd.Timestamp(served) < until else None)
            group = groups.setdefault((broken, until, early), {"profiles": [], "devices": 0})
            group["profiles"].append(str(row["profile"]))
            group["devices"] += int(row.get("devices", 0) or 0)
    ordered = sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1], -kv[1]["devices"], kv[1]["profiles"][0]))
    if not anchors_expiry.empty and "not_after" in anchors_expiry.columns:
        key = "anchor_sha256" if "anchor_sha256" in anchors_expiry.columns else "anchor_name"
        anchors = anchors_expiry.drop_duplicates(subset=[key])
        for row in anchors.to_dict("records"):
            bars.append((_short(str(row.get("anchor_name") or str(row.get(key, ""))[:12]), 44), left,
                         pd.Timestamp(row["not_after"]), "anchor"))
    if not bars and not ordered:
        return _empty("No certificate, path or anchor to show.", title)
    dropped = max(0, len(bars) - max(0, max_bars - 8))  # certificates and anchors: the soonest kept
    if dropped:
        bars = sorted(bars, key=lambda b: b[2])[: max(0, max_bars - 8)]
    budget = max(8, max_bars - len(bars))
    for (_broken, until, early), group in ordered[:budget]:
        members = group["profiles"]
        more = f" +{len(members) - 1}" if len(members) > 1 else ""
        label = f"{_short(members[0], 30 - len(more))}{more} ({group['devices']:,} devices)"
        bars.append((label, start, until, "path"))
        if early is not None:
            served_breaks[label] = early
    left_groups = ordered[budget:]
    kinds_order = {"path": 0, "served": 1, "anchor": 2}
    bars.sort(key=lambda b: (kinds_order[b[3]], b[2]))
    path_label = ("Firmware profile works until (firmware side: update it by then)" if renewed
                  else "Firmware profile works until (first break date)")
    style = {
        "served": dict(color=BLUE, hatch="", label="Served certificate valid until (not_after)"),
        "path": dict(color=VERMILLION, hatch="///", label=path_label),
        "anchor": dict(color=GREEN, hatch="..", label="Trust anchor in firmware valid until"),
    }
    figure = Figure(figsize=(FIGURE_WIDTH_IN, 2.8 + 0.3 * len(bars) + 2.6))
    grid = figure.add_gridspec(2, 1, height_ratios=[max(3.0, 0.3 * len(bars)), 2.4], hspace=0.12)
    ax = figure.add_subplot(grid[0])
    ax_cliff = figure.add_subplot(grid[1], sharex=ax)
    seen: set[str] = set()
    for y, (label, since, until, kind) in enumerate(bars):
        lo = max(since, left)
        hi = min(until, end)
        s = style[kind]
        ax.barh(y, mdates.date2num(hi) - mdates.date2num(lo), left=mdates.date2num(lo), height=0.62,
                color=s["color"], hatch=s["hatch"], edgecolor="white" if not s["hatch"] else "black", linewidth=0.4,
                label=s["label"] if kind not in seen else None, alpha=0.9)
        seen.add(kind)
        if kind == "path" and label in served_breaks and left <= served_breaks[label] <= end:
            ax.plot([mdates.date2num(served_breaks[label])], [y], linestyle="none", marker="D", markersize=5,
                    markerfacecolor="black", markeredgecolor="white", markeredgewidth=0.6, zorder=3,
                    label=MARKER_LABEL if "served-break" not in seen else None)
            seen.add("served-break")
        if until > end:
            ax.annotate("beyond horizon →" if kind == "path" else f"→ {until:%Y}", (mdates.date2num(end), y),
                        xytext=(-4, 0), textcoords="offset points", ha="right", va="center", fontsize=MIN_FONT_PT, color="black")
        elif kind == "path" and until == start:
            ax.annotate("broken at as_of", (mdates.date2num(start), y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=MIN_FONT_PT, color=VERMILLION, fontweight="bold")
        elif until <= start:
            ax.annotate(f"expired {until:%Y-%m-%d}", (mdates.date2num(max(until, left)), y), xytext=(4, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=MIN_FONT_PT, color=VERMILLION)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=MIN_FONT_PT)
    ax.invert_yaxis()
    ax.axvline(mdates.date2num(start), color="black", linestyle="--", linewidth=1.2)
    ax.text(mdates.date2num(start), -0.9, f" as of {start:%Y-%m-%d}", fontsize=MIN_FONT_PT, va="bottom", ha="left")
    ax.set_xlim(mdates.date2num(left), mdates.date2num(end))
    handles, labels = ax.get_legend_handles_labels()
    order = [style["path"]["label"], MARKER_LABEL, style["served"]["label"], style["anchor"]["label"]]
    legend = sorted(zip(handles, labels, strict=True), key=lambda h: order.index(h[1]) if h[1] in order else len(order))
    # One column from the figure's left edge: two columns at 9 pt would run past the page width.
    ax.legend([h for h, _ in legend], [lab for _, lab in legend], loc="lower left", bbox_to_anchor=(-0.52, 1.01),
              ncol=1, fontsize=MIN_FONT_PT, frameon=False)
    ax.grid(axis="x", color="#e0e0e0")
    ax.tick_params(labelbottom=False)
    notes = []
    if left_groups:
        notes.append(f"{len(left_groups):,} more firmware groups ({sum(len(g['profiles']) for _k, g in left_groups):,} "
                     f"profiles, {sum(g['devices'] for _k, g in left_groups):,} devices) not drawn: all in the tables below")
    if dropped:
        notes.append(f"{dropped} more certificates and anchors not drawn (the soonest are)")
    suffix = ("\n" + "; ".join(notes)) if notes else ""
    figure.suptitle(title + suffix, fontsize=12, fontweight="bold")

    if not cliff.empty and {"date", "devices_connected"} <= set(cliff.columns):
        dates = _utc(cliff["date"])
        xs = [mdates.date2num(left)] + [mdates.date2num(d) for d in dates] + [mdates.date2num(end)]

        def curve(connected_col: str, losing_col: str) -> list[float]:
            connected = cliff[connected_col].astype(float).to_numpy()
            total = connected[0] + float(cliff[losing_col].iloc[0]) if losing_col in cliff.columns else connected[0]
            return [total] + list(connected) + [connected[-1] if len(connected) else total]

        both = {"devices_connected_firmware", "devices_losing_firmware"} <= set(cliff.columns)
        main = ("devices_connected_firmware", "devices_losing_firmware") if both else ("devices_connected", "devices_losing")
        ys = curve(*main)
        ax_cliff.step(xs, ys, where="post", color=VERMILLION, linewidth=2.2, zorder=3,
                      label="Firmware side (AWS renews what it serves; anchors, stack and pins decide)" if both
                      else "Devices with a valid path")
        ax_cliff.fill_between(xs, ys, step="post", color=VERMILLION, alpha=0.12)
        tallest = max(ys)
        if both:
            ys_served = curve("devices_connected", "devices_losing")
            ax_cliff.step(xs, ys_served, where="post", color="#333333", linewidth=1.4, linestyle=(0, (5, 3)), zorder=4,
                          label="If nothing changes (served chain as is: also ends when today's leaf expires)")
            tallest = max(tallest, max(ys_served))
        if main[1] in cliff.columns:
            losing = cliff[cliff[main[1]] > 0]
            for d, n in zip(_utc(losing["date"]), losing[main[1]], strict=True):
                ax_cliff.annotate(f"−{int(n):,}", (mdates.date2num(d), 0), xytext=(3, 4), textcoords="offset points",
                                  fontsize=MIN_FONT_PT, color=VERMILLION, fontweight="bold", rotation=90, va="bottom")
        if both:
            losing = cliff[cliff["devices_losing"] > 0]
            for d, n in zip(_utc(losing["date"]), losing["devices_losing"], strict=True):
                ax_cliff.annotate(f"−{int(n):,}", (mdates.date2num(d), tallest * 1.24), xytext=(-3, 0),
                                  textcoords="offset points", fontsize=MIN_FONT_PT, color="#333333", rotation=90, va="top",
                                  ha="right")
        ax_cliff.set_ylim(0, tallest * (1.28 if both else 1.1) if tallest > 0 else 1)
        ax_cliff.legend(loc="lower right", fontsize=MIN_FONT_PT, frameon=True, framealpha=0.9)
    else:
        ax_cliff.text(0.5, 0.5, "no cliff data", transform=ax_cliff.transAxes, ha="center", va="center")
    ax_cliff.axvline(mdates.date2num(start), color="black", linestyle="--", linewidth=1.2)
    ax_cliff.set_ylabel("Devices connected")
    ax_cliff.set_xlabel("Date (UTC)")
    ax_cliff.set_title("The cliff: devices that still have a valid path to AWS IoT", fontsize=10, loc="left")
    ax_cliff.grid(color="#e0e0e0")
    ax_cliff.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{int(v):,}"))
    ax_cliff.xaxis.set_major_locator(mdates.YearLocator(base=1 if horizon_years <= 10 else 2))
    ax_cliff.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    figure.subplots_adjust(left=0.36, right=0.98, top=1 - (1.5 + 0.2 * suffix.count("\n")) / figure.get_figheight(),
                           bottom=0.06)
    return figure


# --- grids grouped by pattern: the coverage heatmap and the pin matrix -------------------------------

FIGURE_WIDTH_IN = 10.5   # at REPORT_DPI this is the page's figure width: the PNG is shown at 1:1, not shrunk
REPORT_DPI = 100
MIN_FONT_PT = 9          # 9 pt at 100 dpi = 12.5 px: above the 9 px floor even if a browser shrinks it to 72 %
MAX_ROWS = 40            # pattern rows per panel
MAX_COLUMNS = 14         # chains per panel; more chains go to further panels ("pages of figures")
CHAIN = "chain"          # derived here: host:port (without .amazonaws.com) and leaf key type
PATTERN = "pattern"      # derived here: P1, P2 ... worst first
MEMBERS = "members"      # the rows (profiles, or profile · pin) that share a pattern
GRID_CODE = "code"       # the cell's value: 0 worst ... 3 "not met"
PANEL = "key"            # the panel a pattern is drawn in: a TLS stack, or "" for one panel
CODES, COUNTS, WORST = "codes", "counts", "worst"  # per pattern: codes and device counts per column, lowest code


@dataclass(frozen=True, slots=True)
class PatternGrid:
    """Rows that share the same code in every column, grouped: one row per pattern, worst first.

    Attributes:
        columns: Column labels, in display order.
        patterns: One row per pattern: ``pattern`` (P1, P2 ...), ``members`` (list of row names),
            ``devices`` (sum over members), ``worst`` (lowest code), the panel ``key`` (a TLS stack or ""),
            and one code and one device count per column (``codes``, ``counts``: tuples in column order).
    """

    columns: tuple[str, ...]
    patterns: pd.DataFrame


def group_patterns(cells: pd.DataFrame, *, row: str, column: str, panel: str | None = None,
                   columns: Sequence[str] | None = None) -> PatternGrid:
    """Group the rows of a long grid that share one code per column.

    Args:
        cells: One row per (row, column) with ``code`` (0 worst .. 3 not met) and ``devices``
            (the row's devices); several records of one cell keep the worst code.
        row: The row-name column.
        column: The column-name column.
        panel: A column that splits rows into panels (patterns never span panels), or None.
        columns: Column order; default: worst column first, then by name.
    """
    keys = [row, column] + ([panel] if panel else [])
    cell = cells.groupby(keys, observed=True, sort=False).agg(
        **{GRID_CODE: (GRID_CODE, "min"), c.DEVICES: (c.DEVICES, "max")}).reset_index()
    if columns is None:
        worst = cell.groupby(column, observed=True)[GRID_CODE].min()
        columns = sorted(worst.index, key=lambda col: (int(worst[col]), str(col)))
    col_index = {str(col): j for j, col in enumerate(columns)}
    row_keys = [row] + ([panel] if panel else [])
    per_row: dict[tuple, list[int]] = {}
    devices_of: dict[tuple, int] = {}
    for rec in cell.itertuples(index=False):
        rec_d = rec._asdict()
        key = tuple(str(rec_d[k]) for k in row_keys)
        codes = per_row.setdefault(key, [3] * len(columns))
        j = col_index.get(str(rec_d[column]))
        if j is not None:
            codes[j] = min(codes[j], int(rec_d[GRID_CODE]))
        devices_of[key] = max(devices_of.get(key, 0), int(rec_d[c.DEVICES]))
    groups: dict[tuple, dict[str, Any]] = {}
    for key, codes in per_row.items():
        signature = (key[1] if panel else "", tuple(codes))
        group = groups.setdefault(signature, {MEMBERS: [], c.DEVICES: 0, COUNTS: [0] * len(columns)})
        group[MEMBERS].append(key[0])
        group[c.DEVICES] += devices_of[key]
        for j, code in enumerate(codes):
            if code < 3:
                group[COUNTS][j] += devices_of[key]
    records = [{PANEL: sig[0], CODES: sig[1], WORST: min(sig[1], default=3), MEMBERS: sorted(g[MEMBERS]),
                c.DEVICES: g[c.DEVICES], COUNTS: tuple(g[COUNTS])} for sig, g in groups.items()]
    frame = pd.DataFrame(records, columns=[PANEL, CODES, WORST, MEMBERS, c.DEVICES, COUNTS])
    frame = frame.sort_values([WORST, c.DEVICES, PANEL], ascending=[True, False, True], kind="stable").reset_index(drop=True)
    frame.insert(0, PATTERN, [f"P{i + 1}" for i in range(len(frame))])
    return PatternGrid(columns=tuple(str(col) for col in columns), patterns=frame)


def _compact(n: int) -> str:
    """Device counts that fit a cell: 999 / 1.2k / 12k / 1.2M (exact counts are in the tables)."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n // 1000:,}k"
    if n >= 1000:
        return f"{n / 1000:.1f}k"
    return f"{n}"


def _pattern_label(rec: Mapping[str, Any], width: int = 34) -> str:
    members = rec[MEMBERS]
    more = f" +{len(members) - 1}" if len(members) > 1 else ""
    return f"{rec[PATTERN]} {_short(str(members[0]), width - len(more))}{more} · {_compact(int(rec[c.DEVICES]))} dev"


def _draw_grid(grid: PatternGrid, *, title: str, legend: str, colours: Sequence[str], symbols: Sequence[str],
               ylabel: str, xlabel: str, short_column: Any, max_rows: int = MAX_ROWS,
               max_columns: int = MAX_COLUMNS, noun: str = "profiles") -> Figure:
    """Panels of pattern rows x column chunks, every text at least :data:`MIN_FONT_PT`."""
    pats = grid.patterns
    keys = list(dict.fromkeys(pats[PANEL]))
    chunks = [list(range(i, min(i + max_columns, len(grid.columns)))) for i in range(0, len(grid.columns), max_columns)]
    panels: list[tuple[str, pd.DataFrame, list[int], str]] = []
    per_panel = max_rows if len(keys) == 1 else max(6, max_rows // 3)  # small multiples: fewer rows each
    for key in keys:
        mine = pats[pats[PANEL] == key]
        shown, rest = mine.head(per_panel), mine.iloc[per_panel:]
        note = ""
        if len(rest):
            note = (f"{len(rest):,} more patterns ({sum(len(m) for m in rest[MEMBERS]):,} {noun}, "
                    f"{int(rest[c.DEVICES].sum()):,} devices) not drawn: all in the table below")
        head = (f"{key}: {sum(len(m) for m in mine[MEMBERS]):,} {noun} in {len(mine):,} patterns, "
                f"{int(mine[c.DEVICES].sum()):,} devices" if key else "")
        for n, chunk in enumerate(chunks):
            part = f" (columns {chunk[0] + 1}–{chunk[-1] + 1} of {len(grid.columns)})" if len(chunks) > 1 else ""
            panels.append(((head + part).strip(), shown, chunk, note if n == len(chunks) - 1 else ""))
    # Small multiples share their columns: when every panel shows the same chunk, only the last one carries
    # the (tall, rotated) column labels.  Each panel is given room for what it draws, so constrained layout
    # never collapses an axis (it warns and then lays nothing out).
    labels_in = 0.3 + 0.075 * max((len(short_column(col)) for col in grid.columns), default=0)  # 9 pt, rotated 90 degrees
    show_x = [len(chunks) > 1 or i == len(panels) - 1 for i in range(len(panels))]
    heights = [0.9 + 0.34 * len(p[1]) + (0.3 if p[3] else 0) for p in panels]  # the axes; labels get room below
    figure = Figure(figsize=(FIGURE_WIDTH_IN, 1.2 + sum(heights) + (labels_in + 0.3) * sum(show_x)),
                    layout="constrained")
    axes = figure.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    cmap = ListedColormap(list(colours))
    for ax, (head, shown, chunk, note), show in zip(axes, panels, show_x, strict=True):
        codes = np.array([[rec_codes[j] for j in chunk] for rec_codes in shown[CODES]], dtype=int).reshape(len(shown), len(chunk))
        counts = np.array([[rec_counts[j] for j in chunk] for rec_counts in shown[COUNTS]], dtype=np.int64).reshape(
            len(shown), len(chunk))
        ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=len(colours) - 0.5, aspect="auto", interpolation="nearest")
        for i in range(codes.shape[0]):
            for j in range(codes.shape[1]):
                if codes[i, j] >= 3 or not symbols[codes[i, j]]:
                    continue
                ax.text(j, i, f"{symbols[codes[i, j]]} {_compact(int(counts[i, j]))}", ha="center", va="center",
                        fontsize=MIN_FONT_PT, color="white" if codes[i, j] == 0 else "black")
        ax.set_xticks(range(len(chunk)), [short_column(grid.columns[j]) for j in chunk], rotation=90,
                      fontsize=MIN_FONT_PT)
        ax.set_yticks(range(len(shown)), [_pattern_label(rec) for rec in shown.to_dict("records")], fontsize=MIN_FONT_PT)
        ax.set_xticks(np.arange(-0.5, len(chunk)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(shown)), minor=True)
        ax.grid(which="minor", color="white", linewidth=1.5)
        ax.tick_params(which="minor", length=0)
        ax.set_ylabel(ylabel, fontsize=MIN_FONT_PT + 1)
        if show:
            ax.set_xlabel(xlabel + (f"\n{note}" if note else ""), fontsize=MIN_FONT_PT + 1)
        else:  # the same columns as the panel below, which names them
            ax.tick_params(axis="x", which="both", labelbottom=False)
            if note:
                ax.set_xlabel(note, fontsize=MIN_FONT_PT + 1)
        if head:
            ax.set_title(head, fontsize=MIN_FONT_PT + 2, loc="left")
    figure.suptitle(f"{title}\n{legend}", fontsize=MIN_FONT_PT + 3, fontweight="bold")
    return figure


def _middle(text: str, width: int) -> str:
    """Shorten from the middle: the start names the endpoint, the end carries the region and port."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _chain_label(chain: str) -> str:
    host, key = chain.split("\n", 1) if "\n" in chain else (chain, "")
    return f"{_middle(host, 38)} {key}"


def coverage_grid(coverage: pd.DataFrame) -> PatternGrid:
    """Profiles grouped by their verdict on every chain met (and by ``tls_stack`` when the frame has it)."""
    met = coverage[coverage[c.VERDICT].astype(str) != Verdict.NOT_APPLICABLE.value]
    hosts = met[c.HOST].astype(str).str.replace(".amazonaws.com", "", regex=False)
    cells = pd.DataFrame({
        c.PROFILE: met[c.PROFILE].astype(str).to_numpy(),
        CHAIN: (hosts + ":" + met[c.PORT].astype(str) + "\n" + met[c.KEY_TYPE].astype(str)).to_numpy(),
        GRID_CODE: met[c.VERDICT].astype(str).map(VERDICT_RANK).fillna(3).astype(int).to_numpy(),
        c.DEVICES: met[c.DEVICES].astype("int64").to_numpy(),
    })
    panel = None
    if TLS_STACK in met.columns:
        cells[TLS_STACK] = met[TLS_STACK].astype(str).to_numpy()
        panel = TLS_STACK
    return group_patterns(cells, row=c.PROFILE, column=CHAIN, panel=panel)


def coverage_heatmap(coverage: pd.DataFrame, *, title: str = "Root coverage", max_rows: int = MAX_ROWS,
                     max_columns: int = MAX_COLUMNS) -> Figure:
    """Verdict patterns x endpoint chains, coloured by verdict, annotated with device counts.

    Profiles that meet every chain with the same verdict share one row
    (``P3 fw-a +41 · 1,200 dev``: 42 profiles, listed in the table under the
    figure), so 300 or 3,000 profiles stay legible; rows are worst first
    (broken, then at risk, then the most devices).  A column is one chain an
    endpoint serves (``host:port`` and leaf key type); more than
    ``max_columns`` chains continue in further panels.  With a ``tls_stack``
    column there is one panel per stack (small multiples).

    Args:
        coverage: The audit's coverage frame (``profile``, ``devices``, ``host``, ``port``,
            ``key_type``, ``verdict``; ``tls_stack`` optional).
        title: Figure title.
        max_rows: Pattern rows per panel; the panel says what is left out, with counts.
        max_columns: Chains per panel.
    """
    if coverage.empty or (coverage[c.VERDICT].astype(str) == Verdict.NOT_APPLICABLE.value).all():
        return _empty("No profile meets any served chain.", title)
    order = list(VERDICTS_WORST_FIRST)
    return _draw_grid(coverage_grid(coverage), title=title,
                      legend="✗ broken · ! at risk · ✓ covered · grey: chain not met — cell: devices",
                      colours=[VERDICT_STYLE[v][0] for v in order], symbols=[VERDICT_STYLE[v][1] for v in order],
                      ylabel="Verdict pattern",
                      xlabel="Endpoint chain (host:port without .amazonaws.com, leaf key type)",
                      short_column=_chain_label, max_rows=max_rows, max_columns=max_columns)


PIN_CODES = ("✗", "!", "✓", "")  # 0 pin set fails, 1 this pin fails (backup holds), 2 survives, 3 no match today


def pin_grid(pins: pd.DataFrame) -> PatternGrid:
    """Profile · pin rows grouped by what happens to them under every scenario."""
    matches = pins[c.MATCHES].astype(bool).to_numpy()
    set_breaks = pins[c.SET_BREAKS].astype(bool).to_numpy()
    breaks = pins[c.BREAKS].astype(bool).to_numpy()
    code = np.where(~matches, 3, np.where(set_breaks, 0, np.where(breaks, 1, 2)))
    cells = pd.DataFrame({
        "row": (pins[c.PROFILE].astype(str) + " · " + pins[c.PIN].astype(str).map(lambda p: _short(p, 18))).to_numpy(),
        c.SCENARIO: pins[c.SCENARIO].astype(str).to_numpy(), GRID_CODE: code,
        c.DEVICES: pins[c.DEVICES].astype("int64").to_numpy(),
    })
    return group_patterns(cells, row="row", column=c.SCENARIO,
                          columns=list(dict.fromkeys(pins[c.SCENARIO].astype(str))))


def pin_risk_matrix(pins: pd.DataFrame, *, title: str = "Pinning risk", max_rows: int = MAX_ROWS) -> Figure:
    """Pin patterns x scenarios: which pin (set) breaks under which likely AWS change, with device counts.

    Cell colours: vermillion — the whole pin set stops matching (devices
    disconnect); orange — this pin stops matching but another pin of the set
    still matches; green — survives; grey — the pin does not match today.
    Profile · pin rows with the same outcome in every scenario share a row,
    worst first.

    Args:
        pins: The audit's pins frame (``profile``, ``devices``, ``pin``, ``scenario``, ``matches``,
            ``breaks``, ``set_breaks``).
        title: Figure title.
        max_rows: Pattern rows drawn; the figure says what is left out, with counts.
    """
    if pins.empty:
        return _empty("No profile pins a certificate or key.", title)
    return _draw_grid(pin_grid(pins), title=title,
                      legend="✗ pin set fails: devices disconnect · ! this pin fails, a backup holds · ✓ survives"
                             " · grey: no match today",
                      colours=[VERMILLION, ORANGE, GREEN, GREY], symbols=PIN_CODES,
                      ylabel="Pin pattern",
                      xlabel="Scenario (a likely change on the AWS side)", short_column=lambda s: _short(s, 24),
                      max_rows=max_rows, max_columns=MAX_COLUMNS, noun="profile · pin pairs")


@dataclass(frozen=True, slots=True)
class TextGeometry:
    """Where a figure's text lands in its PNG, measured from matplotlib's own layout at ``dpi``.

    Attributes:
        min_font_px: Smallest font size of any visible text, in PNG pixels.
        clipped: Texts whose box leaves the saved image.
        overlapping: Pairs of tick labels on one axis whose boxes overlap, plus cell texts wider
            than their cell (a grid's cells are one data unit wide).
        texts: Visible non-empty texts measured.
    """

    min_font_px: float
    clipped: int
    overlapping: int
    texts: int


def text_geometry(figure: Figure, dpi: float = REPORT_DPI, *, drawn: bool = False) -> TextGeometry:
    """Measure every visible text of ``figure`` as it will be drawn at ``dpi`` (see :class:`TextGeometry`).

    Args:
        figure: The figure.
        dpi: The resolution it is (or will be) saved at.
        drawn: The figure was just saved at ``dpi`` (``savefig`` ran its layout and placed every tick):
            measure without drawing it again, which is most of the cost of a figure of hundreds of rows.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(figure)
    figure.set_dpi(dpi)
    renderer = figure.canvas.get_renderer()
    if not drawn:
        figure.draw(renderer)
    boxes: dict[int, Any] = {}

    def box_of(text: Text) -> Any:  # each text's box once: the checks below ask for most boxes twice or more
        key = id(text)
        if key not in boxes:
            boxes[key] = text.get_window_extent(renderer)
        return boxes[key]

    tight = figure.get_tightbbox(renderer)  # inches: what bbox_inches="tight" keeps
    width, height = tight.width * dpi, tight.height * dpi
    x0, y0 = tight.x0 * dpi, tight.y0 * dpi
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    sizes, clipped = [], 0
    for text in texts:
        box = box_of(text)
        if box.width <= 0:
            continue
        sizes.append(text.get_fontsize() * dpi / 72.0)
        if box.x0 < x0 - 1 or box.y0 < y0 - 1 or box.x1 > x0 + width + 1 or box.y1 > y0 + height + 1:
            clipped += 1
    overlapping = 0
    for ax in figure.axes:
        for labels in (ax.get_yticklabels(), ax.get_xticklabels()):
            ordered = sorted((box_of(t) for t in labels if t.get_text().strip()), key=lambda b: (b.y0, b.x0))
            overlapping += sum(1 for a, b in zip(ordered, ordered[1:]) if a.overlaps(b)
                               and min(a.y1, b.y1) - max(a.y0, b.y0) > 1 and min(a.x1, b.x1) - max(a.x0, b.x0) > 1)
        if ax.images:  # a grid drawn with imshow: each annotation must fit its cell
            cell_px = abs(ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0])
            overlapping += sum(1 for t in ax.texts if t.get_text().strip() and box_of(t).width > cell_px - 2)
    # Stacked panels (small multiples): no tick label or title of one panel may run into another panel.
    areas = [ax.get_window_extent(renderer) for ax in figure.axes]
    for i, ax in enumerate(figure.axes):
        own = [t for t in (*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.xaxis.label)
               if t.get_visible() and t.get_text().strip()]
        for text in own:
            box = box_of(text)
            overlapping += sum(1 for j, area in enumerate(areas) if j != i and box.overlaps(area)
                               and min(box.y1, area.y1) - max(box.y0, area.y0) > 1
                               and min(box.x1, area.x1) - max(box.x0, area.x0) > 1)
    return TextGeometry(min_font_px=min(sizes) if sizes else 0.0, clipped=clipped, overlapping=overlapping,
                        texts=len(sizes))
