"""Certificate pins: one parser for every pin syntax an inventory or a firmware may carry.

Below the analyses (inventory, profiles and pinning import it; it imports only
columns and errors), so that parsing a pin never pulls in the pin-risk analysis.

Formats: ``sha256/<base64>`` (SPKI SHA-256 as OkHttp, Android's
network-security-config and TrustKit write it; RFC 7469's ``pin-sha256="..."``
is accepted too), ``spki-sha256:<hex>``, ``cert-sha256:<hex>`` and
``cert-sha1:<hex>``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from .columns import PinKind
from .errors import PinError

__all__ = ["Pin", "PinError", "PinKind", "parse_pin", "parse_pins", "pin_syntax_problem"]


class _Identified(Protocol):
    """What a pin compares with: a certificate's DER and SPKI digests (lowercase hex)."""

    @property
    def sha256(self) -> str: ...
    @property
    def sha1(self) -> str: ...
    @property
    def spki_sha256(self) -> str: ...


_DIGEST_BYTES = {PinKind.SPKI_SHA256: 32, PinKind.CERT_SHA256: 32, PinKind.CERT_SHA1: 20}
_HEX_PREFIXES = {"spki-sha256": PinKind.SPKI_SHA256, "cert-sha256": PinKind.CERT_SHA256, "cert-sha1": PinKind.CERT_SHA1}
_FORMATS = "sha256/<base64>, spki-sha256:<hex>, cert-sha256:<hex> or cert-sha1:<hex>"
_HEX = re.compile(r"^[0-9a-f]*$")


@dataclass(frozen=True, slots=True)
class Pin:
    """One parsed pin.

    Attributes:
        text: The pin as written (what reports show).
        kind: What it hashes.
        digest: Lowercase hex digest.
    """

    text: str
    kind: PinKind
    digest: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PinKind(self.kind))
        want = _DIGEST_BYTES[self.kind] * 2
        if len(self.digest) != want or not _HEX.match(self.digest):
            raise PinError(self.text, f"{self.kind.value} digest must be {want} lowercase hex digits")

    @property
    def key_bound(self) -> bool:
        """True for SPKI pins, which survive re-issuance of the same key under any issuer."""
        return self.kind is PinKind.SPKI_SHA256

    @property
    def canonical(self) -> str:
        """The pin in its usual form: ``sha256/<base64>`` for SPKI pins, ``cert-sha*:<hex>`` otherwise."""
        if self.kind is PinKind.SPKI_SHA256:
            return "sha256/" + base64.b64encode(bytes.fromhex(self.digest)).decode("ascii")
        return f"{self.kind.value}:{self.digest}"

    def matches(self, cert: _Identified) -> bool:
        """True when this pin's digest equals the matching digest of ``cert``."""
        if self.kind is PinKind.SPKI_SHA256:
            return cert.spki_sha256 == self.digest
        if self.kind is PinKind.CERT_SHA256:
            return cert.sha256 == self.digest
        return cert.sha1 == self.digest


def parse_pin(text: str) -> Pin:
    """Parse one pin in any supported format.

    Formats: ``sha256/<base64>`` (SPKI SHA-256, OkHttp / Android / TrustKit;
    RFC 7469's ``pin-sha256="<base64>"`` is accepted too), ``spki-sha256:<hex>``,
    ``cert-sha256:<hex>`` and ``cert-sha1:<hex>``.  Prefixes are
    case-insensitive; hex may use upper case and ``:`` separators as
    ``openssl x509 -fingerprint`` prints them.

    Args:
        text: The pin as written.

    Returns:
        The parsed :class:`Pin` (``text`` keeps the input, stripped).

    Raises:
        PinError: naming the pin and what is wrong with it.
    """
    if not isinstance(text, str):
        raise PinError(str(text), f"a pin is text, got {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise PinError(text, f"empty pin; expected {_FORMATS}")
    lower = raw.lower()
    hpkp = re.fullmatch(r'pin-sha256\s*=\s*"([^"]*)"', raw, flags=re.IGNORECASE)
    if lower.startswith("sha256/") or hpkp:
        b64 = hpkp.group(1) if hpkp else raw[len("sha256/"):]
        try:
            digest = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as err:
            raise PinError(raw, f"the SPKI SHA-256 digest is not valid base64 ({err})") from err
        if len(digest) != 32:
            raise PinError(raw, f"the base64 digest decodes to {len(digest)} bytes; SHA-256 needs 32")
        return Pin(raw, PinKind.SPKI_SHA256, digest.hex())
    if lower.startswith("sha1/"):
        raise PinError(raw, "SPKI SHA-1 pins (sha1/...) are not supported (OkHttp 3 dropped them); pin sha256/<base64>")
    prefix, sep, value = raw.partition(":")
    kind = _HEX_PREFIXES.get(prefix.strip().lower()) if sep else None
    if kind is None:
        raise PinError(raw, f"unknown pin format; expected {_FORMATS}")
    digest_hex = re.sub(r"[\s:]", "", value).lower()
    want = _DIGEST_BYTES[kind] * 2
    if not _HEX.match(digest_hex):
        raise PinError(raw, f"the {kind.value} digest is not hexadecimal")
    if len(digest_hex) != want:
        raise PinError(raw, f"the {kind.value} digest has {len(digest_hex)} hex digits; it needs {want}")
    return Pin(raw, kind, digest_hex)


def parse_pins(texts: Iterable[str]) -> list[Pin]:
    """Parse every pin of a set, in order; see :func:`parse_pin`.

    Raises:
        PinError: for the first malformed pin.
    """
    return [parse_pin(t) for t in texts]


def pin_syntax_problem(pin: str) -> str:
    """"" if :func:`parse_pin` accepts ``pin``, else what is wrong with it (naming the pin)."""
    try:
        parse_pin(pin)
    except PinError as err:
        return str(err)
    return ""
