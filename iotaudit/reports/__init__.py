"""The report set: papermill-executed notebooks rendered to self-contained, shareable HTML.

Modules, bottom up (imports point down only):

* :mod:`~iotaudit.reports.pages` -- which notebooks make the set, and the file names of a report directory;
* :mod:`~iotaudit.reports.inputs` -- :class:`ReportInputs` and the one load path (:func:`load_inputs`);
* :mod:`~iotaudit.reports.render` -- HTML: tables, the offline page template, ``index.html``, the single file;
* :mod:`~iotaudit.reports.cells` -- one typed function per notebook section;
* :mod:`~iotaudit.reports.orchestrator` -- ``iotaudit report``: audit once, execute, render, index.

Notebooks stay thin: a ``parameters`` cell of primitives, one
``iotaudit.reports.load_inputs`` call, then one ``iotaudit.reports.<cell>``
call per cell.  This front re-exports what they and the tests use.
"""

from __future__ import annotations

from .cells import (
    Html,
    Png,
    anchors_expiry_table,
    break_dates_table,
    certificates_expiry_table,
    cliff_table,
    coverage_figure,
    coverage_patterns_table,
    crosscheck_section,
    drift_counts_table,
    drift_table,
    expiry_figure,
    failures_table,
    firmware_notes_section,
    fleet_table,
    headline_numbers,
    headline_table,
    pin_figure,
    pin_patterns_table,
    pin_risks_table,
    pins_today_table,
    report_links,
    roots_to_add_table,
    skipped_rows_table,
    stack_alternatives_section,
    stack_section,
    table,
    title_block,
    verdict_table,
    worst_first,
)
from .inputs import ReportInputs, filter_group, load_inputs, parse_as_of, prepare_audit
from .orchestrator import (
    FailOn,
    ReportOutcome,
    crosses,
    execute_notebook,
    kernel_manager_class,
    register,
    render_reports,
)
from .pages import NOTEBOOKS, NotebookSpec, notebooks_dir
from .render import external_references, html_exporter, notebook_to_html, single_file_page

__all__ = [
    "NOTEBOOKS", "FailOn", "Html", "NotebookSpec", "Png", "ReportInputs", "ReportOutcome",
    "anchors_expiry_table", "break_dates_table", "certificates_expiry_table", "cliff_table", "coverage_figure",
    "coverage_patterns_table", "crosscheck_section", "crosses", "drift_counts_table", "drift_table", "execute_notebook", "expiry_figure",
    "external_references", "failures_table", "filter_group", "firmware_notes_section", "fleet_table", "headline_numbers", "headline_table",
    "html_exporter", "kernel_manager_class", "load_inputs", "notebook_to_html", "notebooks_dir", "parse_as_of",
    "pin_figure", "pin_patterns_table", "pin_risks_table", "pins_today_table", "prepare_audit", "register",
    "render_reports", "report_links", "roots_to_add_table", "single_file_page", "skipped_rows_table", "stack_alternatives_section", "stack_section", "table",
    "title_block", "verdict_table", "worst_first",
]
