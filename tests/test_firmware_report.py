"""``iotaudit audit/report --scan``: the scan's notes for the inventory's profiles, as the audit's firmware_notes.

Unit tests run the audit in process on a small inventory against the lab run;
the end-to-end test runs ``iotaudit scan`` -> ``iotaudit inventory join`` ->
``iotaudit report --scan`` as a user would, and reads the rendered root
coverage page.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.auditing import audit, load_audit, write_audit
from iotaudit.cli import main
from iotaudit.errors import ScanError
from iotaudit.firmware import read_findings, scan
from iotaudit.inventory import load_inventory
from iotaudit.lab import lab_ca_certificates, lab_catalog
from iotaudit.reports import firmware_notes_section, headline_numbers, load_inputs
from iotaudit.stacks import DEFAULT_STACK_ID
from tests.firmware_builders import pem_text
from tests.test_firmware_cli import ATS, _devices, _firmware, _iotaudit
from tests.test_reports import html_tables

SCANNED_AT = datetime(2026, 1, 15, tzinfo=timezone.utc)
# fw-a runs in two endpoint sets: two inventory profiles (fw-a, fw-a~2) of one scanned firmware.
INVENTORY = f"""device_id,group,profile,region,endpoints,trust_store,key_types
d1,g,fw-a,us-east-1,{ATS},AmazonRootCA1,rsa
d2,g,fw-a,us-east-1,{ATS},AmazonRootCA1,rsa
d3,g,fw-a,us-east-1,*,AmazonRootCA1,rsa
d4,g,fw-b,us-east-1,{ATS},AmazonRootCA1;AmazonRootCA3,rsa;ecdsa
"""


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """profiles.csv + scan.parquet of fw-a (an Amazon intermediate as its only anchor) and fw-c (in no inventory)."""
    base = tmp_path_factory.mktemp("scanned")
    certs = lab_ca_certificates()
    (base / "fw-a").mkdir()
    (base / "fw-a" / "ca.pem").write_text(pem_text(certs["AmazonRSA2048M01"]))
    (base / "fw-c").mkdir()
    (base / "fw-c" / "root.pem").write_text(pem_text(certs["AmazonRootCA1"]))
    result = scan([base / "fw-a", base / "fw-c"], profiles=["fw-a", "fw-c"], catalog=lab_catalog(), as_of=SCANNED_AT)
    return result.write(base / "scan" / "profiles.csv")


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.csv"
    path.write_text(INVENTORY)
    return path


def test_audit_keeps_the_notes_of_inventory_profiles_with_their_devices(lab_run, scanned: Path, inventory: Path) -> None:
    result = audit(lab_run, load_inventory(inventory), scan_findings=read_findings(scanned))
    notes = result.firmware_notes
    assert list(notes.columns) == list(c.FIRMWARE_NOTES_DTYPES)
    # One scanned firmware, two inventory profiles: each gets the notes, with its own device count.
    assert set(notes[c.PROFILE].astype(str)) == {"fw-a", "fw-a~2"}
    assert dict(zip(notes[c.PROFILE].astype(str), notes[c.DEVICES], strict=True)) == {"fw-a": 2, "fw-a~2": 1}
    pin = notes[notes[c.NOTE].str.startswith("accidental pin: Amazon intermediate")]
    assert len(pin) == 2 and set(pin[c.SEVERITY_COL].astype(str)) == {"warning"} and set(pin[c.FILE]) == {"ca.pem"}
    summary = result.summary["firmware_notes"]
    per_profile = notes[notes[c.PROFILE].astype(str) == "fw-a"][c.SEVERITY_COL].astype(str).value_counts()
    assert (summary["errors"], summary["warnings"], summary["infos"]) == (
        2 * per_profile.get("error", 0), 2 * per_profile.get("warning", 0), 2 * per_profile.get("info", 0))
    assert summary["asked"] and summary["scan"] == str(scanned.parent / "scan.parquet")
    # fw-c is in no inventory: its notes are counted and named, not silently dropped; fw-b was not scanned.
    assert summary["profiles_outside_inventory"] == ["fw-c"] and summary["notes_outside_inventory"] >= 1
    assert summary["profiles_not_scanned"] == ["fw-b"]
    assert any("not in the inventory left out: fw-c" in line for line in result.summary["notes"])


def test_audit_judges_anchor_expiry_at_its_own_as_of(lab_run, scanned: Path, inventory: Path) -> None:
    findings = read_findings(scanned)
    not_after = findings.loc[findings[c.PROFILE] == "fw-a", c.NOT_AFTER].dropna().iloc[0].to_pydatetime()
    assert not findings[c.EXPIRED].fillna(False).any()  # at the scan's own time nothing had expired
    later = audit(lab_run, load_inventory(inventory), as_of=not_after + timedelta(days=1), horizon_years=1,
                  scan_findings=findings)
    expired = later.firmware_notes[later.firmware_notes[c.NOTE].str.startswith("expired anchor")]
    assert set(expired[c.PROFILE].astype(str)) == {"fw-a", "fw-a~2"}


def test_audit_without_a_scan_has_an_empty_frame_and_the_report_shows_nothing(lab_run, inventory: Path,
                                                                               tmp_path: Path) -> None:
    result = audit(lab_run, load_inventory(inventory))
    assert result.firmware_notes.empty and list(result.firmware_notes.columns) == list(c.FIRMWARE_NOTES_DTYPES)
    assert result.summary["firmware_notes"]["asked"] is False
    write_audit(result, tmp_path / "audit")
    inputs = load_inputs(lab_run.path, "", audit_dir=tmp_path / "audit")
    assert inputs.firmware_notes is None and firmware_notes_section(inputs).markup == ""
    assert headline_numbers(inputs)["firmware_notes"] is None  # no scan: no card, no headline row


def test_a_scan_of_other_profiles_only_says_so_on_the_page(lab_run, tmp_path: Path) -> None:
    certs = lab_ca_certificates()
    (tmp_path / "fw-z").mkdir()
    (tmp_path / "fw-z" / "ca.pem").write_text(pem_text(certs["AmazonRSA2048M01"]))
    out = scan(tmp_path / "fw-z", catalog=lab_catalog(), as_of=SCANNED_AT).write(tmp_path / "scan" / "profiles.csv")
    (tmp_path / "inventory.csv").write_text(INVENTORY)
    result = audit(lab_run, load_inventory(tmp_path / "inventory.csv"), scan_findings=read_findings(out))
    assert result.firmware_notes.empty
    summary = result.summary["firmware_notes"]
    assert summary["asked"] and summary["profiles_outside_inventory"] == ["fw-z"]
    assert (summary["errors"], summary["warnings"], summary["infos"]) == (0, 0, 0)
    assert summary["profiles_not_scanned"] == ["fw-a", "fw-b"]
    write_audit(result, tmp_path / "audit")
    markup = firmware_notes_section(load_inputs(lab_run.path, "", audit_dir=tmp_path / "audit")).markup
    assert "From the firmware" in markup and "The scan found nothing to note." in markup
    assert f"{summary['notes_outside_inventory']} note(s) of scanned profiles no device of the inventory runs" in markup


def test_a_notebook_opened_by_hand_takes_the_scan_as_report_does(lab_run, scanned: Path, inventory: Path,
                                                                 tmp_path: Path) -> None:
    # No audit directory: load_inputs computes the audit, with the scan's notes (the notebooks' `scan` parameter).
    by_hand = load_inputs(lab_run.path, inventory, audit_dir=tmp_path / "audit", scan=scanned)
    assert by_hand.firmware_notes is not None and set(by_hand.firmware_notes[c.PROFILE].astype(str)) == {"fw-a", "fw-a~2"}
    assert "From the firmware" in firmware_notes_section(by_hand).markup
    without = load_inputs(lab_run.path, inventory, audit_dir=tmp_path / "audit-none")
    assert without.firmware_notes is None


@pytest.mark.slow
def test_the_root_coverage_notebook_run_by_papermill_with_scan_shows_the_notes(lab_run, scanned: Path, inventory: Path,
                                                                             tmp_path: Path) -> None:
    from iotaudit.reports import execute_notebook, notebooks_dir

    executed = execute_notebook(notebooks_dir() / "root_coverage.ipynb", tmp_path / "rc.ipynb",
                                {"run_dir": str(lab_run.path), "inventory": str(inventory), "scan": str(scanned)})
    text = executed.read_text(encoding="utf-8")
    assert "From the firmware" in text and "accidental pin: Amazon intermediate" in text


def test_cli_audit_scan_writes_the_frame_and_a_line(lab_run, scanned: Path, inventory: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Either the profiles.csv, its directory or the scan.parquet names the same findings.
    for i, given in enumerate((scanned, scanned.parent, scanned.parent / "scan.parquet")):
        out = tmp_path / f"a{i}"
        assert main(["audit", str(lab_run.path), "--inventory", str(inventory), "--scan", str(given),
                     "--fail-on", "never", "--out", str(out)]) == 0
        frame = pd.read_parquet(out / "firmware_notes.parquet")
        assert set(frame[c.PROFILE].astype(str)) == {"fw-a", "fw-a~2"}
        assert "firmware notes:" in capsys.readouterr().out
        assert json.loads((out / "summary.json").read_text())["firmware_notes"]["asked"] is True
    back = load_audit(tmp_path / "a0")
    assert list(back.firmware_notes.columns) == list(c.FIRMWARE_NOTES_DTYPES)
    assert back.firmware_notes[c.SEVERITY_COL].dtype == c.FIRMWARE_NOTES_DTYPES[c.SEVERITY_COL].pandas()  # a CategoricalOf: columns.py imports no pandas


def test_cli_audit_without_scan_writes_an_empty_frame(lab_run, inventory: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(lab_run.path), "--inventory", str(inventory), "--fail-on", "never",
                 "--out", str(tmp_path / "a")]) == 0
    assert pd.read_parquet(tmp_path / "a" / "firmware_notes.parquet").empty
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["firmware_notes"] == {
        "asked": False, "scan": "", "errors": 0, "warnings": 0, "infos": 0, "notes_outside_inventory": 0,
        "profiles_outside_inventory": [], "profiles_not_scanned": []}
    assert "firmware notes:" not in capsys.readouterr().out


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nowhere.parquet", "nowhere.parquet: no such file"),
    (lambda d: d / "profiles.csv", "scan.parquet: no scan.parquet next to"),
    (lambda d: (d / "garbage.parquet").write_bytes(b"PAR1 not really") and d / "garbage.parquet",
     "garbage.parquet: not a readable Parquet file"),
    (lambda d: pd.DataFrame({"profile": ["x"]}).to_parquet(d / "other.parquet") or d / "other.parquet",
     "other.parquet: not iotaudit scan findings: column(s) missing: file"),
])
def test_cli_audit_with_a_bad_scan_file_exits_2_naming_it(lab_run, inventory: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], make, message) -> None:
    bad = make(tmp_path)
    status = main(["audit", str(lab_run.path), "--inventory", str(inventory), "--scan", str(bad),
                   "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a").exists()


def test_report_with_a_missing_scan_file_exits_2_before_rendering(lab_run, inventory: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["report", "--run", str(lab_run.path), "--inventory", str(inventory), "--scan",
                   str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "missing.parquet: no such file" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_read_findings_refuses_what_is_not_a_scan(tmp_path: Path) -> None:
    (tmp_path / "scan.parquet").write_text("not parquet")
    with pytest.raises(ScanError, match="scan.parquet: not a readable Parquet file"):
        read_findings(tmp_path)


def test_an_audit_written_before_the_frame_loads_it_empty(lab_run, inventory: Path, tmp_path: Path) -> None:
    out = write_audit(audit(lab_run, load_inventory(inventory)), tmp_path / "audit")
    (out / "firmware_notes.parquet").unlink()
    back = load_audit(out)
    assert back.firmware_notes.empty and list(back.firmware_notes.columns) == list(c.FIRMWARE_NOTES_DTYPES)


# --- end to end: scan -> inventory join -> report, as a user runs them --------------------------------------


@pytest.mark.slow
def test_scan_join_report_shows_the_scanned_profiles_and_their_notes(tmp_path: Path, lab_run) -> None:
    firmware = _firmware(tmp_path, lab_ca_certificates())
    args = ["scan", *(str(p) for p in firmware.values())]
    for name in firmware:
        args += ["--profile", name]
    proc = _iotaudit(*args, "--catalog", "lab", "--out", "scan/profiles.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _devices(tmp_path / "devices.csv", list(firmware))
    proc = _iotaudit("inventory", "join", "scan/profiles.csv", "devices.csv", "--out", "inventory.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _iotaudit("report", "--run", str(lab_run.path), "--inventory", "inventory.csv", "--scan", "scan/profiles.csv",
                     "--fail-on", "never", "--out", "report", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report" / "root_coverage.html").read_text()
    tables = html_tables(page)

    # The scanned profiles, with the verdicts their scanned stores and stacks give against the lab.
    failures = next(t for t in tables if "Why" in t.columns)
    assert set(failures.loc[failures["Verdict"] == "broken", "Firmware profile"]) == {"fw-legacy"}
    assert not {"fw-esp", "fw-pinned"} & set(failures.loc[failures["Verdict"] == "broken", "Firmware profile"])
    # Each profile's stack is the one the scan read (fw-legacy told none: the inventory's default stack).
    patterns = next(t for t in tables if "Pattern" in t.columns)
    assert dict(zip(patterns["Profiles, all"], patterns["TLS stack"], strict=True)) == {
        "fw-esp": "esp-idf-bundle", "fw-pinned": "mbedtls-3.6", "fw-legacy": DEFAULT_STACK_ID}
    stacks = next(t for t in tables if "Devices covered" in t.columns).set_index("TLS stack")
    assert stacks.loc["esp-idf-bundle", ["Devices covered", "Devices broken"]].tolist() == ["2", "0"]
    assert stacks.loc["mbedtls-3.6", ["Devices covered", "Devices broken"]].tolist() == ["2", "0"]
    assert stacks.loc[DEFAULT_STACK_ID, ["Devices covered", "Devices broken"]].tolist() == ["0", "2"]
    profiles = pd.read_parquet(tmp_path / "report" / "audit" / "profiles.parquet").set_index(c.PROFILE)
    assert profiles[c.VERDICT].astype(str).to_dict() == {"fw-esp": "covered", "fw-pinned": "covered",
                                                         "fw-legacy": "broken"}

    # "From the firmware": the accidental pin on an Amazon intermediate, on the profile that carries it.
    assert "From the firmware" in page
    notes = next(t for t in tables if "Note" in t.columns and "Severity" in t.columns)
    pin = notes[notes["Note"].str.startswith("accidental pin: Amazon intermediate Amazon RSA 2048 M01")]
    assert list(pin["Firmware profile"]) == ["fw-pinned"] and list(pin["Devices"]) == ["2"]
    assert list(pin["File"]) == ["main/aws_root.h"] and list(notes["Severity"])[0] == "error"
    assert set(notes["Firmware profile"]) <= {"fw-esp", "fw-pinned", "fw-legacy"}
    assert "name+key anchor: no dates" in " ".join(notes.loc[notes["Firmware profile"] == "fw-esp", "Note"])
    summary = json.loads((tmp_path / "report" / "audit" / "summary.json").read_text())["firmware_notes"]
    assert summary["asked"] and summary["warnings"] >= 1 and summary["profiles_outside_inventory"] == []
    # The headline numbers count them: summary.json, the index card and the summary page's headline row.
    counted = json.loads((tmp_path / "report" / "summary.json").read_text())["firmware_notes"]
    assert counted["errors"] == int((notes["Severity"] == "error").sum()) >= 1
    assert counted["warnings"] == int((notes["Severity"] == "warning").sum())
    assert counted["profiles_with_errors"] == notes.loc[notes["Severity"] == "error", "Firmware profile"].nunique()
    index = (tmp_path / "report" / "index.html").read_text()
    assert "Firmware notes: errors · warnings" in index and f"{counted['errors']:,} · {counted['warnings']:,}" in index
    headline = next(t for t in html_tables((tmp_path / "report" / "summary.html").read_text()) if "Measure" in t.columns)
    row = headline.loc[headline["Measure"] == "Firmware notes (iotaudit scan)", "Value"]
    assert len(row) == 1 and row.iloc[0].startswith(f"{counted['errors']} error")
