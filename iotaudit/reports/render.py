"""HTML of the report set: tables, the offline page template, index.html, the single-file set, self-containment.

Every page works from a folder on disk with no network: figures are base64
PNG, the one script (sort, filter and page the tables) is inline in the page,
and every link between pages and to the data is relative, so the folder can
be zipped and mailed.  :func:`external_references` is the check that no page
would fetch anything.

Tables are escaped on the server (:func:`html.escape` on every cell); the
script only moves existing rows, reads ``textContent`` and toggles
``hidden``, so a device named ``<img src=x onerror=alert(1)>`` stays text
when sorted or filtered.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..auditing import SKIPPED_ROWS_LISTED
from ..errors import ReportError
from .pages import (
    AUDIT_SUBDIR,
    INDEX_HTML,
    NOTEBOOK_ONLY_TAG,
    SINGLE_FILE_HTML,
    SKIPPED_COLUMN,
    SKIPPED_REASON,
    SKIPPED_ROW,
    SKIPPED_ROWS,
    SUMMARY_JSON,
    NotebookSpec,
)

PAGE_ROWS = 25  # rows per browser page of a table

# Sort, filter and page every table.iotaudit-table.  Our own ~70 lines rather than a DataTables bundle
# (itables' offline mode embeds ~900 kB per page: /work/shared/notes/offline-html.md).  Only DOM moves,
# textContent and the hidden property: no innerHTML, so escaped text stays text.
TABLE_SCRIPT = r"""
(function () {
  "use strict";
  var PAGE = %(page)d;
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    if (v !== null && v !== "" && !isNaN(Number(v))) { return {n: Number(v), t: ""}; }
    return {n: null, t: (v !== null ? v : cell.textContent).toLowerCase()};
  }
  function compare(a, b) {
    if (a.n !== null && b.n !== null) { return a.n - b.n; }
    if (a.n !== null) { return -1; }
    if (b.n !== null) { return 1; }
    return a.t < b.t ? -1 : (a.t > b.t ? 1 : 0);
  }
  function button(text) {
    var b = document.createElement("button");
    b.type = "button"; b.textContent = text; b.className = "iotaudit-page-button";
    return b;
  }
  function enhance(table) {
    var body = table.tBodies[0];
    if (!body || !table.tHead) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var state = {col: -1, asc: true, query: "", page: 0, order: rows.slice()};
    var bar = document.createElement("div");
    bar.className = "iotaudit-controls";
    var input = document.createElement("input");
    input.type = "search"; input.className = "iotaudit-filter"; input.placeholder = "Filter rows";
    input.setAttribute("aria-label", "Filter the rows of this table");
    var prev = button("\u2039 previous"), next = button("next \u203a");
    var status = document.createElement("span");
    status.className = "iotaudit-status"; status.setAttribute("aria-live", "polite");
    bar.appendChild(input); bar.appendChild(prev); bar.appendChild(next); bar.appendChild(status);
    table.parentNode.insertBefore(bar, table);
    function draw() {
      var q = state.query;
      var matching = state.order.filter(function (r) {
        return q === "" || r.textContent.toLowerCase().indexOf(q) !== -1;
      });
      var pages = Math.max(1, Math.ceil(matching.length / PAGE));
      if (state.page >= pages) { state.page = pages - 1; }
      var first = state.page * PAGE, last = Math.min(matching.length, first + PAGE);
      var visible = new Set(matching.slice(first, last));
      state.order.forEach(function (r) { body.appendChild(r); r.hidden = !visible.has(r); });
      status.textContent = matching.length === 0 ? "no row matches" :
        "rows " + (first + 1) + "\u2013" + last + " of " + matching.length + (q ? " matching" : "") +
        " (" + rows.length + " in this page)";
      prev.disabled = state.page === 0; next.disabled = state.page >= pages - 1;
      prev.hidden = next.hidden = rows.length <= PAGE;
      table.setAttribute("data-matching", String(matching.length));
    }
    headers.forEach(function (th, i) {
      th.tabIndex = 0; th.classList.add("iotaudit-sortable"); th.setAttribute("aria-sort", "none");
      function sort() {
        state.asc = state.col === i ? !state.asc : true;
        state.col = i;
        var keyed = rows.map(function (r, k) { return {r: r, k: key(r.cells[i]), o: k}; });
        keyed.sort(function (a, b) { var d = compare(a.k, b.k); return (state.asc ? d : -d) || a.o - b.o; });
        state.order = keyed.map(function (x) { return x.r; });
        state.page = 0;
        headers.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", state.asc ? "ascending" : "descending");
        draw();
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); }
      });
    });
    input.addEventListener("input", function () { state.query = input.value.trim().toLowerCase(); state.page = 0; draw(); });
    prev.addEventListener("click", function () { state.page -= 1; draw(); });
    next.addEventListener("click", function () { state.page += 1; draw(); });
    draw();
    table.setAttribute("data-enhanced", "yes");
  }
  function start() { Array.prototype.forEach.call(document.querySelectorAll("table.iotaudit-table"), enhance); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
""" % {"page": PAGE_ROWS}

TABLE_CSS = """
table.iotaudit-table { border-collapse: collapse; margin: 0.3em 0 1.5em 0; font-size: 0.92em; }
table.iotaudit-table th { background: #eef2f7; text-align: left; padding: 4px 10px; border-bottom: 2px solid #9aa9bc; }
table.iotaudit-table th.iotaudit-sortable { cursor: pointer; }
table.iotaudit-table th.iotaudit-sortable::after { content: " \\2195"; color: #9aa9bc; font-size: 0.8em; }
table.iotaudit-table th[aria-sort="ascending"]::after { content: " \\25B2"; color: #333; }
table.iotaudit-table th[aria-sort="descending"]::after { content: " \\25BC"; color: #333; }
table.iotaudit-table td { padding: 3px 10px; border-bottom: 1px solid #e3e7ec; vertical-align: top;
  max-width: 38em; overflow-wrap: anywhere; text-align: left; }
table.iotaudit-table tr:nth-child(even) td { background: #f8f9fb; }
.iotaudit-controls { margin: 0.4em 0 0.2em 0; font-size: 0.9em; }
.iotaudit-controls input { padding: 2px 6px; margin-right: 0.6em; }
.iotaudit-controls button { margin-right: 0.3em; }
.iotaudit-status { color: #555; margin-left: 0.4em; }
p.iotaudit-caption { color: #555; margin-bottom: 0.2em; }
p.iotaudit-reach { color: #333; font-size: 0.9em; margin: 0.2em 0; }
p.iotaudit-empty { color: #2a7; font-style: italic; }
"""


@dataclass(frozen=True, slots=True)
class TableRows:
    """A table ready to render: display text per cell, sort keys, and how the page reaches every row.

    Attributes:
        labels: Column headers.
        cells: Rows of display text (not yet escaped).
        sort_keys: Rows of sort keys (a number, an ISO date, or None to sort by the text).
        total: Rows of the complete table (``len(cells)`` when the page holds them all).
        complete_csv: Relative link to the complete table when the page holds only part of it.
    """

    labels: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    sort_keys: tuple[tuple[str | None, ...], ...]
    total: int
    complete_csv: str = ""

    def __post_init__(self) -> None:
        if any(len(row) != len(self.labels) for row in self.cells):
            raise ValueError("every row needs one cell per label")
        if len(self.sort_keys) != len(self.cells):
            raise ValueError("one row of sort keys per row of cells")
        if self.total < len(self.cells):
            raise ValueError("total cannot be less than the rows shown")
        if self.total > len(self.cells) and not self.complete_csv:
            raise ValueError("a table cut short must link its complete CSV")


def reach_note(rows: TableRows, order: str) -> str:
    """The sentence above a table saying where every row is (escaped HTML)."""
    esc = html.escape
    shown, total = len(rows.cells), rows.total
    if shown == total:
        every = "The only row is" if total == 1 else f"All {total:,} rows are"
        return (f'<p class="iotaudit-reach">{every} in this page, {esc(order)}: '
                f"click a header to sort, type to filter, {PAGE_ROWS} rows per screen.</p>")
    parquet = rows.complete_csv.removesuffix(".csv") + ".parquet"
    return (f'<p class="iotaudit-reach">This page holds the first {shown:,} of {total:,} rows ({esc(order)}); '
            f"{total - shown:,} more are left out here. Every row: "
            f'<a class="iotaudit-data" href="{esc(rows.complete_csv)}">{esc(rows.complete_csv)}</a> '
            f'(also <a class="iotaudit-data" href="{esc(parquet)}">{esc(Path(parquet).name)}</a>).</p>')


def table_markup(rows: TableRows, *, caption: str = "", order: str = "worst first") -> str:
    """An escaped ``<table class="iotaudit-table">`` with its caption and reach note."""
    esc = html.escape
    head = "".join(f'<th scope="col">{esc(label)}</th>' for label in rows.labels)
    body = []
    for cells, keys in zip(rows.cells, rows.sort_keys, strict=True):
        tds = "".join(f'<td data-sort="{esc(key)}">{esc(text)}</td>' if key is not None else f"<td>{esc(text)}</td>"
                      for text, key in zip(cells, keys, strict=True))
        body.append(f"<tr>{tds}</tr>")
    cap = f'<p class="iotaudit-caption">{esc(caption)}</p>' if caption else ""
    return (f'<div class="iotaudit-block">{cap}{reach_note(rows, order)}'
            f'<table class="iotaudit-table" data-total="{rows.total}" data-rows="{len(rows.cells)}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def empty_markup(message: str) -> str:
    """The sentence shown instead of a table with no rows."""
    return f'<p class="iotaudit-empty">{html.escape(message)}</p>'


# --- notebook pages -------------------------------------------------------------------

# The lab template with every remote reference removed: require.js, MathJax,
# mermaid and the widget manager are loaded from a CDN by nbconvert's default
# lab template (templates/lab/index.html.j2, base/mathjax.html.j2).  Reports
# have no widgets, math or diagrams, so those blocks are dropped; the table
# script is inlined in their place.
_TEMPLATE_NAME = "iotaudit_offline.html.j2"
PAGE_CSS = """
body { max-width: 1200px; margin: 0 auto; }
h1.iotaudit-title { margin-bottom: 0.1em; }
p.iotaudit-section { font-size: 1.2em; color: #555; margin-top: 0; }
ul.iotaudit-facts { list-style: none; padding-left: 0; color: #444; }
ul.iotaudit-facts li { display: inline-block; margin-right: 1.5em; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table.iotaudit-table td, .jp-RenderedHTMLCommon table.iotaudit-table th { text-align: left; }
""" + TABLE_CSS
_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}\n"
    "{%- block html_head_js -%}<script>" + TABLE_SCRIPT + "</script>{%- endblock html_head_js -%}\n"
    "{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}\n"
    "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
    "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
    '{%- block extra_css -%}<style type="text/css">' + PAGE_CSS + "</style>{%- endblock extra_css -%}\n"
)

# A resource the browser would fetch: src/href/poster/data attributes and CSS url()/@import.
_EXTERNAL = re.compile(
    r"""(?:\b(?:src|href|poster|data|action|srcset)\s*=\s*["']?\s*(?:https?:)?//)"""
    r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|(?:@import\s+(?:url\()?["']?\s*(?:https?:)?//)""",
    re.IGNORECASE,
)
_ANCHOR_HREF = re.compile(r"""<a\b[^>]*\bhref\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc\s*=", re.IGNORECASE)


def external_references(page: str) -> list[str]:
    """Every place in ``page`` that would make a browser fetch something from the network or another file.

    Plain ``<a href>`` links to other sites are navigation, not fetches, and
    are not listed; a ``<script src=...>`` of any kind is (the table script
    is always inline).  Returns snippets around each hit (empty when the page
    is self-contained).
    """
    anchors = {m.start() for m in _ANCHOR_HREF.finditer(page)}
    hits = []
    for match in _EXTERNAL.finditer(page):
        tag_start = page.rfind("<", 0, match.start())
        if tag_start in anchors and page[tag_start:match.start()].lower().startswith("<a"):
            continue
        hits.append(page[max(0, match.start() - 40): match.end() + 60])
    hits += [page[m.start(): m.end() + 80] for m in _SCRIPT_SRC.finditer(page)]
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


# --- index.html and the single file --------------------------------------------------------


def _fmt_date(value: Any) -> str:
    if value is None or value == "" or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _fmt_time(value: Any) -> str:
    if not value:
        return "—"
    return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def skipped_rows_markup(skipped: Sequence[Mapping[str, Any]], count: int, source: str, *,
                        problems: int | None = None) -> str:
    """The warning and table of inventory rows left out, or a sentence that none were.

    Args:
        skipped: The problems (row, column, reason), in file order: all of them, or the first ones.
        count: Rows left out (a row may have several problems).
        source: The inventory.
        problems: How many problems there are in all (default ``len(skipped)``); past
            :data:`SKIPPED_ROWS_LISTED` the page keeps the first and links ``audit/skipped_rows.csv``.
    """
    esc = html.escape
    if not count:
        return '<p class="iotaudit-empty">No inventory row was left out.</p>'
    shown = list(skipped[:SKIPPED_ROWS_LISTED])
    total = max(len(skipped), problems or 0)
    rows = TableRows(labels=("Row", "Column", "Why it was left out"),
                     cells=tuple((str(r[SKIPPED_ROW]), str(r[SKIPPED_COLUMN] or "—"), str(r[SKIPPED_REASON]))
                                 for r in shown),
                     sort_keys=tuple((str(r[SKIPPED_ROW]), None, None) for r in shown), total=total,
                     complete_csv=f"{AUDIT_SUBDIR}/{SKIPPED_ROWS}" if len(shown) < total else "")
    return (f'<p class="iotaudit-warning"><b>{count:,} inventory row(s) of {esc(source)} were left out</b> '
            "(--skip-bad-rows): their devices are in no number of this report.</p>"
            + (table_markup(rows, order="in file order") if shown else ""))


def profiles_and_devices(profiles: Sequence[str], devices: int, most: int = 3) -> str:
    """``"fw-a, fw-b and 3 more: 120 devices"``."""
    shown = ", ".join(profiles[:most]) + (f" and {len(profiles) - most} more" if len(profiles) > most else "")
    return f"{shown}: {devices:,} devices"


def _first_profiles(summary: Mapping[str, Any]) -> str:
    """``": fw-a and 2 more: 30 devices"``: who must be updated first (summary.json's earliest_firmware_break_*)."""
    names = [str(n) for n in summary.get("earliest_firmware_break_profiles") or []]
    if not names:
        return ""
    return ": " + profiles_and_devices(names, int(summary.get("earliest_firmware_break_devices") or 0), most=1)


def _is_today(date: Any, as_of: Any) -> bool:
    """Whether an ISO date-time falls on the evaluation day (a firmware nothing AWS serves validates now)."""
    return bool(date) and bool(as_of) and str(date)[:10] <= str(as_of)[:10]


def index_page(summary: Mapping[str, Any], specs: Sequence[NotebookSpec], data_files: Sequence[str], *,
               single_file: bool = False) -> str:
    """``index.html``: headline numbers, skipped rows, and relative links to every report and data file."""
    esc = html.escape
    verdicts = summary.get("devices_by_verdict", {})
    cards = [
        ("Devices", f"{summary.get('devices', 0):,}", ""),
        ("Broken today", f"{verdicts.get('broken', 0):,}", "bad" if verdicts.get("broken") else "good"),
        ("At risk", f"{verdicts.get('at-risk', 0):,}", "warn" if verdicts.get("at-risk") else "good"),
        ("Covered", f"{verdicts.get('covered', 0):,}", ""),
        ("Inventory rows left out", f"{summary.get('skipped_rows', 0):,}", "warn" if summary.get("skipped_rows") else ""),
        ("Update firmware by (firmware side)" + _first_profiles(summary), _fmt_date(summary.get("earliest_firmware_break_date")),
         "bad" if _is_today(summary.get("earliest_firmware_break_date"), summary.get("as_of")) else ""),
        ("Earliest break (nothing changes)", _fmt_date(summary.get("earliest_break_date")), ""),
    ]
    notes = summary.get("firmware_notes")
    if isinstance(notes, Mapping):  # the report was given a scan
        cards.append(("Firmware notes: errors · warnings", f"{notes.get('errors', 0):,} · {notes.get('warnings', 0):,}",
                      "bad" if notes.get("errors") else "warn" if notes.get("warnings") else "good"))
    card_html = "".join(f'<div class="card {cls}"><div class="num">{esc(value)}</div><div class="lbl">{esc(label)}</div></div>'
                        for label, value, cls in cards)
    links = "".join(
        f'<li><a href="{esc(spec.name)}.html">{esc(spec.title)}</a> <span class="desc">— {esc(spec.description)}</span>'
        f' <a class="nb" href="{esc(spec.name)}.ipynb">executed notebook</a></li>'
        for spec in specs
    )
    if single_file:
        links += (f'<li><a href="{SINGLE_FILE_HTML}">The whole set in one file</a> '
                  '<span class="desc">— every page above in one self-contained HTML, to attach to a ticket</span></li>')
    data = "".join(f'<li><a href="{esc(name)}">{esc(name)}</a></li>' for name in data_files)
    status = "threshold crossed" if summary.get("threshold_crossed") else "nothing crosses the threshold"
    group = f" · group {summary['group']}" if summary.get("group") else ""
    skipped = skipped_rows_markup(summary.get("skipped_row_details", []), int(summary.get("skipped_rows", 0)),
                                  str(summary.get("inventory", "")), problems=summary.get("skipped_problems"))
    title = esc(str(summary.get("title", "iotaudit report")))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
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
p.iotaudit-warning {{ border-left: 4px solid #e69f00; padding-left: 8px; }}
li {{ margin: 0.5em 0; }}
.desc {{ color: #555; }}
a.nb {{ font-size: 0.85em; color: #777; }}
footer {{ margin-top: 3em; color: #777; font-size: 0.85em; }}
{TABLE_CSS}
</style>
<script>{TABLE_SCRIPT}</script>
</head>
<body>
<h1>{title}</h1>
<p class="meta">Evaluated at {esc(_fmt_time(summary.get('as_of')))}{esc(group)} · fail-on {esc(str(summary.get('fail_on', '')))}: {esc(status)}</p>
<div class="cards">{card_html}</div>
<h2>Reports</h2>
<ul>{links}</ul>
<h2>Inventory rows left out</h2>
{skipped}
<h2>Data</h2>
<p>Every table of the audit, complete, next to this page (relative links: the folder can be zipped and mailed).</p>
<ul>
<li><a href="{SUMMARY_JSON}">{SUMMARY_JSON}</a> — the headline numbers, machine-readable</li>
{data}
</ul>
<footer>iotaudit {esc(__version__)} · run {esc(str(summary.get('run', '')))}</footer>
</body>
</html>
"""


_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.S | re.I)
_HEAD_STYLE = re.compile(r"<style[^>]*>.*?</style>", re.S | re.I)
_RELATIVE_LINK = re.compile(r"""<a\b([^>]*?)\bhref="(?![#]|https?:|mailto:)([^"]*)"([^>]*)>(.*?)</a>""", re.S | re.I)


def single_file_page(out: Path, specs: Sequence[NotebookSpec], title: str) -> str:
    """Every page of the report directory ``out`` in one self-contained HTML document.

    Page links become in-page anchors (``#page-<name>``); links to data files
    (which a single mailed file cannot carry) become text that says where
    they are.

    Raises:
        ReportError: when the result would fetch anything.
    """
    pages = [("index", "Index", (out / INDEX_HTML).read_text(encoding="utf-8"))]
    pages += [(s.name, s.title, (out / f"{s.name}.html").read_text(encoding="utf-8")) for s in specs]
    styles: list[str] = []
    for _name, _title, text in pages:
        head = text.split("</head>", 1)[0]
        for style in _HEAD_STYLE.findall(head):
            if style not in styles:
                styles.append(style)
    names = {name for name, _t, _x in pages}

    def relink(match: re.Match[str]) -> str:
        before, target, after, text = match.groups()
        stem = target.removesuffix(".html")
        if target.endswith(".html") and stem in names:
            return f'<a{before}href="#page-{html.escape(stem)}"{after}>{text}</a>'
        if target == SINGLE_FILE_HTML:
            return '<span class="iotaudit-nolink">this file</span>'
        return f'<span class="iotaudit-nolink" title="in the report folder">{text} (in the report folder)</span>'

    nav = " · ".join(f'<a href="#page-{html.escape(name)}">{html.escape(t)}</a>' for name, t, _x in pages)
    sections = []
    for name, _title, text in pages:
        found = _BODY.search(text)
        inner = found.group(1) if found else text
        sections.append(f'<section id="page-{html.escape(name)}" class="iotaudit-page">'
                        f"{_RELATIVE_LINK.sub(relink, inner)}</section><hr>")
    document = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
                + "\n".join(styles) + f"\n<script>{TABLE_SCRIPT}</script>\n</head>\n<body>\n"
                f'<nav class="iotaudit-nav">{nav}</nav>\n' + "\n".join(sections) + "\n</body>\n</html>\n")
    refs = external_references(document)
    if refs:
        raise ReportError(out / SINGLE_FILE_HTML, None, f"single-file HTML references network resources: {refs[:3]}")
    return document


def audit_data_files(out: Path) -> list[str]:
    """Relative paths of the audit's data files inside report directory ``out``, sorted."""
    audit_dir = out / AUDIT_SUBDIR
    return sorted(f"{AUDIT_SUBDIR}/{p.name}" for p in audit_dir.iterdir() if p.suffix in (".csv", ".parquet", ".json"))
