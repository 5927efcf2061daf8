"""iotaudit scan and iotaudit inventory join on the command line, and scan -> join -> audit against the lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.certs import cert_pem
from iotaudit.firmware import write_esp_bundle
from iotaudit.fleetjoin import join_inventory
from iotaudit.errors import InventoryError
from iotaudit.inventory import load_inventory
from iotaudit.lab import lab_ca_certificates
from tests.firmware_builders import aws, c_string_define, embed_with_ld, pem_text

ATS = "lab-ats-dual-ats.iot.us-east-1.amazonaws.com"


def _iotaudit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotaudit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _firmware(tmp_path: Path, certs: dict) -> dict[str, Path]:
    """Three firmware: an ESP-IDF build tree with a bundle, a C project pinning an intermediate, a bare ELF."""
    esp = tmp_path / "fw-esp"
    (esp / "build").mkdir(parents=True)
    (esp / "sdkconfig").write_text(
        "# Espressif IoT Development Framework (ESP-IDF) 5.2.1 Project Configuration\n"
        "CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y\nCONFIG_MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_CMN=y\n"
        "CONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_RSA=y\nCONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA=y\n")
    write_esp_bundle([certs["AmazonRootCA1"], certs["AmazonRootCA3"], certs["StarfieldClass2CA"]], layout="legacy",
                     path=esp / "build" / "x509_crt_bundle")
    pinned = tmp_path / "fw-pinned"
    (pinned / "main").mkdir(parents=True)
    (pinned / "main" / "aws_root.h").write_text(c_string_define("ROOT_CA_PEM", certs["AmazonRSA2048M01"]))
    (pinned / "sdkconfig").write_text(
        "# Espressif IoT Development Framework (ESP-IDF) 5.2.1 Project Configuration\n"
        "# CONFIG_MBEDTLS_CERTIFICATE_BUNDLE is not set\nCONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_RSA=y\n"
        "# CONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA is not set\n")
    legacy = embed_with_ld(tmp_path, {"root_ca.pem": cert_pem(certs["VeriSignClass3G5"]).encode() + b"\0"},
                           out="fw-legacy.o")
    return {"fw-esp": esp, "fw-pinned": pinned, "fw-legacy": legacy}


def _devices(path: Path, names: list[str]) -> Path:
    lines = ["device_id,group,firmware,region,endpoints"]
    lines += [f"dev-{name}-{n},fleet,{name},us-east-1,{ATS}" for name in names for n in (1, 2)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_scan_writes_profiles_stores_and_findings(tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "ca.pem").write_text(pem_text(aws("AmazonRootCA1"), aws("AmazonRootCA3")))
    proc = _iotaudit("scan", "fw", "--out", "out/profiles.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    profiles = pd.read_csv(tmp_path / "out" / "profiles.csv", dtype=str, keep_default_na=False)
    assert list(profiles.columns) == list(c.SCAN_PROFILE_COLUMNS) and c.PATH_BUILDER not in profiles.columns
    assert profiles.loc[0, c.TRUST_STORE] == "trust_stores/fw.pem"
    assert (tmp_path / "out" / "trust_stores" / "fw.pem").read_text() == pem_text(aws("AmazonRootCA1"), aws("AmazonRootCA3"))
    findings = pd.read_parquet(tmp_path / "out" / "scan.parquet")
    assert list(findings.columns) == list(c.SCAN_FINDING_COLUMNS) and len(findings) == 2
    assert "fw: 2 anchor(s)" in proc.stdout and "Traceback" not in proc.stderr


def test_scan_json_prints_profiles_and_notes(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_text(pem_text(aws("AmazonRSA2048M01")))
    proc = _iotaudit("scan", "root.pem", "--profile", "fw-x", "--out", "p.csv", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["profiles"][0][c.PROFILE] == "fw-x"
    assert any(note[c.NOTE].startswith("accidental pin") for note in doc["notes"])


@pytest.mark.parametrize("args, message", [
    (["scan", "missing-dir", "--out", "p.csv"], "missing-dir: cannot scan: No such file or directory"),
    (["scan", ".", ".", "--profile", "only-one", "--out", "p.csv"], "1 profile name(s) for 2 path(s)"),
    (["scan", "--out", "p.csv"], "the following arguments are required: PATH"),
])
def test_scan_usage_and_input_errors_exit_2_without_a_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _iotaudit(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_scan_refuses_to_overwrite_without_the_flag(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("keep me\n")
    proc = _iotaudit("scan", ".", "--out", "p.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (tmp_path / "p.csv").read_text() == "keep me\n"


def test_join_names_the_row_of_a_device_whose_firmware_was_not_scanned(tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "ca.pem").write_text(pem_text(aws("AmazonRootCA1")))
    assert _iotaudit("scan", "fw", "--out", "scan/profiles.csv", cwd=tmp_path).returncode == 0
    _devices(tmp_path / "devices.csv", ["fw", "fw-unknown"])
    proc = _iotaudit("inventory", "join", "scan/profiles.csv", "devices.csv", "--out", "inv.csv", cwd=tmp_path)
    assert proc.returncode == 2 and "row 4, column firmware: profile 'fw-unknown' is not in" in proc.stderr
    assert not (tmp_path / "inv.csv").exists()


def test_join_rewrites_store_paths_and_fills_unknown_key_types(tmp_path: Path) -> None:
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "ca.pem").write_text(pem_text(aws("AmazonRootCA1"), aws("AmazonRootCA3")))
    from iotaudit.firmware import scan

    scan(tmp_path / "fw").write(tmp_path / "scan" / "profiles.csv")
    _devices(tmp_path / "devices.csv", ["fw"])
    out, notes = join_inventory(tmp_path / "scan" / "profiles.csv", tmp_path / "devices.csv",
                                tmp_path / "inventories" / "inv.csv")
    frame = pd.read_csv(out, dtype=str, keep_default_na=False)
    # The scan wrote the store outside the inventory's folder, which the loader refuses to read
    # (issue 9 item 7): join copies it next to the inventory so the folder stays portable.
    assert set(frame[c.TRUST_STORE]) == {"trust_stores/fw.pem"} and set(frame[c.KEY_TYPES]) == {"rsa;ecdsa"}
    assert (tmp_path / "inventories" / "trust_stores" / "fw.pem").read_bytes() == \
        (tmp_path / "scan" / "trust_stores" / "fw.pem").read_bytes()
    assert notes == ["profile 'fw': trust store copied to trust_stores/fw.pem next to the inventory",
                     "profile 'fw': the scan could not tell its key types; used 'rsa;ecdsa'"]
    assert load_inventory(out).device_count == 2


def test_join_refuses_a_device_list_without_its_columns(tmp_path: Path) -> None:
    (tmp_path / "profiles.csv").write_text("profile,trust_store,key_types\nfw,x.pem,rsa\n")
    (tmp_path / "devices.csv").write_text("device_id,region\nd1,us-east-1\n")
    with pytest.raises(InventoryError) as caught:
        join_inventory(tmp_path / "profiles.csv", tmp_path / "devices.csv", tmp_path / "inv.csv")
    assert {col for _, col, _ in caught.value.problems} == {c.GROUP, c.ENDPOINTS, "firmware/profile"}


@pytest.mark.slow
def test_scan_join_audit_against_the_lab_gives_the_expected_verdicts(tmp_path: Path, lab_run) -> None:
    certs = lab_ca_certificates()
    firmware = _firmware(tmp_path, certs)
    names = list(firmware)
    scan_args = ["scan", *(str(p) for p in firmware.values())]
    for name in names:
        scan_args += ["--profile", name]
    proc = _iotaudit(*scan_args, "--catalog", "lab", "--out", "scan/profiles.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    profiles = pd.read_csv(tmp_path / "scan" / "profiles.csv", dtype=str, keep_default_na=False).set_index(c.PROFILE)
    assert profiles.loc["fw-esp", c.TLS_STACK] == "esp-idf-bundle"
    assert (profiles.loc["fw-pinned", c.TLS_STACK], profiles.loc["fw-pinned", c.KEY_TYPES]) == ("mbedtls-3.6", "rsa")
    assert profiles.loc["fw-legacy", c.TLS_STACK] == "" and "no TLS library evidence" in profiles.loc["fw-legacy", c.NOTES]
    assert "accidental pin: Amazon intermediate Amazon RSA 2048 M01" in proc.stdout

    _devices(tmp_path / "devices.csv", names)
    proc = _iotaudit("inventory", "join", "scan/profiles.csv", "devices.csv", "--out", "inventory.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _iotaudit("audit", str(lab_run.path), "--inventory", "inventory.csv", "--out", "audit", "--fail-on", "never", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    verdicts = pd.read_parquet(tmp_path / "audit" / "profiles.parquet").set_index(c.PROFILE)[c.VERDICT].astype(str)
    assert verdicts.to_dict() == {"fw-esp": "covered", "fw-pinned": "covered", "fw-legacy": "broken"}
    coverage = pd.read_parquet(tmp_path / "audit" / "coverage.parquet")
    pinned = coverage[coverage[c.PROFILE].astype(str) == "fw-pinned"]
    assert set(pinned[c.KEY_TYPE].astype(str)) == {"rsa"} and set(pinned[c.ANCHOR_NAME]) == {"AmazonRSA2048M01"}
