"""The shipped AWS CA catalogue: labels by certificate and by key, statuses from the seed document."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotaudit import columns as c
from iotaudit.catalog import Catalog, CatalogMatch, CatalogStatus, aws_catalog
from iotaudit.certs import certificates_frame
from iotaudit.errors import CatalogError


def test_statuses_are_those_of_the_seed_document() -> None:
    cat = aws_catalog()
    assert cat.entry("AmazonRootCA1").status is CatalogStatus.IN_USE
    assert cat.entry("AmazonRootCA3").status is CatalogStatus.IN_USE
    assert cat.entry("AmazonRootCA2").status is CatalogStatus.RESERVED
    assert cat.entry("AmazonRootCA4").status is CatalogStatus.RESERVED
    assert cat.entry("VeriSignClass3G5").status is CatalogStatus.LEGACY


def test_every_shipped_pem_is_in_the_catalogue() -> None:
    cat = aws_catalog()
    files = {str(p.relative_to(p.parents[1]))
             for p in (Path(__file__).resolve().parent.parent / "data" / "aws-ca").glob("*/*.pem")}
    assert {e.source for e in cat.entries} == files


def test_cross_signed_copy_is_labelled_exactly_and_by_key() -> None:
    cat = aws_catalog()
    cross = cat.entry("G2-RootCA1")
    assert cat.identify(cross.sha256, cross.spki_sha256) == (cross, CatalogMatch.CERTIFICATE)
    # An unknown certificate with Root CA 1's key: "same key as AmazonRootCA1".
    entry, match = cat.identify("0" * 64, cross.spki_sha256)
    assert (entry.name, match) == ("AmazonRootCA1", CatalogMatch.KEY)


def test_label_frame_fills_catalogue_columns() -> None:
    cat = aws_catalog()
    frame = cat.label_frame(certificates_frame([cat.entry("G2-RootCA3").certificate]))
    row = frame.iloc[0]
    assert (row[c.CATALOG_NAME], row[c.CATALOG_MATCH], row[c.CATALOG_STATUS]) == ("G2-RootCA3", "certificate", "in-use")


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(CatalogError, match=r"'AmazonRootCA9': unknown catalogue name; known: AmazonRootCA1"):
        aws_catalog().entry("AmazonRootCA9")


def test_names_are_case_insensitive() -> None:
    assert aws_catalog().entry("amazonrootca1").name == "AmazonRootCA1"


def test_frame_round_trip_and_directory_round_trip(tmp_path: Path) -> None:
    cat = aws_catalog()
    again = Catalog.from_frame(cat.to_frame())
    assert [e.sha256 for e in again.entries] == [e.sha256 for e in cat.entries]
    copied = Catalog.from_directory(cat.write_directory(tmp_path / "copy"))
    assert copied.names == cat.names and copied.kind == "aws"


def test_directory_kind_comes_from_the_manifest_unless_given(tmp_path: Path) -> None:
    written = aws_catalog().write_directory(tmp_path / "copy")
    assert Catalog.from_directory(written).kind == "aws"
    relabelled = Catalog.from_directory(written, kind="lab")
    assert relabelled.kind == "lab" and relabelled.names == aws_catalog().names


def test_malformed_manifest_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(CatalogError, match="not a readable catalogue manifest"):
        Catalog.from_directory(tmp_path)
