"""firmware_notes: what a fleet owner must see about the stores found in firmware."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from iotaudit import columns as c
from iotaudit.certs import cert_pem
from iotaudit.firmware import firmware_notes, scan, write_esp_bundle
from iotaudit.lab import lab_pki
from tests.firmware_builders import aws, pem_text, rows
from tests.helpers import issue, rsa_key

AS_OF = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _notes(tmp_path: Path, **kwargs) -> list[tuple[str, str]]:
    frame = scan(tmp_path, as_of=AS_OF, **kwargs).notes
    assert list(frame.columns) == list(c.FIRMWARE_NOTE_COLUMNS)
    return [(str(r[c.SEVERITY_COL]), r[c.NOTE]) for r in frame.to_dict("records")]


def _has(notes: list[tuple[str, str]], severity: str, start: str) -> bool:
    return any(s == severity and n.startswith(start) for s, n in notes)


def test_an_amazon_intermediate_as_anchor_is_an_accidental_pin(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem_text(aws("AmazonRootCA1"), aws("AmazonRSA2048M01")))
    notes = _notes(tmp_path)
    assert _has(notes, "warning", "accidental pin: Amazon intermediate Amazon RSA 2048 M01")
    assert not _has(notes, "warning", "single root")


def test_a_server_leaf_as_anchor_is_an_accidental_pin_and_a_client_certificate_is_not(tmp_path: Path) -> None:
    pki = lab_pki(AS_OF, regions=("us-east-1",))
    server_leaf = pki.leaves[("rsa", "us-east-1")]
    (tmp_path / "root_ca.pem").write_text(cert_pem(server_leaf))
    (tmp_path / "device.pem.crt").write_text(cert_pem(pki.client_certificate))
    result = scan(tmp_path, as_of=AS_OF)
    notes = [(str(r[c.SEVERITY_COL]), r[c.NOTE]) for r in result.notes.to_dict("records")]
    assert _has(notes, "error", "accidental pin: leaf certificate")
    [client] = rows(result, **{c.FILE: "device.pem.crt"})
    assert client[c.ROLE] == "leaf" and not client[c.IN_STORE] and "client certificate" in client[c.DETAIL]


def test_an_expired_anchor_is_noted_and_as_of_decides(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text(pem_text(aws("AmazonRootCA1"), aws("AmazonServerCA1B")))  # 1B ended 2025-10-19
    result = scan(tmp_path, as_of=AS_OF)
    expired = [n for n in result.notes[c.NOTE] if n.startswith("expired anchor")]
    assert expired == ["expired anchor: Amazon Server CA 1B (not after 2025-10-19)"]
    earlier = firmware_notes(result.findings, as_of=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert not any(n.startswith("expired anchor") for n in earlier[c.NOTE])


def test_a_single_root_is_noted(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_text(pem_text(aws("AmazonRootCA1")))
    assert _has(_notes(tmp_path), "warning", "single root: Amazon Root CA 1")


def test_a_store_without_any_aws_root_is_an_error(tmp_path: Path) -> None:
    own = issue("Corp Device Root", rsa_key(0))
    (tmp_path / "corp.pem").write_text(cert_pem(own.cert))
    (tmp_path / "corp2.pem").write_text(pem_text(aws("AmazonRSA2048M01")))
    assert _has(_notes(tmp_path), "error", "no AWS root in the store")


def test_the_same_root_twice_in_one_store_is_noted_but_not_across_files(tmp_path: Path) -> None:
    (tmp_path / "bundle.pem").write_text(pem_text(aws("AmazonRootCA1"), aws("AmazonRootCA3"), aws("AmazonRootCA1")))
    (tmp_path / "copy.pem").write_text(pem_text(aws("AmazonRootCA3")))
    notes = _notes(tmp_path)
    assert [n for s, n in notes if n.startswith("duplicate root")] == [
        "duplicate root: Amazon Root CA 1 is in the same store twice"]


def test_a_bundle_layout_that_the_idf_version_cannot_read_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sdkconfig").write_text("# Espressif IoT Development Framework (ESP-IDF) 5.4.0 Project Configuration\n"
                                        "CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y\n")
    write_esp_bundle([aws("AmazonRootCA1"), aws("AmazonRootCA3")], layout="legacy",
                     path=tmp_path / "x509_crt_bundle")  # a hand-made bundle from an old gen_crt_bundle.py
    notes = _notes(tmp_path)
    assert _has(notes, "error", "bundle layout mismatch: a legacy bundle, but ESP-IDF 5.4.0 reads only the current")
    assert _has(notes, "info", "name+key anchor: no dates (2 roots")


def test_a_matching_layout_is_not_noted(tmp_path: Path) -> None:
    (tmp_path / "sdkconfig").write_text("# Espressif IoT Development Framework (ESP-IDF) 5.2.1 Project Configuration\n"
                                        "CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y\n")
    write_esp_bundle([aws("AmazonRootCA1"), aws("AmazonRootCA3")], layout="legacy", path=tmp_path / "x509_crt_bundle")
    assert not any(n.startswith("bundle layout mismatch") for _, n in _notes(tmp_path))


def test_notes_read_back_from_scan_parquet(tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "root.pem").write_text(pem_text(aws("AmazonRSA2048M01")))
    result = scan(tmp_path / "fw", as_of=AS_OF)
    result.write(tmp_path / "out" / "profiles.csv")
    again = firmware_notes(pd.read_parquet(tmp_path / "out" / "scan.parquet"))
    pd.testing.assert_frame_equal(again, result.notes)
    assert {"no AWS root", "accidental pin", "single root"} <= {n.split(":")[0].split(" in")[0] for n in again[c.NOTE]}
