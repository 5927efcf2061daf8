"""The little DER (ITU-T X.690) the scanners need: TLV lengths and X.501 Names.

``cryptography`` parses certificates and keys; it has no public loader for
a bare DER ``Name``, which is what an ESP-IDF bundle stores, so the Name is
decoded here (RFC 5280 section 4.1.2.4, RFC 4514 for the string form).
"""

from __future__ import annotations

_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06

# RFC 4514 section 3 short names, plus the ones OpenSSL and cryptography print.
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "STREET", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_CN, _OU = "2.5.4.3", "2.5.4.11"


def tlv(buf: bytes | bytearray | memoryview, pos: int, end: int | None = None) -> tuple[int, int, int]:
    """The tag, header length and content length of the DER TLV at ``pos``.

    Raises:
        ValueError: when the header runs past ``end`` or uses an indefinite or over-long length.
    """
    end = len(buf) if end is None else end
    if pos + 2 > end:
        raise ValueError(f"TLV header at {pos} runs past the end")
    tag, first = buf[pos], buf[pos + 1]
    if first < 0x80:
        return tag, 2, first
    count = first & 0x7F
    if count == 0 or count > 3:
        raise ValueError(f"unsupported DER length form 0x{first:02x} at {pos + 1}")
    if pos + 2 + count > end:
        raise ValueError(f"TLV length at {pos + 1} runs past the end")
    length = int.from_bytes(bytes(buf[pos + 2:pos + 2 + count]), "big")
    if length < 0x80 or (count > 1 and length < (1 << (8 * (count - 1)))):
        raise ValueError(f"non-minimal DER length at {pos + 1}")
    return tag, 2 + count, length


def tlv_size(buf: bytes | bytearray | memoryview, pos: int, end: int | None = None) -> int:
    """Total size (header + content) of the TLV at ``pos``; raises ValueError if it does not fit before ``end``."""
    end = len(buf) if end is None else end
    _, header, length = tlv(buf, pos, end)
    if pos + header + length > end:
        raise ValueError(f"TLV at {pos} ({header + length} bytes) runs past the end")
    return header + length


def _oid(content: bytes) -> str:
    if not content:
        raise ValueError("empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if content[-1] & 0x80:
        raise ValueError("truncated OBJECT IDENTIFIER")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def _string(tag: int, content: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return content.decode("utf-16-be", "replace")
    if tag == 0x1C:  # UniversalString
        return content.decode("utf-32-be", "replace")
    if tag in (0x0C, 0x13, 0x16, 0x1A):  # UTF8String, PrintableString, IA5String, VisibleString
        return content.decode("utf-8", "replace")
    if tag == 0x14:  # TeletexString: latin-1 in practice
        return content.decode("latin-1")
    return "#" + content.hex()


def name_attributes(der: bytes) -> list[list[tuple[str, str]]]:
    """The RDNs of a DER Name, each a list of (dotted OID, value string).

    Raises:
        ValueError: when ``der`` is not exactly one well-formed Name.
    """
    tag, header, length = tlv(der, 0)
    if tag != _SEQUENCE or header + length != len(der):
        raise ValueError("not a single DER SEQUENCE")
    rdns: list[list[tuple[str, str]]] = []
    pos = header
    while pos < len(der):
        set_tag, set_header, set_len = tlv(der, pos)
        set_end = pos + set_header + set_len
        if set_tag != _SET or set_end > len(der):
            raise ValueError(f"RDN at {pos} is not a SET")
        rdn: list[tuple[str, str]] = []
        inner = pos + set_header
        while inner < set_end:
            seq_tag, seq_header, seq_len = tlv(der, inner, set_end)
            seq_end = inner + seq_header + seq_len
            if seq_tag != _SEQUENCE or seq_end > set_end:
                raise ValueError(f"attribute at {inner} is not a SEQUENCE")
            oid_pos = inner + seq_header
            oid_tag, oid_header, oid_len = tlv(der, oid_pos, seq_end)
            if oid_tag != _OID:
                raise ValueError(f"attribute at {inner} has no OBJECT IDENTIFIER")
            value_pos = oid_pos + oid_header + oid_len
            value_tag, value_header, value_len = tlv(der, value_pos, seq_end)
            if value_pos + value_header + value_len != seq_end:
                raise ValueError(f"attribute at {inner} has trailing bytes")
            oid = _oid(bytes(der[oid_pos + oid_header:oid_pos + oid_header + oid_len]))
            rdn.append((oid, _string(value_tag, bytes(der[value_pos + value_header:seq_end]))))
            inner = seq_end
        if not rdn:
            raise ValueError(f"empty RDN at {pos}")
        rdns.append(rdn)
        pos = set_end
    return rdns


def _escape(value: str) -> str:
    # RFC 4514 section 2.4
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def name_to_rfc4514(der: bytes) -> str:
    """RFC 4514 string of a DER Name (last RDN first, as ``cryptography`` prints ``rfc4514_string()``)."""
    rdns = name_attributes(der)
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(oid, oid)}={_escape(value)}" for oid, value in rdn) for rdn in reversed(rdns)
    )


def name_common_name(der: bytes) -> str:
    """commonName, else the last organizationalUnitName, else the RFC 4514 string."""
    attrs = [attr for rdn in name_attributes(der) for attr in rdn]
    for wanted in (_CN, _OU):
        values = [value for oid, value in attrs if oid == wanted]
        if values:
            return values[-1]
    return name_to_rfc4514(der) or "(empty name)"
