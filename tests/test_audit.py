"""The audit orchestrator on the sample inventory against the collected lab run; writer, loader and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.auditing import FRAMES, audit, load_audit, write_audit
from iotaudit import columns as c
from iotaudit.cli import main
from iotaudit.errors import RunError
from iotaudit.inventory import load_inventory
from tests.reallib import require_library

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
    assert s["devices"] == 389 and s["profiles"] == 21
    assert sum(s["devices_by_verdict"].values()) == s["devices"]
    assert sum(s["groups_by_verdict"].values()) == s["groups"]
    broken = sample_audit.profiles[sample_audit.profiles["verdict"] == "broken"]
    assert s["devices_broken"] == int(broken["devices"].sum())
    assert "fw-canary-5.0" in set(broken["profile"].astype(str))
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
    assert summary["as_of"] == "2026-01-15T00:00:00+00:00" and summary["devices"] == 389
    out = capsys.readouterr().out
    assert "389 devices in 21 profiles" in out and "update firmware by" in out
    assert summary["crosscheck"] == {"asked": False, "cases": 0, "disagreements": 0, "disagreeing": [],
                                     "libraries": [], "unavailable": {}}


def test_cli_audit_reports_bad_inventory_with_status_2(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(SAMPLE.read_text().replace("rsa;ecdsa", "rsa;dsa", 1))
    assert main(["audit", str(lab_run.path), "--inventory", str(bad), "--out", str(tmp_path / "a")]) == 2
    assert "key_types" in capsys.readouterr().err
    assert main(["audit", str(lab_run.path), "--inventory", str(bad), "--skip-bad-rows", "--fail-on", "never",
                 "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["bad_rows"] > 0


def test_sample_inventory_spreads_profiles_over_stacks(sample_audit) -> None:
    stacks = set(sample_audit.profiles["tls_stack"].astype(str))
    assert {"openssl-3", "openssl-3-partial-chain", "openssl-1.0.1", "mbedtls-2.28", "esp-idf-bundle",
            "esp-idf-bundle-cross-signed", "wolfssl-5", "wolfssl-5-alt-chains", "android"} <= stacks
    # The demo: one store that passes on one stack and fails on another.
    verdicts = dict(zip(sample_audit.profiles["profile"].astype(str), sample_audit.profiles["verdict"].astype(str),
                        strict=True))
    assert verdicts["fw-esp32-ca1-bundle-6.0"] == "broken" and verdicts["fw-esp32-ca1-xsigned-6.2"] != "broken"
    assert verdicts["fw-ca1-only-2.0"] == "covered"


def test_audit_frames_include_stack_alternatives_and_an_empty_crosscheck_unless_asked(sample_audit) -> None:
    assert "stack_alternatives" in FRAMES and "crosscheck" in FRAMES
    assert len(sample_audit.stack_alternatives) and sample_audit.crosscheck.empty
    assert list(sample_audit.crosscheck.columns) == list(c.CROSSCHECK_DTYPES)


# --- cross-check at audit time ----------------------------------------------------------------------

CROSS_HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,tls_stack\n"


@pytest.fixture(scope="module")
def crosschecked(lab_run, tmp_path_factory: pytest.TempPathFactory):  # -> AuditResult
    require_library("openssl-3")
    path = tmp_path_factory.mktemp("cross") / "inv.csv"
    rows = [
        "d1,g,fw-modern,us-east-1,*,AmazonRootCA1;AmazonRootCA3,rsa;ecdsa,openssl-3-partial-chain",
        "d2,g,fw-xca1,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,G2-RootCA1,rsa,openssl-3",
        "d3,g,fw-legacy,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,StarfieldClass2CA,rsa,openssl-1.0.1",
        "d4,g,fw-android,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,StarfieldClass2CA,rsa,android",
    ]
    path.write_text(CROSS_HEADER + "\n".join(rows) + "\n")
    return audit(lab_run, load_inventory(path), cross_check_libraries=True)


def test_cross_check_asks_the_real_library_about_every_chain_each_profile_meets(crosschecked) -> None:
    cross, cov = crosschecked.crosscheck, crosschecked.coverage
    asked = cov[(cov["observation_id"] >= 0) & (cov["profile"].astype(str) != "fw-android")]
    assert sorted(zip(cross["profile"].astype(str), cross["observation_id"], strict=True)) == sorted(
        zip(asked["profile"].astype(str), asked["observation_id"], strict=True))
    assert all(lib.startswith("OpenSSL 3") for lib in cross["library"])
    # The model column is the coverage verdict, row for row.
    model = dict(zip(zip(cov["profile"].astype(str), cov["observation_id"]), cov["valid"], strict=True))
    assert all(model[(str(p), o)] == m for p, o, m in zip(cross["profile"], cross["observation_id"],
                                                         cross["model_valid"], strict=True))
    assert (cross["agree"] == (cross["model_valid"] == cross["library_valid"])).all()
    assert all(bool(err) != valid for err, valid in zip(cross["library_error"], cross["library_valid"], strict=True))


def test_cross_check_sees_the_library_reject_what_openssl_rejects(crosschecked) -> None:
    cross = crosschecked.crosscheck
    xca1 = cross[cross["profile"].astype(str) == "fw-xca1"]
    # OpenSSL 3 without partial chain does not anchor on the cross-signed Amazon Root CA 1 (issue 7).
    assert len(xca1) and not xca1["library_valid"].any()
    modern = cross[cross["profile"].astype(str) == "fw-modern"]
    assert modern["library_valid"].any()


def test_cross_check_lists_stacks_without_a_library_and_the_disagreements(crosschecked) -> None:
    s = crosschecked.summary["crosscheck"]
    assert s["asked"] and s["cases"] == len(crosschecked.crosscheck)
    assert "android" in s["unavailable"] and s["unavailable"]["android"]
    assert any("android" in note for note in crosschecked.summary["notes"])
    disagree = crosschecked.crosscheck[~crosschecked.crosscheck["agree"]]
    assert s["disagreements"] == len(disagree)
    assert [(d["profile"], d["observation_id"]) for d in s["disagreeing"]] == list(
        zip(disagree["profile"].astype(str), disagree["observation_id"], strict=True))


def test_cli_audit_cross_check_writes_the_frame(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_library("openssl-3")
    status = main(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--cross-check", "--fail-on", "never", "--out", str(tmp_path / "a")])
    assert status == 0
    frame = pd.read_parquet(tmp_path / "a" / "crosscheck.parquet")
    assert len(frame) and set(frame["tls_stack"].astype(str)) <= {"openssl-3", "openssl-3-partial-chain",
                                                                  "openssl-1.0.1", "openssl-1.0.2", "gnutls-3.7",
                                                                  "bearssl", "mbedtls-2.28", "mbedtls-3.6",
                                                                  "esp-idf-bundle", "esp-idf-bundle-cross-signed",
                                                                  "wolfssl-5", "wolfssl-5-alt-chains"}
    assert "cross-check:" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_report_cross_check_writes_the_frame_into_the_report(lab_run, tmp_path: Path) -> None:
    from tests.test_reports import tiny_notebook_set

    require_library("openssl-3")
    notebooks = tiny_notebook_set(tmp_path / "nb")
    status = main(["report", "--run", str(lab_run.path), "--inventory", str(SAMPLE), "--out", str(tmp_path / "r"),
                   "--fail-on", "never", "--notebooks", str(notebooks), "--cross-check", "--quiet"])
    assert status == 0
    frame = pd.read_parquet(tmp_path / "r" / "audit" / "crosscheck.parquet")
    assert len(frame) and frame["library"].str.startswith("OpenSSL").any()
    summary = json.loads((tmp_path / "r" / "audit" / "summary.json").read_text())
    assert summary["crosscheck"]["asked"] and summary["crosscheck"]["cases"] == len(frame)


def test_load_accepts_an_audit_written_before_the_stack_frames(sample_audit, tmp_path: Path) -> None:
    out = write_audit(sample_audit, tmp_path / "audit")
    for name in ("stack_alternatives", "crosscheck"):
        (out / f"{name}.parquet").unlink()
    back = load_audit(out)
    assert back.stack_alternatives.empty and list(back.stack_alternatives.columns) == list(c.STACK_ALTERNATIVES_DTYPES)
    assert back.crosscheck.empty
    (out / "coverage.parquet").unlink()
    with pytest.raises(RunError, match="coverage.parquet"):
        load_audit(out)
