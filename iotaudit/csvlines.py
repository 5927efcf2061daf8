"""Where CSV records start: the physical line of record n, for bad-row messages.

A quoted field may span lines (RFC 4180 section 2.6), so record n is not line n + 1.  DuckDB parses
the CSV but gives no line numbers, so a bad row's line is found by reading the file again:

* the fast path (:func:`record_lines_fast`) reads the bytes in blocks with numpy: a newline ends a
  record when an even number of quote characters precede it (a doubled quote inside a quoted field
  counts twice, so the parity holds), and a record that is empty, or only ``\\r``, is a blank line
  that DuckDB skips too.  It runs at memory speed, in memory flat in the file's size;
* its answer is used only when the number of records it counts equals the number DuckDB read, so a
  file whose quoting it would read differently (a stray quote inside an unquoted field) falls back to
  the exact path, Python's ``csv`` reader, as before (:func:`record_lines_exact`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

import numpy as np

BLOCK_BYTES = 64 * 2**20          # bytes read at once by the fast path
_NL, _CR, _QUOTE = 10, 13, 34
_BOM = b"\xef\xbb\xbf"


def record_lines(paths: Sequence[str], records: Sequence[int], *, total: int | None = None) -> dict[int, tuple[str, int]]:
    """The file and the physical line where each record starts (records 1-based over ``paths``, headers excluded).

    Args:
        paths: The CSV files, in the order their records are numbered; each starts with a header line.
        records: The records wanted.
        total: How many records DuckDB read from ``paths``; when given, the fast path is tried and
            kept only if it counts the same.
    """
    if total is not None:
        fast, counted = record_lines_fast(paths, records)
        if counted == total:
            return fast
    return record_lines_exact(paths, records)


def record_lines_exact(paths: Sequence[str], records: Sequence[int]) -> dict[int, tuple[str, int]]:
    """:func:`record_lines` with Python's ``csv`` reader (blank lines skipped, as DuckDB does)."""
    wanted = sorted(set(records))
    out: dict[int, tuple[str, int]] = {}
    rec = 0
    pos = 0
    for path in paths:
        if pos >= len(wanted):
            break
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, skipinitialspace=True)
            header = True
            before = 0
            for row in reader:
                start, before = before + 1, reader.line_num
                if not row:
                    continue
                if header:
                    header = False
                    continue
                rec += 1
                if rec == wanted[pos]:
                    out[rec] = (path, start)
                    pos += 1
                    if pos >= len(wanted):
                        break
    return out


def record_lines_fast(paths: Sequence[str], records: Sequence[int]) -> tuple[dict[int, tuple[str, int]], int]:
    """:func:`record_lines` by quote parity over blocks of bytes, and the number of records counted.

    Reads every file to its end (the count is the check), so the caller can compare it with DuckDB's.
    """
    wanted = np.asarray(sorted(set(records)), dtype=np.int64)
    out: dict[int, tuple[str, int]] = {}
    before = 0  # records in the files already read
    for path in paths:
        starts, count = _file_record_lines(path, wanted - before)
        out.update({int(rec) + before: (path, line) for rec, line in starts.items()})
        before += count
    return out, before


def _file_record_lines(path: str, wanted: np.ndarray) -> tuple[dict[int, int], int]:
    """Record (1-based, header excluded) -> start line, for the ``wanted`` records of one file, and its record count."""
    found: dict[int, int] = {}
    wanted = wanted[wanted >= 1]
    rows = 0             # non-blank rows so far, the header included
    newlines = 0         # every newline before the block (physical lines)
    odd = 0              # quote characters before the block, mod 2
    offset = 0           # file offset of the block
    row_start, row_line = 0, 1
    last = -1            # the byte before the block
    with open(path, "rb") as handle:
        head = handle.read(len(_BOM))
        if head == _BOM:
            offset = row_start = len(_BOM)
        else:
            handle.seek(0)
        while block := handle.read(BLOCK_BYTES):
            data = np.frombuffer(block, dtype=np.uint8)
            nl = np.flatnonzero(data == _NL)
            quotes = np.flatnonzero(data == _QUOTE)
            ends = np.flatnonzero(((np.searchsorted(quotes, nl) + odd) & 1) == 0)  # newlines outside quotes
            if len(ends):
                end_at = nl[ends] + offset
                begin_at = np.concatenate(([row_start], end_at[:-1] + 1))
                begin_line = np.concatenate(([row_line], newlines + ends[:-1] + 2))
                length = end_at - begin_at
                first = np.where(begin_at >= offset, data[np.clip(begin_at - offset, 0, len(data) - 1)], last)
                real = ~((length == 0) | ((length == 1) & (first == _CR)))
                numbers = rows + np.cumsum(real) - 1     # header = 0, then records 1, 2, ...
                hit = real & np.isin(numbers, wanted)
                found.update(zip(numbers[hit].tolist(), begin_line[hit].tolist(), strict=True))
                rows += int(real.sum())
                row_start, row_line = int(end_at[-1]) + 1, int(newlines + ends[-1] + 2)
            newlines += len(nl)
            odd = (odd + len(quotes)) & 1
            offset += len(block)
            last = int(data[-1])
    length = offset - row_start
    if length > 1 or (length == 1 and last != _CR):  # a last row without a newline
        if rows in set(wanted.tolist()):
            found[rows] = row_line
        rows += 1
    return found, max(0, rows - 1)
