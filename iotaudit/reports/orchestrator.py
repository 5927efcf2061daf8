"""``iotaudit report``: audit once, execute every report notebook with papermill, render the HTML set.

``iotaudit report --run RUN --inventory FILE --out DIR`` claims ``DIR``
(:func:`iotaudit.store.claim_directory`: a second report into the same
directory exits 2 "already exists"), audits the run once into ``DIR/audit/``
(:func:`iotaudit.reports.inputs.prepare_audit`), executes each notebook of
``notebooks/`` with papermill (kernels :func:`~iotaudit.reports.inputs.load_inputs`
that audit, they do not recompute it), keeps the executed ``.ipynb``, renders
HTML with nbconvert (:mod:`iotaudit.reports.render`), and writes
``index.html`` and ``summary.json`` -- and with ``--single-file`` the whole
set as one self-contained page.  The directory appears atomically
(:func:`iotaudit.store.write_atomically`).

Exit status of ``iotaudit report``: 0 when nothing crosses ``--fail-on``,
1 when something does, 2 for usage, input or I/O errors.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .. import options
from .. import __version__
from ..errors import ReportError
from ..firmware import read_findings
from ..inventory import load_inventory
from ..store import claim_directory, load_run, write_atomically
from .cells import headline_numbers
from .inputs import load_inputs, parse_as_of, prepare_audit
from .pages import (
    AUDIT_SUBDIR,
    INDEX_HTML,
    NOTEBOOKS,
    SINGLE_FILE_HTML,
    SUMMARY_JSON,
    FailOn,
    NotebookSpec,
    notebooks_dir,
)
from ..auditing import SKIPPED_ROWS_LISTED
from .render import audit_data_files, index_page, notebook_to_html, single_file_page

def kernel_manager_class() -> type:
    """A kernel manager that starts the kernel on the interpreter running iotaudit.

    papermill's ``kernel_name="python3"`` resolves through the machine's
    kernelspecs, where a user-level ``python3`` spec (``~/.local/share/jupyter``
    comes before the virtual environment's) can point at another Python that
    has no iotaudit; the report would then fail in its first cell.
    """
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.manager import AsyncKernelManager

    class ThisPythonKernelManager(AsyncKernelManager):
        @property
        def kernel_spec(self) -> KernelSpec:
            return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                              display_name=f"Python {sys.version_info.major}.{sys.version_info.minor} (iotaudit)",
                              language="python", env={})

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client interrupts (SIGINT) every kernel it shuts down before asking it to exit
            # (jupyter_client/manager.py, _async_shutdown_kernel); a kernel caught inside a message handler
            # then logs "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel" (ipykernel/kernelbase.py,
            # dispatch_shell) to our stderr: noise in a cron mail.  papermill only shuts down a kernel that has
            # finished the notebook, so there is nothing to interrupt; other interrupts go through.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return ThisPythonKernelManager


def execute_notebook(source: str | Path, executed: str | Path, parameters: Mapping[str, Any], *,
                     failed_dir: Path | None = None, cwd: str | Path | None = None) -> Path:
    """Execute one notebook with papermill into ``executed``.

    Raises:
        ReportError: naming the notebook and its failing cell (1-based, as in the source
            notebook); the executed notebook, with papermill's error marker, is copied to
            ``failed_dir`` when given and the message says where.
    """
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, executed = Path(source), Path(executed)
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(source), str(executed), parameters=dict(parameters), kernel_name="python3",
            progress_bar=False, cwd=str(cwd or source.parent),
            # The kernel's own log (e.g. ipykernel's "running over TCP without encryption" on every
            # start) is noise in a cron mail; cell errors still reach us through papermill.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            kernel_manager_class=kernel_manager_class(),
        )
    except PapermillExecutionError as err:
        cells = nbformat.read(str(source), as_version=4).cells
        number = next((i + 1 for i, cell in enumerate(cells) if cell.source == err.source), None)
        kept = _keep_failed(executed, failed_dir)
        first_line = (err.source.strip().splitlines() or [""])[0][:120]
        raise ReportError(source, number, f"{err.ename}: {err.evalue} (in `{first_line}`)", kept) from err
    except Exception as err:  # kernel died, bad notebook JSON, missing kernel...
        kept = _keep_failed(executed, failed_dir) if executed.exists() else None
        raise ReportError(source, None, f"{type(err).__name__}: {err}", kept) from err
    return executed


def _keep_failed(executed: Path, failed_dir: Path | None) -> Path | None:
    if failed_dir is None or not executed.exists():
        return executed if executed.exists() else None
    failed_dir.mkdir(parents=True, exist_ok=True)
    target = failed_dir / executed.name
    shutil.copy2(executed, target)
    return target


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What :func:`render_reports` produced.

    Attributes:
        out: The report directory.
        summary: The content of ``summary.json``.
        exit_status: 0 (nothing crosses ``fail_on``) or 1.
        reports: Notebook name -> HTML path.
        seconds: Wall time per step (``audit``, each notebook, ``total``).
    """

    out: Path
    summary: Mapping[str, Any]
    exit_status: int
    reports: Mapping[str, Path] = field(default_factory=dict)
    seconds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.exit_status not in (0, 1):
            raise ValueError(f"exit_status {self.exit_status} is not 0 or 1")


crosses = options.crosses  # the one --fail-on rule, shared with ``iotaudit audit``


def render_reports(
    run_dir: str | Path,
    inventory: str | Path,
    out: str | Path,
    *,
    as_of: str | datetime | None = None,
    horizon_years: int = 15,
    title: str = "",
    group: str = "",
    baseline_run: str | Path | None = None,
    fail_on: FailOn | str = FailOn.BROKEN,
    metrics: str | Path | None = None,
    skip_bad_rows: bool = False,
    overwrite: bool = False,
    notebooks: str | Path | None = None,
    parallel: int = 2,
    progress: Callable[[str], None] | None = None,
    single_file: bool = False,
    cross_check: bool = False,
    allow_outside: Sequence[str | Path] = (),
    max_store_certificates: int = options.MAX_TRUST_STORE_CERTIFICATES,
    scan: str | Path | None = None,
) -> ReportOutcome:
    """Audit once, execute every notebook, render HTML, write index.html and summary.json atomically.

    Args:
        run_dir: Run directory.
        inventory: Device inventory (CSV, Parquet or JSON).
        out: Report directory to create (claimed first, then written atomically).
        as_of: Evaluation time; None/"" = the run's time.
        horizon_years: Horizon of break dates and the cliff.
        title: Report title.
        group: Only devices of this group ("" = all).
        baseline_run: An earlier run: adds the drift report.
        fail_on: Threshold for ``exit_status`` 1.
        metrics: Also write Prometheus textfile gauges to this file.
        skip_bad_rows: Skip (and list) bad inventory rows instead of stopping.
        overwrite: Replace an existing ``out`` (only once the new one is complete).
        notebooks: Directory of the notebooks (default :func:`notebooks_dir`).
        parallel: How many notebook kernels run at once.
        progress: Called with one line per step.
        single_file: Also write ``report-single-file.html``: every page in one self-contained HTML.
        cross_check: Also ask each profile's real TLS library, where installed here, about every chain it meets.
        allow_outside: Directories trust-store files may also resolve into (default: only the inventory's own).
        max_store_certificates: Most certificates one trust-store file may hold.
        scan: The findings of ``iotaudit scan`` (its ``scan.parquet``, or the ``profiles.csv`` beside it): their
            notes for the inventory's profiles are the audit's ``firmware_notes`` (root coverage page).

    Returns:
        A :class:`ReportOutcome`.

    Raises:
        IotauditError: bad run, inventory or parameters, ``out`` exists or is being written by
            another process (exit status 2), or a failing notebook (:class:`ReportError`; the
            executed notebook is kept in ``<out>.failed/``).
    """
    started = time.perf_counter()
    say = progress or (lambda _line: None)
    out = Path(out).absolute()
    fail_on = FailOn(fail_on)
    nb_dir = Path(notebooks).absolute() if notebooks else notebooks_dir()
    specs = [s for s in NOTEBOOKS if not s.needs_baseline or baseline_run]
    missing = [str(nb_dir / f"{s.name}.ipynb") for s in specs if not (nb_dir / f"{s.name}.ipynb").is_file()]
    if missing:
        raise ReportError(missing[0], None, "report notebook not found")
    with claim_directory(out):
        if out.exists() and not overwrite:
            raise ReportError(out, None, "already exists (choose a new report directory or pass --overwrite)")
        run = load_run(run_dir)
        moment = parse_as_of(as_of, run.created_at)
        inv = load_inventory(inventory, skip_bad_rows=skip_bad_rows, allow_outside=allow_outside,
                             max_store_certificates=max_store_certificates)
        findings = read_findings(scan) if scan else None
        failed_dir = out.with_name(out.name + ".failed")
        seconds: dict[str, float] = {}
        summary_holder: dict[str, Any] = {}

        def fill(tmp: Path) -> None:
            audit_dir = tmp / AUDIT_SUBDIR
            t0 = time.perf_counter()
            prepare_audit(run, inv, audit_dir, as_of=moment, horizon_years=int(horizon_years), cross_check=cross_check,
                          scan_findings=findings)
            seconds["audit"] = time.perf_counter() - t0
            say(f"audited {len(inv.profiles)} profile(s) in {seconds['audit']:.1f} s")
            params = {
                "run_dir": str(Path(run_dir).absolute()),
                "inventory": str(Path(inventory).absolute()),
                "audit_dir": str(audit_dir),
                "as_of": moment.isoformat(),
                "horizon_years": int(horizon_years),
                "title": title or "iotaudit report",
                "group": group,
                "baseline_run": str(Path(baseline_run).absolute()) if baseline_run else "",
                "skip_bad_rows": bool(skip_bad_rows),
            }

            def one(spec: NotebookSpec) -> tuple[str, float]:
                t = time.perf_counter()
                # papermill (nbclient, via jupyter_core.utils.run_sync) runs its coroutines on the loop that
                # jupyter_core.utils.ensure_event_loop keeps for this thread, and never closes it; a worker
                # thread's loop would leak (ResourceWarning), so take that same loop and close it afterwards.
                from jupyter_core.utils import ensure_event_loop

                loop = ensure_event_loop()
                try:
                    executed = execute_notebook(nb_dir / f"{spec.name}.ipynb", tmp / f"{spec.name}.ipynb", params,
                                                failed_dir=failed_dir, cwd=nb_dir)
                finally:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()
                    asyncio.set_event_loop(None)
                page = notebook_to_html(executed, f"{params['title']} — {spec.title}")
                (tmp / f"{spec.name}.html").write_text(page, encoding="utf-8")
                return spec.name, time.perf_counter() - t

            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                for name, spent in pool.map(one, specs):
                    seconds[name] = spent
                    say(f"rendered {name}.html in {spent:.1f} s")
            # Headline numbers: the same load_inputs call every notebook kernel made, on the same audit.
            inputs = load_inputs(params["run_dir"], params["inventory"], audit_dir=audit_dir, as_of=params["as_of"],
                                 horizon_years=params["horizon_years"], title=params["title"], group=group,
                                 baseline_run=params["baseline_run"], skip_bad_rows=bool(skip_bad_rows))
            numbers = headline_numbers(inputs)
            summary = {
                "format": "iotaudit-report/1",
                "tool_version": __version__,
                "title": params["title"],
                "as_of": moment.isoformat(),
                "run": params["run_dir"],
                "run_created_at": run.created_at.isoformat(),
                "inventory": params["inventory"],
                "group": group,
                "horizon_years": int(horizon_years),
                **numbers,
                # The first problems only (a doubled 1M-device export has a million): all are in
                # audit/skipped_rows.csv, and skipped_problems counts them.
                "skipped_row_details": _jsonable(inputs.skipped_rows.head(SKIPPED_ROWS_LISTED).to_dict("records")),
                "skipped_problems": int(len(inputs.skipped_rows)),
                "fail_on": fail_on.value,
                "threshold_crossed": crosses(numbers["devices_by_verdict"], fail_on),
                "reports": {spec.name: f"{spec.name}.html" for spec in specs},
                "audit": _jsonable(dict(inputs.audit.summary)),
            }
            if single_file:
                summary["single_file"] = SINGLE_FILE_HTML
            if baseline_run:
                from ..run_drift import drift, drift_summary

                summary["drift"] = drift_summary(drift(inputs.baseline, run))
                summary["baseline_run"] = params["baseline_run"]
            (tmp / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
            (tmp / INDEX_HTML).write_text(index_page(summary, specs, audit_data_files(tmp), single_file=single_file),
                                          encoding="utf-8")
            if single_file:
                (tmp / SINGLE_FILE_HTML).write_text(single_file_page(tmp, specs, params["title"]), encoding="utf-8")
            summary_holder.update(summary)

        write_atomically(out, fill, overwrite=overwrite)
    shutil.rmtree(failed_dir, ignore_errors=True)  # a stale failure from an earlier attempt
    reports = {spec.name: out / f"{spec.name}.html" for spec in specs}
    if metrics:
        from ..auditing import load_audit
        from ..metrics import render_metrics, write_metrics

        result = load_audit(out / AUDIT_SUBDIR)
        text = render_metrics(run, as_of=moment, coverage=result.coverage, expiry=result.expiry,
                              anchors_expiry=result.anchors_expiry)
        write_metrics(metrics, text)
        say(f"wrote metrics to {metrics}")
    seconds["total"] = time.perf_counter() - started
    status = 1 if summary_holder["threshold_crossed"] else 0
    return ReportOutcome(out=out, summary=summary_holder, exit_status=status, reports=reports, seconds=seconds)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (pd.Timestamp, datetime)):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NA or value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    return value


# --- command line ---------------------------------------------------------------------
