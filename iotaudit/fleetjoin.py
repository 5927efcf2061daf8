"""``iotaudit inventory join PROFILES DEVICES --out inventory.csv``: scanned profiles x device list -> inventory.

``PROFILES`` is what ``iotaudit scan`` wrote (one row per firmware: trust
store, tls_stack, key types, pins).  ``DEVICES`` (CSV, Parquet or JSON) has
one row per device: ``device_id``, ``group``, ``firmware`` or ``profile``
(the scanned profile it runs), ``region``, ``endpoints``; a non-empty
``key_types``, ``tls_stack``, ``pins``, ``pin_scope`` or ``pin_expiry`` cell
overrides the scan's value for that device.  The output is a ready
inventory (:mod:`iotaudit.inventory` columns, plus ``tls_stack``), with the
trust store paths rewritten relative to it; it is loaded back with
:func:`iotaudit.inventory.load_inventory` before this command succeeds.

A device whose firmware was not scanned, or whose profile has no trust
store, is a problem with its row number; nothing is dropped silently.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as c
from .errors import InventoryError
from .inventory import load_inventory

FIRMWARE = "firmware"  # the devices file may name the profile "firmware"
OUTPUT_COLUMNS = (c.DEVICE_ID, c.GROUP, c.PROFILE, c.REGION, c.ENDPOINTS, c.TRUST_STORE, c.KEY_TYPES, c.TLS_STACK,
                  c.PINS, c.PIN_SCOPE, c.PIN_EXPIRY)
_DEVICE_REQUIRED = (c.DEVICE_ID, c.GROUP, c.REGION, c.ENDPOINTS)
_OVERRIDABLE = (c.KEY_TYPES, c.TLS_STACK, c.PINS, c.PIN_SCOPE, c.PIN_EXPIRY)
DEFAULT_KEY_TYPES = "rsa;ecdsa"


def _read_table(path: Path) -> tuple[pd.DataFrame, int]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True)
            frame.columns = [str(col).strip() for col in frame.columns]
            return frame, 2
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path).astype(str), 1
        if suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            doc = doc.get("devices") if isinstance(doc, dict) else doc
            if not isinstance(doc, list):
                raise InventoryError(path, [(None, None, "JSON devices must be a list of objects, or {\"devices\": [...]}")])
            return pd.DataFrame.from_records(doc).fillna("").astype(str), 1
    except InventoryError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise InventoryError(path, [(None, None, f"cannot read ({err})")]) from err
    raise InventoryError(path, [(None, None, f"unknown format {suffix!r} (use .csv, .parquet or .json)")])


def join_inventory(profiles_path: str | Path, devices_path: str | Path, out: str | Path, *,
                   default_key_types: str = DEFAULT_KEY_TYPES) -> tuple[Path, list[str]]:
    """Write the inventory of ``devices_path`` with each device's scanned profile filled in.

    Args:
        profiles_path: ``profiles.csv`` from ``iotaudit scan``.
        devices_path: The device list.
        out: The inventory CSV to write.
        default_key_types: Key types for profiles whose scan could not tell them (and no device cell says).

    Returns:
        The inventory path, and the notes for the operator (defaults applied, profiles no device runs).

    Raises:
        InventoryError: naming the file, row and column of every device that cannot be joined, or
            when the written inventory does not load.
    """
    profiles_path, devices_path, out = Path(profiles_path), Path(devices_path), Path(out)
    profiles, _ = _read_table(profiles_path)
    missing = [col for col in (c.PROFILE, c.TRUST_STORE, c.KEY_TYPES) if col not in profiles.columns]
    if missing:
        raise InventoryError(profiles_path, [(None, col, "column missing: is this iotaudit scan output?") for col in missing])
    devices, first_row = _read_table(devices_path)
    name_column = c.PROFILE if c.PROFILE in devices.columns else FIRMWARE if FIRMWARE in devices.columns else ""
    problems: list[tuple[int | None, str | None, str]] = []
    for col in _DEVICE_REQUIRED:
        if col not in devices.columns:
            problems.append((None, col, "required column missing"))
    if not name_column:
        problems.append((None, "firmware/profile", "required column missing (the scanned profile each device runs)"))
    if problems:
        raise InventoryError(devices_path, problems)
    by_name = {str(row[c.PROFILE]): row for row in profiles.to_dict("records")}
    notes: list[str] = []
    base = profiles_path.parent.resolve()
    out_dir = out.parent.resolve() if out.parent != Path("") else Path.cwd()
    rows = []
    placed: dict[str, str] = {}
    defaulted: set[str] = set()
    for index, device in enumerate(devices.to_dict("records")):
        row_number = index + first_row
        name = str(device[name_column]).strip()
        profile = by_name.get(name)
        if profile is None:
            problems.append((row_number, name_column, f"profile {name!r} is not in {profiles_path} "
                             f"(scanned: {', '.join(sorted(by_name)) or 'none'})"))
            continue
        store = str(profile[c.TRUST_STORE]).strip()
        if not store:
            problems.append((row_number, name_column, f"profile {name!r}: the scan found no trust store "
                             "(write one by hand, or scan the build directory or image)"))
            continue
        merged = {
            c.DEVICE_ID: device[c.DEVICE_ID], c.GROUP: device[c.GROUP], c.PROFILE: name, c.REGION: device[c.REGION],
            c.ENDPOINTS: device[c.ENDPOINTS],
            c.TRUST_STORE: placed.get(name) or _place_store(base / store, out_dir, name, placed, notes),
        }
        for col in _OVERRIDABLE:
            own = str(device.get(col, "") or "").strip()
            merged[col] = own or str(profile.get(col, "") or "").strip()
        if not merged[c.KEY_TYPES]:
            merged[c.KEY_TYPES] = default_key_types
            defaulted.add(name)
        rows.append(merged)
    if problems:
        raise InventoryError(devices_path, problems)
    for name in sorted(defaulted):
        notes.append(f"profile {name!r}: the scan could not tell its key types; used {default_key_types!r}")
    unused = sorted(set(by_name) - {str(row[c.PROFILE]) for row in rows})
    if unused:
        notes.append(f"scanned profile(s) no device runs: {', '.join(unused)}")
    frame = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except OSError as err:
        raise InventoryError(out, [(None, None, f"cannot write ({err.strerror or err})")]) from err
    try:
        load_inventory(out)
    except InventoryError:
        out.unlink(missing_ok=True)
        raise
    return out, notes


def _place_store(store: Path, out_dir: Path, profile: str, placed: dict[str, str], notes: list[str]) -> str:
    """The inventory's path to ``store``: relative when it lies inside ``out_dir``, else a copy made there.

    The inventory loader resolves trust stores inside the inventory's own directory only (a
    ``../../etc/ssl`` path is refused unless ``--allow-outside`` names its root), so a store the scan
    wrote elsewhere is copied to ``trust_stores/`` next to the inventory: the folder stays portable.
    """
    source = store.resolve()
    if source.is_relative_to(out_dir):
        placed[profile] = Path(os.path.relpath(source, out_dir)).as_posix()
        return placed[profile]
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", profile) or "profile"
    target = out_dir / "trust_stores" / f"{safe}.pem"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as err:
        raise InventoryError(target, [(None, None, f"cannot write ({err.strerror or err})")]) from err
    notes.append(f"profile {profile!r}: trust store copied to {target.relative_to(out_dir).as_posix()} next to the inventory")
    placed[profile] = target.relative_to(out_dir).as_posix()
    return placed[profile]


def _command(args: argparse.Namespace) -> int:
    out, notes = join_inventory(args.profiles, args.devices, args.out, default_key_types=args.default_key_types)
    for note in notes:
        print(f"iotaudit inventory join: {note}")
    print(f"inventory written to {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``iotaudit inventory join`` to the CLI."""
    parser = subparsers.add_parser("inventory", help="build device inventories (join scanned profiles with devices)")
    sub = parser.add_subparsers(dest="inventory_command", metavar="SUBCOMMAND", required=True)
    join = sub.add_parser(
        "join", help="scanned profiles x device list -> inventory",
        description="Join iotaudit scan's profiles.csv with a device list (device_id, group, firmware or profile, "
                    "region, endpoints) into an inventory that iotaudit audit and report read.",
    )
    join.add_argument("profiles", help="profiles.csv written by iotaudit scan")
    join.add_argument("devices", help="device list (.csv, .parquet or .json)")
    join.add_argument("--out", required=True, help="inventory CSV to write")
    join.add_argument("--default-key-types", default=DEFAULT_KEY_TYPES,
                      help=f"key types for profiles the scan could not tell them for (default {DEFAULT_KEY_TYPES})")
    join.set_defaults(func=_command)
