"""Certificate rows from the real public AWS CA certificates, and PEM errors that name file and block."""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.certs import (
    cert_sha256,
    certificates_frame,
    is_signed_by,
    load_pem_file,
    load_pem_x509_certificates,
    spki_pin,
)
from iotaudit.errors import PemError

AWS = Path(__file__).resolve().parent.parent / "data" / "aws-ca"


def _one(rel: str):
    return load_pem_file(AWS / rel)[0]


def test_fingerprints_match_the_provenance_table() -> None:
    root1 = _one("root/Amazon_Root_CA_1.pem")
    assert cert_sha256(root1) == "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
    assert spki_pin(root1) == "sha256/++MBgDH5WGvL9Bcn5Be30cRcL0f5O+NyoXuWtQdX1aI="


def test_cross_signed_root_has_same_key_but_other_certificate() -> None:
    rows = certificates_frame([_one("root/Amazon_Root_CA_1.pem"),
                               _one("cross/amazon_root_ca_1__cross-signed-by_sfs-root-g2.pem")])
    assert rows[c.SPKI_SHA256].nunique() == 1
    assert rows[c.SHA256].nunique() == 2
    assert rows[c.SELF_SIGNED].tolist() == [True, False]
    assert rows[c.ISSUER_CN].tolist() == ["Amazon Root CA 1", "Starfield Services Root Certificate Authority - G2"]


def test_serial_zero_root_parses_without_any_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = certificates_frame([_one("root/Starfield_Services_Root_Certificate_Authority_-_G2.pem")]).iloc[0]
    assert row[c.SERIAL] == "0"
    assert bool(row[c.SELF_SIGNED])


def test_sha1_self_signed_root_without_cn_is_labelled_by_ou() -> None:
    row = certificates_frame([_one("root/Starfield_Class_2_CA.pem")]).iloc[0]
    assert row[c.SIGNATURE_ALGORITHM] == "sha1WithRSAEncryption"
    assert bool(row[c.SELF_SIGNED])  # SHA-1 self-signature still recognised as self-signed
    assert row[c.SUBJECT_CN] == "Starfield Class 2 Certification Authority"


def test_row_columns_and_dtypes_are_the_documented_ones() -> None:
    frame = certificates_frame([_one("root/Amazon_Root_CA_3.pem")])
    assert list(frame.columns) == list(c.CERTIFICATE_DTYPES)
    assert str(frame[c.NOT_AFTER].dtype) == c.TIME
    row = frame.iloc[0]
    assert (row[c.KEY_TYPE], row[c.KEY_SIZE], row[c.CURVE]) == ("ec", 256, "secp256r1")
    assert row[c.NOT_AFTER] == pd.Timestamp("2040-05-26", tz="UTC")
    assert bool(row[c.IS_CA]) and pd.isna(row[c.PATH_LENGTH])


def test_intermediate_has_path_length_zero_and_aki_matching_root_ski() -> None:
    frame = certificates_frame([_one("intermediate/amazon_rsa_2048_m01.pem"), _one("root/Amazon_Root_CA_1.pem")])
    m01, root = frame.iloc[0], frame.iloc[1]
    assert m01[c.PATH_LENGTH] == 0
    assert m01[c.AKI] == root[c.SKI] != ""
    assert is_signed_by(_one("intermediate/amazon_rsa_2048_m01.pem"), _one("root/Amazon_Root_CA_1.pem"))


def test_duplicates_collapse_to_one_row() -> None:
    root = _one("root/Amazon_Root_CA_1.pem")
    assert len(certificates_frame([root, root])) == 1


def test_pem_noise_around_blocks_is_ignored() -> None:
    text = "depth=0 CN = x\n" + (AWS / "root/Amazon_Root_CA_1.pem").read_text() + "\nverify return:1\n"
    assert len(load_pem_x509_certificates(text, "t.pem")) == 1


def test_bad_base64_names_file_and_block(tmp_path: Path) -> None:
    good = (AWS / "root/Amazon_Root_CA_1.pem").read_text()
    bad = tmp_path / "bundle.pem"
    bad.write_text(good + "-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(PemError, match=r"bundle\.pem, PEM block 2: invalid base64") as info:
        load_pem_file(bad)
    assert info.value.block == 2


def test_base64_that_is_not_a_certificate_names_file_and_block(tmp_path: Path) -> None:
    bad = tmp_path / "junk.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\n" + base64.b64encode(b"hello").decode() + "\n-----END CERTIFICATE-----\n")
    with pytest.raises(PemError, match=r"junk\.pem, PEM block 1: not a valid X\.509 certificate"):
        load_pem_file(bad)


def test_truncated_pem_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "cut.pem"
    bad.write_text((AWS / "root/Amazon_Root_CA_1.pem").read_text()[:300])
    with pytest.raises(PemError, match=r"cut\.pem, PEM block 1: BEGIN line without a matching END"):
        load_pem_file(bad)


def test_truncated_pem_after_other_blocks_names_its_own_block_number(tmp_path: Path) -> None:
    # Block numbers count every PEM block, keys included (as for the other errors).
    key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    root = (AWS / "root/Amazon_Root_CA_1.pem").read_text()
    bad = tmp_path / "cut.pem"
    bad.write_text(key + root + root[:300])
    with pytest.raises(PemError, match=r"cut\.pem, PEM block 3: BEGIN line without a matching END") as info:
        load_pem_file(bad)
    assert info.value.block == 3


def test_truncated_pem_before_a_complete_block_names_the_truncated_one(tmp_path: Path) -> None:
    root = (AWS / "root/Amazon_Root_CA_1.pem").read_text()
    bad = tmp_path / "cut.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n" + root)
    with pytest.raises(PemError, match=r"cut\.pem, PEM block 1: BEGIN line without a matching END"):
        load_pem_file(bad)


def test_file_without_certificates_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(PemError, match=r"empty\.pem: no PEM CERTIFICATE block found"):
        load_pem_file(empty)


def test_missing_file_is_a_pem_error(tmp_path: Path) -> None:
    with pytest.raises(PemError, match=r"absent\.pem: cannot read file"):
        load_pem_file(tmp_path / "absent.pem")
