"""The report set: rendering machinery, offline HTML, escaping, atomic output, exit statuses."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import cli
from iotaudit.errors import ReportError
from iotaudit.metrics import parse_metrics
from iotaudit.reports import (
    NOTEBOOKS,
    FailOn,
    Html,
    Png,
    crosses,
    execute_notebook,
    external_references,
    notebook_to_html,
    load_inputs,
    parse_as_of,
    render_reports,
    table,
)
from iotaudit.reports.render import TABLE_SCRIPT
from tests.fixtures.reportset import HOSTILE, INVENTORY, TITLE, report_set

FIXTURES = Path(__file__).parent / "fixtures"
IMG = re.compile(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def only_the_table_script(page: str) -> bool:
    """The page's one script is the inline table script (no src, nothing else)."""
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, flags=re.S | re.I)
    return all(attrs.strip() == "" and body == TABLE_SCRIPT for attrs, body in scripts)


@pytest.fixture(scope="module")
def rendered(lab_run, tmp_path_factory):
    return report_set(lab_run, tmp_path_factory)


def tiny_notebook_set(directory: Path, *, failing: str = "") -> Path:
    """A notebook directory with the shipped names, each a copy of the tiny fixture (or the failing one)."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in NOTEBOOKS:
        source = "tiny_fails.ipynb" if spec.name == failing else "tiny_ok.ipynb"
        shutil.copy(FIXTURES / source, directory / f"{spec.name}.ipynb")
    return directory


# --- machinery, on tiny fixture notebooks --------------------------------------------------


@pytest.mark.slow  # executes notebooks
def test_kernel_runs_on_this_python_whatever_python3_kernelspec_the_machine_has(tmp_path: Path, monkeypatch):
    # A user-level "python3" kernelspec pointing at a Python without iotaudit (or none at all)
    # comes first in Jupyter's search path; the report must not depend on it.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": [str(tmp_path / "no-such-python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
         "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    executed = execute_notebook(FIXTURES / "tiny_ok.ipynb", tmp_path / "ok.ipynb", {"label": "x"})
    assert executed.exists()


@pytest.mark.slow  # executes notebooks
def test_failing_notebook_names_the_notebook_and_cell_and_keeps_it(tmp_path: Path):
    with pytest.raises(ReportError) as caught:
        execute_notebook(FIXTURES / "tiny_fails.ipynb", tmp_path / "run" / "tiny_fails.ipynb", {"divisor": 0},
                         failed_dir=tmp_path / "failed")
    err = caught.value
    assert err.notebook.endswith("tiny_fails.ipynb")
    assert err.cell == 5  # the 5th cell of the source notebook: `10 / divisor`
    assert "ZeroDivisionError" in str(err) and "10 / divisor" in str(err)
    kept = Path(err.executed)
    assert kept == tmp_path / "failed" / "tiny_fails.ipynb" and str(kept) in str(err)
    assert "papermill-error-cell-tag" in kept.read_text()


@pytest.mark.slow  # executes notebooks
def test_executed_notebook_renders_figure_and_escaped_table(tmp_path: Path):
    executed = execute_notebook(FIXTURES / "tiny_ok.ipynb", tmp_path / "ok.ipynb", {"label": HOSTILE})
    page = notebook_to_html(executed, "Tiny <title>")
    assert "<title>Tiny &lt;title&gt;</title>" in page
    assert len(IMG.findall(page)) == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert HOSTILE not in page
    assert only_the_table_script(page)  # no require.js, MathJax or mermaid either
    assert "label = " not in page  # code cells hidden


def test_external_references_finds_a_cdn_script():
    assert external_references('<script src="https://cdnjs.cloudflare.com/require.js"></script>')


def test_external_references_finds_a_protocol_relative_stylesheet():
    assert external_references('<link rel="stylesheet" href="//fonts.example.com/x.css">')


def test_external_references_finds_css_url():
    assert external_references("<style>body { background: url('http://example.com/a.png') }</style>")


def test_external_references_finds_css_import():
    assert external_references('<style>@import "https://example.com/a.css";</style>')


def test_external_references_ignores_links_and_data_uris():
    page = '<a href="https://docs.aws.amazon.com/iot/">AWS</a><img src="data:image/png;base64,AAAA">'
    assert external_references(page) == []


def test_table_escapes_values_and_keeps_only_chosen_columns():
    frame = pd.DataFrame({"profile": [HOSTILE], "secret": ["x"], "devices": [3]})
    markup = table(frame, {"profile": "Firmware profile", "devices": "Devices"})._repr_html_()
    assert "&lt;script&gt;" in markup and HOSTILE not in markup
    assert "secret" not in markup and "Firmware profile" in markup


def test_table_cut_short_says_so_and_links_the_complete_csv():
    markup = table(pd.DataFrame({"a": range(5)}), {"a": "A"}, limit=2, source="coverage").markup
    assert "first 2 of 5 rows" in markup and "3 more are left out" in markup
    assert 'href="audit/coverage.csv"' in markup and 'href="audit/coverage.parquet"' in markup
    assert markup.count("<tr>") == 1 + 2


def test_table_without_a_complete_file_keeps_every_row():
    markup = table(pd.DataFrame({"a": range(5)}), {"a": "A"}, limit=2).markup
    assert "All 5 rows are in this page" in markup and markup.count("<tr>") == 1 + 5


def test_table_with_a_misspelt_column_is_an_error_not_nothing_to_show():
    with pytest.raises(ReportError, match="verdcit"):
        table(pd.DataFrame({"verdict": ["broken"]}), {"verdcit": "Verdict"})


def test_report_inputs_frames_are_attributes_a_misspelt_frame_fails(lab_run, tmp_path: Path):
    inputs = load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit")
    assert not inputs.audit.coverage.empty
    with pytest.raises(AttributeError):
        inputs.audit.coverag  # noqa: B018
    # Every audit has its stack frames; firmware notes only come with a scan, the cross-check only when asked.
    assert inputs.stack_alternatives is not None and not inputs.stack_alternatives.empty
    assert inputs.firmware_notes is None and inputs.crosscheck is not None and inputs.crosscheck.empty


def test_one_load_path_by_hand_and_scheduled_give_the_same_frames(lab_run, tmp_path: Path):
    # Scheduled: the report prepares the audit once; by hand: load_inputs computes it the same way.
    scheduled = load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit")
    again = load_inputs(lab_run.path, "", audit_dir=tmp_path / "audit")  # loads it, needs no inventory
    by_hand = load_inputs(lab_run.path, INVENTORY)
    for frame in ("coverage", "expiry", "pins", "cliff"):
        pd.testing.assert_frame_equal(getattr(scheduled.audit, frame), getattr(by_hand.audit, frame))
        pd.testing.assert_frame_equal(getattr(scheduled.audit, frame), getattr(again.audit, frame))
    assert scheduled.as_of == by_hand.as_of == again.as_of


def test_an_audit_made_at_another_time_is_refused(lab_run, tmp_path: Path):
    load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit", as_of="2026-01-01")
    with pytest.raises(ReportError, match="the audit was made at 2026-01-01"):
        load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit", as_of="2027-01-01")


def test_png_rejects_non_png_bytes():
    with pytest.raises(ValueError, match="not a PNG"):
        Png(b"GIF89a")


def test_html_rejects_non_text():
    with pytest.raises(TypeError):
        Html(b"<p>")  # type: ignore[arg-type]


@pytest.mark.parametrize(("counts", "fail_on", "expected"), [
    ({"broken": 1, "at-risk": 0}, "broken", True),
    ({"broken": 0, "at-risk": 5}, "broken", False),
    ({"broken": 0, "at-risk": 5}, "at-risk", True),
    ({"broken": 0, "at-risk": 0, "covered": 9}, "at-risk", False),
    ({"broken": 9, "at-risk": 9}, "never", False),
])
def test_fail_on_thresholds(counts, fail_on, expected):
    assert crosses(counts, FailOn(fail_on)) is expected


def test_as_of_parsing():
    default = pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime()
    assert parse_as_of("", default) == default
    assert parse_as_of("2030-02-03", default).isoformat() == "2030-02-03T00:00:00+00:00"
    assert parse_as_of("2030-02-03T04:05:06+02:00", default).isoformat() == "2030-02-03T02:05:06+00:00"


def test_bad_as_of_is_a_report_error():
    with pytest.raises(ReportError, match="not an ISO 8601 date"):
        parse_as_of("next tuesday", pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime())


# --- the real report set, rendered once through the CLI ------------------------------------


def test_report_set_files(rendered):
    out = rendered["out"]
    for spec in NOTEBOOKS:
        assert (out / f"{spec.name}.html").is_file(), spec.name
        assert (out / f"{spec.name}.ipynb").is_file(), spec.name
    for name in ("index.html", "summary.json", "audit/summary.json", "audit/coverage.parquet", "audit/coverage.csv"):
        assert (out / name).is_file(), name
    assert not list(out.parent.glob(".report.partial-*"))


def test_exit_status_1_when_devices_are_broken(rendered):
    assert rendered["status"] == 1  # the fixture inventory has a VeriSign-only firmware on an ATS endpoint


def test_summary_json_headline_numbers(rendered):
    summary = json.loads((rendered["out"] / "summary.json").read_text())
    assert summary["title"] == TITLE
    assert summary["devices"] == 12
    assert summary["devices_by_verdict"]["broken"] == 1
    assert summary["devices_by_verdict"]["at-risk"] >= 1
    assert sum(summary["devices_by_verdict"].values()) == 12
    assert summary["threshold_crossed"] is True and summary["fail_on"] == "broken"
    assert summary["earliest_break_date"]
    # The firmware-side date (firmware_break_date): the earliest of the audit's expiry frame.
    assert summary["earliest_firmware_break_date"] == summary["audit"]["earliest_firmware_break_date"]
    assert summary["earliest_firmware_break_profiles"] and summary["earliest_firmware_break_devices"] > 0
    assert set(summary["reports"]) == {spec.name for spec in NOTEBOOKS}
    assert summary["drift"]["stopped-answering"] == 0


def test_every_page_has_title_figures_and_no_error(rendered):
    figures = {"summary": 0, "root_coverage": 1, "expiry_timeline": 1, "pinning_risk": 1, "drift": 0}
    for name, count in figures.items():
        page = (rendered["out"] / f"{name}.html").read_text()
        assert "Fleet &quot;A&quot; &lt;b&gt;report&lt;/b&gt;" in page or "Fleet \"A\" &lt;b&gt;report&lt;/b&gt;" in page, name
        images = IMG.findall(page)
        assert len(images) == count, name
        for data in images:
            assert len(data) > 5000  # a real figure, not an empty placeholder
        assert "Traceback" not in page and 'data-mime-type="application/vnd.jupyter.stderr"' not in page, name
        assert external_references(page) == [], name
        assert "iotaudit.reports.load_inputs" not in page, name  # code hidden
        assert "notebook-only" not in page and "papermill" not in page, name


def html_tables(page: str) -> list[pd.DataFrame]:
    """Every <table> of a page as a frame of unescaped cell text (no lxml needed)."""
    frames = []
    for body in re.findall(r"<table.*?</table>", page, flags=re.S):
        cells = lambda row, tag: [html.unescape(re.sub(r"<.*?>", "", c)).strip()  # noqa: E731
                                  for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", row, flags=re.S)]
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S)
        header = cells(rows[0], "th")
        frames.append(pd.DataFrame([cells(r, "td") for r in rows[1:]], columns=header))
    return frames


def test_tables_show_the_verdicts(rendered):
    page = (rendered["out"] / "root_coverage.html").read_text()
    failures = next(t for t in html_tables(page) if "Why" in t.columns)
    assert set(failures["Verdict"]) == {"broken", "at-risk"}
    assert "fw-verisign-on-ats-0.9" in set(failures.loc[failures["Verdict"] == "broken", "Firmware profile"])
    summary = (rendered["out"] / "summary.html").read_text()
    headline = next(t for t in html_tables(summary) if "Measure" in t.columns).set_index("Measure")["Value"]
    assert headline["Devices"] == "12" and headline["Devices broken today"] == "1"


def test_hostile_inventory_names_are_text_in_every_page(rendered):
    for page_path in rendered["out"].glob("*.html"):
        page = page_path.read_text()
        assert HOSTILE not in page, page_path.name
        assert only_the_table_script(page), page_path.name
    coverage = (rendered["out"] / "root_coverage.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in coverage


def test_index_links_every_report(rendered):
    index = (rendered["out"] / "index.html").read_text()
    for spec in NOTEBOOKS:
        assert f'href="{spec.name}.html"' in index
    assert external_references(index) == []
    assert "Fleet &quot;A&quot; &lt;b&gt;report&lt;/b&gt;" in index


def test_metrics_file_written(rendered):
    samples = parse_metrics(rendered["metrics"].read_text())
    names = {name for name, _, _ in samples}
    assert {"x509_cert_not_after", "iotaudit_profile_break_timestamp_seconds", "iotaudit_devices"} <= names
    devices = {labels["verdict"]: value for name, labels, value in samples if name == "iotaudit_devices"}
    assert devices["broken"] == 1


# --- CLI exit statuses and atomic output, with tiny notebooks (fast) ----------------------


@pytest.mark.slow  # executes notebooks
def test_fail_on_never_exits_0(lab_run, tmp_path: Path, capsys):
    notebooks = tiny_notebook_set(tmp_path / "nb")
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(INVENTORY), "--out",
                       str(tmp_path / "r"), "--fail-on", "never", "--notebooks", str(notebooks), "--quiet"])
    assert status == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "index.html")


@pytest.mark.slow  # executes notebooks
def test_fail_on_at_risk_exits_1(lab_run, tmp_path: Path):
    notebooks = tiny_notebook_set(tmp_path / "nb")
    outcome = render_reports(lab_run.path, INVENTORY, tmp_path / "r", fail_on="at-risk", notebooks=notebooks)
    assert outcome.exit_status == 1


def test_missing_inventory_exits_2(lab_run, tmp_path: Path, capsys):
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(tmp_path / "nope.csv"),
                       "--out", str(tmp_path / "r")])
    assert status == 2
    assert "nope.csv" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_existing_output_directory_exits_2(lab_run, tmp_path: Path, capsys):
    (tmp_path / "r").mkdir()
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(INVENTORY), "--out", str(tmp_path / "r")])
    assert status == 2
    assert "already exists" in capsys.readouterr().err


def test_unknown_fail_on_is_a_usage_error(lab_run, tmp_path: Path):
    with pytest.raises(SystemExit) as caught:
        cli.main(["report", "--run", str(lab_run.path), "--inventory", str(INVENTORY), "--out", str(tmp_path / "r"),
                  "--fail-on", "sometimes"])
    assert caught.value.code == 2


@pytest.mark.slow  # executes notebooks
def test_failing_notebook_leaves_no_report_and_keeps_the_executed_notebook(lab_run, tmp_path: Path, capsys):
    notebooks = tiny_notebook_set(tmp_path / "nb", failing="expiry_timeline")
    out = tmp_path / "reports" / "today"
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(INVENTORY), "--out", str(out),
                       "--notebooks", str(notebooks)])
    assert status == 2
    err = capsys.readouterr().err
    assert "expiry_timeline.ipynb, cell 5" in err and "ZeroDivisionError" in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".today.partial")]
    kept = out.parent / "today.failed" / "expiry_timeline.ipynb"
    assert kept.is_file() and str(kept) in err


@pytest.mark.slow  # executes notebooks
def test_overwrite_replaces_a_report_only_when_complete(lab_run, tmp_path: Path):
    notebooks = tiny_notebook_set(tmp_path / "nb")
    out = tmp_path / "r"
    render_reports(lab_run.path, INVENTORY, out, notebooks=notebooks, title="first")
    broken = tiny_notebook_set(tmp_path / "nb-broken", failing="summary")
    with pytest.raises(ReportError):
        render_reports(lab_run.path, INVENTORY, out, notebooks=broken, title="second", overwrite=True)
    assert json.loads((out / "summary.json").read_text())["title"] == "first"
    render_reports(lab_run.path, INVENTORY, out, notebooks=notebooks, title="third", overwrite=True)
    assert json.loads((out / "summary.json").read_text())["title"] == "third"
    assert not (tmp_path / "r.failed").exists()


def test_expiry_page_shows_both_break_dates(rendered):
    page = (rendered["out"] / "expiry_timeline.html").read_text()
    tables = html_tables(page)
    breaks = next(t for t in tables if "Update firmware by (firmware side)" in t.columns)
    assert {"First break if nothing changes", "Because of (firmware side)", "Loses every path if nothing changes", "TLS stack"} \
        <= set(breaks.columns)
    dated = breaks[breaks["Update firmware by (firmware side)"] != "—"]
    assert not dated.empty
    # Not tied to AWS's leaf: some firmware outlives the served leaf by years.
    assert (dated["Update firmware by (firmware side)"] > dated["First break if nothing changes"]).any()
    cliff = next(t for t in tables if "Still able to connect (firmware side)" in t.columns)
    assert "Still connected (nothing changes)" in cliff.columns
    summary = (rendered["out"] / "summary.html").read_text()
    headline = next(t for t in html_tables(summary) if "Measure" in t.columns).set_index("Measure")["Value"]
    assert headline["Update firmware by (firmware side: its anchors, stack and pins)"].startswith("20")
    index = (rendered["out"] / "index.html").read_text()
    numbers = json.loads((rendered["out"] / "summary.json").read_text())
    first = numbers["earliest_firmware_break_profiles"]
    # The card names who must be updated first, and is red when that is already today.
    assert f"Update firmware by (firmware side): {html.escape(first[0])}" in index
    assert f"{numbers['earliest_firmware_break_devices']:,} devices" in index


def test_the_update_by_card_is_red_only_when_the_date_is_the_evaluation_day():
    from iotaudit.reports.render import _is_today

    assert _is_today("2026-12-02T00:00:00+00:00", "2026-12-02T02:16:43+00:00")
    assert not _is_today("2030-08-23T00:00:00+00:00", "2026-12-02T02:16:43+00:00")
    assert not _is_today(None, "2026-12-02T02:16:43+00:00")


# --- the expiry figure ---------------------------------------------------------------------


def _timeline_frames(renewed: bool):
    utc = lambda text: pd.Timestamp(text, tz="UTC")  # noqa: E731
    breaks = pd.DataFrame({"profile": ["fw-a", "fw-b"], "devices": [10, 5], "state": ["breaks", "breaks"],
                           "break_date": [utc("2026-03-01"), utc("2026-03-01")]})
    cliff = pd.DataFrame({"date": [utc("2025-01-01"), utc("2026-03-01"), utc("2030-08-23"), utc("2034-06-29"),
                                   utc("2040-01-01")],
                          "devices_losing": [0, 15, 0, 0, 0], "devices_connected": [15, 0, 0, 0, 0]})
    if renewed:
        breaks["firmware_break_date"] = [utc("2030-08-23"), utc("2034-06-29")]
        cliff["devices_losing_firmware"] = [0, 0, 10, 5, 0]
        cliff["devices_connected_firmware"] = [15, 15, 5, 0, 0]
    certs = pd.DataFrame({"subject_cn": ["leaf"], "role": ["leaf"], "not_after": [utc("2026-03-01")]})
    anchors = pd.DataFrame({"anchor_name": ["Root"], "anchor_sha256": ["ab"], "not_after": [utc("2038-01-17")]})
    return certs, breaks, anchors, cliff


def test_expiry_timeline_draws_the_renewed_cliff_solid_and_the_as_served_one_dashed():
    from matplotlib import dates as mdates

    from iotaudit.plots import expiry_timeline

    certs, breaks, anchors, cliff = _timeline_frames(renewed=True)
    figure = expiry_timeline(certs, breaks, anchors, cliff, as_of=pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime(),
                             horizon_years=15)
    bars_ax, cliff_ax = figure.axes[:2]
    lines = {line.get_label(): line for line in cliff_ax.get_lines() if not line.get_label().startswith("_")}
    solid = next(line for label, line in lines.items() if label.startswith("Firmware side"))
    dashed = next(line for label, line in lines.items() if label.startswith("If nothing changes"))
    assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
    assert list(solid.get_ydata())[-1] == 0 and 15 in list(solid.get_ydata())
    # Profile bars end at the renewed break; a marker shows the earlier as-served break of each.
    widths = {round(p.get_x() + p.get_width()) for p in bars_ax.patches}
    assert round(mdates.date2num(pd.Timestamp("2030-08-23", tz="UTC"))) in widths
    assert round(mdates.date2num(pd.Timestamp("2034-06-29", tz="UTC"))) in widths
    markers = [line for line in bars_ax.get_lines() if line.get_marker() == "D"]
    assert len(markers) == 2
    assert {round(float(line.get_xdata()[0])) for line in markers} == {round(mdates.date2num(pd.Timestamp("2026-03-01", tz="UTC")))}
    legend = [text.get_text() for text in bars_ax.get_legend().get_texts()]
    assert any("firmware side" in t for t in legend)
    assert any("if nothing changes" in t for t in legend)


def test_expiry_timeline_without_renewed_columns_draws_the_as_served_dates():
    from iotaudit.plots import expiry_timeline

    certs, breaks, anchors, cliff = _timeline_frames(renewed=False)
    figure = expiry_timeline(certs, breaks, anchors, cliff, as_of=pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime())
    bars_ax, cliff_ax = figure.axes[:2]
    assert [line.get_label() for line in cliff_ax.get_lines() if not line.get_label().startswith("_")] \
        == ["Devices with a valid path"]
    assert not [line for line in bars_ax.get_lines() if line.get_marker() == "D"]


def test_expiry_timeline_draws_a_served_bar_only_for_served_certificates():
    from iotaudit.plots import expiry_timeline

    certs, breaks, anchors, cliff = _timeline_frames(renewed=False)
    certs = pd.DataFrame({"subject_cn": ["leaf", "Root"], "role": ["leaf", "root"], "served": [True, False],
                          "not_after": pd.to_datetime(["2026-03-01", "2038-01-17"], utc=True)})
    figure = expiry_timeline(certs, breaks, anchors, cliff, as_of=pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime())
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert "leaf (leaf)" in labels
    assert "Root (root)" not in labels and "Root" in labels  # the unserved root appears once, as an anchor


_LINK = re.compile(r'\b(?:href|src)="([^"]*)"')


def test_every_link_is_relative_and_resolves_inside_the_folder_even_when_moved(rendered, tmp_path: Path):
    moved = tmp_path / "mailed" / "report"
    shutil.copytree(rendered["out"], moved)  # as unzipped somewhere else
    pages = sorted(moved.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", *(f"{spec.name}.html" for spec in NOTEBOOKS)}
    for page in pages:
        for target in _LINK.findall(page.read_text()):
            if target.startswith(("data:", "#", "https://", "http://")):
                continue
            assert not target.startswith(("/", "file:")), f"{page.name}: {target} is not relative"
            assert (moved / target.split("#")[0]).exists(), f"{page.name}: {target} does not resolve"


def test_index_links_every_data_file(rendered):
    index = (rendered["out"] / "index.html").read_text()
    for data in sorted((rendered["out"] / "audit").iterdir()):
        assert f'href="audit/{data.name}"' in index, data.name
    assert 'href="summary.json"' in index


# --- frames others add to the audit: shown only when present ---------------------------------------------


@pytest.fixture()
def audit_with_stack_frames(lab_run, tmp_path: Path) -> Path:
    """An audit directory plus the three frames of STACKS.md, with exactly the agreed columns."""
    audit_dir = tmp_path / "audit"
    load_inputs(lab_run.path, INVENTORY, audit_dir=audit_dir)
    pd.DataFrame({"profile": ["fw-a", "fw-b", HOSTILE], "tls_stack": ["mbedtls-2.28", "openssl-3", "bearssl"],
                  "other_stack": ["openssl-3", "mbedtls-2.28", "openssl-3"],
                  "verdict": ["covered", "broken", "at-risk"], "other_verdict": ["covered", "covered", "broken"],
                  "devices": [10, 3, 1]}).to_parquet(audit_dir / "stack_alternatives.parquet")
    pd.DataFrame({"profile": ["fw-a", "fw-b", "fw-a"], "severity": ["info", "error", "warning"],
                  "note": ["bundle of 3 roots", "private key in image", HOSTILE], "file": ["a.bin", "b.bin", "a.bin"],
                  "offset": [0, 4096, 128]}).to_parquet(audit_dir / "firmware_notes.parquet")
    pd.DataFrame({"profile": ["fw-a", "fw-a", "fw-b"], "observation_id": [1, 2, 3],
                  "host": ["h1", "h2", "h3"], "port": [8883, 443, 8883], "probe": ["rsa", "ecdsa", "tls13"],
                  "tls_stack": ["mbedtls-2.28", "mbedtls-2.28", "openssl-3"], "model_valid": [True, True, False],
                  "library_valid": [True, False, True], "library": ["mbedTLS 2.28.3", "mbedTLS 2.28.3", "OpenSSL 3"],
                  "library_error": ["", "MBEDTLS_X509_BADCERT_NOT_TRUSTED", ""]}).to_parquet(audit_dir / "crosscheck.parquet")
    return audit_dir


def test_optional_sections_render_nothing_when_not_asked_for(lab_run, tmp_path: Path):
    from iotaudit.reports import crosscheck_section, firmware_notes_section, stack_alternatives_section, stack_section

    inputs = load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit")
    # No scan findings and no --cross-check: those two sections say nothing.
    for cell in (firmware_notes_section, crosscheck_section):
        assert cell(inputs).markup == ""
    # Every audit knows each profile's stack: the stack sections always render.
    assert "Devices per TLS stack" in stack_section(inputs).markup
    assert "Same store, other stacks" in stack_alternatives_section(inputs).markup


def test_same_store_other_stacks_worst_today_first(lab_run, audit_with_stack_frames: Path):
    from iotaudit.reports import stack_alternatives_section

    inputs = load_inputs(lab_run.path, "", audit_dir=audit_with_stack_frames)
    markup = stack_alternatives_section(inputs).markup
    assert "Same store, other stacks" in markup and HOSTILE not in markup
    rows = html_tables(markup)[0]
    assert list(rows["Verdict today"]) == ["broken", "at-risk", "covered"]
    assert list(rows["Same store on stack"])[0] == "mbedtls-2.28" and list(rows["Verdict on that stack"])[0] == "covered"


def test_firmware_notes_errors_first_with_counts(lab_run, audit_with_stack_frames: Path):
    from iotaudit.reports import firmware_notes_section

    markup = firmware_notes_section(load_inputs(lab_run.path, "", audit_dir=audit_with_stack_frames)).markup
    assert "1 error, 1 warning, 1 info" in markup and HOSTILE not in markup
    assert list(html_tables(markup)[0]["Severity"]) == ["error", "warning", "info"]


def test_crosscheck_shows_only_the_disagreements_counted(lab_run, audit_with_stack_frames: Path):
    from iotaudit.reports import crosscheck_section

    markup = crosscheck_section(load_inputs(lab_run.path, "", audit_dir=audit_with_stack_frames)).markup
    # A library's own rejection (library_error) agreeing with the model is not a finding; two disagree.
    assert "2 of 3 cases disagree" in markup
    rows = html_tables(markup)[0]
    assert set(rows["Endpoint"]) == {"h2:443", "h3:8883"}


def test_tls_stack_column_adds_the_per_stack_table(lab_run, tmp_path: Path):
    from iotaudit.reports import stack_section

    inputs = load_inputs(lab_run.path, INVENTORY, audit_dir=tmp_path / "audit")
    coverage = inputs.audit.coverage
    stacks = coverage["profile"].astype(str).map(lambda p: "openssl-1.0.1" if "starfield" in p else "openssl-3")
    import dataclasses

    with_stack = dataclasses.replace(inputs, audit=dataclasses.replace(inputs.audit, coverage=coverage.assign(tls_stack=stacks)))
    rows = html_tables(stack_section(with_stack).markup)[0]
    assert set(rows["TLS stack"]) == {"openssl-1.0.1", "openssl-3"}
    total = sum(int(v.replace(",", "")) for col in ("Devices broken", "Devices at risk", "Devices covered") for v in rows[col])
    assert total <= 12


@pytest.mark.slow
def test_registering_the_report_command_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import argparse, sys, iotaudit.reports as r; r.register(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'papermill', 'nbconvert') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_skipped_rows_table_keeps_the_first_and_links_every_one() -> None:
    from iotaudit.auditing import SKIPPED_ROWS_LISTED
    from iotaudit.reports.render import skipped_rows_markup

    many = [{"row": i + 2, "column": "region", "reason": f"region 'x{i}' is not a region name"}
            for i in range(SKIPPED_ROWS_LISTED + 5)]
    page = skipped_rows_markup(many, len(many), "inv.csv")
    assert page.count("<tr>") == SKIPPED_ROWS_LISTED + 1  # the header row, then the first rows only
    assert f"first {SKIPPED_ROWS_LISTED:,} of {len(many):,} rows" in page
    assert 'href="audit/skipped_rows.csv"' in page and 'href="audit/skipped_rows.parquet"' in page
    # summary.json carries the first ones and the count: the index says how many more there are.
    index_side = skipped_rows_markup(many[:SKIPPED_ROWS_LISTED], len(many), "inv.csv", problems=len(many))
    assert index_side == page
    few = skipped_rows_markup(many[:3], 3, "inv.csv")
    assert "All 3 rows are in this page" in few and "skipped_rows.csv" not in few


@pytest.mark.slow
def test_a_report_of_an_inventory_with_many_bad_rows_links_them_all(lab_run, tmp_path: Path) -> None:
    from iotaudit.auditing import SKIPPED_ROWS_LISTED
    from iotaudit.reports import render_reports

    good = pd.read_csv(INVENTORY, dtype=str, keep_default_na=False)
    bad = pd.concat([good.iloc[[0]]] * (SKIPPED_ROWS_LISTED + 10), ignore_index=True)
    bad["device_id"] = [f"bad-{i}" for i in range(len(bad))]
    bad["region"] = "Not A Region"
    path = tmp_path / "inv.csv"
    pd.concat([good, bad], ignore_index=True).to_csv(path, index=False)
    render_reports(lab_run.path, path, tmp_path / "report", fail_on="never", skip_bad_rows=True)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["skipped_rows"] == summary["skipped_problems"] == SKIPPED_ROWS_LISTED + 10
    assert len(summary["skipped_row_details"]) == SKIPPED_ROWS_LISTED
    every = pd.read_parquet(tmp_path / "report" / "audit" / "skipped_rows.parquet")
    assert len(every) == SKIPPED_ROWS_LISTED + 10 and len(pd.read_csv(tmp_path / "report" / "audit" / "skipped_rows.csv")) == len(every)
    index = (tmp_path / "report" / "index.html").read_text()
    assert f"first {SKIPPED_ROWS_LISTED:,} of {SKIPPED_ROWS_LISTED + 10:,} rows" in index and "audit/skipped_rows.csv" in index
