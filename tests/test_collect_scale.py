"""Collection at AWS size (issue 11): a pandas-free collect process, and the lab's simulated latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from iotaudit.cli import main
from iotaudit.collection import collect, probe, run_records
from iotaudit.lab import Lab
from iotaudit.store import TABLES, load_run, write_run


@pytest.mark.slow
def test_the_collect_command_imports_neither_pandas_nor_papermill(lab, tmp_path: Path) -> None:
    # Its summary still fits the terminal as show's does (format_table, pure Python).
    out = tmp_path / "run"
    script = (
        "import json, sys\n"
        "from iotaudit.cli import main\n"
        f"status = main(['collect', '--lab', {str(lab.ports_file)!r}, '--out', {str(out)!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'papermill', 'nbconvert', 'matplotlib'))\n"
        "print(json.dumps({'status': status, 'heavy': heavy}))\n"
    )
    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True,
                          env=env)
    *table, path, last = done.stdout.strip().splitlines()
    report = json.loads(last)
    assert report == {"status": 0, "heavy": []}
    assert path == str(out) and "ats-dual" in done.stdout  # the summary table, then the run path
    assert len(table) == 1 + 3 * len(lab.targets) and max(len(line) for line in table) <= 80
    run = load_run(out)
    assert len(run.observations) == 3 * len(lab.targets)


def test_run_rows_written_by_pyarrow_load_as_the_pandas_written_run(lab, tmp_path: Path) -> None:
    records = collect(lab.targets[:5], timeout=5.0, progress=False, catalog=lab.catalog, build=run_records)
    records.write(tmp_path / "arrow")
    write_run(records.to_run(), tmp_path / "pandas")
    by_arrow, by_pandas = load_run(tmp_path / "arrow"), load_run(tmp_path / "pandas")
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(by_arrow, name), getattr(by_pandas, name), obj=name)
        assert len(getattr(by_arrow, name))
    assert by_arrow.manifest == by_pandas.manifest


def test_an_empty_collection_writes_empty_tables(tmp_path: Path, lab) -> None:
    records = collect([], progress=False, catalog=lab.catalog, build=run_records)
    run = load_run(records.write(tmp_path / "empty"))
    assert run.observations.empty and run.chains.empty and len(run.catalog) == len(lab.catalog.entries)


@pytest.mark.slow
def test_lab_latency_costs_each_tls_round_trip(tmp_path: Path) -> None:
    with Lab(tmp_path / "lab", hostile=False, regions=["us-east-1"], latency_ms=150) as slow:
        dual = next(t for t in slow.targets if t.label == "ats-dual")
        tls12 = probe(dual, "rsa-tls12", timeout=10.0)
        tls13 = probe(dual, "tls13", timeout=10.0)
    assert tls12.status.value == "ok" and tls13.status.value == "ok" and len(tls12.chain) == 4
    # TCP handshake + two TLS 1.2 round trips; TCP + one TLS 1.3 round trip.
    assert 3 * 150 * 0.9 <= tls12.handshake_ms < 3 * 150 + 400
    assert 2 * 150 * 0.9 <= tls13.handshake_ms < 2 * 150 + 400


def test_lab_serve_rejects_a_negative_latency(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["lab", "serve", "--dir", str(tmp_path / "lab"), "--latency-ms", "-5"])
    assert info.value.code == 2 and "--latency-ms '-5' must be between 0 and 60000" in capsys.readouterr().err
