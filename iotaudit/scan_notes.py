"""The audit's ``firmware_notes`` frame: the notes of ``iotaudit scan`` for the profiles the inventory has.

``iotaudit audit RUN --inventory FILE --scan PATH`` (and ``iotaudit report
--scan PATH``) reads the scan's findings (:func:`iotaudit.firmware.read_findings`),
judges them at the audit's own ``as_of`` (:func:`iotaudit.firmware.firmware_notes`:
an anchor that expires between the scan and the audit is an expired anchor
in the audit) and keeps the notes of scanned profiles the inventory runs.  A
scanned profile is matched by name to every inventory profile of that name
(``fw``, and its variants ``fw~2`` ... when devices of one firmware differ
in region or endpoints), so each row carries that profile's device count.
Notes about profiles no device runs are counted in the summary, not dropped
silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from . import columns as c
from .columns import NoteSeverity
from .firmware import firmware_notes
from .profiles import Profile

# summary.json's ``firmware_notes`` counts, by severity: key -> NoteSeverity value.
SEVERITY_COUNTS = {"errors": NoteSeverity.ERROR.value, "warnings": NoteSeverity.WARNING.value,
                   "infos": NoteSeverity.INFO.value}
LISTED = 50  # profile names listed in the summary (all are counted)


def not_asked() -> tuple[pd.DataFrame, dict[str, Any]]:
    """The empty frame and summary of an audit given no scan."""
    summary = {"asked": False, "scan": "", **{key: 0 for key in SEVERITY_COUNTS}, "notes_outside_inventory": 0,
               "profiles_outside_inventory": [], "profiles_not_scanned": []}
    return c.typed_frame([], c.FIRMWARE_NOTES_DTYPES), summary


def inventory_notes(
    findings: pd.DataFrame, profiles: Sequence[Profile], *, as_of: datetime,
) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """The firmware notes of the scanned profiles the inventory runs, at ``as_of``.

    Args:
        findings: The scan's findings (``ScanResult.findings`` or :func:`iotaudit.firmware.read_findings`);
            ``attrs["source"]``, when set, is recorded as the summary's ``scan``.
        profiles: The inventory's profiles (:meth:`iotaudit.inventory.Inventory.build_profiles`).
        as_of: The audit's time (tz-aware): anchor expiry is judged here, not at the scan's time.

    Returns:
        (frame with the columns of :data:`iotaudit.columns.FIRMWARE_NOTES_DTYPES`, one row per inventory
        profile x note, worst first within a profile; the summary's ``firmware_notes`` entry: ``asked``,
        ``scan``, ``errors``, ``warnings``, ``infos`` (rows of the frame), ``notes_outside_inventory``,
        ``profiles_outside_inventory`` and ``profiles_not_scanned``; lines for the summary's ``notes``).
    """
    notes = firmware_notes(findings, as_of=c.as_utc(as_of))
    scanned = notes[c.PROFILE].astype(str)
    keys_of: dict[str, list[Profile]] = {}
    for profile in profiles:
        keys_of.setdefault(profile.name, []).append(profile)
    inside = scanned.isin(keys_of)
    rows: list[dict[str, Any]] = []
    for note in notes[inside.to_numpy()].to_dict("records"):
        for profile in keys_of[str(note[c.PROFILE])]:
            rows.append({**note, c.PROFILE: profile.key, c.DEVICES: profile.devices})
    frame = c.typed_frame(rows, c.FIRMWARE_NOTES_DTYPES)
    frame[c.PROFILE] = pd.Categorical(frame[c.PROFILE].astype(str), categories=[p.key for p in profiles])
    names_scanned = set(findings[c.PROFILE].astype(str))
    outside = sorted(names_scanned - set(keys_of))
    not_scanned = sorted({p.name for p in profiles} - names_scanned)
    severities = frame[c.SEVERITY_COL].astype(str)
    summary = {
        "asked": True,
        "scan": str(findings.attrs.get("source", "")),
        **{key: int((severities == value).sum()) for key, value in SEVERITY_COUNTS.items()},
        "notes_outside_inventory": int((~inside).sum()),
        "profiles_outside_inventory": outside[:LISTED],
        "profiles_not_scanned": not_scanned[:LISTED],
    }
    lines = []
    if outside:
        lines.append(f"firmware notes: {int((~inside).sum())} note(s) of {len(outside)} scanned profile(s) not in "
                     f"the inventory left out: {', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''}")
    return frame, summary, lines


__all__ = ["SEVERITY_COUNTS", "inventory_notes", "not_asked"]
