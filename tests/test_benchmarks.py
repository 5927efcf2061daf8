"""The benchmarks still run, at toy sizes, and say what they check (issue 11: bad-row rules at every size).

Not timed tests: the figures are the benchmarks' own business; these runs prove that the scripts work
on main and that the audit benchmark's bad-row check passes for CSV, Parquet and a partitioned dataset.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_audit_benchmark_names_every_injected_bad_row_in_each_format() -> None:
    out = bench("audit.py", "--sizes", "csv:3000,parquet:3000,dataset:4000,doubled:3000", "--sample", "3")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["csv"], ["parquet"], ["dataset"], ["doubled"])]
    assert [r[0] for r in rows] == ["csv", "parquet", "dataset", "doubled"], out
    assert [r[1] for r in rows] == ["2996", "2996", "3996", "2996"], out   # four bad devices left out, every other kept
    assert all("4/4" in r for r in rows[:3]) and "3,004" in rows[3], out  # doubled: every second copy is a bad row
    assert "WRONG" not in out and "failed" not in out, out


def test_the_bad_row_check_fails_on_a_wrong_row() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import audit as bench_audit
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    want = bench_audit.expected_problems(3000, "csv")
    good = {"problems": [list(p) for p in want], "bad_rows": 4, "devices": 2996}
    assert bench_audit._bad_rows_check("csv", 3000, good) == "4/4"
    moved = {**good, "problems": [[want[0][0] + 1, *want[0][1:]], *map(list, want[1:])]}
    assert bench_audit._bad_rows_check("csv", 3000, moved).startswith("WRONG 3/4")
    assert bench_audit._bad_rows_check("csv", 3000, {**good, "devices": 2995}).startswith("WRONG")


@pytest.mark.slow
def test_report_benchmark_renders_the_demo_and_a_generated_csv() -> None:
    out = bench("report.py", "--devices", "3000")
    assert "demo: report set rendered" in out, out
    assert "3,000 devices (csv): report set rendered" in out and "x the audit" in out and "2,996 devices" in out, out
