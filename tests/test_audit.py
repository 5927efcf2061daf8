"""The audit orchestrator on the sample inventory against the collected lab run; writer, loader and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.audit import FRAMES, audit, load_audit, write_audit
from iotaudit.cli import main
from iotaudit.errors import RunError
from iotaudit.inventory import load_inventory

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample_inventory.csv"


@pytest.fixture(scope="module")
def sample_audit(lab_run):  # -> AuditResult
    return audit(lab_run, load_inventory(SAMPLE))


def test_sample_inventory_shows_every_verdict(sample_audit) -> None:
    verdicts = dict(zip(sample_audit.profiles["profile"].astype(str), sample_audit.profiles["verdict"].astype(str), strict=True))
    assert verdicts["fw-ca1-only-2.0"] == "covered"
    assert verdicts["fw-rsa-ecc-3.0"] == "covered"
    assert verdicts["fw-all-roots-4.0"] == "covered"
    assert verdicts["fw-legacy-verisign-1.0"] == "at-risk"
    assert verdicts["fw-embedded-legacy-builder-1.5"] == "at-risk"
    assert verdicts["fw-canary-5.0"] == "broken"


def test_sample_pins_show_backup_and_expiry_flags(sample_audit) -> None:
    pins = sample_audit.pins
    flags = {(str(p), f) for p, fs in zip(pins["profile"], pins["flags"], strict=True) for f in fs}
    assert ("fw-spki-no-backup-3.2", "no-backup") in flags
    assert ("fw-expired-pins-1.9", "pin-set-expired") in flags
    assert not any(p == "fw-spki-backup-3.1" and f == "no-backup" for p, f in flags)
    matched = pins[pins["matches"]]
    assert {"fw-cert-pins-2.2", "fw-spki-backup-3.1", "fw-spki-no-backup-3.2"} <= set(matched["profile"].astype(str))


def test_group_meeting_no_chain_is_not_counted_as_covered(lab_run, tmp_path: Path) -> None:
    header = "device_id,group,profile,region,endpoints,trust_store,key_types\n"
    rows = ["d1,fleet-a,fw-1,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1,rsa\n",
            "d2,fleet-b,fw-2,us-east-1,no-such-endpoint.example.com,AmazonRootCA1,rsa\n"]
    (tmp_path / "inv.csv").write_text(header + "".join(rows))
    summary = audit(lab_run, load_inventory(tmp_path / "inv.csv")).summary
    assert summary["groups_by_verdict"] == {"covered": 1, "at-risk": 0, "broken": 0, "not-applicable": 1}
    assert summary["devices_by_verdict"]["not-applicable"] == 1


def test_summary_adds_up(sample_audit) -> None:
    s = sample_audit.summary
    assert s["devices"] == 290 and s["profiles"] == 10
    assert sum(s["devices_by_verdict"].values()) == s["devices"]
    assert sum(s["groups_by_verdict"].values()) == s["groups"]
    assert s["devices_broken"] == 9  # the canary profile only
    assert s["as_of"] == sample_audit.summary["run_created_at"]


def test_verdicts_are_per_profile_and_joined_by_profile_key(sample_audit) -> None:
    cov = sample_audit.coverage
    devices = cov.groupby("profile", observed=True)["devices"].first()
    assert devices["fw-ca1-only-2.0"] == 60


def test_write_and_load_round_trip(sample_audit, tmp_path: Path) -> None:
    out = write_audit(sample_audit, tmp_path / "audit")
    for name in FRAMES:
        assert (out / f"{name}.parquet").exists() and (out / f"{name}.csv").exists()
    back = load_audit(out)
    assert back.summary == json.loads(json.dumps(dict(sample_audit.summary), default=str))
    assert back.coverage["path_sha256"].tolist() == sample_audit.coverage["path_sha256"].tolist()
    pd.testing.assert_series_equal(back.coverage["valid"], sample_audit.coverage["valid"])


def test_write_refuses_an_existing_directory(sample_audit, tmp_path: Path) -> None:
    (tmp_path / "audit").mkdir()
    with pytest.raises(RunError, match="already exists"):
        write_audit(sample_audit, tmp_path / "audit")


def test_load_refuses_an_incomplete_directory(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="summary.json"):
        load_audit(tmp_path)


def test_cli_audit_writes_the_directory(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--as-of", "2026-01-15",
                   "--fail-on", "never", "--out", str(tmp_path / "a")])
    assert status == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["as_of"] == "2026-01-15T00:00:00+00:00" and summary["devices"] == 290
    assert "290 devices in 10 profiles" in capsys.readouterr().out


def test_cli_audit_reports_bad_inventory_with_status_2(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(SAMPLE.read_text().replace("rsa;ecdsa", "rsa;dsa", 1))
    assert main(["audit", str(lab_run.path), "--inventory", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert "key_types" in capsys.readouterr().err
    assert main(["audit", str(lab_run.path), "--inventory", str(bad), "--skip-bad-rows", "--fail-on", "never",
                 "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["bad_rows"] > 0
