"""PEM certificates anywhere: plain files, binaries, C/C++ string literals, odd headers."""

from __future__ import annotations

from pathlib import Path

from iotaudit import columns as c
from iotaudit.certs import cert_pem, cert_sha256
from iotaudit.firmware import scan
from iotaudit.firmware.pem import LOOSE_HEADER
from tests.firmware_builders import aws, c_string_define, certificates, pem_text, rows


def test_plain_pem_bundle_is_found_identified_and_at_its_offset(tmp_path: Path) -> None:
    text = "# roots\n" + pem_text(aws("AmazonRootCA1"), aws("AmazonRootCA3"))
    (tmp_path / "AmazonRoots.pem").write_text(text)
    found = certificates(scan(tmp_path))
    assert [r[c.CATALOG_NAME] for r in found] == ["AmazonRootCA1", "AmazonRootCA3"]
    assert found[0][c.OFFSET] == text.index("-----BEGIN") and found[0][c.LINE] == 2
    assert found[1][c.OFFSET] == text.index("-----BEGIN", found[0][c.OFFSET] + 1)
    assert {r[c.SCAN_FORMAT] for r in found} == {c.ScanFormat.PEM.value}
    assert found[0][c.CONTAINER] == found[1][c.CONTAINER]  # one bundle file is one store
    assert found[0][c.SHA256] == cert_sha256(aws("AmazonRootCA1")) and found[0][c.ROLE] == "root"


def test_crlf_and_a_trailing_space_after_the_header_are_tolerated_and_flagged(tmp_path: Path) -> None:
    pem = cert_pem(aws("AmazonRootCA3")).replace("-----BEGIN CERTIFICATE-----", "-----BEGIN CERTIFICATE----- ")
    (tmp_path / "root.crt").write_bytes(pem.replace("\n", "\r\n").encode())
    [found] = certificates(scan(tmp_path))
    assert found[c.CATALOG_NAME] == "AmazonRootCA3"
    assert LOOSE_HEADER in found[c.DETAIL]  # gen_crt_bundle.py would skip it


def test_pem_inside_adjacent_c_string_literals_is_joined_and_unescaped(tmp_path: Path) -> None:
    source = "/* demo_config.h */\n#include <stdio.h>\n" + c_string_define(
        "democonfigROOT_CA_PEM", aws("AmazonRootCA1"), header_pad=" ", eol="\\r\\n")
    (tmp_path / "demo_config.h").write_text(source)
    [found] = certificates(scan(tmp_path))
    assert found[c.SCAN_FORMAT] == c.ScanFormat.PEM_C_STRING.value
    assert found[c.CATALOG_NAME] == "AmazonRootCA1" and found[c.EMBEDDED_AS] == "democonfigROOT_CA_PEM"
    assert found[c.LINE] == 4 and found[c.OFFSET] == source.index('"-----BEGIN')


def test_arduino_progmem_raw_string_is_read(tmp_path: Path) -> None:
    source = ("#include <pgmspace.h>\n// Amazon Root CA 1\n"
              f"static const char AWS_CERT_CA[] PROGMEM = R\"EOF(\n{cert_pem(aws('AmazonRootCA1'))})EOF\";\n")
    (tmp_path / "secrets.h").write_text(source)
    [found] = certificates(scan(tmp_path))
    assert (found[c.EMBEDDED_AS], found[c.CATALOG_NAME], found[c.LINE]) == ("AWS_CERT_CA", "AmazonRootCA1", 3)


def test_a_pem_compiled_into_a_binary_is_found_at_its_byte_offset(tmp_path: Path) -> None:
    blob = bytearray(b"\x00\xff" * 5000)
    pem = cert_pem(aws("StarfieldClass2CA")).encode()
    blob[4321:4321 + len(pem)] = pem
    (tmp_path / "app.bin").write_bytes(bytes(blob))
    [found] = certificates(scan(tmp_path))
    assert (found[c.OFFSET], found[c.CATALOG_NAME]) == (4321, "StarfieldClass2CA")


def test_a_truncated_pem_block_is_an_error_with_its_offset(tmp_path: Path) -> None:
    pem = cert_pem(aws("AmazonRootCA1"))
    text = "junk\n" + pem[: len(pem) // 2]
    (tmp_path / "cut.pem").write_text(text)
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: c.FindingKind.ERROR.value})
    assert problem[c.OFFSET] == 5 and "truncated" in problem[c.DETAIL] and problem[c.FILE] == "cut.pem"
    assert certificates(result) == []


def test_a_pem_block_with_a_bad_body_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nTUlJQmFk\n-----END CERTIFICATE-----\n")
    [problem] = rows(scan(tmp_path), **{c.FINDING: c.FindingKind.ERROR.value})
    assert problem[c.OFFSET] == 0 and "not a valid X.509 certificate" in problem[c.DETAIL]
