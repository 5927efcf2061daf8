"""Fleet scale (issue 11): DuckDB reading, per-group counts, devices.parquet, --profiles, physical CSV lines."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.auditing import DEVICE_BREAK_DATE_SOURCE, DEVICES_FILE, FRAMES, audit, device_results, load_audit, write_audit
from iotaudit.cli import main
from iotaudit.errors import InventoryError
from iotaudit.inventory import load_inventory, load_profiles
from iotaudit.reports.inputs import filter_group, load_inputs

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_inventory.csv"
DOC = ROOT / "docs" / "profile-table.md"
HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"


def write(tmp_path: Path, *rows: str, name: str = "inv.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def fleet(n: int, seed: int = 5) -> pd.DataFrame:
    """A device table over the sample inventory's profiles, groups shuffled, with spelling variants."""
    sample = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    rnd = np.random.default_rng(seed)
    out = sample.iloc[rnd.integers(0, len(sample), size=n)].reset_index(drop=True)
    out["device_id"] = [f"thing-{i}" for i in range(n)]
    out["group"] = np.array(["g-a", "g-b", "g-c", " g-a"], dtype=object)[rnd.integers(0, 4, size=n)]
    out.loc[out.index % 7 == 0, "key_types"] = out.loc[out.index % 7 == 0, "key_types"].str.upper()
    return out


# --- reading ------------------------------------------------------------------------------------


def test_a_quoted_field_spanning_lines_reports_the_physical_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'd1,g,"fw\nwith a note",us-east-1,*,AmazonRootCA1,rsa,,,,', "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,weird,,,")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert info.value.problems == [(4, "path_builder", "path_builder 'weird' is not one of modern, legacy-chain-top")]


def test_duplicate_after_a_multi_line_row_names_both_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path, 'd1,g,"fw\n\nnote",us-east-1,*,AmazonRootCA1,rsa,,,,', "", "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert info.value.problems == [(6, "device_id", "duplicate device_id 'd1' (first on row 2)")]


def test_csv_parquet_glob_and_partitioned_dataset_give_the_same_profiles(tmp_path: Path) -> None:
    table = fleet(3000)
    table.to_csv(tmp_path / "fleet.csv", index=False)
    want = load_inventory(tmp_path / "fleet.csv")
    (tmp_path / "parts").mkdir()
    for i in range(3):
        table.iloc[i * 1000:(i + 1) * 1000].to_csv(tmp_path / "parts" / f"part-{i}.csv", index=False)
    con = duckdb.connect()
    con.register("fleet", table)
    con.execute(f"COPY fleet TO '{tmp_path / 'dataset'}' (FORMAT parquet, PARTITION_BY (region))")
    identity = ["profile", "region", "trust_store", "tls_stack", "pin_scope", "devices"]
    for source in (tmp_path / "parts" / "*.csv", tmp_path / "dataset"):
        got = load_inventory(source)
        assert got.device_count == 3000
        if str(source).endswith(".csv"):  # same rows in the same order: the same profiles, keys and first rows
            pd.testing.assert_frame_equal(got.profiles, want.profiles)
        else:  # partitions reorder the rows: the same profiles, in another order
            order = lambda f: f.drop(columns=["profile_key", "first_row"]).sort_values(identity).reset_index(drop=True)  # noqa: E731
            pd.testing.assert_frame_equal(order(got.profiles), order(want.profiles))


def test_group_counts_are_the_device_table_grouped(tmp_path: Path) -> None:
    table = fleet(5000)
    table.to_parquet(tmp_path / "fleet.parquet")
    inv = load_inventory(tmp_path / "fleet.parquet")
    devices = inv.devices
    assert len(devices) == 5000 and list(devices["device_id"]) == list(table["device_id"])
    want = devices.groupby(["profile_key", "group"], observed=True).size().rename("devices").reset_index()
    got = inv.group_counts
    pd.testing.assert_frame_equal(got.astype({"profile_key": str, "group": str}), want.astype({"profile_key": str, "group": str}))
    assert set(got["group"].astype(str)) == {"g-a", "g-b", "g-c"}  # " g-a" is g-a once normalised


def test_devices_join_on_every_column_when_tuple_hashes_collide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = fleet(2000)
    table.to_csv(tmp_path / "fleet.csv", index=False)
    inv = load_inventory(tmp_path / "fleet.csv")
    by_hash = inv.devices
    monkeypatch.setattr("iotaudit.inventory._hashes_distinct", lambda con: False)
    pd.testing.assert_frame_equal(inv.devices, by_hash)
    assert list(by_hash["device_id"]) == list(table["device_id"])


def test_skipped_duplicates_are_left_out_of_counts_and_devices(tmp_path: Path) -> None:
    path = write(tmp_path, "d1,g1,fw,us-east-1,*,AmazonRootCA1,rsa,,,,", "d2,g1,fw,us-east-1,*,AmazonRootCA1,rsa,,,,",
                 "d1,g2,fw-other,us-east-1,*,AmazonRootCA1,rsa,,,,", ",g2,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")
    inv = load_inventory(path, skip_bad_rows=True)
    assert inv.bad_rows == 2 and [p[0] for p in inv.problems] == [4, 5]
    assert list(inv.profiles["profile_key"]) == ["fw"] and inv.device_count == 2
    assert list(inv.devices["device_id"]) == ["d1", "d2"]
    assert inv.group_counts.astype({"group": str, "profile_key": str}).to_dict("records") == [
        {"profile_key": "fw", "group": "g1", "devices": 2}]


def test_duplicate_and_empty_ids_are_found_among_many(tmp_path: Path) -> None:
    path = write(tmp_path, *(f"d{i},g,fw,us-east-1,*,AmazonRootCA1,rsa,,,," for i in range(9)),
                 "d4,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,", ",g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,",
                 " d7,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")  # leading blanks are not part of an id
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert info.value.problems == [(11, "device_id", "duplicate device_id 'd4' (first on row 6)"),
                                   (12, "device_id", "device_id is empty"),
                                   (13, "device_id", "duplicate device_id 'd7' (first on row 9)")]


def test_a_profile_whose_first_device_is_skipped_starts_at_its_next_device(tmp_path: Path) -> None:
    # Skipped rows are taken out of their tuples' counts without grouping the table again; a tuple whose
    # first record went gets its next record as first row (the row messages about the profile name).
    path = write(tmp_path, ",g,fw-a,us-east-1,*,AmazonRootCA1,rsa,,,,", "d1,g,fw-b,us-east-1,*,AmazonRootCA1,rsa,,,,",
                 "d1,g,fw-c,us-east-1,*,AmazonRootCA1,rsa,,,,", "d2,g,fw-a,us-east-1,*,AmazonRootCA1,rsa,,,,",
                 "d3,g,fw-c,us-east-1,*,AmazonRootCA1,rsa,,,,", "d4,g2,fw-d,us-east-1,*,AmazonRootCA1,rsa,,,,",
                 "d4,g2,fw-d,us-east-1,*,AmazonRootCA1,rsa,,,,")
    inv = load_inventory(path, skip_bad_rows=True)
    assert [p[:2] for p in inv.problems] == [(2, "device_id"), (4, "device_id"), (8, "device_id")]
    got = inv.profiles.set_index("profile_key")
    assert list(got.index) == ["fw-b", "fw-a", "fw-c", "fw-d"]        # in order of their first kept device
    assert got["first_row"].to_dict() == {"fw-b": 3, "fw-a": 5, "fw-c": 6, "fw-d": 7}
    assert got["devices"].to_dict() == {"fw-b": 1, "fw-a": 1, "fw-c": 1, "fw-d": 1}
    assert list(inv.devices["device_id"]) == ["d1", "d2", "d3", "d4"]


def test_a_header_only_inventory_has_no_profiles(tmp_path: Path) -> None:
    # An empty inventory is an input error by default (an audit of nothing says "nothing broken").
    with pytest.raises(InventoryError, match="no device"):
        load_inventory(write(tmp_path))
    inv = load_inventory(write(tmp_path), allow_empty=True)
    assert inv.device_count == 0 and inv.profiles.empty and inv.group_counts.empty


def test_unreadable_csv_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inv.csv"
    path.write_bytes(HEADER.encode() + b"d1,g,\xff\xfe,us-east-1,*,AmazonRootCA1,rsa,,,,\n")
    with pytest.raises(InventoryError, match="cannot read inventory") as info:
        load_inventory(path)
    assert str(path) in str(info.value)


def test_no_file_matching_a_glob_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no inventory file matches"):
        load_inventory(tmp_path / "*.parquet")


# --- the audit at profile level -----------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fleet") / "fleet.csv"
    fleet(4000).to_csv(path, index=False)
    return path


def test_devices_parquet_gives_each_device_its_profile_results(lab_run, fleet_csv: Path, tmp_path: Path) -> None:
    inv = load_inventory(fleet_csv)
    result = audit(lab_run, inv)
    out = write_audit(result, tmp_path / "audit", inventory=inv)
    written = pd.read_parquet(out / DEVICES_FILE)
    assert list(written.columns) == ["device_id", "group", "profile", "verdict", "firmware_break_date", "worst_pin_risk"]
    devices = inv.devices
    assert list(written["device_id"]) == list(devices["device_id"])
    assert list(written["profile"]) == list(devices["profile_key"].astype(str))
    assert list(written["group"]) == list(devices["group"].astype(str))
    per = device_results(result).set_index("profile")
    verdict = dict(zip(result.profiles["profile"].astype(str), result.profiles["verdict"].astype(str), strict=True))
    assert list(written["verdict"]) == [verdict[p] for p in written["profile"]]
    dates = result.expiry.set_index("profile")[DEVICE_BREAK_DATE_SOURCE]
    assert (pd.to_datetime(written["firmware_break_date"], utc=True).fillna(pd.Timestamp(0, tz="UTC")).tolist()
            == [dates[p] if not pd.isna(dates[p]) else pd.Timestamp(0, tz="UTC") for p in written["profile"]])
    assert set(written["worst_pin_risk"]) == set(per["worst_pin_risk"])
    ranked = result.pin_risks_ranked
    for profile, risk in zip(written["profile"], written["worst_pin_risk"], strict=True):
        mine = ranked[ranked["profile"].astype(str) == profile]
        if mine.empty:
            assert risk == ""
        else:
            assert mine.loc[mine["risk"].astype(str) == risk, "severity"].max() == mine["severity"].max()


def test_a_large_devices_output_is_a_directory_of_parquet_files(lab_run, fleet_csv: Path, tmp_path: Path) -> None:
    inv = load_inventory(fleet_csv)
    target = inv.write_devices(tmp_path / "devices.parquet", device_results(audit(lab_run, inv)), file_rows=1000)
    assert target.is_dir() and list(target.glob("*.parquet"))
    back = pd.read_parquet(target)
    assert len(back) == 4000 and set(back["device_id"]) == set(inv.devices["device_id"])


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame's rows in one order whatever order they came in (list cells compared by their text)."""
    out = frame.copy()
    for col in out.columns:
        out[col] = out[col].astype(str) if isinstance(out[col].dtype, pd.CategoricalDtype) else out[col]
        if out[col].dtype == object:
            out[col] = out[col].map(repr)
    return out.sort_values(list(out.columns)).reset_index(drop=True)


def _profile_table_sql() -> str:
    """The DuckDB statement of docs/profile-table.md (the documented SQL is the SQL tested)."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```sql duckdb\n", 1)[1].split("```", 1)[0]
    return block.strip().rstrip(";")


def test_audit_of_a_profile_table_made_by_duckdb_sql_equals_the_device_level_audit(lab_run, fleet_csv: Path, tmp_path: Path) -> None:
    sql = _profile_table_sql().replace("'devices.csv'", f"'{fleet_csv}'").replace("'profiles.parquet'", f"'{tmp_path / 'profiles.parquet'}'")
    duckdb.connect().execute(sql)
    device_level = audit(lab_run, load_inventory(fleet_csv))
    profile_level = audit(lab_run, load_profiles(tmp_path / "profiles.parquet"))
    for name in FRAMES:  # the same rows; profiles come in the profile file's order, not the device file's
        want, got = getattr(device_level, name), getattr(profile_level, name)
        # crosscheck and firmware_notes are empty unless asked for (--cross-check, --scan)
        assert (len(want) or name in ("crosscheck", "firmware_notes")) and list(got.columns) == list(want.columns), name
        assert [str(t) for t in got.dtypes if str(t) != "category"] == [str(t) for t in want.dtypes if str(t) != "category"]
        pd.testing.assert_frame_equal(canonical(got), canonical(want), obj=name)
    for key in ("devices", "devices_by_verdict", "groups_by_verdict", "earliest_break_date", "worst_pin_risk"):
        assert profile_level.summary[key] == device_level.summary[key], key


def test_cli_audit_profiles_writes_the_same_verdicts(lab_run, fleet_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = _profile_table_sql().replace("'devices.csv'", f"'{fleet_csv}'").replace("'profiles.parquet'", f"'{tmp_path / 'p.parquet'}'")
    duckdb.connect().execute(sql)
    assert main(["audit", str(lab_run.path), "--profiles", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "a")]) == 1  # 485 broken: --fail-on broken
    assert main(["audit", str(lab_run.path), "--inventory", str(fleet_csv), "--out", str(tmp_path / "b")]) == 1  # 485 broken: --fail-on broken
    a, b = load_audit(tmp_path / "a"), load_audit(tmp_path / "b")
    for name in ("profiles", "fleet", "expiry", "pins"):
        pd.testing.assert_frame_equal(canonical(getattr(a, name)), canonical(getattr(b, name)), obj=name)
    assert not (tmp_path / "a" / DEVICES_FILE).exists() and (tmp_path / "b" / DEVICES_FILE).is_file()
    assert "4000 devices" in capsys.readouterr().out


def test_profile_table_rows_with_bad_device_counts_are_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("profile,region,endpoints,trust_store,key_types,devices\n"
                    "fw,us-east-1,*,AmazonRootCA1,rsa,10\nfw,us-east-1,*,AmazonRootCA1,rsa,-1\nfw2,us-east-1,*,AmazonRootCA1,rsa,lots\n")
    with pytest.raises(InventoryError) as info:
        load_profiles(path)
    assert [(r, col) for r, col, _ in info.value.problems] == [(3, "devices"), (4, "devices")]
    inv = load_profiles(path, skip_bad_rows=True)
    assert inv.device_count == 10 and inv.bad_rows == 2 and not inv.has_devices
    with pytest.raises(InventoryError, match="no device rows"):
        inv.devices  # noqa: B018


def test_profile_table_without_groups_puts_every_device_in_the_empty_group(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("profile,region,endpoints,trust_store,key_types,devices\nfw,us-east-1,*,AmazonRootCA1,rsa,7\n")
    inv = load_profiles(path)
    assert inv.group_counts.astype({"group": str, "profile_key": str}).to_dict("records") == [
        {"profile_key": "fw", "group": "", "devices": 7}]


def test_report_kernels_filter_a_group_from_the_audit_directory_without_the_inventory(lab_run, fleet_csv: Path, tmp_path: Path) -> None:
    inv = load_inventory(fleet_csv)
    result = audit(lab_run, inv)
    out = write_audit(result, tmp_path / "audit")
    want = filter_group(result, inv, "g-b", as_of=lab_run.created_at)
    # The inventory path does not exist: a kernel that re-read the device table would fail.
    got = load_inputs(lab_run.path, tmp_path / "gone.csv", audit_dir=out, group="g-b").audit
    for f in dataclasses.fields(want):
        if isinstance(getattr(want, f.name), pd.DataFrame):
            pd.testing.assert_frame_equal(getattr(got, f.name), getattr(want, f.name), obj=f.name, check_dtype=False,
                                          check_categorical=False)
    assert got.summary["devices"] == int(inv.group_counts.loc[inv.group_counts["group"] == "g-b", "devices"].sum())
    assert set(got.group_devices["group"]) == {"g-b"}
    assert c.GROUP_DEVICES_DTYPES  # the frame's columns are the documented ones


def test_record_numbers_hold_in_a_csv_large_enough_to_be_read_in_parallel(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    bad = 190_001  # 0-based device index of the one bad row, far past DuckDB's first CSV buffer
    duckdb.connect().execute(
        f"COPY (SELECT 'thing-' || i AS device_id, 'g' || (i % 7) AS \"group\", 'fw' AS profile, 'us-east-1' AS region, "
        f"'*' AS endpoints, 'AmazonRootCA1;AmazonRootCA3' AS trust_store, 'rsa;ecdsa' AS key_types, "
        f"CASE WHEN i = {bad} THEN 'weird' ELSE 'modern' END AS path_builder, repeat('x', 120) AS note "
        f"FROM range(250000) t(i)) TO '{path}' (HEADER)")
    assert path.stat().st_size > 32 * 2**20
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert [(r, col) for r, col, _ in info.value.problems] == [(bad + 2, "path_builder")]
    inv = load_inventory(path, skip_bad_rows=True)
    assert inv.device_count == 249_999 and inv.profiles.iloc[0]["first_row"] == 2
    devices = inv.devices
    assert devices["device_id"].iloc[0] == "thing-0" and devices["device_id"].iloc[-1] == "thing-249999"
    ids = devices["device_id"].str.slice(6).astype(int).to_numpy()
    assert (np.diff(ids) > 0).all()


@pytest.mark.parametrize("bad_id", [None, "", "\t", " \n", "\x00nested:[1]"])
def test_an_empty_id_is_found_in_parquet_whatever_it_is_made_of(tmp_path: Path, bad_id: str | None) -> None:
    table = fleet(50)
    table.loc[37, "device_id"] = bad_id
    table.to_parquet(tmp_path / "f.parquet", index=False)
    inv = load_inventory(tmp_path / "f.parquet", skip_bad_rows=True)
    assert [p[:2] for p in inv.problems] == [(38, "device_id")] and inv.device_count == 49


def test_integer_ids_need_no_search_and_still_find_duplicates(tmp_path: Path) -> None:
    table = fleet(40)
    table["device_id"] = np.arange(40, dtype=np.int64)
    table.loc[30, "device_id"] = 3
    table.to_parquet(tmp_path / "f.parquet", index=False)
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "f.parquet")
    assert info.value.problems == [(31, "device_id", "duplicate device_id '3' (first on row 4)")]
