"""The table ``iotaudit collect`` prints is the one ``iotaudit show`` prints: fitted to the terminal, no pandas.

``format_table`` (iotaudit/collection.py) fits header + rows of strings; ``format_summary`` (show, a pandas
frame) and ``format_records_summary`` (collect, plain rows) both go through it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from iotaudit import columns as c
from iotaudit.cli import main
from iotaudit.collection import format_summary, format_table, summarize
from iotaudit.store import load_run

ALWAYS_KEPT = [c.HOST, c.PORT, c.PROBE, c.STATUS, c.SUMMARY_CHAIN]
EVERY_COLUMN = [c.HOST, c.PORT, c.LABEL, c.PROBE, c.STATUS, c.TLS_VERSION, c.CIPHER, c.SUMMARY_CHAIN,
                c.SUMMARY_TOP, c.CHAIN_LENGTH, c.SUMMARY_EARLIEST, c.ERROR]


def _collect_then_show(lab, out: Path, capsys: pytest.CaptureFixture[str], *options: str) -> tuple[list[str], list[str]]:
    """The summary lines of ``iotaudit collect --lab`` and of ``iotaudit show`` on the run it wrote."""
    assert main(["collect", "--lab", str(lab.ports_file), "--timeout", "0.5", "--out", str(out), *options]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == str(out)  # the run path comes last, after the table
    assert main(["show", str(out), *options]) == 0
    return printed[:-1], capsys.readouterr().out.splitlines()


# --- the commands, on a real collect of the loopback lab ------------------------------------------


@pytest.mark.parametrize("columns", [80, 120])
def test_collect_prints_shows_lines_fitted_to_the_terminal(lab, tmp_path: Path, columns: int,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    collected, shown = _collect_then_show(lab, tmp_path / "run", capsys)
    assert collected == shown
    assert len(collected) == 1 + 3 * len(lab.targets)
    assert max(len(line) for line in collected) <= columns
    assert set(ALWAYS_KEPT) <= set(collected[0].split())
    # The lab's chains run to ~150 characters: shortened with "...", not cut off silently.
    assert any(line.endswith("...") for line in collected[1:])
    observations = load_run(tmp_path / "run").observations
    for line, probe, status in zip(collected[1:], observations[c.PROBE], observations[c.STATUS], strict=True):
        assert {probe, status} <= set(line.split())


def test_collect_wide_prints_what_show_wide_prints(lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    collected, shown = _collect_then_show(lab, tmp_path / "run", capsys, "--wide")
    assert collected == shown
    assert collected[0].split() == EVERY_COLUMN
    assert max(len(line) for line in collected) > 120
    assert any("Starfield Services Root CA - G2 (iotaudit lab)" in line for line in collected)  # chains in full


def test_a_terminal_too_narrow_wraps_but_keeps_host_probe_status_and_chain(lab, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    collected, shown = _collect_then_show(lab, tmp_path / "run", capsys)
    assert collected == shown
    assert collected[0].split() == ALWAYS_KEPT
    assert min(len(line) for line in collected) > 20  # lines wrap rather than lose those columns
    # Host and chain shortened to the last floor (16 characters), every line the same length.
    assert len({len(line) for line in collected}) == 1
    assert any(line.startswith("lab-ats-dual-...") for line in collected)


def test_quiet_collect_prints_only_the_run_path(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["collect", "--lab", str(lab.ports_file), "--timeout", "0.5", "--quiet", "--wide", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out)]


def test_show_wide_is_pandas_to_string_of_the_summary(lab_run) -> None:
    summary = summarize(lab_run)
    expected = summary.assign(**{c.SUMMARY_EARLIEST: summary[c.SUMMARY_EARLIEST].dt.strftime("%Y-%m-%d").fillna("")})
    assert format_summary(summary) == expected.to_string(index=False, na_rep="")


# --- format_table: the fitting rules on small tables ----------------------------------------------


def test_full_width_is_right_aligned_columns_one_space_apart() -> None:
    text = format_table(["host", "port"], [["a.example", "443"], ["bb.example", "8883"]], numeric=["port"])
    assert text.splitlines() == ["      host  port", " a.example   443", "bb.example  8883"]


def test_the_widest_text_column_is_shortened_first() -> None:
    host, chain = "h" * 40, "c" * 100
    lines = format_table([c.HOST, c.SUMMARY_CHAIN], [[host, chain]], width=80).splitlines()
    assert lines == [c.HOST.rjust(40) + " " + c.SUMMARY_CHAIN.rjust(39), host + " " + "c" * 36 + "..."]


def test_columns_are_left_out_in_the_given_order_once_text_is_roomy() -> None:
    header = ["a", "b", "c"]
    rows = [["a" * 10, "b" * 10, "c" * 10]]
    text = format_table(header, rows, width=25, flexible=(), droppable=("b", "a"))
    assert text.splitlines() == ["a".rjust(10) + " " + "c".rjust(10), "a" * 10 + " " + "c" * 10]
    narrower = format_table(header, rows, width=12, flexible=(), droppable=("b", "a"))
    assert narrower.splitlines() == ["c".rjust(10), "c" * 10]


def test_text_is_shortened_to_the_last_floor_only_after_every_droppable_column_is_gone() -> None:
    rows = [["h" * 50, "ok", "c" * 50, "an error"]]
    header = [c.HOST, c.STATUS, c.SUMMARY_CHAIN, c.ERROR]
    lines = format_table(header, rows, width=60).splitlines()
    # chain and host to 36 first, the error column left out, then the chain down to 16 (60 <= 60).
    assert lines[0].split() == [c.HOST, c.STATUS, c.SUMMARY_CHAIN]
    assert lines[1] == "h" * 33 + "... " + "ok".rjust(6) + " " + "c" * 13 + "..."


def test_too_narrow_keeps_the_columns_it_may_not_drop_and_lets_lines_wrap() -> None:
    rows = [["h" * 50, "ok", "c" * 50]]
    lines = format_table([c.HOST, c.STATUS, c.SUMMARY_CHAIN], rows, width=10).splitlines()
    assert lines[1] == "h" * 13 + "... " + "ok".rjust(6) + " " + "c" * 13 + "..."
    assert len(lines[0]) == len(lines[1]) == 16 + 1 + 6 + 1 + 16


def test_no_width_prints_every_value_in_full() -> None:
    rows = [["h" * 200, "c" * 300]]
    assert format_table([c.HOST, c.SUMMARY_CHAIN], rows).splitlines()[1] == "h" * 200 + " " + "c" * 300


def test_a_newline_in_a_value_cannot_break_a_line() -> None:
    lines = format_table([c.ERROR], [["first\nsecond\tthird"]]).splitlines()
    assert lines == ["error".rjust(20), r"first\nsecond\tthird"]


def test_a_row_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="table row 1 has 1 cells for 2 columns"):
        format_table(["a", "b"], [["1", "2"], ["3"]])
