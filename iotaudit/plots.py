"""Figures of the report set, drawn with matplotlib's Agg backend from audit frames.

Each function takes frames and returns a :class:`matplotlib.figure.Figure`
(not registered with pyplot, so nothing leaks between calls).  Colours are
the Okabe-Ito palette, distinguishable with the common colour-vision
deficiencies (Okabe & Ito, "Color Universal Design", 2008); verdicts also
carry a symbol so they survive a grey-scale print.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .columns import VERDICTS_WORST_FIRST  # noqa: E402

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
MAX_ROWS = 40
MAX_COLUMNS = 30


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


def coverage_heatmap(coverage: pd.DataFrame, *, title: str = "Root coverage") -> Figure:
    """Profiles x endpoint chains, coloured by verdict, annotated with device counts.

    A column is one chain an endpoint serves: ``host:port`` and the leaf key
    type; when several probes met the same chain, the cell shows the worst
    verdict.  At most :data:`MAX_ROWS` profiles (worst and largest first) and
    :data:`MAX_COLUMNS` chains are drawn; the title says when some are left out.

    Args:
        coverage: The audit's coverage frame (``profile``, ``devices``, ``host``, ``port``,
            ``key_type``, ``verdict``).
        title: Figure title.
    """
    need = {"profile", "devices", "host", "port", "key_type", "verdict"}
    met = coverage[coverage["verdict"].astype(str) != "not-applicable"] if "verdict" in coverage.columns else coverage
    if coverage.empty or not need <= set(coverage.columns) or met.empty:
        return _empty("No profile meets any served chain.", title)
    frame = met.copy()
    hosts = frame["host"].astype(str).str.replace(".amazonaws.com", "", regex=False)
    frame["chain"] = hosts + ":" + frame["port"].astype(str) + "\n" + frame["key_type"].astype(str)
    frame["profile"] = frame["profile"].astype(str)
    frame["rank"] = frame["verdict"].astype(str).map(VERDICT_RANK).fillna(3).astype(int)
    cell = frame.groupby(["profile", "chain"], observed=True).agg(rank=("rank", "min"), devices=("devices", "max")).reset_index()
    profiles = cell.groupby("profile").agg(rank=("rank", "min"), devices=("devices", "max"))
    profiles = profiles.sort_values(["rank", "devices"], ascending=[True, False])
    chains = sorted(cell["chain"].unique())
    dropped_rows = max(0, len(profiles) - MAX_ROWS)
    dropped_cols = max(0, len(chains) - MAX_COLUMNS)
    rows = list(profiles.index[:MAX_ROWS])
    chains = chains[:MAX_COLUMNS]
    grid = np.full((len(rows), len(chains)), 3, dtype=int)
    counts = np.zeros((len(rows), len(chains)), dtype=np.int64)
    index_r = {p: i for i, p in enumerate(rows)}
    index_c = {ch: j for j, ch in enumerate(chains)}
    for p, ch, rank, devices in zip(cell["profile"], cell["chain"], cell["rank"], cell["devices"], strict=True):
        if p in index_r and ch in index_c:
            grid[index_r[p], index_c[ch]] = rank
            counts[index_r[p], index_c[ch]] = devices
    order = ["broken", "at-risk", "covered", "not-applicable"]
    cmap = ListedColormap([VERDICT_STYLE[v][0] for v in order])
    width = min(22, 3.5 + 1.15 * len(chains))
    height = min(24, 2.2 + 0.42 * len(rows))
    figure = Figure(figsize=(width, height))
    ax = figure.add_subplot()
    ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
    for i in range(len(rows)):
        for j in range(len(chains)):
            verdict = order[grid[i, j]]
            if verdict == "not-applicable":
                continue
            colour = "white" if verdict in ("broken",) else "black"
            ax.text(j, i, f"{VERDICT_STYLE[verdict][1]} {counts[i, j]:,}", ha="center", va="center",
                    fontsize=8, color=colour)
    ax.set_xticks(range(len(chains)), [_short(ch.split("\n")[0], 44) + "\n" + ch.split("\n")[1] for ch in chains],
                  rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [_short(r, 40) for r in rows], fontsize=9)
    ax.set_xticks(np.arange(-0.5, len(chains)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("Endpoint chain (host:port without .amazonaws.com, leaf key type)")
    ax.set_ylabel("Firmware profile")
    left_out = []
    if dropped_rows:
        left_out.append(f"{dropped_rows} more profiles not shown")
    if dropped_cols:
        left_out.append(f"{dropped_cols} more chains not shown")
    ax.set_title(title + (f"  ({'; '.join(left_out)})" if left_out else ""), fontsize=12, fontweight="bold")
    handles = [Patch(facecolor=VERDICT_STYLE[v][0], edgecolor="none",
                     label=f"{VERDICT_STYLE[v][1]} {VERDICT_STYLE[v][2]}".strip()) for v in order]
    ax.legend(handles=handles, title="Verdict (cell: devices)", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, fontsize=9)
    figure.tight_layout()
    return figure


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
    anchor validity in green.  A profile's bar ends at its break "if AWS keeps
    renewing leaf certificates" (``firmware_break_date``: the date to update the
    firmware by); a black diamond marks its break "if nothing changes"
    (``break_date``, the served chain as is) when that is earlier.  Bars that
    run past the horizon end in an arrow.  The lower panel is the cliff:
    devices still connected over time, solid if AWS keeps renewing leaf
    certificates, dashed if nothing changes.  Frames without the renewed
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
    if not break_dates.empty and "break_date" in break_dates.columns:
        for row in break_dates.to_dict("records"):
            when = row["firmware_break_date"] if renewed else row["break_date"]
            devices = int(row.get("devices", 0) or 0)
            label = f"{_short(str(row['profile']), 30)} ({devices:,} devices)"
            if str(row.get("state", "")) == "broken":  # no valid path at as_of: nothing left to expire
                bars.append((label, start, start, "path"))
                continue
            until = end + pd.Timedelta(days=1) if pd.isna(when) else pd.Timestamp(when)
            bars.append((label, start, until, "path"))
            served = row["break_date"]
            if renewed and not pd.isna(served) and pd.Timestamp(served) < until:
                served_breaks[label] = pd.Timestamp(served)
    if not anchors_expiry.empty and "not_after" in anchors_expiry.columns:
        key = "anchor_sha256" if "anchor_sha256" in anchors_expiry.columns else "anchor_name"
        anchors = anchors_expiry.drop_duplicates(subset=[key])
        for row in anchors.to_dict("records"):
            bars.append((_short(str(row.get("anchor_name") or str(row.get(key, ""))[:12]), 44), left,
                         pd.Timestamp(row["not_after"]), "anchor"))
    if not bars:
        return _empty("No certificate, path or anchor to show.", title)
    dropped = max(0, len(bars) - max_bars)
    if dropped:  # keep the soonest of each kind, proportionally
        bars = sorted(bars, key=lambda b: b[2])[:max_bars]
    kinds_order = {"path": 0, "served": 1, "anchor": 2}
    bars.sort(key=lambda b: (kinds_order[b[3]], b[2]))
    path_label = ("Firmware profile works until (first break if AWS keeps renewing leaf certificates)" if renewed
                  else "Firmware profile works until (first break date)")
    style = {
        "served": dict(color=BLUE, hatch="", label="Served certificate valid until (not_after)"),
        "path": dict(color=VERMILLION, hatch="///", label=path_label),
        "anchor": dict(color=GREEN, hatch="..", label="Trust anchor in firmware valid until"),
    }
    figure = Figure(figsize=(13, 2.8 + 0.28 * len(bars) + 2.6))
    grid = figure.add_gridspec(2, 1, height_ratios=[max(3.0, 0.28 * len(bars)), 2.4], hspace=0.12)
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
                        xytext=(-4, 0), textcoords="offset points", ha="right", va="center", fontsize=7, color="black")
        elif kind == "path" and until == start:
            ax.annotate("broken at as_of", (mdates.date2num(start), y), xytext=(4, 0), textcoords="offset points",
                        ha="left", va="center", fontsize=7, color=VERMILLION, fontweight="bold")
        elif until <= start:
            ax.annotate(f"expired {until:%Y-%m-%d}", (mdates.date2num(max(until, left)), y), xytext=(4, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=7, color=VERMILLION)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(mdates.date2num(start), color="black", linestyle="--", linewidth=1.2)
    ax.text(mdates.date2num(start), -0.9, f" as of {start:%Y-%m-%d}", fontsize=8, va="bottom", ha="left")
    ax.set_xlim(mdates.date2num(left), mdates.date2num(end))
    handles, labels = ax.get_legend_handles_labels()
    order = [style["path"]["label"], MARKER_LABEL, style["served"]["label"], style["anchor"]["label"]]
    legend = sorted(zip(handles, labels, strict=True), key=lambda h: order.index(h[1]) if h[1] in order else len(order))
    ax.legend([h for h, _ in legend], [lab for _, lab in legend], loc="lower left", bbox_to_anchor=(0.0, 1.0),
              ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", color="#e0e0e0")
    ax.tick_params(labelbottom=False)
    suffix = f"  ({dropped} more bars not shown)" if dropped else ""
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
                      label="If AWS keeps renewing leaf certificates (the firmware side decides)" if both
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
                                  fontsize=8, color=VERMILLION, fontweight="bold", rotation=90, va="bottom")
        if both:
            losing = cliff[cliff["devices_losing"] > 0]
            for d, n in zip(_utc(losing["date"]), losing["devices_losing"], strict=True):
                ax_cliff.annotate(f"−{int(n):,}", (mdates.date2num(d), tallest * 1.24), xytext=(-3, 0),
                                  textcoords="offset points", fontsize=7, color="#333333", rotation=90, va="top",
                                  ha="right")
        ax_cliff.set_ylim(0, tallest * (1.28 if both else 1.1) if tallest > 0 else 1)
        ax_cliff.legend(loc="lower right", fontsize=8, frameon=True, framealpha=0.9)
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
    figure.subplots_adjust(left=0.28, right=0.98, top=1 - 0.9 / figure.get_figheight(), bottom=0.06)
    return figure


def pin_risk_matrix(pins: pd.DataFrame, *, title: str = "Pinning risk") -> Figure:
    """Pins x scenarios: which pin (set) breaks under which likely AWS change, with device counts.

    Cell colours: vermillion — the whole pin set stops matching (devices
    disconnect); orange — this pin stops matching but another pin of the set
    still matches; green — survives; grey — the pin does not match today.

    Args:
        pins: The audit's pins frame (``profile``, ``devices``, ``pin``, ``scenario``, ``matches``,
            ``breaks``, ``set_breaks``).
        title: Figure title.
    """
    need = {"profile", "pin", "scenario", "breaks"}
    if pins.empty or not need <= set(pins.columns):
        return _empty("No profile pins a certificate or key.", title)
    frame = pins.copy()
    frame["row"] = frame["profile"].astype(str).map(lambda p: _short(p, 24)) + " · " + frame["pin"].astype(str).map(
        lambda p: _short(p, 26))
    scenarios = list(dict.fromkeys(frame["scenario"].astype(str)))
    rows = list(dict.fromkeys(frame["row"]))
    dropped = max(0, len(rows) - MAX_ROWS)
    rows = rows[:MAX_ROWS]
    code = np.full((len(rows), len(scenarios)), 3, dtype=int)  # 0 set breaks, 1 pin breaks, 2 survives, 3 no match
    counts = np.zeros_like(code, dtype=np.int64)
    ri = {r: i for i, r in enumerate(rows)}
    si = {s: j for j, s in enumerate(scenarios)}
    for rec in frame.to_dict("records"):
        if rec["row"] not in ri:
            continue
        i, j = ri[rec["row"]], si[str(rec["scenario"])]
        matches = bool(rec.get("matches", True))
        if not matches:
            value = 3
        elif bool(rec.get("set_breaks", False)):
            value = 0
        elif bool(rec["breaks"]):
            value = 1
        else:
            value = 2
        code[i, j] = min(code[i, j], value)
        counts[i, j] = int(rec.get("devices", 0) or 0)
    colours = [VERMILLION, ORANGE, GREEN, GREY]
    labels = ["✗ pin set fails: devices disconnect", "! this pin fails, a backup holds", "✓ survives",
              "does not match today"]
    figure = Figure(figsize=(min(20, 4.5 + 1.6 * len(scenarios)), min(24, 2.4 + 0.42 * len(rows))))
    ax = figure.add_subplot()
    ax.imshow(code, cmap=ListedColormap(colours), vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest")
    symbols = ["✗", "!", "✓", ""]
    for i in range(len(rows)):
        for j in range(len(scenarios)):
            ax.text(j, i, f"{symbols[code[i, j]]} {counts[i, j]:,}".strip(), ha="center", va="center", fontsize=8,
                    color="white" if code[i, j] == 0 else "black")
    ax.set_xticks(range(len(scenarios)), scenarios, rotation=25, ha="right", fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xticks(np.arange(-0.5, len(scenarios)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("Scenario (a likely change on the AWS side)")
    ax.set_ylabel("Firmware profile · pin")
    ax.set_title(title + (f"  ({dropped} more pins not shown)" if dropped else ""), fontsize=12, fontweight="bold")
    ax.legend(handles=[Patch(facecolor=col, label=lab) for col, lab in zip(colours, labels, strict=True)],
              title="Cell: devices", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    figure.tight_layout()
    return figure
