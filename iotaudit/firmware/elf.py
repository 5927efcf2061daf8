"""ELF files: the files embedded with ``_binary_<name>_start`` / ``_end`` symbols.

``ld -r -b binary FILE`` (and ``objcopy -I binary``) turns a file into a
section with the symbols ``_binary_<mangled path>_start`` and ``_end``;
ESP-IDF's ``EMBED_TXTFILES`` / ``EMBED_FILES`` / ``target_add_binary_data``
use them too (``examples/protocols/https_request/main/CMakeLists.txt``), and
``esp_crt_bundle.c`` reads the bundle between ``_binary_x509_crt_bundle_start``
and ``_end``.  The symbol table makes extraction exact: each region is read
by the format readers and named after its symbol.

The symbol table is read with pyelftools, which reads sections from the open
file on demand: a multi-GB ELF costs its symbol table, not its size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from ..errors import ScanError

ELF_MAGIC = b"\x7fELF"
_SYMBOL = re.compile(r"^_binary_(?P<stem>.+)_(?P<edge>start|end)$")


@dataclass(frozen=True, slots=True)
class EmbeddedFile:
    """One ``_binary_<stem>_start``/``_end`` region of an ELF file.

    Attributes:
        stem: The symbol stem (``x509_crt_bundle``, ``server_root_cert_pem``).
        offset: File offset of the first byte.
        size: Number of bytes (EMBED_TXTFILES adds a NUL terminator, which is included).
    """

    stem: str
    offset: int
    size: int

    def __post_init__(self) -> None:
        if not self.stem or self.offset < 0 or self.size < 0:
            raise ScanError(self.stem or "<elf>", self.offset, "an embedded file needs a name, an offset and a size")

    @property
    def file_name(self) -> str:
        """The embedded file's likely name: the stem with its last ``_`` read as the extension dot."""
        head, sep, tail = self.stem.rpartition("_")
        return f"{head}.{tail}" if sep and head and len(tail) <= 5 else self.stem


def embedded_files(stream: BinaryIO, *, source: str = "<elf>") -> list[EmbeddedFile]:
    """The embedded-file regions named by an ELF file's symbol tables, in file order.

    Args:
        stream: The ELF file opened for binary reading (seekable).
        source: Name for messages.

    Raises:
        ScanError: when the file is not a readable ELF file.
    """
    try:
        elf = ELFFile(stream)
        edges: dict[str, dict[str, tuple[int, int]]] = {}
        for section in elf.iter_sections():
            if not isinstance(section, SymbolTableSection):
                continue
            for symbol in section.iter_symbols():
                match = _SYMBOL.match(symbol.name or "")
                if match is None or not isinstance(symbol["st_shndx"], int):
                    continue
                edges.setdefault(match["stem"], {})[match["edge"]] = (symbol["st_shndx"], symbol["st_value"])
        regions = []
        relocatable = elf["e_type"] == "ET_REL"
        for stem, found in edges.items():
            if "start" not in found or "end" not in found:
                continue
            (start_section, start), (end_section, end) = found["start"], found["end"]
            if start_section != end_section or end < start:
                continue
            section = elf.get_section(start_section)
            if section["sh_type"] == "SHT_NOBITS":
                continue
            delta = start if relocatable else start - section["sh_addr"]
            if delta < 0 or delta + (end - start) > section["sh_size"]:
                continue
            regions.append(EmbeddedFile(stem, section["sh_offset"] + delta, end - start))
    except (ELFError, ValueError, KeyError, IndexError, AttributeError, TypeError) as err:
        # pyelftools raises more than ELFError on a corrupt file (struct errors are ValueErrors).
        raise ScanError(source, None, f"not a readable ELF file ({type(err).__name__}: {err})") from err
    return sorted(regions, key=lambda region: region.offset)
