"""``iotaudit report`` on the command line: the argument parser and the exit status.

Kept apart from :mod:`iotaudit.reports.orchestrator` so that building the
parser (``iotaudit --help``, a usage error) imports no pandas, matplotlib or
papermill: the command imports them when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import IotauditError, ReportError
from ..options import add_trust_store_options, as_of_option, fail_on_help, positive_int
from .pages import INDEX_HTML, SINGLE_FILE_HTML, SKIPPED_COLUMN, SKIPPED_REASON, SKIPPED_ROW, FailOn

SKIPPED_PRINTED = 20  # skipped inventory rows listed on stderr; every one is on the index page


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``iotaudit report``."""
    parser = subparsers.add_parser(
        "report",
        help="audit a run against an inventory and render the HTML report set",
        description="Audit RUN against the inventory once, execute every report notebook with papermill, render "
                    "self-contained HTML (no network needed to read it), index.html and summary.json into DIR. "
                    "Exit status: 0 nothing crosses --fail-on, 1 something does, 2 usage, input or I/O error, or DIR "
                    "already exists (or another iotaudit is writing it).",
    )
    parser.add_argument("--run", required=True, type=Path, metavar="RUN", help="run directory (iotaudit collect --out)")
    parser.add_argument("--inventory", required=True, type=Path, metavar="FILE", help="device inventory (CSV, Parquet, JSON)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="report directory to create")
    parser.add_argument("--as-of", type=as_of_option, default=None, metavar="DATE",
                        help="evaluate at this ISO 8601 date or date-time with a time zone (default: the run's time)")
    parser.add_argument("--horizon-years", type=positive_int, default=15, metavar="N",
                        help="horizon of break dates and the cliff (default 15)")
    parser.add_argument("--fail-on", choices=[f.value for f in FailOn], default=FailOn.BROKEN.value, help=fail_on_help())
    parser.add_argument("--metrics", type=Path, metavar="FILE", help="also write Prometheus textfile gauges here")
    parser.add_argument("--baseline", type=Path, metavar="RUN", help="an earlier run: adds the drift report")
    parser.add_argument("--title", default="", metavar="T", help="report title")
    parser.add_argument("--group", default="", metavar="G", help="only devices of this group")
    parser.add_argument("--skip-bad-rows", action="store_true", help="skip and count bad inventory rows instead of stopping")
    parser.add_argument("--cross-check", action="store_true",
                        help="also ask each profile's real TLS library, where installed here, about every chain it meets")
    parser.add_argument("--scan", type=Path, metavar="PATH",
                        help="the findings of iotaudit scan (its scan.parquet, or the profiles.csv it sits next to): "
                             "their notes for the inventory's profiles show on the root coverage page")
    add_trust_store_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace DIR once the new report set is complete")
    parser.add_argument("--notebooks", type=Path, metavar="DIR",
                        help="directory of report notebooks to execute instead of the shipped ones (same names)")
    parser.add_argument("--single-file", action="store_true",
                        help=f"also write DIR/{SINGLE_FILE_HTML}: every page in one self-contained HTML file")
    parser.add_argument("--quiet", action="store_true", help="print only the path of index.html (and skipped rows)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    progress = None if args.quiet else (lambda line: print(f"  {line}", file=sys.stderr))
    # Imported here, not above: the parser must stay light (iotaudit --help, usage errors).
    orchestrator = importlib.import_module("iotaudit.reports.orchestrator")
    try:
        outcome = orchestrator.render_reports(
            args.run, args.inventory, args.out, as_of=args.as_of, horizon_years=args.horizon_years, title=args.title,
            group=args.group, baseline_run=args.baseline, fail_on=args.fail_on, metrics=args.metrics,
            skip_bad_rows=args.skip_bad_rows, cross_check=args.cross_check, allow_outside=args.allow_outside,
            max_store_certificates=args.max_store_certificates, scan=args.scan, overwrite=args.overwrite, progress=progress, notebooks=args.notebooks,
            single_file=args.single_file,
        )
    except IotauditError:
        raise
    except (OSError, ValueError) as err:
        raise ReportError(args.out, None, str(err)) from err
    print(outcome.out / INDEX_HTML)
    _print_skipped(outcome.summary)
    if not args.quiet:
        v = outcome.summary["devices_by_verdict"]
        print(f"  {outcome.summary['devices']:,} devices: {v['broken']:,} broken, {v['at-risk']:,} at risk, "
              f"{v['covered']:,} covered; fail-on {args.fail_on}: exit {outcome.exit_status}", file=sys.stderr)
    return outcome.exit_status


def _print_skipped(summary: Mapping[str, Any]) -> None:
    """Skipped inventory rows on stderr (even with --quiet): a cron mail shows them."""
    count = int(summary.get("skipped_rows", 0))
    if not count:
        return
    print(f"iotaudit report: skipped {count} bad inventory row(s) of {summary.get('inventory', '')} "
          "(--skip-bad-rows); they are in no number of the report:", file=sys.stderr)
    details = list(summary.get("skipped_row_details", []))
    for row in details[:SKIPPED_PRINTED]:
        print(f"  row {row[SKIPPED_ROW]}, column {row[SKIPPED_COLUMN] or '-'}: {row[SKIPPED_REASON]}", file=sys.stderr)
    if len(details) > SKIPPED_PRINTED:
        print(f"  ... and {len(details) - SKIPPED_PRINTED} more (every one is listed in index.html)", file=sys.stderr)
