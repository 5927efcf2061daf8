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

import json
import re
import shutil
import subprocess
from pathlib import Path

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
