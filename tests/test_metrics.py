"""Prometheus textfile export: names, absolute Unix seconds, escaping, atomic writes."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.metrics import escape_label_value, families, parse_metrics, profile_verdicts, render_metrics, write_metrics
from tests.fixtures.runs import CREATED, ca, leaf, make_run

HOST = "a1b2c3-ats.iot.us-east-1.amazonaws.com"
SHORT_LEAF = leaf(HOST, "AmazonRSA2048M01", days=40, serial=7)  # expires 10 days after CREATED
CHAIN = [SHORT_LEAF, ca("AmazonRSA2048M01"), ca("G2-RootCA1")]
AS_OF = CREATED
HOSTILE = 'fw "2.1"\\beta\nline2 <script>'
# One sample line of the text exposition format: name{label="value",...} value
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (\+Inf|-Inf|NaN|-?[0-9.e+-]+)$')


def run():
    return make_run([(HOST, 8883, "rsa-tls12", "client-cert-required", CHAIN),
                     (HOST, 8883, "ecdsa-tls12", "timeout", [])])


def coverage_frame():
    return pd.DataFrame({
        "profile": ["fw-a", "fw-a", "fw-b", HOSTILE],
        "devices": [10, 10, 5, 2],
        "verdict": ["covered", "broken", "covered", "at-risk"],
    })


def expiry_frame():
    return pd.DataFrame({
        "profile": ["fw-a", HOSTILE],
        "devices": [10, 2],
        "break_date": pd.to_datetime([datetime(2030, 1, 1, tzinfo=timezone.utc), None], utc=True),
    })


def samples(text, name):
    return [(labels, value) for n, labels, value in parse_metrics(text) if n == name]


def test_every_line_is_valid_exposition_format():
    text = render_metrics(run(), as_of=AS_OF, coverage=coverage_frame(), expiry=expiry_frame())
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_0-9]+ ", line), line
        else:
            assert SAMPLE.match(line), line
    assert text.endswith("\n")


def test_one_series_per_certificate_in_absolute_unix_seconds():
    r = run()
    text = render_metrics(r, as_of=AS_OF)
    after = samples(text, "x509_cert_not_after")
    assert len(after) == len(r.certificates) == 3
    by_sha = {labels["sha256"]: value for labels, value in after}
    for row in r.certificates.to_dict("records"):
        assert by_sha[row["sha256"]] == row["not_after"].timestamp()
    leaf_labels = next(labels for labels, _ in after if labels["role"] == "leaf")
    assert leaf_labels["subject_CN"] == HOST
    assert leaf_labels["issuer_CN"] == "Amazon RSA 2048 M01"
    assert leaf_labels["serial_number"] == "7"
    assert leaf_labels["endpoints"] == f"{HOST}:8883"
    assert {labels["role"] for labels, _ in after} == {"leaf", "intermediate", "cross-signed root"}
    assert len(samples(text, "x509_cert_not_before")) == 3


def test_expired_is_evaluated_at_as_of_not_now():
    text_before = render_metrics(run(), as_of=AS_OF)
    text_after = render_metrics(run(), as_of=AS_OF + timedelta(days=11))
    leaf_expired = lambda text: next(v for labels, v in samples(text, "x509_cert_expired") if labels["role"] == "leaf")  # noqa: E731
    assert leaf_expired(text_before) == 0
    assert leaf_expired(text_after) == 1
    assert samples(text_after, "iotaudit_as_of_timestamp_seconds")[0][1] == (AS_OF + timedelta(days=11)).timestamp()


def test_naive_as_of_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        render_metrics(run(), as_of=datetime(2025, 1, 1))


def test_hostile_label_values_are_escaped_and_round_trip():
    text = render_metrics(run(), as_of=AS_OF, expiry=expiry_frame())
    assert '\\"2.1\\"\\\\beta\\nline2' in text
    assert "\nline2" not in text  # a raw newline would end the sample line
    profiles = {labels["profile"] for labels, _ in samples(text, "iotaudit_profile_break_timestamp_seconds")}
    assert profiles == {"fw-a", HOSTILE}


def test_escape_label_value_rules():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_break_dates_are_seconds_and_no_break_is_plus_inf():
    text = render_metrics(run(), as_of=AS_OF, expiry=expiry_frame())
    breaks = {labels["profile"]: value for labels, value in samples(text, "iotaudit_profile_break_timestamp_seconds")}
    assert breaks["fw-a"] == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    assert math.isinf(breaks[HOSTILE]) and breaks[HOSTILE] > 0
    assert 'profile="fw-a"} 1893456000' in text


def test_firmware_break_dates_are_exported_beside_the_as_served_ones():
    frame = expiry_frame().assign(firmware_break_date=pd.to_datetime(
        [datetime(2031, 6, 1, tzinfo=timezone.utc), None], utc=True))
    text = render_metrics(run(), as_of=AS_OF, expiry=frame)
    renewed = {labels["profile"]: value
               for labels, value in samples(text, "iotaudit_profile_firmware_break_timestamp_seconds")}
    assert renewed["fw-a"] == datetime(2031, 6, 1, tzinfo=timezone.utc).timestamp()
    assert math.isinf(renewed[HOSTILE])


def test_frames_without_firmware_dates_export_no_firmware_family():
    text = render_metrics(run(), as_of=AS_OF, expiry=expiry_frame())
    assert "iotaudit_profile_firmware_break_timestamp_seconds" not in text


def test_devices_per_verdict_use_each_profiles_worst_verdict():
    text = render_metrics(run(), as_of=AS_OF, coverage=coverage_frame())
    fleet = {labels["verdict"]: value for labels, value in samples(text, "iotaudit_devices")}
    assert fleet == {"broken": 10, "at-risk": 2, "covered": 5, "not-applicable": 0}
    worst = profile_verdicts(coverage_frame()).set_index("profile")["verdict"].to_dict()
    assert worst == {"fw-a": "broken", "fw-b": "covered", HOSTILE: "at-risk"}


def test_probe_gauge_shows_endpoints_without_a_chain():
    text = render_metrics(run(), as_of=AS_OF)
    probes = {labels["probe"]: value for labels, value in samples(text, "iotaudit_probe_chain_captured")}
    assert probes == {"rsa-tls12": 1, "ecdsa-tls12": 0}


def test_families_are_declared_once_each():
    text = render_metrics(run(), as_of=AS_OF, coverage=coverage_frame(), expiry=expiry_frame(),
                          anchors_expiry=pd.DataFrame({"profile": ["fw-a"], "anchor_name": ["AmazonRootCA1"],
                                                       "anchor_sha256": ["ab"], "not_after": pd.to_datetime(["2038-01-17"], utc=True)}))
    names = list(families(text))
    assert len(names) == len(set(names))
    assert names[:3] == ["x509_cert_not_after", "x509_cert_not_before", "x509_cert_expired"]
    assert "iotaudit_anchor_not_after_seconds" in names


def test_write_metrics_replaces_atomically_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "textfile" / "iotaudit.prom"
    write_metrics(target, "old_metric 1\n")
    write_metrics(target, "new_metric 2\n")
    assert target.read_text() == "new_metric 2\n"
    assert [p.name for p in target.parent.iterdir()] == ["iotaudit.prom"]


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "iotaudit.prom"
    write_metrics(target, "old_metric 1\n")
    with pytest.raises(TypeError):
        write_metrics(target, None)  # type: ignore[arg-type]
    assert target.read_text() == "old_metric 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["iotaudit.prom"]
