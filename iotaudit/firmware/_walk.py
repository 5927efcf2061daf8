"""Walking a PATH and dispatching each file to the readers, streaming large binaries.

Memory is bounded per file: a binary is read in windows of :data:`CHUNK`
bytes plus :data:`OVERLAP` bytes carried over from the previous window (an
item -- a certificate, a bundle -- starts in one window and may end in the
next), so a multi-GB image costs about 10 MiB whatever its size.  Text files
up to :data:`TEXT_LIMIT` are read whole, because the C literal joiner and
the config readers need the whole text.

Symlinked directories are followed once (a loop is skipped and counted);
FIFOs, sockets and devices are never opened (skipped and counted); files
that cannot be read are error findings.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ..columns import FindingKind, ScanFormat
from ..errors import ScanError
from . import configs, der, elf, espbundle, pem, pins, stack
from ._model import MAX_ITEM, Finding, container_id, error
from ._search import NeedleSearch

CHUNK = 8 << 20
OVERLAP = MAX_ITEM
TEXT_LIMIT = 8 << 20
MAX_REGION = 64 << 20  # ELF embedded files read whole up to this size (larger ones are left to the stream scan)
_VCS = {".git", ".hg", ".svn"}
C_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".ino", ".inc", ".ipp", ".m", ".mm")
_HEADER_SUFFIXES = (".h", ".hpp", ".hh")

Progress = Callable[[int], None]
_NEEDLES = NeedleSearch((pem.BEGIN, der.V3_MARK, espbundle.ATTR_OID, *stack.BINARY_NEEDLES))


def _skipped(rel: str, reason: str) -> Finding:
    return Finding(rel, None, ScanFormat.FILE, FindingKind.SKIPPED, detail=reason)


def iter_files(root: Path) -> Iterator[tuple[Path, str, int] | Finding]:
    """Regular files under ``root`` as (path, path relative to root, size), and skip/error findings.

    Raises:
        ScanError: when ``root`` itself does not exist or cannot be read.
    """
    try:
        top = root.stat()
    except OSError as err:
        raise ScanError(root, None, f"cannot scan: {err.strerror or err}") from err
    if stat.S_ISREG(top.st_mode):
        yield root, root.name, top.st_size
        return
    if not stat.S_ISDIR(top.st_mode):
        raise ScanError(root, None, "cannot scan: not a regular file or directory (special file)")
    visited = {(top.st_dev, top.st_ino)}
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            yield error(prefix or ".", None, ScanFormat.FILE, f"cannot list directory ({err.strerror or err})")
            continue
        subdirectories = []
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            try:
                info = os.stat(entry.path)  # follows symlinks
            except OSError as err:
                if err.errno == errno.ELOOP:
                    yield _skipped(rel, "symlink loop")
                elif entry.is_symlink():
                    yield _skipped(rel, f"broken symlink ({err.strerror or err})")
                else:
                    yield error(rel, None, ScanFormat.FILE, f"cannot stat ({err.strerror or err})")
                continue
            if stat.S_ISDIR(info.st_mode):
                if entry.name in _VCS:
                    yield _skipped(rel, "version-control directory")
                elif (info.st_dev, info.st_ino) in visited:
                    yield _skipped(rel, "symlink loop (directory already scanned)")
                else:
                    visited.add((info.st_dev, info.st_ino))
                    subdirectories.append((Path(entry.path), rel + "/"))
            elif stat.S_ISREG(info.st_mode):
                yield Path(entry.path), rel, info.st_size
            else:
                kind = ("FIFO" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode)
                        else "device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "special file")
                yield _skipped(rel, f"special file ({kind}): not opened")
        pending.extend(reversed(subdirectories))


def _outside(findings: list[Finding], covered: list[tuple[int, int]]) -> list[Finding]:
    if not covered:
        return findings
    spans = sorted(covered)
    return [f for f in findings if f.offset is None or not espbundle.inside(spans, f.offset)]


def scan_stream(stream: BinaryIO, rel: str, *, covered: list[tuple[int, int]], progress: Progress | None = None,
                ) -> list[Finding]:
    """Search a binary in bounded windows for PEM, DER, ESP bundles, version strings and app descriptors.

    Args:
        covered: Absolute spans already read exactly (ELF embedded files); items starting there are dropped.
    """
    findings: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    window = b""
    base = 0       # file offset of window[0]
    start_at = 0   # first position of the window whose items are still to be reported
    covered_sorted = sorted(covered)
    while True:
        chunk = stream.read(CHUNK)
        eof = len(chunk) < CHUNK
        window = window + chunk if window else chunk
        if progress is not None and chunk:
            progress(len(chunk))
        hi = len(window) if eof else max(start_at, len(window) - OVERLAP)
        if hi > start_at:
            # Needles sit up to a few bytes after the item they announce (the DER mark 8 bytes in, the
            # Name OID 12 bytes into a bundle entry): search a little past hi, the readers bound starts.
            hits = _NEEDLES.find_all(window, max(0, start_at - 1), hi + 16)
            found, cert_spans = pem.find_pem(window, start_at, hi, file=rel, base=base, hits=hits[pem.BEGIN])
            found_der, der_spans = der.find_der(window, start_at, hi, file=rel, base=base, hits=hits[der.V3_MARK])
            skip = sorted([*covered_sorted, *cert_spans, *der_spans])
            found_bundles, _ = espbundle.find_bundles(window, start_at, hi, file=rel, base=base, skip=skip,
                                                      hits=hits[espbundle.ATTR_OID])
            found_versions = stack.find_versions(window, start_at, hi, file=rel, base=base, seen=seen, hits=hits)
            findings += _outside([*found, *found_der, *found_bundles, *found_versions], covered_sorted)
        if eof:
            return findings
        keep_from = max(0, hi - OVERLAP)
        window = window[keep_from:]
        base += keep_from
        start_at = hi - keep_from


def _read_region(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    return stream.read(size)


def _elf_findings(stream: BinaryIO, rel: str) -> tuple[list[Finding], list[tuple[int, int]]]:
    try:
        regions = elf.embedded_files(stream, source=rel)
    except ScanError as err:
        return [error(rel, None, ScanFormat.ELF_EMBED, err.reason)], []
    findings: list[Finding] = []
    covered: list[tuple[int, int]] = []
    for region in regions:
        findings.append(Finding(rel, region.offset, ScanFormat.ELF_EMBED, FindingKind.CONFIG, embedded_as=region.stem,
                                setting="embedded file", value=region.file_name,
                                evidence=f"embedded file {region.file_name} ({region.size} bytes, "
                                         f"_binary_{region.stem}_start/_end)"))
        if region.size > MAX_REGION:
            continue
        data = _read_region(stream, region.offset, region.size)
        findings += blob_findings(data, file=rel, base=region.offset, embedded_as=region.stem,
                                  whole_bundle=espbundle.BUNDLE_NAME in region.stem or "crt_bundle" in region.stem)
        covered.append((region.offset, region.offset + region.size))
    stream.seek(0)
    return findings, covered


def blob_findings(data: bytes, *, file: str, base: int, embedded_as: str = "", whole_bundle: bool = False,
                  ) -> list[Finding]:
    """Every certificate, bundle and PEM block in an in-memory blob (an ELF region, a decoded C byte array)."""
    if whole_bundle:
        return espbundle.bundle_findings(data, file=file, base=base, embedded_as=embedded_as)
    box = container_id(file, base)
    found, cert_spans = pem.find_pem(data, 0, len(data), file=file, base=base, embedded_as=embedded_as, container=box)
    found_der, der_spans = der.find_der(data, 0, len(data), file=file, base=base, embedded_as=embedded_as)
    found_bundles, _ = espbundle.find_bundles(data, 0, len(data), file=file, base=base, embedded_as=embedded_as,
                                              skip=sorted([*cert_spans, *der_spans]))
    return [*found, *found_der, *found_bundles]


def _text_findings(data: bytes, rel: str, name: str) -> list[Finding]:
    text = data.decode("latin-1")
    out: list[Finding] = []
    if configs.is_sdkconfig(name):
        out += configs.read_sdkconfig(text, file=rel)
    if configs.looks_like_wolfssl_options(name, text):
        out += configs.read_wolfssl_options(text, file=rel)
    out += configs.read_ca_file_settings(text, file=rel, name=name)
    if name == "cmakelists.txt" or name.endswith(".cmake"):
        out += configs.read_cmake_embeds(text, file=rel)
    if pins.looks_like_nsc(text):
        out += pins.read_network_security_config(text, file=rel)
    if pins.looks_like_trustkit(data):
        out += pins.read_trustkit(data, file=rel)
    if name.endswith((".java", ".kt", ".kts", ".scala")):
        out += pins.read_okhttp_pins(text, file=rel)
    if name.endswith(_HEADER_SUFFIXES):
        out += stack.read_header_versions(text, file=rel, name=name)
    c_like = name.endswith(C_SUFFIXES) or '"-----BEGIN' in text
    literal_spans: list[tuple[int, int]] = []
    if c_like:
        found, literal_spans = pem.find_c_string_pems(data, file=rel)
        out += found
        for position, blob in der.byte_lists(text):
            line = text.count("\n", 0, position) + 1
            for finding in blob_findings(blob, file=rel, base=0, embedded_as=pem.name_before(text, position)):
                # Offsets inside the decoded bytes are not file offsets: report the list's.
                out.append(Finding(finding.file, position, ScanFormat.DER_C_ARRAY if finding.format is ScanFormat.DER
                                   else finding.format, finding.kind, line=line, embedded_as=finding.embedded_as,
                                   container=container_id(rel, position), certificate=finding.certificate,
                                   anchor=finding.anchor, detail=finding.detail, tls_stack=finding.tls_stack,
                                   family=finding.family, evidence=finding.evidence, setting=finding.setting,
                                   value=finding.value))
    lines = _line_index(data)
    found, _ = pem.find_pem(data, 0, len(data), file=rel, base=0, report_truncated=not c_like, line_of=lines)
    spans = sorted(literal_spans)
    out += [f for f in found if not (spans and espbundle.inside(spans, f.offset or 0))]
    return out


def _line_index(data: bytes) -> Callable[[int], int]:
    def line_of(position: int) -> int:
        return data.count(b"\n", 0, position) + 1
    return line_of


def scan_file(path: Path, rel: str, size: int, *, progress: Progress | None = None) -> list[Finding]:
    """Every finding in one regular file; never raises for bad content (it becomes error findings)."""
    name = path.name.lower()
    try:
        stream = path.open("rb")
    except OSError as err:
        if progress is not None:
            progress(size)
        return [error(rel, None, ScanFormat.FILE, f"cannot read file ({err.strerror or err})")]
    with stream:
        try:
            head = stream.read(8192)
            stream.seek(0)
            findings: list[Finding] = []
            covered: list[tuple[int, int]] = []
            if head.startswith(elf.ELF_MAGIC):
                found, covered = _elf_findings(stream, rel)
                findings += found
            is_text = size <= TEXT_LIMIT and b"\x00" not in head and not head.startswith(elf.ELF_MAGIC)
            if is_text:
                data = stream.read()
                if progress is not None:
                    progress(len(data))
                if name.endswith(der.DER_SUFFIXES):
                    findings += der.read_der_file(data, file=rel)
                return findings + _text_findings(data, rel, name)
            if size <= TEXT_LIMIT and (name.endswith(der.DER_SUFFIXES) or "crt_bundle" in name or name.endswith(".plist")):
                data = stream.read()
                if progress is not None:
                    progress(len(data))
                if name.endswith(der.DER_SUFFIXES):
                    return findings + der.read_der_file(data, file=rel)
                if name.endswith(".plist"):
                    return findings + (pins.read_trustkit(data, file=rel) if pins.looks_like_trustkit(data) else [])
                return findings + espbundle.bundle_findings(data, file=rel, base=0, embedded_as=espbundle.BUNDLE_NAME)
            return findings + scan_stream(stream, rel, covered=covered, progress=progress)
        except OSError as err:
            return [error(rel, None, ScanFormat.FILE, f"read failed ({err.strerror or err})")]
