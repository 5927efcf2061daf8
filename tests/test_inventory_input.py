"""Inventory input that must be refused (issue 9 items 2, 3, 5, 7): dates, nested JSON, empty inventories, trust-store paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_pem
from iotaudit.errors import InventoryError
from iotaudit.inventory import MAX_TRUST_STORE_CERTIFICATES, load_inventory

HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"


def write(tmp_path: Path, *rows: str, name: str = "inv.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def row(device: str, pin_expiry: str = "", trust_store: str = "AmazonRootCA1") -> str:
    return f"{device},g,fw,us-east-1,*,{trust_store},rsa,,,,{pin_expiry}"


def problems_of(path: Path, **kwargs: object) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path, **kwargs)  # type: ignore[arg-type]
    return info.value.problems


# --- item 3: dates ------------------------------------------------------------------------------


def test_mixed_precision_iso_dates_in_one_column_load(tmp_path: Path) -> None:
    path = write(tmp_path, row("d1", "2025-06-30"), row("d2", "2025-06-30T12:30:00.250Z"),
                 row("d3", "2025-06-30T14:30+02:00"), row("d4", "2025-06-30T12:30:00.123456789-0000"))
    inv = load_inventory(path)
    got = inv.devices.set_index(c.DEVICE_ID)[c.PIN_EXPIRY]
    assert str(got.dtype) == c.TIME
    assert got["d1"] == pd.Timestamp("2025-06-30T00:00:00Z")
    assert got["d2"] == pd.Timestamp("2025-06-30T12:30:00.250Z")
    assert got["d3"] == pd.Timestamp("2025-06-30T12:30:00Z")
    assert got["d4"] == pd.Timestamp("2025-06-30T12:30:00.123456Z")  # kept to the microsecond
    assert inv.profiles[c.PIN_EXPIRY].notna().all()


@pytest.mark.parametrize("value", ["now", "today", "01/02/2025", "31/12/2025", "2025-13-01", "2025-02-30",
                                   "2025-06-30T12:30:00", "tomorrow", "2025/06/30", "30.06.2025"])
def test_ambiguous_or_relative_dates_are_bad_rows_naming_the_value(tmp_path: Path, value: str) -> None:
    [(line, column, reason)] = problems_of(write(tmp_path, row("d1", value)))
    assert (line, column) == (2, c.PIN_EXPIRY)
    assert repr(value) in reason and "ISO 8601" in reason


# --- item 2: nested JSON values --------------------------------------------------------------------


def test_nested_json_value_is_a_bad_row_naming_row_and_column(tmp_path: Path) -> None:
    good = {"device_id": "d1", "group": "g", "profile": "fw", "region": "us-east-1", "endpoints": "*",
            "trust_store": "AmazonRootCA1", "key_types": ["rsa"]}
    nested = dict(good, device_id="d2", region={"name": "us-east-1"})
    deep = dict(good, device_id="d3", key_types=[["rsa"]])
    path = tmp_path / "inv.json"
    path.write_text(json.dumps([good, nested, deep]), encoding="utf-8")
    problems = problems_of(path)
    assert [(r, col) for r, col, _ in problems] == [(2, c.REGION), (3, c.KEY_TYPES)]
    assert "nested JSON value" in problems[0][2] and "us-east-1" in problems[0][2]
    kept = load_inventory(path, skip_bad_rows=True)
    assert list(kept.devices[c.DEVICE_ID]) == ["d1"] and kept.bad_rows == 2


def test_nested_json_device_id_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    path.write_text(json.dumps([{"device_id": {"id": 1}, "group": "g", "profile": "fw", "region": "us-east-1",
                                 "endpoints": "*", "trust_store": "AmazonRootCA1", "key_types": "rsa"}]))
    [(line, column, reason)] = problems_of(path)
    assert (line, column) == (1, c.DEVICE_ID) and "nested JSON" in reason


# --- item 5: nothing to audit ------------------------------------------------------------------------


def test_header_only_inventory_is_an_error(tmp_path: Path) -> None:
    [(line, column, reason)] = problems_of(write(tmp_path))
    assert (line, column) == (None, None) and "no device" in reason
    assert load_inventory(write(tmp_path), allow_empty=True).device_count == 0


def test_inventory_whose_every_row_is_skipped_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, row("d1", "today"), row("d2", "01/02/2025"))
    problems = problems_of(path, skip_bad_rows=True)
    assert [p[0] for p in problems] == [2, 3, None]
    assert "every row was bad" in problems[-1][2]


# --- item 7: trust-store paths -------------------------------------------------------------------------


def _store(path: Path, count: int = 1) -> Path:
    root = cert_pem(aws_catalog().entry("AmazonRootCA1").certificate)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(root * count, encoding="ascii")
    return path


@pytest.mark.parametrize("spec", ["/etc/shadow", "../outside/store.pem", "../../../../etc/ssl/certs/ca-certificates.crt"])
def test_trust_store_outside_the_inventory_directory_is_a_bad_row(tmp_path: Path, spec: str) -> None:
    _store(tmp_path / "outside" / "store.pem")
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    [(line, column, reason)] = problems_of(write(inv_dir, row("d1", trust_store=spec)))
    assert (line, column) == (2, c.TRUST_STORE)
    assert "outside the inventory's directory" in reason or "cannot read file" in reason
    assert "--allow-outside" in reason or "cannot read file" in reason


def test_symlink_leading_out_is_refused_and_allow_outside_lets_it_in(tmp_path: Path) -> None:
    outside = _store(tmp_path / "shared" / "fw.pem")
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    (inv_dir / "fw.pem").symlink_to(outside)
    path = write(inv_dir, row("d1", trust_store="fw.pem"))
    [(_, column, reason)] = problems_of(path)
    assert column == c.TRUST_STORE and "outside the inventory's directory" in reason
    inv = load_inventory(path, allow_outside=[tmp_path / "shared"])
    assert [len(v) for v in inv.resolve(aws_catalog()).values()] == [1]


def test_absolute_path_inside_an_allowed_directory_loads(tmp_path: Path) -> None:
    outside = _store(tmp_path / "shared" / "fw.pem")
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    path = write(inv_dir, row("d1", trust_store=str(outside)))
    assert load_inventory(path, allow_outside=[tmp_path / "shared"]).device_count == 1


def test_device_file_is_not_a_trust_store(tmp_path: Path) -> None:
    # /dev/zero would read until memory runs out: only regular files are read.
    [(_, column, reason)] = problems_of(write(tmp_path, row("d1", trust_store="/dev/zero")),
                                        allow_outside=["/dev"])
    assert column == c.TRUST_STORE and "not a regular file" in reason


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "store.pem")
    [(_, column, reason)] = problems_of(write(tmp_path, row("d1", trust_store="store.pem")))
    assert column == c.TRUST_STORE and "not a regular file" in reason


def test_oversized_trust_store_file_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "big.pem"
    store.write_bytes(b"#" * (1024 * 1024 + 1))
    [(_, column, reason)] = problems_of(write(tmp_path, row("d1", trust_store="big.pem")))
    assert column == c.TRUST_STORE and "more than the 1048576" in reason


def test_store_with_too_many_certificates_is_a_bad_row_unless_allowed(tmp_path: Path) -> None:
    _store(tmp_path / "bundle.pem", MAX_TRUST_STORE_CERTIFICATES + 1)
    path = write(tmp_path, row("d1", trust_store="bundle.pem"))
    [(_, column, reason)] = problems_of(path)
    assert column == c.TRUST_STORE and f"holds {MAX_TRUST_STORE_CERTIFICATES + 1} certificates" in reason
    inv = load_inventory(path, max_store_certificates=MAX_TRUST_STORE_CERTIFICATES + 1)
    assert [len(v) for v in inv.resolve(aws_catalog()).values()] == [MAX_TRUST_STORE_CERTIFICATES + 1]


def test_typed_parquet_timestamps_of_mixed_precision_load_as_utc(tmp_path: Path) -> None:
    frame = pd.DataFrame({"device_id": ["d1", "d2"], "group": "g", "profile": "fw", "region": "us-east-1",
                          "endpoints": "*", "trust_store": "AmazonRootCA1", "key_types": "rsa",
                          "pin_expiry": pd.to_datetime(["2025-06-30", "2025-06-30 12:30:00.25"], format="ISO8601")})
    frame.to_parquet(tmp_path / "inv.parquet")
    got = load_inventory(tmp_path / "inv.parquet").devices[c.PIN_EXPIRY].tolist()
    assert got == [pd.Timestamp("2025-06-30T00:00:00Z"), pd.Timestamp("2025-06-30T12:30:00.250Z")]


@pytest.mark.slow
def test_report_takes_allow_outside_like_audit(lab_run, tmp_path: Path) -> None:
    # The scheduled report loads the inventory itself: the same path rule and the same way out as audit.
    from iotaudit.cli import main
    from tests.test_reports import tiny_notebook_set

    _store(tmp_path / "shared" / "fw.pem")
    inv_dir = tmp_path / "inv"
    inv_dir.mkdir()
    path = write(inv_dir, row("d1", trust_store="../shared/fw.pem"))
    notebooks = tiny_notebook_set(tmp_path / "nb")
    args = ["report", "--run", str(lab_run.path), "--inventory", str(path), "--notebooks", str(notebooks),
            "--fail-on", "never", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--allow-outside", str(tmp_path / "shared"), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()
