"""Pins: Android network security config, TrustKit (plist and JSON), OkHttp CertificatePinner."""

from __future__ import annotations

import base64
import json
import plistlib
from pathlib import Path

import pandas as pd

from iotaudit import columns as c
from iotaudit.certs import spki_pin
from iotaudit.firmware import scan
from iotaudit.pinning import parse_pin
from tests.firmware_builders import aws, pem_text, rows

PIN1 = spki_pin(aws("AmazonRootCA1"))
PIN3 = spki_pin(aws("AmazonRootCA3"))


def _b64(pin: str) -> str:
    return pin.removeprefix("sha256/")


def test_android_nsc_with_an_expired_pin_set(tmp_path: Path) -> None:
    res = tmp_path / "app" / "src" / "main" / "res"
    (res / "xml").mkdir(parents=True)
    (res / "raw").mkdir()
    (res / "xml" / "network_security_config.xml").write_text(f"""<?xml version="1.0" encoding="utf-8"?>
<network-security-config>
  <domain-config>
    <domain includeSubdomains="true">iot.us-east-1.amazonaws.com</domain>
    <pin-set expiration="2024-01-01">
      <pin digest="SHA-256">{_b64(PIN1)}</pin>
      <pin digest="SHA-256">{_b64(PIN3)}</pin>
    </pin-set>
    <trust-anchors><certificates src="@raw/aws_root"/></trust-anchors>
  </domain-config>
</network-security-config>
""")
    (res / "raw" / "aws_root.pem").write_text(pem_text(aws("AmazonRootCA1")))
    (res / "raw" / "unrelated.pem").write_text(pem_text(aws("VeriSignClass3G5")))
    result = scan(tmp_path)
    pins = rows(result, **{c.FINDING: "pin"})
    assert [p[c.PIN] for p in pins] == [PIN1, PIN3]
    assert {p[c.PIN_EXPIRY] for p in pins} == {pd.Timestamp("2024-01-01", tz="UTC")}
    [profile] = result.profiles.to_dict("records")
    assert profile[c.PINS] == f"{PIN1};{PIN3}" and profile[c.PIN_EXPIRY].startswith("2024-01-01")
    assert profile[c.PIN_SCOPE] == "any" and profile[c.TLS_STACK] == "android"
    for pin in profile[c.PINS].split(";"):
        parse_pin(pin)  # the inventory accepts them
    assert [r[c.CATALOG_NAME] for r in rows(result, **{c.IN_STORE: True})] == ["AmazonRootCA1"]  # @raw/aws_root only


def test_a_malformed_android_pin_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nsc.xml").write_text('<network-security-config><domain-config><domain>x</domain>'
                                      '<pin-set><pin digest="SHA-256">bm90IGEgZGlnZXN0</pin></pin-set>'
                                      '</domain-config></network-security-config>')
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: "error"})
    assert "not a base64 SHA-256 digest" in problem[c.DETAIL] and rows(result, **{c.FINDING: "pin"}) == []


def test_trustkit_info_plist_pins_and_expiration(tmp_path: Path) -> None:
    doc = {"CFBundleIdentifier": "com.example.iot", "TSKConfiguration": {"TSKPinnedDomains": {
        "example-ats.iot.eu-west-1.amazonaws.com": {
            "TSKPublicKeyHashes": [_b64(PIN1), _b64(PIN3)], "TSKExpirationDate": "2030-06-01",
            "TSKEnforcePinning": True}}}}
    (tmp_path / "Info.plist").write_bytes(plistlib.dumps(doc, fmt=plistlib.FMT_BINARY))
    pins = rows(scan(tmp_path), **{c.FINDING: "pin"})
    assert [(p[c.PIN], p[c.EMBEDDED_AS]) for p in pins] == [
        (PIN1, "example-ats.iot.eu-west-1.amazonaws.com"), (PIN3, "example-ats.iot.eu-west-1.amazonaws.com")]
    assert pins[0][c.PIN_EXPIRY] == pd.Timestamp("2030-06-01", tz="UTC")


def test_trustkit_json_config(tmp_path: Path) -> None:
    (tmp_path / "trustkit.json").write_text(json.dumps({"TSKPinnedDomains": {"a.example": {
        "TSKPublicKeyHashes": [_b64(PIN3), base64.b64encode(bytes(32)).decode()]}}}))
    pins = rows(scan(tmp_path), **{c.FINDING: "pin"})
    assert len(pins) == 2 and pins[0][c.PIN] == PIN3 and pd.isna(pins[0][c.PIN_EXPIRY])


def test_okhttp_certificate_pinner_pins_in_sources(tmp_path: Path) -> None:
    (tmp_path / "Client.kt").write_text(
        "val pinner = CertificatePinner.Builder()\n"
        f"    .add(\"iot.example.com\", \"{PIN1}\")\n"
        "    .build()\n")
    [pin] = rows(scan(tmp_path), **{c.FINDING: "pin"})
    assert (pin[c.PIN], pin[c.EMBEDDED_AS], pin[c.LINE]) == (PIN1, "iot.example.com", 2)
