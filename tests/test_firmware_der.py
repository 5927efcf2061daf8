"""DER certificates: files, C byte arrays, Zephyr .der.inc lists, and inside any binary."""

from __future__ import annotations

import random
from pathlib import Path

from iotaudit import columns as c
from iotaudit.firmware import scan
from tests.firmware_builders import c_byte_array, certificates, der_inc, der_of, insert, rows


def test_a_der_file_is_read_and_identified(tmp_path: Path) -> None:
    (tmp_path / "AmazonRootCA3.cer").write_bytes(der_of("AmazonRootCA3"))
    [found] = certificates(scan(tmp_path))
    assert (found[c.SCAN_FORMAT], found[c.CATALOG_NAME], found[c.OFFSET]) == ("der", "AmazonRootCA3", 0)


def test_garbage_in_a_der_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "root.der").write_bytes(b"\x30\x82\x01\x00" + bytes(range(200)))
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: c.FindingKind.ERROR.value})
    assert problem[c.FILE] == "root.der" and "garbage DER" in problem[c.DETAIL]
    assert certificates(result) == []


def test_a_c_byte_array_is_decoded_and_named(tmp_path: Path) -> None:
    source = "#include <stdint.h>\n\n" + c_byte_array("aws_root_ca", der_of("AmazonRootCA1"))
    (tmp_path / "certs.c").write_text(source)
    [found] = certificates(scan(tmp_path))
    assert found[c.SCAN_FORMAT] == c.ScanFormat.DER_C_ARRAY.value
    assert (found[c.CATALOG_NAME], found[c.EMBEDDED_AS], found[c.LINE]) == ("AmazonRootCA1", "aws_root_ca", 4)


def test_a_zephyr_der_inc_hex_list_is_decoded(tmp_path: Path) -> None:
    (tmp_path / "build" / "zephyr" / "include" / "generated").mkdir(parents=True)
    inc = tmp_path / "build" / "zephyr" / "include" / "generated" / "RootCA.der.inc"
    inc.write_text(der_inc(der_of("AmazonRootCA3")))
    [found] = certificates(scan(tmp_path))
    assert (found[c.FILE], found[c.CATALOG_NAME], found[c.OFFSET]) == (
        "build/zephyr/include/generated/RootCA.der.inc", "AmazonRootCA3", 0)


def test_der_certificates_hidden_in_random_data_are_found_at_their_offsets(tmp_path: Path) -> None:
    rng = random.Random(8)
    blob = bytearray(rng.randbytes(3 << 20))
    at1 = insert(blob, 123_457, der_of("AmazonRootCA1"))
    at2 = insert(blob, 2_900_001, der_of("AmazonECDSA256M01"))
    (tmp_path / "flash.img").write_bytes(bytes(blob))
    found = certificates(scan(tmp_path))
    assert [(r[c.OFFSET], r[c.CATALOG_NAME], r[c.ROLE]) for r in found] == [
        (at1, "AmazonRootCA1", "root"), (at2, "AmazonECDSA256M01", "intermediate")]


def test_a_der_header_cut_short_by_the_end_of_the_image_is_an_error(tmp_path: Path) -> None:
    der = der_of("AmazonRootCA1")
    blob = bytes(1000) + der[: len(der) - 100]
    (tmp_path / "cut.bin").write_bytes(blob)
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: c.FindingKind.ERROR.value})
    assert problem[c.OFFSET] == 1000 and "truncated" in problem[c.DETAIL]


def test_random_bytes_give_no_finding(tmp_path: Path) -> None:
    (tmp_path / "noise.bin").write_bytes(random.Random(1).randbytes(12 << 20))
    assert scan(tmp_path).findings.empty
