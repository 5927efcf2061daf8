"""Safe to run from cron (issue 9 items 2, 5, 11): one-line errors, exit statuses that mean one thing, nothing lost.

The full and read-only file systems are real: a tmpfs of a few KiB mounted for the test (root can mount;
root also ignores chmod, so a permission bit would prove nothing).  Where mounting is not allowed (an
unprivileged CI runner), the full disk is a real RLIMIT_FSIZE on the child process (the kernel refuses the
write with EFBIG) and the read-only directory a path beneath a regular file (ENOTDIR).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotaudit.cli import COMMANDS, main
from iotaudit.options import ExitStatus
from iotaudit.store import load_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_inventory.csv"
HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"


def _one_error_line(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _target(lab) -> str:
    t = lab.target("ats-dual")
    return f"{t.host}:{t.port}@{t.address}"


# --- item 2: usage and input errors exit 2 with one line ------------------------------------------


@pytest.mark.parametrize("option, value, fragment", [
    ("--timeout", "-1", "argument --timeout: -1 must be more than 0"),
    ("--timeout", "nan", "argument --timeout: nan must be more than 0"),
    ("--concurrency", "0", "argument --concurrency: 0 must be at least 1"),
    ("--concurrency", "many", "argument --concurrency: 'many' is not a whole number"),
])
def test_bad_collect_option_is_usage_error(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          option: str, value: str, fragment: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["collect", "--target", _target(lab), option, value, "--out", str(tmp_path / "r")])
    assert info.value.code == ExitStatus.USAGE
    _one_error_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value, fragment", [
    ("9990-01-01", "--as-of 9990-01-01: plus a 15-year horizon passes 9999-12-31"),
    ("now", "argument --as-of: 'now' is not an ISO 8601 date"),
    ("01/02/2025", "argument --as-of: '01/02/2025' is not an ISO 8601 date"),
])
def test_bad_as_of_is_usage_error(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  value: str, fragment: str) -> None:
    code = _exit_code(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--as-of", value,
                       "--out", str(tmp_path / "a")])
    assert code == ExitStatus.USAGE
    _one_error_line(capsys.readouterr().err, fragment)


@pytest.mark.parametrize("option, value, fragment", [
    ("--as-of", "now", "argument --as-of: 'now' is not an ISO 8601 date"),
    ("--as-of", "2026-01-15T12:00:00", "argument --as-of: '2026-01-15T12:00:00' is not an ISO 8601 date"),
    ("--horizon-years", "0", "argument --horizon-years"),
])
def test_report_takes_dates_and_horizons_like_audit(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    option: str, value: str, fragment: str) -> None:
    # One rule for both commands (iotaudit.options): report used to accept "now" and naive date-times.
    code = _exit_code(["report", "--run", str(lab_run.path), "--inventory", str(SAMPLE), option, value,
                       "--out", str(tmp_path / "r")])
    assert code == ExitStatus.USAGE
    _one_error_line(capsys.readouterr().err, fragment)
    assert not (tmp_path / "r").exists()


def test_as_of_at_the_edge_of_the_horizon_is_accepted(lab_run, tmp_path: Path) -> None:
    code = main(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--as-of", "9984-06-30",
                 "--fail-on", "never", "--out", str(tmp_path / "a")])
    assert code == ExitStatus.OK


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


def test_nested_json_inventory_is_exit_2_naming_row_and_column(lab_run, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.json"
    inv.write_text(json.dumps([{"device_id": "d1", "group": "g", "profile": "fw", "region": "us-east-1",
                                "endpoints": "*", "trust_store": {"roots": ["AmazonRootCA1"]}, "key_types": "rsa"}]))
    assert main(["audit", str(lab_run.path), "--inventory", str(inv), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "row 1, column trust_store: trust_store holds a nested JSON value" in err


def test_debug_shows_the_traceback(lab_run, tmp_path: Path) -> None:
    from iotaudit.errors import InventoryError

    with pytest.raises(InventoryError):
        main(["--debug", "audit", str(lab_run.path), "--inventory", str(tmp_path / "none.csv"),
              "--out", str(tmp_path / "a")])


def test_internal_error_is_one_line_and_its_own_status(lab_run, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import iotaudit.collection

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("simulated bug")

    monkeypatch.setattr(iotaudit.collection, "summarize", broken)
    assert main(["show", str(lab_run.path)]) == ExitStatus.INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error: TypeError: simulated bug" in err and "--debug" in err


# --- item 5: nothing to audit is not success ---------------------------------------------------------


def test_header_only_inventory_exits_2(lab_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text(HEADER)
    assert main(["audit", str(lab_run.path), "--inventory", str(inv), "--out", str(tmp_path / "a")]) == 2
    assert "no device" in capsys.readouterr().err and not (tmp_path / "a").exists()


def test_inventory_whose_every_row_is_skipped_exits_2(lab_run, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text(HEADER + "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,today\n")
    assert main(["audit", str(lab_run.path), "--inventory", str(inv), "--skip-bad-rows",
                 "--out", str(tmp_path / "a")]) == 2
    assert "every row was bad" in capsys.readouterr().err


def test_skipped_rows_are_printed_with_row_column_and_reason(lab_run, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text(HEADER + "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,\n" + "d2,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,now\n")
    assert main(["audit", str(lab_run.path), "--inventory", str(inv), "--skip-bad-rows", "--fail-on", "never",
                 "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad row(s)" in err and "row 3, column pin_expiry: pin_expiry 'now' is not a date" in err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["skipped_rows"] == [{"row": 3, "column": "pin_expiry", "reason": summary["skipped_rows"][0]["reason"]}]


# --- item 11: audit --fail-on, help ends with exit statuses, show fits the terminal -------------------


def test_audit_fail_on(lab_run, tmp_path: Path) -> None:
    argv = ["audit", str(lab_run.path), "--inventory", str(SAMPLE)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == ExitStatus.THRESHOLD  # the sample has broken devices
    assert main([*argv, "--fail-on", "never", "--out", str(tmp_path / "b")]) == ExitStatus.OK
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["threshold_crossed"] is True and summary["fail_on"] == "broken"


@pytest.mark.parametrize("command", [*(cmd.name for cmd in COMMANDS), "lab serve", "lab stop"])
def test_every_help_ends_with_its_exit_statuses(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command.split(), "--help"])
    assert info.value.code == 0
    words = " ".join(capsys.readouterr().out.split())  # the help formatter may wrap the line
    expected = next(cmd.exit_statuses for cmd in COMMANDS if cmd.name == command.split()[0])
    assert words.endswith(expected) and " 2 usage, input or I/O error" in expected


def test_top_level_help_lists_every_command_and_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    words = " ".join(capsys.readouterr().out.split())
    for cmd in COMMANDS:
        assert f" {cmd.name} {cmd.help}" in words
    assert "70 internal error" in words


def test_show_fits_the_terminal_and_wide_does_not(lab_run, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["show", str(lab_run.path)]) == 0
    fitted = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in fitted) <= 100
    assert main(["show", str(lab_run.path), "--wide"]) == 0
    wide = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in wide) > 100 and len(wide) == len(fitted)
    assert any("..." in line for line in fitted)


# --- item 2: a full and a read-only file system ------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[bool]:
    """Mount a tiny tmpfs at ``where``; yields False when mounting is not allowed here.

    ``IOTAUDIT_TEST_NO_MOUNT=1`` takes the no-mount branch on purpose (to check it where mounting works).
    """
    where.mkdir(parents=True, exist_ok=True)
    if os.environ.get("IOTAUDIT_TEST_NO_MOUNT") == "1":
        yield False
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, check=False)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    with open(path / "filler", "wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)


def _fsize_limit() -> None:  # in the child: every write past 4 KiB fails with EFBIG (and no SIGXFSZ kill)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def _cli(args: list[str], env_extra: dict[str, str] | None = None, limit_size: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "iotaudit", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT, preexec_fn=_fsize_limit if limit_size else None, check=False)


@pytest.mark.slow
def test_full_disk_collect_says_so_and_keeps_the_run(lab, tmp_path: Path) -> None:
    mnt = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    keep = tmp_path / "kept"
    keep.mkdir()
    with _tmpfs(mnt, "size=256k") as mounted:
        if mounted:
            _fill(mnt)
            out, reason = mnt / "run", "No space left on device"
        else:  # no mount here: a destination beneath a regular file fails as surely (ENOTDIR)
            (tmp_path / "a-file").write_text("not a directory")
            out, reason = tmp_path / "a-file" / "run", "is not a directory"
        done = _cli(["collect", "--target", _target(lab), "--timeout", "3", "--quiet", "--out", str(out)],
                    env_extra={"IOTAUDIT_FALLBACK_DIR": str(keep)})
        assert done.returncode == ExitStatus.USAGE, done.stderr
        _one_error_line(done.stderr, f"cannot write {out}: ", reason, "the results were saved to")
        if mounted:
            assert not out.exists() and [p.name for p in mnt.iterdir()] == ["filler"]
    [kept] = list(keep.iterdir())
    assert str(kept) in done.stderr
    run = load_run(kept)
    assert len(run.observations) == 3 and set(run.observations["status"].astype(str)) == {"ok"}


@pytest.mark.slow
def test_full_disk_audit_is_exit_2_and_leaves_nothing(lab_run, tmp_path: Path) -> None:
    mnt = tmp_path / f"full-{uuid.uuid4().hex[:6]}"
    with _tmpfs(mnt, "size=256k") as mounted:
        if mounted:
            _fill(mnt)
        done = _cli(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--out", str(mnt / "audit")],
                    limit_size=not mounted)
        assert done.returncode == ExitStatus.USAGE, done.stderr
        _one_error_line(done.stderr, f"cannot write {mnt / 'audit'}: ")
        if mounted:
            assert "No space left on device" in done.stderr
            assert [p.name for p in mnt.iterdir()] == ["filler"]  # no .audit.partial-* left behind


@pytest.mark.slow
def test_read_only_output_directory_is_exit_2(lab_run, tmp_path: Path) -> None:
    mnt = tmp_path / f"ro-{uuid.uuid4().hex[:6]}"
    with _tmpfs(mnt, "ro,size=64k") as mounted:
        out = mnt / "audit" if mounted else tmp_path / "a-file" / "audit"
        if not mounted:
            (tmp_path / "a-file").write_text("not a directory")
        done = _cli(["audit", str(lab_run.path), "--inventory", str(SAMPLE), "--out", str(out)])
        assert done.returncode == ExitStatus.USAGE, done.stderr
        reason = "Read-only file system" if mounted else "is not a directory"
        _one_error_line(done.stderr, f"cannot write {out}: ", reason)


# --- item 11: the light command table ------------------------------------------------------------------


def test_cli_default_probes_are_collects() -> None:
    from iotaudit.cli import DEFAULT_PROBES
    from iotaudit.collection import DEFAULT_PROBES as COLLECT_DEFAULT

    assert DEFAULT_PROBES == ",".join(p.value for p in COLLECT_DEFAULT)


@pytest.mark.slow
@pytest.mark.parametrize("argv", [["--help"], ["collect", "--help"], ["audit", "--help"], ["import", "--help"],
                                  ["show", "--help"], ["collect", "--timeout", "-1", "--out", "x"], ["nosuchcommand"]])
def test_help_and_usage_errors_import_no_analysis_stack(argv: list[str]) -> None:
    # Not a timed test (benchmarks/cli.py measures the time): what makes --help slow is importing
    # pandas, pyarrow and pyOpenSSL, so check that none of them is imported.
    code = ("import sys\nfrom iotaudit.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in ('pandas', 'pyarrow', 'OpenSSL', 'numpy') if m in sys.modules)\n"
            "print('HEAVY', ','.join(heavy))\n" % (argv,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.stdout.strip().splitlines()[-1] == "HEAVY", done.stdout + done.stderr


def test_drift_output_that_cannot_be_written_is_exit_2(lab_run, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    out = tmp_path / "a-file" / "drift.csv"
    assert main(["drift", str(lab_run.path), str(lab_run.path), "--out", str(out)]) == ExitStatus.USAGE
    _one_error_line(capsys.readouterr().err, f"cannot write {out}: {tmp_path / 'a-file'} is not a directory")
