"""Benchmark: how fast the command line starts (issue 9 item 11): ``--help``, usage errors, ``lab stop``.

Usage::

    .venv/bin/python benchmarks/cli.py [--repeat 15]

Each command runs as a fresh process (``python -m iotaudit ...``), ``--repeat`` times, interleaved with the
baselines so machine load hits them alike; the median wall time is printed with its ratio to the same-run
baseline ``python -c pass`` (the interpreter's own start).  ``python -c "import pandas"`` is printed too:
a command at or above it still imports the analysis stack.  Aim: ``--help`` and a top-level usage error
under 0.2 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (median reported)")
    args = parser.parse_args()
    py = sys.executable
    missing_lab = Path(tempfile.mkdtemp(prefix="iotaudit-bench-cli-")) / "no-lab"
    cases: dict[str, list[str]] = {
        "baseline: python -c pass": [py, "-c", "pass"],
        "reference: python -c 'import pandas'": [py, "-c", "import pandas"],
        "iotaudit --help": [py, "-m", "iotaudit", "--help"],
        "iotaudit (no command: usage, exit 2)": [py, "-m", "iotaudit"],
        "iotaudit nosuchcommand (usage error)": [py, "-m", "iotaudit", "nosuchcommand"],
        "iotaudit collect --help": [py, "-m", "iotaudit", "collect", "--help"],
        "iotaudit collect --timeout -1 (usage error)": [py, "-m", "iotaudit", "collect", "--timeout", "-1", "--out", "x"],
        "iotaudit lab stop (no lab running)": [py, "-m", "iotaudit", "lab", "stop", "--dir", str(missing_lab)],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for name, argv in cases.items():  # warm the page cache once
        _wall(argv)
    for _ in range(args.repeat):
        for name, argv in cases.items():
            times[name].append(_wall(argv))
    base = statistics.median(times["baseline: python -c pass"])
    print(f"median of {args.repeat} runs each, interleaved; Python {sys.version.split()[0]}")
    print(f"{'command':48} {'median':>9} {'x python -c pass':>17}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:48} {median * 1000:7.0f} ms {median / base:16.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
