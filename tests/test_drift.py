"""Drift between two runs: each kind of change is found, and only where it happened."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from iotaudit import cli
from iotaudit.run_drift import CHANGE, DETAIL, DriftChange, drift, drift_summary
from iotaudit.store import write_run
from tests.fixtures.runs import ca, leaf, make_run

HOST = "a1b2c3-ats.iot.us-east-1.amazonaws.com"
LEAF_RSA = leaf(HOST, "AmazonRSA2048M01", serial=1)
LEAF_RSA_NEW = leaf(HOST, "AmazonRSA2048M01", serial=2)
LEAF_RSA_M04 = leaf(HOST, "AmazonRSA2048M04", serial=3)
LEAF_EC = leaf(HOST, "AmazonECDSA256M01", key_type="ec", serial=4)
RSA_CHAIN = [LEAF_RSA, ca("AmazonRSA2048M01"), ca("G2-RootCA1")]
EC_CHAIN = [LEAF_EC, ca("AmazonECDSA256M01"), ca("G2-RootCA3")]


def baseline(**overrides):
    """The old run: one dual-certificate endpoint on 8883, plus a second endpoint on 443."""
    rows = {
        ("rsa-tls12"): (HOST, 8883, "rsa-tls12", "client-cert-required", RSA_CHAIN),
        ("ecdsa-tls12"): (HOST, 8883, "ecdsa-tls12", "client-cert-required", EC_CHAIN),
        ("tls13"): (HOST, 8883, "tls13", "timeout", []),
        ("443"): (HOST, 443, "rsa-tls12", "ok", RSA_CHAIN),
    }
    rows.update(overrides)
    return make_run([r for r in rows.values() if r is not None])


def kinds(frame: pd.DataFrame) -> list[str]:
    return sorted(frame[CHANGE].astype(str))


def test_identical_runs_have_no_drift():
    frame = drift(baseline(), baseline())
    assert frame.empty
    assert list(frame.columns)[:3] == ["change", "host", "port"]
    assert set(drift_summary(frame).values()) == {0}


def test_leaf_rotation_is_one_leaf_added_and_one_removed():
    new = baseline(**{"rsa-tls12": (HOST, 8883, "rsa-tls12", "client-cert-required",
                                     [LEAF_RSA_NEW, ca("AmazonRSA2048M01"), ca("G2-RootCA1")])})
    frame = drift(baseline(), new)
    assert kinds(frame) == ["certificate-added", "certificate-removed"]
    assert set(frame["role"]) == {"leaf"}
    assert set(frame["port"]) == {8883} and set(frame["key_type"]) == {"rsa"}


def test_intermediate_change_reports_new_intermediate_and_new_issuer():
    new_chain = [LEAF_RSA_M04, ca("AmazonRSA2048M04"), ca("G2-RootCA1")]
    new = baseline(**{"rsa-tls12": (HOST, 8883, "rsa-tls12", "client-cert-required", new_chain),
                      "443": (HOST, 443, "rsa-tls12", "ok", new_chain)})
    frame = drift(baseline(), new)
    intermediate = frame[frame[CHANGE] == DriftChange.NEW_INTERMEDIATE.value]
    assert list(intermediate["certificate"]) == ["AmazonRSA2048M04"]
    assert list(intermediate["role"]) == ["intermediate"]
    issuer = frame[frame[CHANGE] == DriftChange.NEW_ISSUER.value]
    assert len(issuer) == 1 and "Amazon RSA 2048 M04" in issuer["new"].iloc[0]
    added = frame[frame[CHANGE] == DriftChange.CERTIFICATE_ADDED.value]
    assert set(added["port"]) == {8883, 443}
    assert DriftChange.TOP_CHANGED.value not in set(frame[CHANGE].astype(str))


def test_dropped_cross_sign_changes_the_chain_top():
    new = baseline(**{"rsa-tls12": (HOST, 8883, "rsa-tls12", "client-cert-required",
                                     [LEAF_RSA, ca("AmazonRSA2048M01")])})
    frame = drift(baseline(), new)
    top = frame[frame[CHANGE] == DriftChange.TOP_CHANGED.value]
    assert len(top) == 1
    assert top["old"].iloc[0].startswith("G2-RootCA1 <- issued by Starfield Services Root")
    assert top["new"].iloc[0] == "AmazonRSA2048M01 <- issued by Amazon Root CA 1"
    removed = frame[frame[CHANGE] == DriftChange.CERTIFICATE_REMOVED.value]
    assert list(removed["role"]) == ["cross-signed root"]
    # The change is the most alarming one listed (after none), and only on port 8883 RSA.
    assert frame[CHANGE].iloc[0] == DriftChange.TOP_CHANGED.value
    assert set(top["key_type"]) == {"rsa"} and set(top["port"]) == {8883}


def test_endpoint_that_stopped_answering():
    new = baseline(**{"ecdsa-tls12": (HOST, 8883, "ecdsa-tls12", "timeout", [])})
    frame = drift(baseline(), new)
    stopped = frame[frame[CHANGE] == DriftChange.STOPPED_ANSWERING.value]
    assert list(stopped["probe"]) == ["ecdsa-tls12"]
    assert (stopped["old"].iloc[0], stopped["new"].iloc[0]) == ("client-cert-required", "timeout")
    assert frame[CHANGE].iloc[0] == DriftChange.STOPPED_ANSWERING.value
    # The EC certificates are gone from the endpoint too; the RSA side is untouched.
    removed = frame[frame[CHANGE] == DriftChange.CERTIFICATE_REMOVED.value]
    assert set(removed["key_type"]) == {"ec"} and len(removed) == 3


def test_endpoint_that_started_answering():
    new = baseline(**{"tls13": (HOST, 8883, "tls13", "client-cert-required", EC_CHAIN)})
    frame = drift(baseline(), new)
    assert kinds(frame) == ["started-answering"]


def test_other_status_change():
    new = baseline(**{"tls13": (HOST, 8883, "tls13", "refused", [])})
    frame = drift(baseline(), new)
    assert kinds(frame) == ["status-changed"]
    assert "timeout -> refused" in frame[DETAIL].iloc[0]


def test_endpoint_removed_is_not_reported_as_certificate_changes():
    new = baseline(**{"443": None})
    frame = drift(baseline(), new)
    assert kinds(frame) == ["endpoint-removed"]
    assert frame["port"].iloc[0] == 443


def test_endpoint_added():
    new = baseline(**{"8443": ("other.iot.eu-west-1.amazonaws.com", 8443, "rsa-tls12", "ok", RSA_CHAIN)})
    frame = drift(baseline(), new)
    assert kinds(frame) == ["endpoint-added"]
    assert frame["host"].iloc[0] == "other.iot.eu-west-1.amazonaws.com"


def test_cli_prints_changes_and_exits_1_with_fail_on_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    old = write_run(baseline(), tmp_path / "old")
    new = write_run(baseline(**{"tls13": (HOST, 8883, "tls13", "refused", [])}), tmp_path / "new")
    out = tmp_path / "drift.csv"
    assert cli.main(["drift", str(old.path), str(new.path), "--out", str(out)]) == 0
    assert "1 change(s)" in capsys.readouterr().out
    assert pd.read_csv(out)[CHANGE].tolist() == ["status-changed"]
    assert cli.main(["drift", str(old.path), str(new.path), "--fail-on-change"]) == 1


def test_cli_no_drift_exits_0_even_with_fail_on_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    old = write_run(baseline(), tmp_path / "old")
    new = write_run(baseline(), tmp_path / "new")
    assert cli.main(["drift", str(old.path), str(new.path), "--fail-on-change"]) == 0
    assert "no drift" in capsys.readouterr().out


def test_cli_missing_run_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    old = write_run(baseline(), tmp_path / "old")
    assert cli.main(["drift", str(old.path), str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
