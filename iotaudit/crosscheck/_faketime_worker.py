"""Entry point of a real-library worker process, run under libfaketime by :mod:`._faketime`.

``python -I _faketime_worker.py WORKER_FILE``: reads one JSON document on stdin (groups of cases,
each with its ``FAKETIME`` value), sets the faked clock before each group, reads it back
(``time.time()`` and libc ``time()``) for the parent to check, calls ``answer(stack_id, cases,
options)`` of ``WORKER_FILE`` and writes the verdicts as JSON on stdout. Stdlib only: the worker
never imports the iotaudit package.
"""

from __future__ import annotations

import base64
import ctypes
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read_clock() -> dict[str, int]:
    libc = ctypes.CDLL(None)
    libc.time.restype = ctypes.c_int64
    libc.time.argtypes = [ctypes.c_void_p]
    return {"python": int(time.time() // 1), "libc": int(libc.time(None))}


def _load_worker(path: str) -> Callable[..., list[dict[str, Any]]]:
    spec = importlib.util.spec_from_file_location(f"_iotaudit_worker_{Path(path).stem}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load worker {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.answer  # type: ignore[no-any-return]


def main(worker_path: str) -> int:
    """Answer the document on stdin with ``WORKER_FILE``'s ``answer``; 0 when every group was answered."""
    answer = _load_worker(worker_path)
    document = json.load(sys.stdin)
    out_groups = []
    for group in document["groups"]:
        # putenv() reaches libfaketime's getenv("FAKETIME"); FAKETIME_NO_CACHE makes it re-read it.
        os.environ["FAKETIME"] = group["faketime"]
        clock = _read_clock()
        cases = [{**case,
                  "served": [base64.b64decode(text) for text in case["served"]],
                  "store": [base64.b64decode(text) for text in case["store"]]} for case in group["cases"]]
        results = answer(document["stack_id"], cases, document["options"]) if cases else []
        after = _read_clock()
        if after != clock:  # the clock is frozen: anything else means it was not faked throughout
            clock = after | {"python": -1}
        out_groups.append({"clock": clock, "results": results})
    json.dump({"groups": out_groups}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
