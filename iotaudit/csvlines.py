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

BLOCK_BYTES = 2**20               # bytes read at once by the fast path (1 MiB: its arrays stay in cache; 2.2 s for a 2 GB export against 3.7 s at 16 MiB)
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
    buffer = bytearray(BLOCK_BYTES)  # one buffer for every block: no fresh allocation (and page faults) per block
    with open(path, "rb", buffering=0) as handle:
        head = handle.read(len(_BOM))
        if head == _BOM:
            offset = row_start = len(_BOM)
        else:
            handle.seek(0)
        while size := handle.readinto(buffer):
            count = _plain_block_rows(buffer, size, odd, row_start - offset, last)
            if count is not None:
                at = int(np.searchsorted(wanted, rows))
                if count and not (at < len(wanted) and wanted[at] < rows + count):
                    # No quote, no blank line, no record wanted: counted at memchr speed, no array made.
                    rows += count
                    row_start, row_line = offset + buffer.rfind(b"\n", 0, size) + 1, newlines + count + 1
                    newlines += count
                    offset += size
                    last = buffer[size - 1]
                    continue
            data = np.frombuffer(buffer, dtype=np.uint8, count=size)
            # Newlines and quotes in one scan; a newline ends a row when the quotes before it are even.
            marks = np.flatnonzero((data == _NL) | (data == _QUOTE))
            is_quote = data[marks] == _QUOTE
            quotes_so_far = np.cumsum(is_quote, dtype=np.int64)
            nl = marks[~is_quote]
            ends = np.flatnonzero(((quotes_so_far[~is_quote] + odd) & 1) == 0)  # index into nl
            if len(ends):
                end_at = nl[ends] + offset
                begin_at = np.concatenate(([row_start], end_at[:-1] + 1))
                begin_line = np.concatenate(([row_line], newlines + ends[:-1] + 2))
                length = end_at - begin_at
                real = length > 0
                short = np.flatnonzero(length == 1)  # "\r" alone is a blank CRLF line
                if len(short):
                    at_cr = begin_at[short]
                    first = np.where(at_cr >= offset, data[np.clip(at_cr - offset, 0, size - 1)], last)
                    real[short[first == _CR]] = False
                numbers = rows + np.cumsum(real) - 1     # header = 0, then records 1, 2, ...; a blank repeats
                kept = int(real.sum())
                here = wanted[(wanted >= rows) & (wanted < rows + kept)]
                if len(here):  # the first row numbered n is record n itself (a blank after it repeats n)
                    found.update(zip(here.tolist(), begin_line[np.searchsorted(numbers, here)].tolist(), strict=True))
                rows += kept
                row_start, row_line = int(end_at[-1]) + 1, int(newlines + ends[-1] + 2)
            newlines += len(nl)
            odd = (odd + int(quotes_so_far[-1] if len(quotes_so_far) else 0)) & 1
            offset += size
            last = int(data[-1])
    length = offset - row_start
    if length > 1 or (length == 1 and last != _CR):  # a last row without a newline
        if rows in set(wanted.tolist()):
            found[rows] = row_line
        rows += 1
    return found, max(0, rows - 1)


def _plain_block_rows(buffer: bytearray, size: int, odd: int, start: int, last: int) -> int | None:
    """How many rows end in the block (``buffer[:size]``) when every newline in it ends a non-blank row, else None.

    That holds when no quote is open or appears in the block, no line in it is blank (``\n\n``,
    ``\n\r\n``), and the row carried into it (starting ``start`` bytes into it; ``last`` = the byte
    before it) is not a blank line cut by the block's edge.  An export without quotes is answered with
    ``bytearray.find`` and ``count`` alone.
    """
    if odd or any(buffer.find(mark, 0, size) >= 0 for mark in (b'"', b"\n\n", b"\n\r\n")):
        return None
    head = buffer[0]
    if (start == 0 and head in (_NL, _CR)) or (start == -1 and last == _CR and head == _NL):
        return None
    return buffer.count(b"\n", 0, size)
