"""ESP-IDF x509_crt_bundle: the writer, the reader (both layouts), and bundles found in build trees and images.

The writer's output was compared byte for byte with ESP-IDF's own generator
(``components/mbedtls/esp_crt_bundle/gen_crt_bundle.py`` at v5.3.2 for the
legacy layout and v5.5 for the current one) on the roots of data/aws-ca; the
tests below check the layout rules both generators follow.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.certs import spki_sha256
from iotaudit.errors import ScanError
from iotaudit.firmware import BundleLayout, read_esp_bundle, scan, write_esp_bundle
from tests.firmware_builders import anchors, aws, insert, rows

ROOTS = ("AmazonRootCA1", "AmazonRootCA3", "StarfieldClass2CA", "SFSRootCAG2")


def _roots():
    return [aws(name) for name in ROOTS]


def test_legacy_layout_is_a_big_endian_count_then_big_endian_lengths() -> None:
    data = write_esp_bundle(_roots(), layout="legacy")
    assert struct.unpack_from(">H", data, 0)[0] == 4
    subjects = sorted(cert.subject.public_bytes() for cert in _roots())
    name_len, key_len = struct.unpack_from(">HH", data, 2)
    assert data[6:6 + name_len] == subjects[0]  # sorted by DER subject, as esp_crt_find_cert() binary-searches
    assert read_esp_bundle(data).layout is BundleLayout.LEGACY


def test_current_layout_is_an_offset_table_then_little_endian_lengths() -> None:
    data = write_esp_bundle(_roots(), layout="current")
    offsets = struct.unpack_from("<4L", data, 0)
    assert offsets[0] == 16  # "the # of certificates in the bundle is [first offset]/sizeof(uint32_t)"
    for this, following in zip(offsets, offsets[1:]):
        name_len, key_len = struct.unpack_from("<HH", data, this)
        assert following == this + 4 + name_len + key_len
    bundle = read_esp_bundle(data)
    assert bundle.layout is BundleLayout.CURRENT and [e.offset for e in bundle.entries] == list(offsets)


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_reader_returns_each_root_name_and_key(layout: str) -> None:
    bundle = read_esp_bundle(write_esp_bundle(_roots(), layout=layout))
    assert sorted(e.anchor.spki_sha256 for e in bundle.entries) == sorted(spki_sha256(cert) for cert in _roots())
    assert {e.anchor.subject_cn for e in bundle.entries} >= {"Amazon Root CA 1", "Amazon Root CA 3"}


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_a_truncated_bundle_raises_naming_the_entry_and_offset(layout: str) -> None:
    data = write_esp_bundle(_roots(), layout=layout)
    bundle = read_esp_bundle(data)
    cut = bundle.entries[2].offset + 30
    with pytest.raises(ScanError) as caught:
        read_esp_bundle(data[:cut], layout=layout)
    assert caught.value.offset == bundle.entries[2].offset and "entry 3 of 4" in caught.value.reason
    assert "truncated" in caught.value.reason


def test_the_writer_refuses_more_roots_than_the_maximum() -> None:
    with pytest.raises(ScanError, match="exceed the bundle maximum of 2"):
        write_esp_bundle(_roots(), max_certs=2)


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_a_bundle_file_in_a_build_directory_is_read_and_matched_by_key(tmp_path: Path, layout: str) -> None:
    (tmp_path / "build").mkdir()
    write_esp_bundle(_roots(), layout=layout, path=tmp_path / "build" / "x509_crt_bundle")
    result = scan(tmp_path)
    found = anchors(result)
    assert sorted(r[c.CATALOG_NAME] for r in found) == sorted(ROOTS)
    assert {r[c.SCAN_FORMAT] for r in found} == {BundleLayout(layout).format.value}
    # name + key only: no certificate, no dates
    assert all(r[c.CATALOG_MATCH] == "key" and r[c.SHA256] == "" and pd.isna(r[c.NOT_AFTER]) for r in found)
    offsets = sorted(e.offset for e in read_esp_bundle((tmp_path / "build" / "x509_crt_bundle").read_bytes()).entries)
    assert sorted(r[c.OFFSET] for r in found) == offsets
    assert result.profiles.iloc[0][c.ANCHORS] == 4  # catalogue certificates with those keys make the PEM store


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_a_bundle_hidden_in_a_raw_image_is_found_at_its_offset(tmp_path: Path, layout: str) -> None:
    blob = bytearray(random.Random(3).randbytes(2 << 20))
    data = write_esp_bundle(_roots()[:2], layout=layout)
    at = insert(blob, 777_777, data)
    (tmp_path / "flash.bin").write_bytes(bytes(blob))
    result = scan(tmp_path)
    found = anchors(result)
    assert sorted(r[c.CATALOG_NAME] for r in found) == ["AmazonRootCA1", "AmazonRootCA3"]
    assert min(r[c.OFFSET] for r in found) == at + (2 if layout == "legacy" else 8)
    [stack] = rows(result, **{c.FINDING: "stack"})
    assert stack[c.OFFSET] == at and stack[c.SCAN_FORMAT] == BundleLayout(layout).format.value


@pytest.mark.parametrize("layout", ["legacy", "current"])
def test_truncated_bundle_entries_in_an_image_are_an_error_with_their_offset(tmp_path: Path, layout: str) -> None:
    data = write_esp_bundle(_roots(), layout=layout)
    entries = read_esp_bundle(data).entries
    blob = bytes(4096) + data[: entries[3].offset + 10]  # the last entry is cut: the image ends inside it
    (tmp_path / "cut.bin").write_bytes(blob)
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: "error"})
    assert problem[c.OFFSET] == 4096 + entries[3].offset and "entry 4 of 4" in problem[c.DETAIL]
    assert len(anchors(result)) == 3  # the entries before the cut are still reported


def test_a_bundle_file_that_is_neither_layout_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "x509_crt_bundle").write_bytes(b"\x00\x05" + bytes(range(40)))
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: "error"})
    assert problem[c.FILE] == "x509_crt_bundle" and "either layout" in problem[c.DETAIL]
    assert anchors(result) == []
