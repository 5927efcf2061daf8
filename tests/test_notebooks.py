"""The report notebooks: thin, committed without outputs, and each one runs against a lab run."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from iotaudit.reports import NOTEBOOKS, execute_notebook, notebooks_dir
from tests.fixtures.reportset import HOSTILE, INVENTORY
from tests.test_reports import html_tables

PARAMETERS = {"run_dir", "inventory", "audit_dir", "as_of", "horizon_years", "title", "group", "baseline_run",
              "skip_bad_rows", "scan", "cross_check"}


def load(name: str) -> nbformat.NotebookNode:
    return nbformat.read(str(notebooks_dir() / f"{name}.ipynb"), as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_every_report_notebook_exists_and_nothing_else():
    names = {p.stem for p in notebooks_dir().glob("*.ipynb")}
    assert names == {spec.name for spec in NOTEBOOKS}


@pytest.mark.parametrize("name", [spec.name for spec in NOTEBOOKS])
def test_committed_without_outputs(name: str):
    nb = load(name)
    nbformat.validate(nb)
    for cell in code_cells(nb):
        assert cell.outputs == [], f"{name}: a code cell has outputs"
        assert cell.execution_count is None, f"{name}: a code cell has an execution count"


@pytest.mark.parametrize("name", [spec.name for spec in NOTEBOOKS])
def test_parameters_cell_is_tagged_first_and_primitive_only(name: str):
    cells = code_cells(load(name))
    tagged = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is cells[0]
    tree = ast.parse(tagged[0].source)
    assigned = set()
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{name}: only assignments"
        assert isinstance(node.value, ast.Constant), f"{name}: {ast.unparse(node)} is not a primitive"
        assert isinstance(node.value.value, (str, int, float, bool)) or node.value.value is None
        assigned.add(node.targets[0].id)
    assert assigned == PARAMETERS


@pytest.mark.parametrize("name", [spec.name for spec in NOTEBOOKS])
def test_defaults_point_at_the_demo(name: str):
    values = {}
    exec(code_cells(load(name))[0].source, {}, values)  # noqa: S102 - primitives only, checked above
    assert values["run_dir"] == "../runs/demo"
    assert values["inventory"] == "../data/sample_inventory.csv"
    assert values["as_of"] == "" and values["group"] == "" and values["audit_dir"] == ""


@pytest.mark.parametrize("name", [spec.name for spec in NOTEBOOKS])
def test_thin_one_loader_then_one_package_call_per_cell(name: str):
    nb = load(name)
    cells = code_cells(nb)
    loader = ast.parse(cells[1].source)
    imports = [n for n in loader.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.Import) and all(a.name.startswith("iotaudit") for a in n.names) for n in imports)
    calls = [n for n in loader.body if not isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(calls) == 1 and ast.unparse(calls[0].value.func) == "iotaudit.reports.load_inputs"
    for cell in cells:
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
                                         ast.For, ast.While, ast.If, ast.With, ast.Try)), f"{name}: logic in a notebook"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                assert cell is cells[1], f"{name}: imports only in the loader cell"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell is cells[0] or cell is cells[1]:
            continue
        tree = ast.parse(cell.source)
        assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), f"{name}: one call per cell"
        call = tree.body[0].value
        assert isinstance(call, ast.Call) and ast.unparse(call.func).startswith("iotaudit.reports.")
        assert [ast.unparse(a) for a in call.args][:1] == ["inputs"]
        if "title_block" not in ast.unparse(call.func) and not ast.unparse(call.func).endswith("_section"):
            heading = nb.cells[index - 1]
            assert heading.cell_type == "markdown" and heading.source.startswith("## "), f"{name}: heading"


# --- executed with papermill against the lab run -----------------------------------------------


def run_notebook(name: str, tmp_path: Path, lab_run, **parameters) -> nbformat.NotebookNode:
    params = {"run_dir": str(lab_run.path), "inventory": str(INVENTORY), "title": "Notebook test"}
    params.update(parameters)
    executed = execute_notebook(notebooks_dir() / f"{name}.ipynb", tmp_path / f"{name}.ipynb", params)
    return nbformat.read(str(executed), as_version=4)


def outputs(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    found = []
    for cell in code_cells(nb):
        for out in cell.outputs:
            assert out.output_type != "error"
            assert out.output_type != "stream" or out.name != "stderr", out.text
            if mime in out.get("data", {}):
                found.append(out.data[mime])
    return found


def tables(nb: nbformat.NotebookNode):
    return [t for markup in outputs(nb, "text/html") for t in html_tables(markup)]


@pytest.mark.slow
def test_summary_notebook_filters_one_group(lab_run, tmp_path: Path):
    nb = run_notebook("summary", tmp_path, lab_run, group="fleet-a")
    headline = next(t for t in tables(nb) if "Measure" in t.columns).set_index("Measure")["Value"]
    assert headline["Devices"] == "3"  # fleet-a: three devices of fw-dual-1.0
    profiles = next(t for t in tables(nb) if "Worst verdict" in t.columns)
    assert list(profiles["Firmware profile"]) == ["fw-dual-1.0"]


@pytest.mark.slow
def test_root_coverage_notebook(lab_run, tmp_path: Path):
    nb = run_notebook("root_coverage", tmp_path, lab_run)
    assert len(outputs(nb, "image/png")) == 1
    failures = next(t for t in tables(nb) if "Why" in t.columns)
    assert "fw-verisign-on-ats-0.9" in set(failures["Firmware profile"])
    assert HOSTILE not in "".join(outputs(nb, "text/html"))


@pytest.mark.slow
def test_expiry_timeline_notebook(lab_run, tmp_path: Path):
    nb = run_notebook("expiry_timeline", tmp_path, lab_run, as_of="2026-01-01", horizon_years=5)
    assert len(outputs(nb, "image/png")) == 1
    breaks = next(t for t in tables(nb) if "Update firmware by (firmware side)" in t.columns)
    assert "fw-expiring-leaf" in set(breaks["Firmware profile"])
    expiring = breaks.set_index("Firmware profile").loc["fw-expiring-leaf"]
    # Its served leaf expires soon; the firmware side (AWS renews what it serves) lasts longer.
    assert expiring["First break if nothing changes"] < expiring["Update firmware by (firmware side)"]
    assert "2026-01-01" in "".join(outputs(nb, "text/html"))


@pytest.mark.slow
def test_pinning_risk_notebook(lab_run, tmp_path: Path):
    nb = run_notebook("pinning_risk", tmp_path, lab_run)
    assert len(outputs(nb, "image/png")) == 1
    ranked = next(t for t in tables(nb) if "Risk" in t.columns)
    assert "no-backup" in set(ranked["Risk"])
    assert {"fw-pinned-3.1"} <= set(ranked["Firmware profile"])


@pytest.mark.slow
def test_drift_notebook_against_itself_shows_no_change(lab_run, tmp_path: Path):
    nb = run_notebook("drift", tmp_path, lab_run, baseline_run=str(lab_run.path))
    html = "".join(outputs(nb, "text/html"))
    assert "Nothing changed since the baseline run." in html
    counts = next(t for t in tables(nb) if "Count" in t.columns)
    assert set(counts["Count"]) == {"0"}
