"""``iotaudit scan PATH... --out profiles.csv``: the command line of :func:`iotaudit.firmware.scan`.

Exit status: 0 when the scan ran (whatever it found: bad content is a
finding), 2 when a PATH or the output cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from .. import columns as c
from ..catalog import Catalog, aws_catalog
from ..errors import ScanError
from ..lab import lab_catalog
from . import FINDINGS_FILE, scan


def _catalog(spec: str) -> Catalog:
    if spec == "aws":
        return aws_catalog()
    if spec == "lab":
        return lab_catalog()
    return Catalog.from_directory(spec)


def _as_of(text: str) -> Any:
    try:
        stamp = pd.Timestamp(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--as-of {text!r} is not a date (use YYYY-MM-DD or ISO 8601)") from err
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ScanError(out, None, "already exists (choose another --out, or --overwrite)")
    result = scan(args.paths, profiles=args.profile, catalog=_catalog(args.catalog), as_of=args.as_of,
                  progress=None if not args.no_progress else False)
    result.write(out)
    notes = result.notes
    if args.json:
        doc = {
            "profiles": json.loads(result.profiles.to_json(orient="records")),
            "notes": json.loads(notes.to_json(orient="records")),
            "findings": len(result.findings),
            "out": str(out),
            "findings_file": str(out.parent / FINDINGS_FILE),
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    for row in result.profiles.to_dict("records"):
        print(f"{row[c.PROFILE]}: {row[c.ANCHORS]} anchor(s), tls_stack {row[c.TLS_STACK] or '(unknown)'}, "
              f"key_types {row[c.KEY_TYPES] or '(unknown)'}, {len(row[c.PINS].split(';')) if row[c.PINS] else 0} pin(s)")
        for note in notes[notes[c.PROFILE] == row[c.PROFILE]].to_dict("records"):
            where = f" [{note[c.FILE]}" + (f" @{note[c.OFFSET]}" if not pd.isna(note[c.OFFSET]) else "") + "]" if note[c.FILE] else ""
            print(f"  {note[c.SEVERITY_COL]}: {note[c.NOTE]}{where}")
    print(f"wrote {out}, {out.parent / FINDINGS_FILE} ({len(result.findings)} findings) and trust stores in "
          f"{out.parent / 'trust_stores'}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``iotaudit scan`` to the CLI."""
    parser = subparsers.add_parser(
        "scan", help="read trust stores, pins and TLS stacks from firmware images, build trees and sources",
        description="Scan each PATH (source tree, build directory, ELF, raw flash image or any file) and write one "
                    "profile row per PATH to --out (inventory columns; trust stores as PEM files beside it) and one "
                    "row per finding to scan.parquet beside it.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="what to scan; one profile per PATH")
    parser.add_argument("--out", required=True, help="profiles CSV to write (e.g. profiles.csv)")
    parser.add_argument("--profile", action="append", default=None, metavar="NAME",
                        help="profile name, once per PATH in order (default: each PATH's name)")
    parser.add_argument("--catalog", default="aws", metavar="aws|lab|DIR",
                        help="catalogue to name anchors with: the real AWS one (default), the lab's, or a directory")
    parser.add_argument("--as-of", type=_as_of, default=None, help="judge anchor expiry at this date (default: now)")
    parser.add_argument("--json", action="store_true", help="print the profiles and notes as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is off anyway off a terminal)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(func=_command)
