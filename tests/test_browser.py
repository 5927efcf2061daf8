"""Headless Chromium opens index.html and every report from disk, offline.

Each page is copied to ``tmp_path`` with a harness injected at the top of
``<head>``: a Content-Security-Policy that only allows inline styles and
``data:`` images, a ``securitypolicyviolation`` listener (every attempt to
fetch anything else -- script, stylesheet, font, image -- is reported there
before it could leave the machine), and an onload script that writes what
the page loaded into a ``<pre>`` read back with ``--dump-dom``.  Host names
resolve nowhere (``--host-resolver-rules``), so nothing leaves anyway.  A
positive control proves the harness sees a remote image.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.reports import NOTEBOOKS
from tests.fixtures.reportset import report_set

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                       "(apt-get install -y chromium; .ci/run installs it) - browser checks NOT run"),
]

HARNESS = """<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) { window.__violations.push(e.blockedURI); });
window.addEventListener("load", function () {
  setTimeout(function () {
    var images = Array.prototype.map.call(document.images, function (i) {
      return {complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
    });
    var resources = performance.getEntriesByType("resource").map(function (r) { return r.name; });
    var pre = document.createElement("pre");
    pre.id = "iotaudit-check";
    pre.textContent = JSON.stringify({images: images, violations: window.__violations, resources: resources,
                                      title: document.title, text: document.body.innerText.length});
    document.body.appendChild(pre);
  }, 200);
});
</script>
"""
CHECK = re.compile(r'<pre id="iotaudit-check">(.*?)</pre>', re.S)


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def open_offline(page: Path, tmp_path: Path) -> dict:
    """Open a harnessed copy of ``page`` and return what it loaded."""
    copy = tmp_path / f"checked-{page.name}"
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text)
    assert head, f"{page.name} has no <head>"
    copy.write_text(text[: head.end()] + HARNESS + text[head.end():], encoding="utf-8")
    done = chromium("--virtual-time-budget=5000", "--dump-dom", copy.as_uri(), profile=tmp_path / "profile")
    found = CHECK.search(done.stdout)
    assert found, f"no check output for {page.name}: {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.fixture(scope="module")
def rendered(lab_run, tmp_path_factory):
    return report_set(lab_run, tmp_path_factory)


def test_harness_sees_a_remote_image(tmp_path: Path):
    page = tmp_path / "remote.html"
    page.write_text('<!DOCTYPE html><html><head><title>t</title></head><body>'
                    '<img src="https://example.com/tracker.png"></body></html>')
    seen = open_offline(page, tmp_path)
    assert seen["violations"] == ["https://example.com/tracker.png"]


@pytest.mark.parametrize("name", ["index"] + [spec.name for spec in NOTEBOOKS])
def test_page_renders_offline_with_figures_decoded(rendered, tmp_path: Path, name: str):
    page = rendered["out"] / f"{name}.html"
    seen = open_offline(page, tmp_path)
    assert seen["violations"] == [], f"{name} tried to fetch {seen['violations']}"
    assert [r for r in seen["resources"] if not r.startswith(("data:", "file:"))] == []
    assert seen["title"] and seen["text"] > 100
    expected = len(re.findall(r'<img[^>]*src="data:image/png;base64,', page.read_text()))
    assert len(seen["images"]) == expected
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 200 and image["height"] > 100, f"{name}: figure not decoded"


def test_screenshots(rendered, tmp_path: Path):
    for name in ["index"] + [spec.name for spec in NOTEBOOKS]:
        shot = tmp_path / f"{name}.png"
        done = chromium("--window-size=1280,1600", f"--screenshot={shot}", (rendered["out"] / f"{name}.html").as_uri(),
                        profile=tmp_path / "profile")
        assert shot.is_file() and shot.stat().st_size > 20_000, f"{name}: {done.stderr[-1000:]}"


# --- tables and figures at fleet size: 300 profiles, hostile names, clicks ---------------------------------

INTERACT = """<script>
window.__alerts = [];
window.alert = function (m) { window.__alerts.push(String(m)); };
window.addEventListener("load", function () {
  setTimeout(function () {
    var QUERY = %(query)s, TARGET = %(target)s;
    function visible(t) { return Array.prototype.filter.call(t.tBodies[0].rows, function (r) { return !r.hidden; }); }
    function column(t, i) { return visible(t).map(function (r) { return r.cells[i].textContent; }); }
    function foreign() {  // elements no escaped page can contain: an <img> that is not a data: figure, a script in body
      return document.querySelectorAll("body img:not([src^='data:']), body script, [onerror]").length;
    }
    var tables = Array.prototype.map.call(document.querySelectorAll("table.iotaudit-table"), function (t) {
      var block = t.closest(".iotaudit-block");
      var note = block ? block.querySelector(".iotaudit-reach") : null;
      var status = block ? block.querySelector(".iotaudit-status") : null;
      return {total: Number(t.getAttribute("data-total")), in_page: Number(t.getAttribute("data-rows")),
              dom_rows: t.tBodies[0].rows.length, visible: visible(t).length, enhanced: t.getAttribute("data-enhanced"),
              note: note ? note.textContent : "", status: status ? status.textContent : "",
              links: note ? Array.prototype.map.call(note.querySelectorAll("a"), function (a) { return a.getAttribute("href"); }) : [],
              headers: Array.prototype.map.call(t.tHead.rows[0].cells, function (h) { return h.textContent; })};
    });
    var result = {tables: tables, foreign_before: foreign()};
    var target = Array.prototype.filter.call(document.querySelectorAll("table.iotaudit-table"), function (t) {
      var labels = Array.prototype.map.call(t.tHead.rows[0].cells, function (h) { return h.textContent; });
      return labels.indexOf("Devices") !== -1 && labels.indexOf(TARGET) !== -1 && t.tBodies[0].rows.length > 30;
    })[0];
    if (target) {
      var heads = Array.prototype.slice.call(target.tHead.rows[0].cells);
      var i = heads.map(function (h) { return h.textContent; }).indexOf("Devices");
      result.before = column(target, i);
      heads[i].click();
      result.ascending = column(target, i); result.aria_after_one = heads[i].getAttribute("aria-sort");
      heads[i].click();
      result.descending = column(target, i); result.aria_after_two = heads[i].getAttribute("aria-sort");
      var input = target.closest(".iotaudit-block").querySelector("input.iotaudit-filter");
      input.value = QUERY; input.dispatchEvent(new Event("input"));
      result.filtered = visible(target).map(function (r) { return r.textContent; });
      result.matching = Number(target.getAttribute("data-matching"));
      result.filtered_status = target.closest(".iotaudit-block").querySelector(".iotaudit-status").textContent;
      input.value = "onerror"; input.dispatchEvent(new Event("input"));
      result.hostile_rows = visible(target).map(function (r) { return r.textContent; });
      var pageButtons = target.closest(".iotaudit-block").querySelectorAll("button");
      input.value = ""; input.dispatchEvent(new Event("input"));
      pageButtons[1].click();
      result.second_page_first = visible(target)[0] ? visible(target)[0].cells[i].textContent : null;
      result.second_page_status = target.closest(".iotaudit-block").querySelector(".iotaudit-status").textContent;
    }
    result.foreign_after = foreign();
    result.alerts = window.__alerts;
    result.images = Array.prototype.map.call(document.images, function (im) {
      return {natural: im.naturalWidth, shown: im.getBoundingClientRect().width};
    });
    var pre = document.createElement("pre");
    pre.id = "iotaudit-interact";
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }, 300);
});
</script>
"""
INTERACT_OUT = re.compile(r'<pre id="iotaudit-interact">(.*?)</pre>', re.S)


def open_interactive(page: Path, tmp_path: Path, query: str, width: int = 1280, target: str = "Why") -> dict:
    """Open ``page`` from its own folder with the offline harness, click, filter, and return what the DOM shows."""
    copy = page.with_name(f".checked-{page.name}")  # next to the page: its relative links still resolve
    text = page.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text)
    assert head, f"{page.name} has no <head>"
    copy.write_text(text[: head.end()] + HARNESS + INTERACT % {"query": json.dumps(query), "target": json.dumps(target)} + text[head.end():],
                    encoding="utf-8")
    try:
        done = chromium(f"--window-size={width},1600", "--virtual-time-budget=20000", "--dump-dom", copy.as_uri(),
                        profile=tmp_path / "profile")
    finally:
        copy.unlink()
    found = INTERACT_OUT.search(done.stdout)
    assert found, f"no interaction output for {page.name}: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def many(lab_run, tmp_path_factory):
    """The report set of a 300-profile fleet (with a hostile profile and device name, and one bad row)."""
    from iotaudit import cli
    from tests.fixtures.many_profiles import add_bad_row, write_many_profiles

    base = tmp_path_factory.mktemp("many")
    inventory = add_bad_row(write_many_profiles(base / "many.csv", 300))
    out = base / "report"
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(inventory), "--out", str(out),
                       "--fail-on", "never", "--skip-bad-rows", "--single-file", "--quiet"])
    assert status == 0
    return out


def numbers(texts: list[str]) -> list[int]:
    return [int(t.replace(",", "")) for t in texts]


@pytest.mark.slow
def test_clicking_a_header_sorts_the_rows_in_the_dom(many, tmp_path: Path):
    seen = open_interactive(many / "root_coverage.html", tmp_path, "fw-amazonrootca3")
    assert seen["before"], "no table with a Devices column and more than 30 rows"
    assert numbers(seen["ascending"]) == sorted(numbers(seen["ascending"])) and seen["aria_after_one"] == "ascending"
    assert numbers(seen["descending"]) == sorted(numbers(seen["descending"]), reverse=True)
    assert seen["aria_after_two"] == "descending"
    assert numbers(seen["descending"])[0] >= max(numbers(seen["before"]))  # the page's largest is now on top
    assert len(seen["ascending"]) == 25  # one screen of rows; the rest are a click on "next" away
    assert seen["second_page_status"].startswith("rows 26–")


@pytest.mark.slow
def test_filtering_keeps_exactly_the_matching_rows(many, tmp_path: Path):
    seen = open_interactive(many / "root_coverage.html", tmp_path, "fw-amazonrootca3")
    assert seen["filtered"] and all("fw-amazonrootca3" in row for row in seen["filtered"])
    assert seen["matching"] >= len(seen["filtered"]) and "matching" in seen["filtered_status"]
    source = pd.read_csv(many / "audit" / "coverage.csv", keep_default_na=False)
    bad = source[source["verdict"].isin(["broken", "at-risk"])]
    assert seen["matching"] == int(bad["profile"].str.contains("fw-amazonrootca3", regex=False).sum())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["index", "summary", "root_coverage", "pinning_risk", "expiry_timeline"])
def test_hostile_names_stay_text_sorted_and_filtered(many, tmp_path: Path, name: str):
    from tests.fixtures.many_profiles import HOSTILE_IMG

    seen = open_interactive(many / f"{name}.html", tmp_path, HOSTILE_IMG)
    assert seen["alerts"] == [] and seen["foreign_before"] == 0 and seen["foreign_after"] == 0
    if name == "root_coverage":
        assert any(HOSTILE_IMG in row for row in seen["hostile_rows"])  # shown, as text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["index", "summary", "root_coverage", "pinning_risk", "expiry_timeline"])
def test_every_table_reaches_every_row(many, tmp_path: Path, name: str):
    seen = open_interactive(many / f"{name}.html", tmp_path, "")
    assert seen["tables"], name
    for table in seen["tables"]:
        assert table["enhanced"] == "yes" and table["dom_rows"] == table["in_page"], table["headers"]
        assert table["visible"] == min(25, table["in_page"])
        if table["in_page"] == table["total"]:
            assert (f"All {table['total']:,} rows are in this page" if table["total"] > 1 else "The only row is in this page") in table["note"]
        else:
            assert table["links"] and (many / table["links"][0]).is_file(), table["note"]
            assert len(pd.read_csv(many / table["links"][0])) >= table["total"]
        assert table["status"].endswith(f"({table['in_page']} in this page)")


@pytest.mark.slow
def test_300_profile_figures_are_legible_measured_from_their_geometry(many, tmp_path: Path):
    import base64
    import io

    from PIL import Image

    from iotaudit.reports.cells import PNG_CLIPPED, PNG_MIN_FONT_PX, PNG_OVERLAPPING

    for name in ("root_coverage", "pinning_risk"):
        page = many / f"{name}.html"
        seen = open_interactive(page, tmp_path, "")
        pngs = [Image.open(io.BytesIO(base64.b64decode(data)))
                for data in re.findall(r'<img[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page.read_text())]
        assert len(pngs) == len(seen["images"]) >= 1
        for png, shown in zip(pngs, seen["images"], strict=True):
            scale = shown["shown"] / shown["natural"]
            assert png.text[PNG_CLIPPED] == "0" and png.text[PNG_OVERLAPPING] == "0", name
            assert float(png.text[PNG_MIN_FONT_PX]) * scale >= 9.0, (name, png.text, scale)
        shot = tmp_path / f"{name}-300.png"
        chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile")
        assert shot.is_file() and shot.stat().st_size > 50_000
        shutil.copy(shot, Path("/tmp") / f"iotaudit-{name}-300.png") if os.environ.get("IOTAUDIT_KEEP_SHOTS") else None


@pytest.mark.slow
def test_single_file_report_is_self_contained_and_interactive(many, tmp_path: Path):
    page = many / "report-single-file.html"
    seen = open_offline(page, tmp_path)
    assert seen["violations"] == [] and [r for r in seen["resources"] if not r.startswith("data:")] == []
    assert all(image["complete"] and image["width"] > 200 for image in seen["images"])
    interactive = open_interactive(page, tmp_path, "fw-")
    assert interactive["tables"] and all(t["enhanced"] == "yes" for t in interactive["tables"])
    text = page.read_text()
    assert 'href="#page-root_coverage"' in text and 'href="root_coverage.html"' not in text
