"""Inventory loading: formats, profiles, and every kind of bad row, each in its own test."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_pem
from iotaudit.errors import InventoryError
from iotaudit.inventory import load_inventory

HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"
GOOD_PIN = "sha256/" + "A" * 43 + "="


def write(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "inv.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return info.value.problems


def test_csv_groups_devices_into_distinct_profiles(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d1,g1,fw-1,us-east-1,*,AmazonRootCA1,rsa,,,,",
        "d2,g2,fw-1,us-east-1,*,AmazonRootCA1,rsa,,,,",
        "d3,g1,fw-1,eu-west-1,*,AmazonRootCA1,rsa;ecdsa,,,,",
        f"d4,g1,fw-2,us-east-1,b.example;a.example,AmazonRootCA1;AmazonRootCA3,ecdsa;rsa,legacy-chain-top,{GOOD_PIN},served,2024-01-01",
    )
    inv = load_inventory(path)
    prof = inv.profiles.set_index("profile_key")
    assert list(prof.index) == ["fw-1", "fw-1~2", "fw-2"]
    assert prof.loc["fw-1", "devices"] == 2 and prof.loc["fw-1", "groups"] == ["g1", "g2"]
    assert prof.loc["fw-1~2", "key_types"] == ["rsa", "ec"]
    assert prof.loc["fw-2", "endpoints"] == ["a.example", "b.example"]
    assert prof.loc["fw-2", "tls_stack"] == "openssl-1.0.1"  # legacy-chain-top maps onto it
    assert prof.loc["fw-2", "pins"] == [GOOD_PIN] and prof.loc["fw-2", "pin_scope"] == "served"
    assert prof.loc["fw-2", "pin_expiry"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert prof.loc["fw-1", "tls_stack"] == "openssl-3-partial-chain" and pd.isna(prof.loc["fw-1", "pin_expiry"])
    assert list(inv.devices["profile_key"].astype(str)) == ["fw-1", "fw-1", "fw-1~2", "fw-2"]
    assert isinstance(inv.devices["profile_key"].dtype, pd.CategoricalDtype)
    assert str(inv.devices["pin_expiry"].dtype) == "datetime64[us, UTC]"


def test_optional_columns_may_be_absent(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g1,fw,us-east-1,*,AmazonRootCA1,rsa",
                 header="device_id,group,profile,region,endpoints,trust_store,key_types\n")
    prof = load_inventory(path).profiles.iloc[0]
    assert prof["tls_stack"] == "openssl-3-partial-chain" and prof["pin_scope"] == "any" and prof["pins"] == []


def test_parquet_and_json_give_the_same_profiles(tmp_path: Path) -> None:
    csv = write(tmp_path, "d1,g1,fw,us-east-1,*,AmazonRootCA1;AmazonRootCA3,rsa;ecdsa,,,,")
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.to_parquet(tmp_path / "inv.parquet")
    records = frame.to_dict("records")
    records[0]["key_types"] = ["rsa", "ecdsa"]  # JSON arrays are accepted for list values
    (tmp_path / "inv.json").write_text(json.dumps({"devices": records}), encoding="utf-8")
    want = load_inventory(csv).profiles.drop(columns="first_row")
    for name in ("inv.parquet", "inv.json"):
        got = load_inventory(tmp_path / name).profiles.drop(columns="first_row")
        pd.testing.assert_frame_equal(got, want)


def test_missing_columns_are_fatal_even_when_skipping(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,fw,us-east-1", header="device_id,profile,region\n")
    with pytest.raises(InventoryError) as info:
        load_inventory(path, skip_bad_rows=True)
    missing = {col for _, col, _ in info.value.problems}
    assert missing == {"group", "endpoints", "trust_store", "key_types"}
    assert "required column missing" in str(info.value)


def test_duplicate_device_ids_name_both_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,", "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")
    assert problems_of(path) == [(3, "device_id", "duplicate device_id 'd1' (first on row 2)")]


def test_empty_device_id_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, ",g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")
    assert problems_of(path) == [(2, "device_id", "device_id is empty")]


# The inventory validates pins with iotaudit.pinning.parse_pin, so the reasons are the parser's.
@pytest.mark.parametrize("pin, fragment", [
    ("sha256/abc", "not valid base64"),
    ("spki-sha256:" + "0" * 63, "has 63 hex digits; it needs 64"),
    ("cert-sha256:" + "g" * 64, "not hexadecimal"),
    ("cert-sha1:" + "0" * 64, "it needs 40"),
    ("md5:" + "0" * 32, "unknown pin format"),
])
def test_malformed_pins_are_reported(tmp_path: Path, pin: str, fragment: str) -> None:
    path = write(tmp_path, f"d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,{GOOD_PIN};{pin},,")
    [(row, col, reason)] = problems_of(path)
    assert (row, col) == (2, "pins") and fragment in reason and pin in reason


def test_bad_path_builder_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,trusted-last,,,")
    assert problems_of(path) == [(2, "path_builder", "path_builder 'trusted-last' is not one of modern, legacy-chain-top")]


STACK_HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,tls_stack,path_builder\n"


def test_tls_stack_column_names_the_profile_stack(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw-a,us-east-1,*,AmazonRootCA1,rsa,mbedtls-2.28,",
                 "d2,g,fw-a,us-east-1,*,AmazonRootCA1,rsa,esp-idf-bundle,",
                 "d3,g,fw-b,us-east-1,*,AmazonRootCA1,rsa,,", header=STACK_HEADER)
    inv = load_inventory(path)
    stacks = dict(zip(inv.profiles["profile_key"], inv.profiles["tls_stack"], strict=True))
    # The same name on two stacks is two profiles; no stack and no path_builder is the default stack.
    assert stacks == {"fw-a": "mbedtls-2.28", "fw-a~2": "esp-idf-bundle", "fw-b": "openssl-3-partial-chain"}
    assert list(inv.devices["tls_stack"].astype(str)) == ["mbedtls-2.28", "esp-idf-bundle", "openssl-3-partial-chain"]


def test_tls_stack_is_case_insensitive_and_trimmed(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa, WolfSSL-5-Alt-Chains ,", header=STACK_HEADER)
    assert list(load_inventory(path).profiles["tls_stack"]) == ["wolfssl-5-alt-chains"]


@pytest.mark.parametrize(("builder", "stack"), [("modern", "openssl-3-partial-chain"),
                                                ("legacy-chain-top", "openssl-1.0.1")])
def test_path_builder_alone_maps_onto_its_stack(tmp_path: Path, builder: str, stack: str) -> None:
    path = write(tmp_path, f"d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,{builder}", header=STACK_HEADER)
    assert list(load_inventory(path).profiles["tls_stack"]) == [stack]


def test_path_builder_agreeing_with_tls_stack_is_one_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,openssl-1.0.1,legacy-chain-top",
                 "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,openssl-1.0.1,",
                 "d3,g,fw,us-east-1,*,AmazonRootCA1,rsa,,legacy-chain-top", header=STACK_HEADER)
    inv = load_inventory(path)
    assert list(inv.profiles["profile_key"]) == ["fw"] and list(inv.profiles["devices"]) == [3]


def test_unknown_tls_stack_is_a_bad_row_naming_the_known_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,mbedtls-1.3,", header=STACK_HEADER)
    [(row, col, reason)] = problems_of(path)
    assert (row, col) == (2, "tls_stack")
    assert "'mbedtls-1.3' is not a known TLS stack" in reason
    for known in ("openssl-3", "mbedtls-2.28", "esp-idf-bundle", "wolfssl-5-alt-chains", "gnutls-3.7", "android"):
        assert known in reason


def test_tls_stack_disagreeing_with_path_builder_is_a_bad_row(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,mbedtls-2.28,modern",
                 "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,mbedtls-2.28,", header=STACK_HEADER)
    [(row, col, reason)] = problems_of(path)
    assert (row, col) == (2, "tls_stack")
    assert reason == ("tls_stack 'mbedtls-2.28' disagrees with path_builder 'modern' (which means tls_stack "
                      "'openssl-3-partial-chain'); give one of them, or make them agree")


def test_disagreeing_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,openssl-3,legacy-chain-top",
                 "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,openssl-3,", header=STACK_HEADER)
    inv = load_inventory(path, skip_bad_rows=True)
    assert inv.bad_rows == 1 and list(inv.devices["device_id"]) == ["d2"]
    assert [(r, col) for r, col, _ in inv.problems] == [(2, "tls_stack")]


def test_build_profiles_gives_frozen_profiles_with_their_stack(tmp_path: Path) -> None:
    from dataclasses import FrozenInstanceError

    from iotaudit.stacks import get_stack

    path = write(tmp_path, f"d1,g,fw,us-east-1,a.example,AmazonRootCA1;AmazonRootCA3,rsa;ecdsa,gnutls-3.7,",
                 header=STACK_HEADER)
    [profile] = load_inventory(path).build_profiles(aws_catalog())
    assert profile.stack is get_stack("gnutls-3.7")
    assert [cert.subject.rfc4514_string() for cert in profile.store] == [
        aws_catalog().entry("AmazonRootCA1").certificate.subject.rfc4514_string(),
        aws_catalog().entry("AmazonRootCA3").certificate.subject.rfc4514_string()]  # store order kept
    assert profile.key_types == ("rsa", "ec") and profile.endpoints == ("a.example",)
    with pytest.raises(FrozenInstanceError):
        profile.devices = 2  # type: ignore[misc]


def test_bad_key_types_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa;dsa,,,,")
    assert problems_of(path) == [(2, "key_types", "key_types: unknown key type 'dsa' (use rsa and/or ecdsa)")]


def test_empty_key_types_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,,,,,")
    [(row, col, reason)] = problems_of(path)
    assert (row, col) == (2, "key_types") and "empty" in reason


def test_bad_pin_expiry_dates_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,next tuesday")
    [(row, col, reason)] = problems_of(path)
    assert (row, col) == (2, "pin_expiry") and "not a date" in reason


def test_bad_pin_scope_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,intermediate,")
    [(row, col, _)] = problems_of(path)
    assert (row, col) == (2, "pin_scope")


def test_unreadable_pem_bundle_is_reported_at_load(tmp_path: Path) -> None:
    (tmp_path / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    path = write(tmp_path, "d1,g,fw,us-east-1,*,broken.pem,rsa,,,,", "d2,g,fw,us-east-1,*,absent/store.pem,rsa,,,,")
    problems = problems_of(path)
    assert [(r, col) for r, col, _ in problems] == [(2, "trust_store"), (3, "trust_store")]
    assert "broken.pem" in problems[0][2] and "PEM block 1" in problems[0][2]
    assert "cannot read file" in problems[1][2]


def test_pem_bundle_resolves_relative_to_the_inventory(tmp_path: Path) -> None:
    root = aws_catalog().entry("AmazonRootCA1").certificate
    (tmp_path / "stores").mkdir()
    (tmp_path / "stores" / "fw.pem").write_text(cert_pem(root))
    path = write(tmp_path, "d1,g,fw,us-east-1,*,stores/fw.pem,rsa,,,,")
    assert load_inventory(path).resolve(aws_catalog()) == {"fw": [root]}


def test_unknown_catalogue_names_fail_at_resolve_naming_row_and_profile(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw-ok,us-east-1,*,AmazonRootCA1,rsa,,,,", "d2,g,fw-typo,us-east-1,*,AmazonRootCA1;AmazonRootCA9,rsa,,,,")
    inv = load_inventory(path)  # names are checked against the run's catalogue, at resolve time
    with pytest.raises(InventoryError) as info:
        inv.resolve(aws_catalog())
    [(row, col, reason)] = info.value.problems
    assert (row, col) == (3, "trust_store")
    assert "fw-typo" in reason and "'AmazonRootCA9'" in reason and "AmazonRootCA1" in reason


def test_skip_bad_rows_counts_and_keeps_the_good(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,",
        "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,weird,,,",
        "d3,g,fw,us-east-1,*,AmazonRootCA1,rsa;ecc,,,,",
    )
    inv = load_inventory(path, skip_bad_rows=True)
    assert list(inv.devices["device_id"]) == ["d1"]
    assert inv.bad_rows == 2 and [p[0] for p in inv.problems] == [3, 4]
    assert inv.profiles.iloc[0]["devices"] == 1


def test_all_problems_are_listed_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,weird,,,", "d1,g,fw,,*,AmazonRootCA1,rsa,,,,")
    problems = problems_of(path)
    assert {(r, col) for r, col, _ in problems} == {(2, "path_builder"), (3, "device_id"), (3, "region")}


def test_unknown_format_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "inv.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(InventoryError, match="unknown inventory format"):
        load_inventory(path)
