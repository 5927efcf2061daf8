"""Benchmark: wall time of rendering the whole report set, for the demo inventory and for 1M devices.

Usage::

    .venv/bin/python benchmarks/report.py [--devices 1000000] [--inventory data/sample_inventory.csv]

Starts the loopback lab, collects it once, then renders the report set
(``iotaudit.reports.render_reports``: one audit, every notebook executed with
papermill, HTML, index, summary) for the given inventory and for a generated
inventory of ``--devices`` devices (vectorised, Parquet).  The baseline is
the time to start one Jupyter kernel and run an empty cell; the ratio says
how many kernel starts the render costs.  Aim: the demo set under 30 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def big_inventory(path: Path, devices: int, base: pd.DataFrame) -> Path:
    """``devices`` rows drawn from the profiles of ``base`` (so a few hundred distinct profiles), as Parquet."""
    rng = np.random.default_rng(7)
    profiles = base.drop(columns=["device_id"]).drop_duplicates(subset=["profile"]).reset_index(drop=True)
    variants = []
    for n in range(max(1, 200 // max(1, len(profiles)))):  # same stores, distinct names: ~200 profiles
        v = profiles.copy()
        v["profile"] = v["profile"].astype(str) + f"-build{n}"
        variants.append(v)
    table = pd.concat(variants, ignore_index=True)
    pick = rng.integers(0, len(table), size=devices)
    frame = table.iloc[pick].reset_index(drop=True)
    frame.insert(0, "device_id", pd.Series(np.arange(devices)).map("dev-{:08d}".format))
    frame["group"] = pd.Series(rng.integers(0, 50, size=devices)).map("group-{:02d}".format).to_numpy()
    frame.to_parquet(path, index=False)
    return path


def kernel_start_seconds(tmp: Path) -> float:
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src = tmp / "empty.ipynb"
    nbformat.write(nb, str(src))
    start = time.perf_counter()
    papermill.execute_notebook(str(src), str(tmp / "empty-out.ipynb"), kernel_name="python3", progress_bar=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--inventory", type=Path, default=ROOT / "data" / "sample_inventory.csv")
    args = parser.parse_args()

    from iotaudit.collection import collect
    from iotaudit.lab import Lab
    from iotaudit.reports import render_reports
    from iotaudit.store import write_run

    with tempfile.TemporaryDirectory(prefix="iotaudit-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with Lab(tmp / "lab") as lab:
            run = write_run(collect(lab.targets, timeout=2.0, progress=False, catalog=lab.catalog), tmp / "run")
        kernel = kernel_start_seconds(tmp)
        print(f"baseline: one kernel start + empty cell {kernel:.2f} s")
        inventory = args.inventory if args.inventory.exists() else ROOT / "tests" / "fixtures" / "report_inventory.csv"
        cases = [("demo", inventory)]
        if args.devices:
            base = pd.read_csv(inventory, dtype=str, keep_default_na=False)
            big = big_inventory(tmp / "big.parquet", args.devices, base)
            cases.append((f"{args.devices:,} devices", big))
        for label, inv in cases:
            start = time.perf_counter()
            outcome = render_reports(run.path, inv, tmp / f"report-{len(label)}", fail_on="never")
            wall = time.perf_counter() - start
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.seconds.items() if k != "total")
            print(f"{label}: report set rendered in {wall:.1f} s = {wall / kernel:.1f} kernel starts "
                  f"({outcome.summary['devices']:,} devices, {outcome.summary['profiles']} profiles; {steps})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
