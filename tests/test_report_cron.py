"""``iotaudit report`` from cron (issue 9): one winner per output directory, no stale partials,
skipped rows shown and printed, no stray kernel noise on stderr."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from iotaudit import cli
from iotaudit.reports import NOTEBOOKS, execute_notebook, kernel_manager_class, notebooks_dir
from iotaudit.store import claim_directory
from iotaudit.errors import RunError
from tests.fixtures.reportset import INVENTORY
from tests.test_reports import html_tables

FIXTURES = Path(__file__).parent / "fixtures"
BAD_ROW = "dev-bad-1,fleet-z,fw-bad,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1,dsa,modern,,,\n"


def slow_notebook_set(directory: Path, seconds: float) -> Path:
    """The shipped notebook names, each the tiny fixture plus a cell that sleeps ``seconds``."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in NOTEBOOKS:
        nb = nbformat.read(str(FIXTURES / "tiny_ok.ipynb"), as_version=4)
        nb.cells.append(nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})"))
        nbformat.write(nb, str(directory / f"{spec.name}.ipynb"))
    return directory


def inventory_with_a_bad_row(tmp_path: Path) -> Path:
    path = tmp_path / "inventory.csv"
    path.write_text(INVENTORY.read_text(encoding="utf-8") + BAD_ROW, encoding="utf-8")
    return path


def report_command(lab_run, out: Path, notebooks: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "iotaudit", "report", "--run", str(lab_run.path), "--inventory", str(INVENTORY),
            "--out", str(out), "--notebooks", str(notebooks), "--fail-on", "never", *extra]


# --- item 6: two reports into one directory -------------------------------------------------------------


def test_a_claimed_directory_cannot_be_claimed_twice(tmp_path: Path):
    with claim_directory(tmp_path / "r"):
        with pytest.raises(RunError, match="already exists"):
            with claim_directory(tmp_path / "r"):
                pass
    with claim_directory(tmp_path / "r"):  # released: claimable again
        pass
    assert not list(tmp_path.glob(".r.lock"))


@pytest.mark.slow
def test_two_reports_started_together_into_one_directory_one_wins_the_other_exits_2(lab_run, tmp_path: Path):
    notebooks = slow_notebook_set(tmp_path / "nb", 1.5)
    out = tmp_path / "same"
    procs = [subprocess.Popen(report_command(lab_run, out, notebooks, "--quiet"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(status for status, _, _ in results) == [0, 2], results
    loser = next(err for status, _, err in results if status == 2)
    assert "already exists" in loser and "Traceback" not in loser
    assert (out / "index.html").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".same")] == []


@pytest.mark.slow
def test_a_killed_report_leaves_a_partial_the_next_run_cleans(lab_run, tmp_path: Path):
    notebooks = slow_notebook_set(tmp_path / "nb", 30)
    out = tmp_path / "r"
    proc = subprocess.Popen(report_command(lab_run, out, notebooks, "--quiet"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".r.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the report and its kernels, as an OOM kill or a reboot would
    proc.wait(timeout=30)
    stale = list(tmp_path.glob(".r.partial-*"))
    assert stale, "the killed run left no partial directory to clean"
    fast = slow_notebook_set(tmp_path / "nb-fast", 0)
    status = subprocess.run(report_command(lab_run, out, fast, "--quiet"), capture_output=True, text=True, timeout=300)
    assert status.returncode == 0, status.stderr
    assert not any(p.exists() for p in stale) and (out / "index.html").is_file()


# --- item 5: skipped rows shown and printed ------------------------------------------------------------


@pytest.mark.slow
def test_skipped_rows_are_printed_and_listed_on_the_index(lab_run, tmp_path: Path, capsys):
    notebooks = slow_notebook_set(tmp_path / "nb", 0)
    inventory = inventory_with_a_bad_row(tmp_path)
    status = cli.main(["report", "--run", str(lab_run.path), "--inventory", str(inventory), "--out",
                       str(tmp_path / "r"), "--notebooks", str(notebooks), "--skip-bad-rows", "--fail-on", "never",
                       "--quiet"])
    assert status == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad inventory row(s)" in err and "row 14, column key_types" in err
    index = (tmp_path / "r" / "index.html").read_text()
    rows = next(t for t in html_tables(index) if "Why it was left out" in t.columns)
    assert list(rows["Row"]) == ["14"] and list(rows["Column"]) == ["key_types"]
    assert "1 inventory row(s)" in index


@pytest.mark.slow
def test_skipped_rows_are_listed_on_the_summary_page(lab_run, tmp_path: Path):
    inventory = inventory_with_a_bad_row(tmp_path)
    executed = execute_notebook(notebooks_dir() / "summary.ipynb", tmp_path / "summary.ipynb",
                                {"run_dir": str(lab_run.path), "inventory": str(inventory), "skip_bad_rows": True})
    nb = nbformat.read(str(executed), as_version=4)
    markup = "".join(out.data.get("text/html", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.outputs if "data" in out)
    rows = next(t for t in html_tables(markup) if "Why it was left out" in t.columns)
    assert list(rows["Row"]) == ["14"]
    headline = next(t for t in html_tables(markup) if "Measure" in t.columns).set_index("Measure")["Value"]
    assert headline["Inventory rows left out (--skip-bad-rows)"] == "1"


# --- item 11: no "KeyboardInterrupt caught in kernel" on stderr -------------------------------------------


@pytest.mark.slow
def test_report_kernels_get_no_interrupt_at_shutdown_but_still_can_be_interrupted():
    # jupyter_client SIGINTs every kernel it shuts down; a kernel inside a message handler then logs
    # "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel" to the report's stderr.
    async def lifecycle() -> tuple[list[int], str, list[int]]:
        manager = kernel_manager_class()()
        sent: list[int] = []
        original = manager._async_signal_kernel

        async def spy(signum: int) -> None:
            sent.append(signum)
            await original(signum)

        manager._async_signal_kernel = spy
        await manager.start_kernel(extra_arguments=["--IPKernelApp.log_level=ERROR"])
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            msg_id = client.execute("import time; time.sleep(60)")
            await asyncio.sleep(1.0)
            await manager.interrupt_kernel()  # a user's interrupt still reaches a busy kernel
            while True:
                reply = await client.get_shell_msg(timeout=30)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            client.stop_channels()
        while_running = list(sent)
        await manager.shutdown_kernel()
        return while_running, reply["content"].get("ename", ""), sent[len(while_running):]

    while_running, ename, at_shutdown = asyncio.run(lifecycle())
    assert while_running == [signal.SIGINT] and ename == "KeyboardInterrupt"
    assert signal.SIGINT not in at_shutdown
