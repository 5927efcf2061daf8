"""The pages of a report set: which notebooks, their titles, and the file names inside a report directory.

The bottom of :mod:`iotaudit.reports`: every other module of the package may
import it, it imports none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import options


@dataclass(frozen=True, slots=True)
class NotebookSpec:
    """One notebook of the report set.

    Attributes:
        name: File stem in ``notebooks/``, also the stem of the ``.ipynb``/``.html`` written.
        title: What ``index.html`` and the summary call it.
        description: One line under the link.
        needs_baseline: Rendered only when a baseline run is given.
    """

    name: str
    title: str
    description: str
    needs_baseline: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_]+", self.name):
            raise ValueError(f"notebook name {self.name!r} must be lowercase letters and underscores")


NOTEBOOKS: tuple[NotebookSpec, ...] = (
    NotebookSpec("summary", "Summary", "Headline numbers and what to do first."),
    NotebookSpec("root_coverage", "Root coverage",
                 "Which endpoint chains each firmware can validate, to which anchor, and which roots to add."),
    NotebookSpec("expiry_timeline", "Expiry timeline",
                 "Served certificates, validated paths and trust anchors: when each expires, and the device cliff."),
    NotebookSpec("pinning_risk", "Pinning risk",
                 "Which pins match today and which break under each likely AWS change."),
    NotebookSpec("drift", "Drift since the baseline run",
                 "What the endpoints serve differently from the previous run.", needs_baseline=True),
)
AUDIT_SUBDIR = "audit"              # the audit, as written by iotaudit.auditing.write_audit, inside a report directory
SKIPPED_ROWS = "skipped_rows.csv"   # inside the audit directory: inventory rows left out (--skip-bad-rows)
SKIPPED_ROW, SKIPPED_COLUMN, SKIPPED_REASON = "row", "column", "reason"  # its columns
NOTEBOOK_ONLY_TAG = "notebook-only"  # cells removed from the rendered HTML
SUMMARY_JSON = "summary.json"
INDEX_HTML = "index.html"
SINGLE_FILE_HTML = "report-single-file.html"  # `iotaudit report --single-file`: the whole set in one page


def notebooks_dir() -> Path:
    """Directory holding the report notebooks (``_notebooks`` inside a wheel, else the checkout's ``notebooks/``)."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_notebooks"
    if (packaged / "summary.ipynb").exists():
        return packaged
    return package.parent / "notebooks"


# ``--fail-on``: one vocabulary for audit and report (iotaudit.options, the CLI's standard-library layer).
FailOn = options.FailOn
