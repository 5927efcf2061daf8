"""Benchmark: wall time of rendering the whole report set, for the demo inventory and a 10M-device CSV.

Usage::

    .venv/bin/python benchmarks/report.py [--devices 10000000] [--format csv|parquet] [--inventory data/sample_inventory.csv]

Starts the loopback lab, collects it once, then renders the report set
(``iotaudit.reports.render_reports``: one audit, every notebook executed with
papermill, HTML, index, summary) for the given inventory and for a generated
inventory of ``--devices`` devices over 300 profiles (``benchmarks/audit.py``'s
DuckDB SQL generator, as a CSV export by default, its four bad rows skipped).
Two baselines from the same run: one Jupyter kernel start with an empty cell
(how many kernel starts the render costs), and, for the big inventory, the
audit alone (load + audit + ``devices.parquet``, what ``iotaudit audit``
does): issue 11 asks that the report cost little more than the audit, so the
notebooks must not re-read the device table.  Aim: the demo set under 30 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


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


def audit_seconds(run_dir: Path, inventory: Path, out: Path) -> float:
    """The audit alone on ``inventory``: load (bad rows skipped), audit, write the audit with ``devices.parquet``."""
    from iotaudit.auditing import audit, write_audit
    from iotaudit.inventory import load_inventory
    from iotaudit.store import load_run

    start = time.perf_counter()
    run = load_run(run_dir)
    inv = load_inventory(inventory, skip_bad_rows=True, temp_directory=out.parent)
    write_audit(audit(run, inv), out, inventory=inv)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000_000, help="devices of the generated inventory (0: none)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format of the generated inventory")
    parser.add_argument("--inventory", type=Path, default=ROOT / "data" / "sample_inventory.csv")
    args = parser.parse_args()

    from audit import generate, profile_table

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
        cases = [("demo", inventory, None)]
        if args.devices:
            big = generate(tmp / f"big.{args.format}", args.format, args.devices, profile_table(300))
            cases.append((f"{args.devices:,} devices ({args.format})", big, audit_seconds(run.path, big, tmp / "audit-only")))
        for label, inv, audit_s in cases:
            start = time.perf_counter()
            outcome = render_reports(run.path, inv, tmp / f"report-{len(label)}", fail_on="never",
                                     skip_bad_rows=audit_s is not None)
            wall = time.perf_counter() - start
            steps = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.seconds.items() if k != "total")
            versus = f"; the audit alone {audit_s:.1f} s: {wall / audit_s:.2f}x the audit" if audit_s else ""
            print(f"{label}: report set rendered in {wall:.1f} s = {wall / kernel:.1f} kernel starts{versus} "
                  f"({outcome.summary['devices']:,} devices, {outcome.summary['profiles']} profiles; {steps})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
