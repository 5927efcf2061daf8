"""``make demo``: the whole pipeline on the built-in default, offline.

Starts the loopback lab, collects every endpoint into ``runs/demo``, audits
the sample inventory against it and renders the report set into
``reports/demo``, stops the lab, and prints the path of ``index.html``.
No AWS account and no network beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_INVENTORY = ROOT / "data" / "sample_inventory.csv"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status of the report step (0, or 1 when the sample has broken devices)."""
    parser = argparse.ArgumentParser(prog="python -m iotaudit.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo", help="run directory to (re)write")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "demo", help="report directory to (re)write")
    parser.add_argument("--inventory", type=Path, default=SAMPLE_INVENTORY)
    parser.add_argument("--no-report", action="store_true", help="stop after collecting (used by `make lab`)")
    args = parser.parse_args(argv)

    from pandas import option_context

    from .cli import main as cli_main
    from .collection import collect, format_summary, summarize
    from .lab import Lab
    from .store import write_run

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="iotaudit-lab-") as lab_dir, Lab(Path(lab_dir)) as lab:
        print(f"lab: {len(lab.targets)} endpoints on 127.0.0.1 (lab certificates, not the real AWS CAs)")
        run = collect(lab.targets, timeout=2.0, catalog=lab.catalog,
                      parameters={"source": "iotaudit demo lab"})
        write_run(run, args.run, overwrite=True)
    print(f"lab stopped; run written to {args.run}")
    with option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 80):
        print(format_summary(summarize(run)))
    if args.no_report:
        return 0
    status = cli_main(["report", "--run", str(args.run), "--inventory", str(args.inventory),
                       "--out", str(args.out), "--fail-on", "never", "--overwrite"])
    index = args.out / "index.html"
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    if status == 0 and index.exists():
        print(f"open {index}")
    return status


if __name__ == "__main__":
    sys.exit(main())
