"""The report set: papermill-executed notebooks rendered to self-contained, shareable HTML.

Modules, bottom up (imports point down only):

* :mod:`~iotaudit.reports.pages` -- which notebooks make the set, ``FailOn``, the file names of a report directory;
* :mod:`~iotaudit.reports.inputs` -- :class:`ReportInputs` and the one load path (:func:`load_inputs`);
* :mod:`~iotaudit.reports.render` -- HTML: tables, the offline page template, ``index.html``, the single file;
* :mod:`~iotaudit.reports.cells` -- one typed function per notebook section;
* :mod:`~iotaudit.reports.orchestrator` -- :func:`render_reports`: audit once, execute, render, index;
* :mod:`~iotaudit.reports.command` -- ``iotaudit report`` (``register``), light enough for ``--help``.

Notebooks stay thin: a ``parameters`` cell of primitives, one
``iotaudit.reports.load_inputs`` call, then one ``iotaudit.reports.<cell>``
call per cell.  This front re-exports what they and the tests use; names
load lazily (PEP 562), so registering the command imports nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # cells: what notebooks call
    **{name: "cells" for name in (
        "Html", "Png", "table", "worst_first", "title_block", "headline_numbers", "headline_table",
        "skipped_rows_table", "report_links", "verdict_table", "fleet_table", "failures_table", "roots_to_add_table",
        "coverage_figure", "coverage_patterns_table", "expiry_figure", "break_dates_table", "certificates_expiry_table",
        "anchors_expiry_table", "cliff_table", "pin_figure", "pin_patterns_table", "pin_risks_table",
        "pins_today_table", "drift_table", "drift_counts_table", "stack_section", "stack_alternatives_section",
        "firmware_notes_section", "crosscheck_section")},
    **{name: "inputs" for name in ("ReportInputs", "filter_group", "load_inputs", "parse_as_of", "prepare_audit")},
    **{name: "orchestrator" for name in (
        "ReportOutcome", "crosses", "execute_notebook", "kernel_manager_class", "render_reports")},
    **{name: "pages" for name in ("NOTEBOOKS", "FailOn", "NotebookSpec", "notebooks_dir")},
    **{name: "render" for name in ("external_references", "html_exporter", "notebook_to_html", "single_file_page")},
    "register": "command",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'iotaudit.reports' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"iotaudit.reports.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
