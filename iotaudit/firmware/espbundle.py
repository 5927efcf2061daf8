"""ESP-IDF's ``x509_crt_bundle``: reader and writer for both layouts, and a finder for raw images.

The bundle is not X.509: it keeps each root's DER subject Name and DER
SubjectPublicKeyInfo, nothing else (no dates, no signature), sorted by the
subject's DER bytes because ``esp_crt_find_cert()`` binary-searches it.
Read from ``espressif/esp-idf`` : ``components/mbedtls/esp_crt_bundle/``:

``legacy`` layout (``gen_crt_bundle.py`` up to v5.3.x, e.g. v5.3.2)
    ``struct.pack('>H', count)``, then per root ``struct.pack('>HH', name_len, key_len)``,
    name, key.  ``esp_crt_bundle_init()`` walks the entries and refuses a bundle whose
    entries run past its end.

``current`` layout (from v5.4, commit d8e31eb6 "Reduced RAM & stack use of cert bundle")
    ``n`` u32 little-endian offsets from the start of the bundle to each entry, then per
    root ``struct.pack('<HH', name_len, key_len)``, name, key.  "The # of certificates in
    the bundle is [first offset]/sizeof(uint32_t)"; ``esp_crt_check_bundle()`` requires
    every offset to point right after the previous entry and the last entry to fit.
    (The generator's header comment still describes the old layout.)

Every release tag from v4.4 to v5.3.5 writes the legacy layout and every one
from v5.4 the current one; a bundle written by the other layout's generator
makes ``esp_crt_bundle_attach()`` fail ("Failed to attach bundle").
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..columns import FindingKind, ScanFormat
from ..errors import ScanError
from . import _asn1
from ._model import MAX_ITEM, Finding, NameKeyAnchor, container_id, error
from ._search import iter_hits

# gen_crt_bundle.py: DEFAULT_CERT_BUNDLE_MAX_CERTS = 200 (CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_MAX_CERTS default).
DEFAULT_MAX_CERTS = 200
_SCAN_MAX_CERTS = 4096       # what the finder accepts: the Kconfig maximum is the user's choice
_MAX_ENTRY = 4 + 1024 + 2200  # a header, a long Name, an RSA 8192 SPKI
_MIN_KEY = 16
FIRST_CURRENT_LAYOUT_IDF = (5, 4)  # first ESP-IDF release with the offset-table layout
BUNDLE_NAME = "x509_crt_bundle"    # the generator's output file, and the ELF symbol stem


class BundleLayout(str, Enum):
    """The two byte layouts of ``x509_crt_bundle``."""

    LEGACY = "legacy"    # big-endian u16 count, big-endian u16 lengths (ESP-IDF < 5.4)
    CURRENT = "current"  # little-endian u32 offset table, little-endian u16 lengths (ESP-IDF >= 5.4)

    def __str__(self) -> str:
        return self.value

    @property
    def format(self) -> ScanFormat:
        """The scan ``format`` value of a bundle in this layout."""
        return ScanFormat.ESP_BUNDLE_LEGACY if self is BundleLayout.LEGACY else ScanFormat.ESP_BUNDLE

    def matches_idf(self, version: tuple[int, ...]) -> bool:
        """True when ESP-IDF ``version`` (major, minor[, patch]) reads bundles of this layout."""
        current = tuple(version[:2]) >= FIRST_CURRENT_LAYOUT_IDF
        return current == (self is BundleLayout.CURRENT)


@dataclass(frozen=True, slots=True)
class BundleEntry:
    """One root of a bundle: where its entry starts (from the bundle's first byte) and its name and key."""

    offset: int
    anchor: NameKeyAnchor

    def __post_init__(self) -> None:
        if self.offset < 0:
            raise ScanError("<bundle>", self.offset, "an entry offset cannot be negative")


@dataclass(frozen=True, slots=True)
class EspBundle:
    """A decoded ``x509_crt_bundle``.

    Attributes:
        layout: Which of the two layouts.
        entries: The roots in stored order.
        size: Bytes the bundle occupies (trailing bytes after the last entry excluded).
    """

    layout: BundleLayout
    entries: tuple[BundleEntry, ...]
    size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", BundleLayout(self.layout))
        if not self.entries:
            raise ScanError("<bundle>", 0, "a bundle holds at least one root")


@dataclass(frozen=True, slots=True)
class _Parsed:
    entries: tuple[BundleEntry, ...]
    announced: int              # count the header announces
    size: int                   # bytes parsed
    problem: str = ""           # why the rest could not be read
    problem_offset: int = 0     # where, from the bundle's first byte


def write_esp_bundle(certificates: Iterable[x509.Certificate], *, layout: BundleLayout | str = BundleLayout.CURRENT,
                     max_certs: int = DEFAULT_MAX_CERTS, path: str | Path | None = None) -> bytes:
    """Build an ``x509_crt_bundle`` the way ``gen_crt_bundle.py`` does, in either layout.

    Certificates are sorted by the DER bytes of their subject (``esp_crt_find_cert()``
    binary-searches on them); each contributes its subject Name and SubjectPublicKeyInfo.

    Args:
        certificates: The roots.
        layout: ``current`` (ESP-IDF >= 5.4) or ``legacy`` (older).
        max_certs: Refuse more than this many, like ``--max-certs``.
        path: Also write the bytes to this file.

    Returns:
        The bundle bytes.

    Raises:
        ScanError: for no certificate, too many, or a name or key too long for a u16 length.
    """
    layout = BundleLayout(layout)
    certs = sorted(certificates, key=lambda cert: cert.subject.public_bytes())
    label = str(path) if path is not None else "<bundle>"
    if not certs:
        raise ScanError(label, None, "a bundle needs at least one certificate")
    if len(certs) > max_certs:
        raise ScanError(label, None, f"{len(certs)} certificates exceed the bundle maximum of {max_certs}")
    endian = ">" if layout is BundleLayout.LEGACY else "<"
    entries: list[bytes] = []
    for cert in certs:
        name = cert.subject.public_bytes()
        key = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if len(name) > 0xFFFF or len(key) > 0xFFFF:
            raise ScanError(label, None, f"{cert.subject.rfc4514_string()}: name or key longer than 65535 bytes")
        entries.append(struct.pack(f"{endian}HH", len(name), len(key)) + name + key)
    if layout is BundleLayout.LEGACY:
        data = struct.pack(">H", len(entries)) + b"".join(entries)
    else:
        offsets, position = [], 4 * len(entries)
        for entry in entries:
            offsets.append(position)
            position += len(entry)
        data = struct.pack(f"<{len(offsets)}L", *offsets) + b"".join(entries)
    if path is not None:
        try:
            Path(path).write_bytes(data)
        except OSError as err:
            raise ScanError(path, None, f"cannot write bundle ({err.strerror or err})") from err
    return data


def _entry(data: bytes | memoryview, pos: int, endian: str, end: int, index: int, count: int,
           ) -> tuple[BundleEntry | None, int, str]:
    """The entry at ``pos``: (entry, its size, problem)."""
    what = f"entry {index + 1} of {count} at offset {pos}"
    if pos + 4 > end:
        return None, 0, f"{what}: header runs past the end of the bundle (truncated)"
    name_len, key_len = struct.unpack_from(f"{endian}HH", data, pos)
    size = 4 + name_len + key_len
    if pos + size > end:
        return None, 0, f"{what}: {name_len}-byte name and {key_len}-byte key run past the end of the bundle (truncated)"
    name = bytes(data[pos + 4:pos + 4 + name_len])
    key = bytes(data[pos + 4 + name_len:pos + size])
    try:
        anchor = NameKeyAnchor(name, key)
    except ScanError as err:
        return None, 0, f"{what}: {err.reason}"
    return BundleEntry(pos, anchor), size, ""


def _parse(data: bytes | memoryview, layout: BundleLayout, max_certs: int) -> _Parsed:
    size = len(data)
    entries: list[BundleEntry] = []
    if layout is BundleLayout.LEGACY:
        if size < 2 + 4:
            return _Parsed((), 0, 0, f"{size} bytes: too small for a legacy bundle (count and one entry header)", 0)
        count = struct.unpack_from(">H", data, 0)[0]
        if count == 0:
            return _Parsed((), 0, 2, "the count is 0", 0)
        if count > max_certs:
            return _Parsed((), count, 2, f"the count {count} exceeds the maximum of {max_certs}", 0)
        pos = 2
        for index in range(count):
            entry, length, problem = _entry(data, pos, ">", size, index, count)
            if entry is None:
                return _Parsed(tuple(entries), count, pos, problem, pos)
            entries.append(entry)
            pos += length
        return _Parsed(tuple(entries), count, pos)
    # Current layout: the checks of esp_crt_check_bundle() (esp_crt_bundle.c).
    if size <= 4 + 4:
        return _Parsed((), 0, 0, f"{size} bytes: too small for one offset and one entry header", 0)
    first = struct.unpack_from("<L", data, 0)[0]
    if first == 0 or first % 4:
        return _Parsed((), 0, 0, f"first offset {first} is not a non-zero multiple of 4", 0)
    if first >= size:
        return _Parsed((), first // 4, 0, f"first offset {first} points past the end ({size} bytes; truncated?)", 0)
    count = first // 4
    if count > max_certs:
        return _Parsed((), count, 0, f"the offset table announces {count} roots, more than the maximum of {max_certs}", 0)
    expected = first
    pos = first
    for index in range(count):
        offset = struct.unpack_from("<L", data, 4 * index)[0]
        if offset != expected:
            return _Parsed(tuple(entries), count, pos, f"offset {index + 1} of {count} is {offset}, the previous "
                           f"entry ends at {expected}", 4 * index)
        entry, length, problem = _entry(data, offset, "<", size, index, count)
        if entry is None:
            return _Parsed(tuple(entries), count, pos, problem, offset)
        entries.append(entry)
        expected = pos = offset + length
    return _Parsed(tuple(entries), count, pos)


def read_esp_bundle(data: bytes | memoryview, *, layout: BundleLayout | str | None = None,
                    source: str | Path = "<bundle>", max_certs: int = _SCAN_MAX_CERTS) -> EspBundle:
    """Decode a whole ``x509_crt_bundle`` (the file, or the bytes between the ELF symbols).

    Args:
        data: The bundle bytes.
        layout: Force a layout; default: the one the bytes are consistent with.
        source: File name for messages.
        max_certs: Refuse a header announcing more roots than this.

    Raises:
        ScanError: naming the offset and the entry that is truncated or malformed, or why
            the bytes are neither layout.
    """
    layouts = [BundleLayout(layout)] if layout is not None else [BundleLayout.CURRENT, BundleLayout.LEGACY]
    problems = []
    for candidate in layouts:
        parsed = _parse(data, candidate, max_certs)
        if not parsed.problem:
            return EspBundle(candidate, parsed.entries, parsed.size)
        problems.append((candidate, parsed))
    if len(problems) == 1:
        candidate, parsed = problems[0]
        raise ScanError(source, parsed.problem_offset, f"not a valid {candidate} ESP-IDF bundle: {parsed.problem}")
    # Report the layout that got further (a truncated bundle still reads some entries).
    candidate, parsed = max(problems, key=lambda item: len(item[1].entries))
    if not parsed.entries:
        reasons = "; ".join(f"as {c}: {p.problem}" for c, p in problems)
        raise ScanError(source, 0, f"not an ESP-IDF certificate bundle in either layout ({reasons})")
    raise ScanError(source, parsed.problem_offset, f"{candidate} ESP-IDF bundle: {parsed.problem}")


def bundle_findings(data: bytes | memoryview, *, file: str, base: int, embedded_as: str = "",
                    layout: BundleLayout | None = None) -> list[Finding]:
    """Findings for bytes that should be a whole bundle (a file called ``x509_crt_bundle``, an ELF region).

    Each root is an ``anchor`` finding; a bundle that cannot be read completely adds an
    ``error`` finding with the offset of the entry that failed, and keeps the roots read before it.
    """
    attempts = [layout] if layout is not None else [BundleLayout.CURRENT, BundleLayout.LEGACY]
    results = [(candidate, _parse(data, candidate, _SCAN_MAX_CERTS)) for candidate in attempts]
    clean = [(c, p) for c, p in results if not p.problem]
    candidate, parsed = clean[0] if clean else max(results, key=lambda item: len(item[1].entries))
    if not parsed.entries and not clean:
        reasons = "; ".join(f"as {c}: {p.problem}" for c, p in results)
        return [error(file, base, ScanFormat.ESP_BUNDLE, f"not an ESP-IDF certificate bundle in either layout "
                      f"({reasons})", embedded_as=embedded_as)]
    return _anchors(parsed, candidate, file=file, base=base, embedded_as=embedded_as)


def _anchors(parsed: _Parsed, layout: BundleLayout, *, file: str, base: int, embedded_as: str) -> list[Finding]:
    box = container_id(file, base)
    fmt = layout.format
    found = [
        Finding(file, base + entry.offset, fmt, FindingKind.ANCHOR, embedded_as=embedded_as, container=box,
                anchor=entry.anchor, detail="name + key only: no dates, no signature")
        for entry in parsed.entries
    ]
    # The layout says which ESP-IDF wrote it; the legacy one predates the cross-signed option (v6.0).
    stack = "esp-idf-bundle" if layout is BundleLayout.LEGACY else ""
    found.append(Finding(
        file, base, fmt, FindingKind.STACK, embedded_as=embedded_as, container=box, tls_stack=stack,
        family="esp-idf-bundle", setting="layout", value=layout.value,
        evidence=f"ESP-IDF certificate bundle, {layout} layout (ESP-IDF "
                 f"{'< 5.4' if layout is BundleLayout.LEGACY else '>= 5.4'}), {len(parsed.entries)} of "
                 f"{parsed.announced} roots read",
    ))
    if parsed.problem:
        found.append(error(file, base + parsed.problem_offset, fmt, f"{layout} ESP-IDF bundle: {parsed.problem}",
                           embedded_as=embedded_as))
    return found


# --- finding bundles inside raw images ---------------------------------------------------------

ATTR_OID = b"\x06\x03\x55\x04"  # the first attribute type of nearly every Name: id-at (2.5.4.x)


def _name_starts(raw: bytes, hit: int) -> list[int]:
    """Where a Name whose first attribute's OID is at ``hit`` may start (short, 0x81 and 0x82 lengths)."""
    out = []
    if hit >= 6 and raw[hit - 2] == 0x30 and raw[hit - 4] == 0x31:
        if raw[hit - 6] == 0x30:
            out.append(hit - 6)
        if hit >= 7 and raw[hit - 7] == 0x30 and raw[hit - 6] == 0x81:
            out.append(hit - 7)
        if hit >= 8 and raw[hit - 8] == 0x30 and raw[hit - 7] == 0x82:
            out.append(hit - 8)
    return out


def _entry_size(raw: bytes, pos: int, endian: str) -> int:
    """Size of a plausible bundle entry at ``pos`` (header + name + key), 0 if there is none."""
    if pos < 0 or pos + 4 > len(raw):
        return 0
    name_len, key_len = struct.unpack_from(f"{endian}HH", raw, pos)
    name_at = pos + 4
    key_at = name_at + name_len
    if name_len < 2 or key_len < _MIN_KEY or key_at + key_len > len(raw):
        return 0
    if raw[name_at] != 0x30 or raw[key_at] != 0x30:
        return 0
    try:
        if _asn1.tlv_size(raw, name_at, key_at) != name_len or _asn1.tlv_size(raw, key_at, key_at + key_len) != key_len:
            return 0
    except ValueError:
        return 0
    return 4 + name_len + key_len


def _previous_entry(raw: bytes, pos: int, endian: str, floor: int) -> int:
    """Start of an entry that ends exactly at ``pos``, or -1."""
    for start in range(pos - 4 - 2 - _MIN_KEY, max(floor, pos - _MAX_ENTRY) - 1, -1):
        if raw[start + 4] == 0x30 and _entry_size(raw, start, endian) == pos - start:
            return start
    return -1


def inside(spans: Sequence[tuple[int, int]], position: int) -> bool:
    """True when ``position`` is in one of ``spans`` (sorted by start, not overlapping)."""
    index = bisect.bisect_right(spans, (position, float("inf"))) - 1
    return index >= 0 and spans[index][0] <= position < spans[index][1]


def find_bundles(buf: bytes | memoryview, lo: int, hi: int, *, file: str, base: int, embedded_as: str = "",
                 skip: Sequence[tuple[int, int]] = (), hits: Sequence[int] | None = None,
                 ) -> tuple[list[Finding], list[tuple[int, int]]]:
    """ESP-IDF bundles, in either layout, with an entry starting in ``buf[lo:hi]``.

    A Name's first attribute OID (``06 03 55 04``) is searched with ``bytes.find``; a
    plausible entry header around it (lengths that match the DER lengths of the Name and
    of the key after it) is followed back to the first entry, then to the count (legacy)
    or the offset table (current) before it; the bundle is then read as
    :func:`read_esp_bundle` would.

    Args:
        skip: Absolute spans already explained (certificates, bundles found before).
        hits: Positions of the OID prefix already found (:class:`~iotaudit.firmware._search.NeedleSearch`).

    Returns:
        The findings, and the absolute spans of the bundles found.
    """
    raw = bytes(buf) if isinstance(buf, memoryview) else buf
    skip = sorted(skip)
    findings: list[Finding] = []
    spans: list[tuple[int, int]] = []
    for pos in iter_hits(raw, ATTR_OID, lo + 6, hi + 12 + len(ATTR_OID), hits):
        absolute = base + pos
        if inside(skip, absolute) or inside(spans, absolute):
            continue
        for name_at in _name_starts(raw, pos):
            entry_at = name_at - 4
            for endian, layout in (("<", BundleLayout.CURRENT), (">", BundleLayout.LEGACY)):
                if not _entry_size(raw, entry_at, endian):
                    continue
                first = entry_at
                while (earlier := _previous_entry(raw, first, endian, 0)) >= 0:
                    first = earlier
                start = _bundle_start(raw, first, layout)
                if start < 0:
                    findings.append(error(file, base + first, layout.format, f"bytes that look like {layout} "
                                          f"ESP-IDF bundle entries, without the bundle's "
                                          f"{'count' if layout is BundleLayout.LEGACY else 'offset table'} before them",
                                          embedded_as=embedded_as))
                    end = first + _entry_size(raw, first, endian)
                    spans.append((base + first, base + end))
                    break
                parsed = _parse(memoryview(raw)[start:start + MAX_ITEM], layout, _SCAN_MAX_CERTS)
                findings += _anchors(parsed, layout, file=file, base=base + start, embedded_as=embedded_as)
                spans.append((base + start, base + start + max(parsed.size, first - start + 4)))
                break
            if spans and spans[-1][0] <= absolute < spans[-1][1]:
                break
    return findings, spans


def _bundle_start(raw: bytes, first: int, layout: BundleLayout) -> int:
    """Where the bundle whose first entry is at ``first`` starts, or -1."""
    if layout is BundleLayout.LEGACY:
        if first >= 2 and struct.unpack_from(">H", raw, first - 2)[0] >= 1:
            return first - 2
        return -1
    size = _entry_size(raw, first, "<")
    for count in range(1, min(_SCAN_MAX_CERTS, first // 4) + 1):
        start = first - 4 * count
        if struct.unpack_from("<L", raw, start)[0] != 4 * count:
            continue
        if count > 1 and struct.unpack_from("<L", raw, start + 4)[0] != 4 * count + size:
            continue
        return start
    return -1
