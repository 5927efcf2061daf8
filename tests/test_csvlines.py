"""Physical CSV lines of records (iotaudit.csvlines): the numpy fast path against Python's csv reader and DuckDB."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from iotaudit import csvlines
from iotaudit.csvlines import record_lines, record_lines_exact, record_lines_fast


def duckdb_count(paths: list[Path]) -> int:
    files = "[" + ", ".join(f"'{p}'" for p in paths) + "]"
    return duckdb.execute(f"SELECT count(*) FROM read_csv({files}, header = true, all_varchar = true, delim = ',', "
                          "quote = '\"', escape = '\"', union_by_name = true)").fetchall()[0][0]


def cell(rnd: random.Random) -> str:
    kind = rnd.random()
    if kind < 0.6:
        return rnd.choice(["thing", "fw-1", "us-east-1", "AmazonRootCA1;AmazonRootCA3", "", "rsa"])
    if kind < 0.8:
        return '"' + rnd.choice(["a\nb", "x, y", 'say ""hi""', "\n", "two\r\nlines", ""]) + '"'
    return '"plain"'


def messy_csv(path: Path, rnd: random.Random, rows: int) -> Path:
    """A CSV with quoted newlines, doubled quotes, blank lines, CRLF and LF, a BOM sometimes, no final newline sometimes."""
    eol = rnd.choice(["\n", "\r\n"])
    lines = ["a,b,c"]
    for i in range(rows):
        if rnd.random() < 0.1:
            lines.append("")
        lines.append(",".join([f"id-{i}", cell(rnd), cell(rnd)]))
    text = eol.join(lines) + (eol if rnd.random() < 0.7 else "")
    data = text.encode()
    path.write_bytes((b"\xef\xbb\xbf" if rnd.random() < 0.3 else b"") + data)
    return path


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_agrees_with_the_csv_reader_and_counts_what_duckdb_reads(tmp_path: Path, seed: int,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(seed)
    monkeypatch.setattr(csvlines, "BLOCK_BYTES", rnd.choice([7, 64, 1000]))  # rows cut across blocks
    paths = [messy_csv(tmp_path / f"part-{k}.csv", rnd, rnd.randint(0, 60)) for k in range(rnd.randint(1, 3))]
    total = duckdb_count(paths)
    wanted = list(range(1, total + 1))
    fast, counted = record_lines_fast([str(p) for p in paths], wanted)
    assert counted == total
    assert fast == record_lines_exact([str(p) for p in paths], wanted)
    assert len(fast) == total


def test_a_stray_quote_falls_back_to_the_exact_reader(tmp_path: Path) -> None:
    # A quote inside an unquoted field is literal to the csv reader but flips the fast path's parity:
    # its count disagrees with the total, so record_lines answers from the exact reader.
    path = tmp_path / "stray.csv"
    path.write_text('a,b\nx,5" disk\ny,2\nz,3\n', encoding="utf-8")
    exact = record_lines_exact([str(path)], [1, 2, 3])
    fast, counted = record_lines_fast([str(path)], [1, 2, 3])
    assert counted != 3 and fast != exact
    assert record_lines([str(path)], [1, 2, 3], total=3) == exact == {1: (str(path), 2), 2: (str(path), 3), 3: (str(path), 4)}


def test_multi_line_record_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b'h1,h2\r\n\r\nd1,"two\r\nlines"\r\n\r\nd2,x\r\nd3,"say ""a\nb"""')
    assert record_lines([str(path)], [1, 2, 3], total=duckdb_count([path])) == {
        1: (str(path), 3), 2: (str(path), 6), 3: (str(path), 7)}
