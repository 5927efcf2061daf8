"""DER certificates: ``.der``/``.cer``/``.crt`` files, C byte arrays, Zephyr ``.der.inc`` lists, and binaries.

Inside a binary a certificate is found by its first 13 bytes: a SEQUENCE with
a two-byte length, a TBSCertificate SEQUENCE with a two-byte length, then the
explicit ``[0] INTEGER 2`` of a v3 certificate (RFC 5280 section 4.1:
``30 82 LL LL 30 82 LL LL A0 03 02 01 02``).  The scan looks for the last five
of those bytes with ``bytes.find`` (a C-speed substring search), checks the
eight before, and only then lets ``cryptography`` parse the length-bounded
slice, so random data costs one substring search per window.  v1/v2
certificates and certificates over 64 KiB are not looked for in binaries.

Zephyr's ``generate_inc_file_for_target()`` writes a DER file as a
comma-separated hex list (``samples/subsys/mgmt/hawkbit/src/ca_certificate.h``
includes ``self_sign.der.inc``); ``xxd -i`` and hand-written
``{0x30, 0x82, ...}`` arrays look the same.  Such lists are decoded and the
bytes are searched like any binary.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..certs import load_der_x509_certificate
from ..columns import FindingKind, ScanFormat
from ._model import Finding, container_id, error
from ._search import iter_hits

V3_MARK = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2: version v3
_MARK_AT = 8                       # 30 82 LL LL 30 82 LL LL, then the mark
DER_SUFFIXES = (".der", ".cer", ".crt", ".cert")

_BYTE = r"(?:0[xX][0-9a-fA-F]{1,2}|[0-9]{1,3})"
_BYTE_LIST = re.compile(rf"{_BYTE}(?:\s*,\s*{_BYTE})*")
# A list worth decoding starts like a DER certificate (0x30, 0x82) or a PEM text (xxd -i of a .pem: "-----B").
_LIST_START = re.compile(
    r"(?<![0-9A-Za-z_])(?:0[xX]30\s*,\s*0[xX]82|48\s*,\s*130\s*,|0[xX]2[dD](?:\s*,\s*0[xX]2[dD]){4}\s*,\s*0[xX]42)"
)


def _candidate(raw: bytes, start: int) -> int:
    """Length of the certificate that starts at ``start``, or 0 when the header is not a certificate's."""
    if start < 0 or start + 13 > len(raw) or raw[start] != 0x30 or raw[start + 1] != 0x82:
        return 0
    if raw[start + 4] != 0x30 or raw[start + 5] != 0x82:
        return 0
    total = 4 + int.from_bytes(raw[start + 2:start + 4], "big")
    tbs = 4 + int.from_bytes(raw[start + 6:start + 8], "big")
    if tbs + 4 > total:  # the TBSCertificate must leave room for signatureAlgorithm and signature
        return 0
    return total


def find_der(buf: bytes | memoryview, lo: int, hi: int, *, file: str, base: int, fmt: ScanFormat = ScanFormat.DER,
             embedded_as: str = "", line: int | None = None, hits: Sequence[int] | None = None,
             ) -> tuple[list[Finding], list[tuple[int, int]]]:
    """Every v3 DER certificate whose first byte is in ``buf[lo:hi]``.

    A header that announces a certificate but whose bytes do not parse (cut short,
    garbage inside) is an error finding naming the offset.

    Returns:
        The findings, and the (absolute start, end) spans of the certificates parsed.
    """
    raw = bytes(buf) if isinstance(buf, memoryview) else buf
    findings: list[Finding] = []
    spans: list[tuple[int, int]] = []
    resume = 0
    for pos in iter_hits(raw, V3_MARK, max(0, lo + _MARK_AT), hi + _MARK_AT + len(V3_MARK), hits):
        start = pos - _MARK_AT
        if start < resume:
            continue
        total = _candidate(raw, start)
        if total:
            where = base + start
            if start + total > len(raw):
                findings.append(error(file, where, fmt, f"DER certificate header announces {total} bytes, only "
                                      f"{len(raw) - start} follow (truncated)", line=line, embedded_as=embedded_as))
            else:
                try:
                    cert = load_der_x509_certificate(raw[start:start + total])
                except ValueError as err:
                    findings.append(error(file, where, fmt, f"bytes with a DER certificate header do not parse "
                                          f"as a certificate ({err})", line=line, embedded_as=embedded_as))
                else:
                    findings.append(Finding(file, where, fmt, FindingKind.CERTIFICATE, line=line,
                                            embedded_as=embedded_as, container=container_id(file, where),
                                            certificate=cert))
                    spans.append((where, where + total))
                    resume = start + total
    return findings, spans


def read_der_file(data: bytes, *, file: str) -> list[Finding]:
    """A ``.der``/``.cer``/``.crt`` file that is one DER certificate (PEM ones are left to the PEM reader).

    Returns:
        One certificate finding, or one error finding saying why the file is not a DER certificate;
        nothing when the file is PEM text.
    """
    if data.lstrip()[:11] == b"-----BEGIN " or b"-----BEGIN " in data[:4096]:
        return []
    if not data:
        return [error(file, 0, ScanFormat.DER, "empty certificate file")]
    try:
        cert = load_der_x509_certificate(data)
    except ValueError as err:
        return [error(file, 0, ScanFormat.DER, f"garbage DER: not a certificate ({err})")]
    return [Finding(file, 0, ScanFormat.DER, FindingKind.CERTIFICATE, container=container_id(file, 0),
                    certificate=cert)]


def byte_lists(text: str) -> list[tuple[int, bytes]]:
    """The C byte lists of a source text that start like a certificate or a PEM text: (position, bytes)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        start = _LIST_START.search(text, pos)
        if start is None:
            return out
        match = _BYTE_LIST.match(text, start.start())
        if match is None:  # pragma: no cover - _LIST_START implies a list
            pos = start.end()
            continue
        values = [int(v, 0) if v[:2].lower() == "0x" else int(v, 10) for v in re.split(r"\s*,\s*", match.group())]
        if all(v < 256 for v in values):
            out.append((start.start(), bytes(values)))
        pos = match.end()
