"""Run a real TLS library in a worker process whose wall clock says ``as_of``.

mbed TLS and wolfSSL read the clock themselves (mbed TLS: ``mbedtls_time()``, which is
libc ``time()`` on Debian's build; wolfSSL: ``XTIME()`` = ``time()``), so a verification
time cannot be passed per call. We run them in a Python worker started with
``LD_PRELOAD=libfaketime.so.1`` (Debian ``libfaketime``), which intercepts ``time()``,
``gettimeofday()`` and ``clock_gettime(CLOCK_REALTIME)``.

One worker answers a whole batch: cases are grouped by ``as_of`` and, before each group,
the worker sets ``FAKETIME`` to that absolute date ("YYYY-MM-DD hh:mm:ss", which
libfaketime treats as a *frozen* clock) with ``FAKETIME_NO_CACHE=1`` so the new value is
read on the next clock call (libfaketime README, "FAKETIME_NO_CACHE"). The worker then
reads ``time.time()`` and libc ``time()`` and reports both; the parent refuses the batch
unless both equal ``as_of`` to the second, so a libfaketime that did not take effect can
never turn into a verdict.

Only the realtime clock is faked (``FAKETIME_DONT_FAKE_MONOTONIC=1``) so socket timeouts
keep working; ``time.sleep`` fails under a frozen clock, and the workers never call it.

Protocol: the parent writes one JSON document on the worker's stdin and reads one on its
stdout. DER is base64. The worker module (a file next to this one, stdlib and ctypes
only, so the worker starts without importing pandas) defines
``answer(stack_id, cases, options) -> list[dict]`` with ``{"valid": bool, "error": str}``
per case. The worker's entry point is ``_faketime_worker.py WORKER_FILE``, run by path so the
worker never imports the ``iotaudit`` package.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iotaudit.errors import IotauditError

# Debian bookworm `libfaketime` (the `faketime` package holds the command-line wrapper).
FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
_FAKETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_WORKER_MAIN = Path(__file__).with_name("_faketime_worker.py")


class LibraryRunError(IotauditError, RuntimeError):
    """Raised when a real-library worker cannot give verdicts (it crashed, timed out, or its clock was not faked).

    This is a local failure of this machine, never a fact about a chain: callers must not
    record it as a verdict.

    Attributes:
        worker: The worker file that was run.
        reason: What went wrong, with the worker's stderr tail when there is one.
    """

    def __init__(self, worker: str | Path, reason: str) -> None:
        self.worker = str(worker)
        self.reason = reason
        super().__init__(f"real-library worker {Path(self.worker).name}: {reason}")


def unavailable() -> str | None:
    """Say why a faked clock cannot be had here, or None when it can.

    Returns:
        None if libfaketime is installed; else a sentence naming the Debian package.
    """
    if not FAKETIME_LIBRARY.is_file():
        return f"libfaketime is not installed ({FAKETIME_LIBRARY} missing): apt-get install libfaketime faketime"
    return None


def faketime_text(as_of: datetime) -> str:
    """The FAKETIME value (absolute, frozen, UTC) for ``as_of``, truncated to the second.

    Args:
        as_of: tz-aware time.

    Returns:
        "YYYY-MM-DD hh:mm:ss" in UTC; the worker runs with TZ=UTC so libfaketime reads it as UTC.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be tz-aware")
    return as_of.astimezone(timezone.utc).strftime(_FAKETIME_FORMAT)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def run_worker(worker: Path, stack_id: str, groups: Sequence[tuple[datetime, Sequence[Mapping[str, Any]]]], *,
               options: Mapping[str, Any] | None = None, timeout: float = 600.0) -> list[list[dict[str, Any]]]:
    """Answer groups of cases in one worker process, each group under its own faked ``as_of``.

    Args:
        worker: The worker file (defines ``answer(stack_id, cases, options)``).
        stack_id: Passed through to the worker.
        groups: ``(as_of, cases)`` pairs; each case is a mapping with ``served`` and ``store``
            (sequences of DER bytes), ``host`` (str or None) and any JSON-able keys the worker reads.
        options: JSON-able settings for the worker (e.g. which library file to load).
        timeout: Seconds for the whole batch (the parent's clock is real).

    Returns:
        Per group, per case, the worker's ``{"valid": bool, "error": str}``.

    Raises:
        LibraryRunError: libfaketime missing, the worker failed or timed out, or the worker's
            clock did not read ``as_of``.
    """
    missing = unavailable()
    if missing:
        raise LibraryRunError(worker, missing)
    document = {
        "stack_id": stack_id,
        "options": dict(options or {}),
        "groups": [
            {"faketime": faketime_text(as_of),
             "epoch": int(as_of.timestamp() // 1),
             "cases": [{**case,
                        "served": [_b64(der) for der in case["served"]],
                        "store": [_b64(der) for der in case["store"]]} for case in cases]}
            for as_of, cases in groups
        ],
    }
    if not groups:
        return []
    first = groups[0][0]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("FAKETIME")}
    environment.update({
        "LD_PRELOAD": str(FAKETIME_LIBRARY),
        "FAKETIME": faketime_text(first),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "TZ": "UTC",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    command = [sys.executable, "-I", str(_WORKER_MAIN.resolve()), str(Path(worker).resolve())]
    try:
        finished = subprocess.run(command, input=json.dumps(document).encode("ascii"), capture_output=True,
                                  env=environment, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise LibraryRunError(worker, f"no answer within {timeout:.0f} s") from err
    except OSError as err:
        raise LibraryRunError(worker, f"cannot start {sys.executable}: {err}") from err
    stderr_tail = finished.stderr.decode("utf-8", "replace")[-2000:]
    if finished.returncode != 0:
        raise LibraryRunError(worker, f"exited with status {finished.returncode}: {stderr_tail}")
    try:
        answer = json.loads(finished.stdout)
    except ValueError as err:
        raise LibraryRunError(worker, f"answer is not JSON: {finished.stdout[:200]!r} {stderr_tail}") from err
    results: list[list[dict[str, Any]]] = []
    if len(answer["groups"]) != len(groups):
        raise LibraryRunError(worker, f"answered {len(answer['groups'])} groups, asked {len(groups)}")
    for asked, got in zip(document["groups"], answer["groups"], strict=True):
        clock = got["clock"]
        if clock["python"] != asked["epoch"] or clock["libc"] != asked["epoch"]:
            raise LibraryRunError(worker, f"libfaketime did not take effect: asked {asked['faketime']} UTC "
                                          f"(epoch {asked['epoch']}), the worker read time.time()={clock['python']}, "
                                          f"libc time()={clock['libc']}")
        if len(got["results"]) != len(asked["cases"]):
            raise LibraryRunError(worker, f"answered {len(got['results'])} cases, asked {len(asked['cases'])}")
        results.append(got["results"])
    return results
