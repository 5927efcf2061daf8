"""PEM certificates anywhere: plain files, binaries, and C/C++ string literals.

The header match is deliberately looser than RFC 7468 section 3: real
firmware headers carry a trailing space (``"-----BEGIN CERTIFICATE----- \\r\\n"``
in ``OUSmartInfrastructure/ParticlePhotonMQTTClient`` : ``cert/cert.h``) and
CRLF line ends.  ESP-IDF's ``gen_crt_bundle.py`` (``add_from_pem``) matches
the exact line ``'-----BEGIN CERTIFICATE-----\\n'`` and silently skips such a
block, so a loose header is worth a note of its own (:data:`LOOSE_HEADER`).

C sources are tokenised just enough to find string literals: adjacent
literals are joined (C11 6.4.5p5, translation phase 6), escapes are undone,
``R"delim(...)delim"`` raw strings (C++11, Arduino ``PROGMEM`` certificates)
are taken verbatim, and comments are skipped.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Sequence

from ..certs import load_der_x509_certificate
from ..columns import FindingKind, ScanFormat
from ._model import MAX_ITEM, Finding, container_id, error
from ._search import iter_hits

BEGIN = b"-----BEGIN "
_PEM = re.compile(
    rb"-----BEGIN (?P<label>(?:TRUSTED |X509 )?CERTIFICATE)-----(?P<pad>[ \t]*)\r?\n?"
    rb"(?P<body>[A-Za-z0-9+/=\s]{0,%d}?)[ \t\r\n]*-----END (?P=label)-----" % MAX_ITEM
)
_CERT_LABEL = re.compile(rb"-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----")
_GAP_OK = re.compile(rb"[\x20-\x7e\t\r\n]*")  # text between blocks of one bundle (comments, subject= lines)
RUN_GAP = 2048  # blocks closer than this, with only text between, are one store (one bundle file)
LOOSE_HEADER = "header line has trailing whitespace: ESP-IDF gen_crt_bundle.py skips this block silently"


def find_pem(buf: bytes | memoryview, lo: int, hi: int, *, file: str, base: int, fmt: ScanFormat = ScanFormat.PEM,
             embedded_as: str = "", report_truncated: bool = True, line_of: object = None,
             container: str = "", hits: Sequence[int] | None = None) -> tuple[list[Finding], list[tuple[int, int]]]:
    """Every PEM certificate block that starts in ``buf[lo:hi]``.

    Args:
        buf: The bytes (a window of a file); blocks may run past ``hi`` up to ``len(buf)``.
        lo: First start position to consider.
        hi: One past the last start position to consider.
        file: Path of the file, for the findings.
        base: File offset of ``buf[0]``.
        fmt: The format to record.
        embedded_as: ELF symbol or C variable the bytes came from.
        report_truncated: Report a BEGIN line without its END line as an error finding.
        line_of: Optional callable: buffer position -> 1-based line.
        container: Container id to use for every block (default: runs of adjacent blocks).
        hits: Positions of ``BEGIN`` already found (:class:`~iotaudit.firmware._search.NeedleSearch`).

    Returns:
        The findings, and the (absolute start, end) spans of the blocks parsed.
    """
    raw = bytes(buf) if isinstance(buf, memoryview) else buf
    findings: list[Finding] = []
    spans: list[tuple[int, int]] = []
    run_container, run_end = "", -1
    resume = 0
    for pos in iter_hits(raw, BEGIN, lo, hi + len(BEGIN), hits):
        if pos < resume:
            continue
        match = _PEM.match(raw, pos)
        line = line_of(pos) if callable(line_of) else None
        if match is None:
            if report_truncated and _CERT_LABEL.match(raw, pos):
                findings.append(error(file, base + pos, fmt, "BEGIN CERTIFICATE line without a matching END line "
                                      "(truncated PEM?)", line=line, embedded_as=embedded_as))
            continue
        body = b"".join(match.group("body").split())
        where = base + pos
        if container:
            box = container
        elif run_end >= 0 and pos - run_end <= RUN_GAP and _GAP_OK.fullmatch(raw, run_end, pos):
            box = run_container
        else:
            box = container_id(file, where)
        run_container, run_end = box, match.end()
        try:
            der = base64.b64decode(body, validate=True)
            cert = load_der_x509_certificate(der)
        except (binascii.Error, ValueError) as err:
            kind = "invalid base64" if isinstance(err, binascii.Error) else "not a valid X.509 certificate"
            findings.append(error(file, where, fmt, f"PEM CERTIFICATE block: {kind} ({err})", line=line,
                                  embedded_as=embedded_as))
        else:
            findings.append(Finding(file, where, fmt, FindingKind.CERTIFICATE, line=line, embedded_as=embedded_as,
                                    container=box, certificate=cert,
                                    detail=LOOSE_HEADER if match.group("pad") else ""))
            spans.append((where, base + match.end()))
        resume = match.end()
    return findings, spans


# --- C / C++ string literals ------------------------------------------------------------------

_C_TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
      |(?P<raw>(?:u8|[uUL])?R"(?P<delim>[^()\\\s"]{0,16})\((?P<rawbody>.*?)\)(?P=delim)")
      |(?P<str>(?:u8|[uUL])?"(?P<body>(?:[^"\\\n]|\\.|\\\n)*)")
      |(?P<chr>'(?:[^'\\\n]|\\.){1,8}')
      |(?P<ws>\s+)""",
    re.S | re.X,
)
_C_INTERESTING = re.compile(r'(?:u8|[uUL])?R?"|/[/*]|\'')
_SPLICE = re.compile(r"\\\r?\n")  # backslash-newline (translation phase 2), e.g. a multi-line #define
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{1,2})|([0-7]{1,3})|(\n)|(.))", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
                   "\\": "\\", "'": "'", '"': '"', "?": "?"}
_NAME_BEFORE = re.compile(
    r"(?:#\s*define\s+(?P<macro>\w+)|(?P<var>\w+)\s*(?:\[[^\]]*\])?\s*(?:PROGMEM\s*)?=)"
    r"(?:\s|\\\r?\n)*[({]?(?:\s|\\\r?\n)*$"
)


def _unescape(body: str) -> str:
    def one(match: re.Match[str]) -> str:
        hex_digits, octal, newline, other = match.groups()
        if hex_digits:
            return chr(int(hex_digits, 16))
        if octal:
            return chr(int(octal, 8) & 0xFF)
        if newline:
            return ""  # backslash-newline: line splice (translation phase 2)
        return _SIMPLE_ESCAPES.get(other, other)
    return _ESCAPE.sub(one, body)


def c_string_literals(text: str) -> Iterator[tuple[int, int, str]]:
    """Joined C/C++ string literals: (start, end, value) with escapes undone.

    ``text`` is the file decoded as latin-1, so positions are byte offsets.
    """
    pos, n = 0, len(text)
    start = end = last = -1  # the open run: first literal, end of its last literal, end of the last token in it
    parts: list[str] = []
    while pos < n:
        nxt = _C_INTERESTING.search(text, pos)
        if nxt is None:
            break
        if start >= 0 and _SPLICE.sub("", text[last:nxt.start()]).strip():
            yield start, end, "".join(parts)
            start, parts = -1, []
        token = _C_TOKEN.match(text, nxt.start())
        if token is None:
            pos = nxt.start() + 1
            continue
        kind = token.lastgroup
        if kind in ("str", "raw"):
            value = token.group("rawbody") if kind == "raw" else _unescape(token.group("body"))
            if start < 0:
                start = token.start()
            parts.append(value)
            end = token.end()
        elif kind == "chr" and start >= 0:
            yield start, end, "".join(parts)
            start, parts = -1, []
        last = token.end()
        pos = token.end()
    if start >= 0:
        yield start, end, "".join(parts)


def name_before(text: str, pos: int) -> str:
    """The macro or variable a literal at ``pos`` is assigned to (``AWS_CERT_CA``), or ""."""
    match = _NAME_BEFORE.search(text, max(0, pos - 240), pos)
    if match is None:
        return ""
    return match.group("macro") or match.group("var") or ""


def find_c_string_pems(data: bytes, *, file: str) -> tuple[list[Finding], list[tuple[int, int]]]:
    """PEM certificates inside the C/C++ string literals of a source file.

    Returns:
        The findings (offset and line of the literal's first token), and the (start, end)
        spans of the literals that held a BEGIN line.
    """
    text = data.decode("latin-1")
    findings: list[Finding] = []
    spans: list[tuple[int, int]] = []

    def line_at(position: int) -> int:
        return text.count("\n", 0, position) + 1

    for start, end, value in c_string_literals(text):
        if "-----BEGIN" not in value:
            continue
        spans.append((start, end))
        line = line_at(start)
        blob = value.encode("latin-1", "replace")
        found, _ = find_pem(blob, 0, len(blob), file=file, base=0, fmt=ScanFormat.PEM_C_STRING,
                            embedded_as=name_before(text, start), container=container_id(file, start))
        for finding in found:
            # Offsets inside a joined literal are not file offsets: report the literal's own.
            findings.append(Finding(
                finding.file, start, finding.format, finding.kind, line=line, embedded_as=finding.embedded_as,
                container=finding.container, certificate=finding.certificate, detail=finding.detail,
            ))
    return findings, spans
