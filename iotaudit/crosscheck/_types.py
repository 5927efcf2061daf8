"""Value types shared by every real-library adapter of :mod:`iotaudit.crosscheck`.

Written by the lead; copy verbatim, do not change (two branches add this file).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True)
class Case:
    """One question for a real TLS library: does ``served`` validate against ``store`` at ``as_of``?

    Attributes:
        served: DER of each certificate in the order the server sends them (leaf first).
        store: DER of each trust-store certificate, in the order the firmware loads them.
        host: Server name to check against the leaf, or None to skip the name check.
        as_of: Verification time (tz-aware UTC).
    """

    served: tuple[bytes, ...]
    store: tuple[bytes, ...]
    host: str | None
    as_of: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "served", tuple(self.served))
        object.__setattr__(self, "store", tuple(self.store))
        if not self.served:
            raise ValueError("a Case needs at least the leaf certificate")
        if self.as_of.tzinfo is None:
            raise ValueError("Case.as_of must be tz-aware")
        object.__setattr__(self, "as_of", self.as_of.astimezone(timezone.utc))


@dataclass(frozen=True, slots=True)
class LibraryVerdict:
    """What the real library said about one :class:`Case`.

    Attributes:
        valid: The library accepted the chain.
        error: The library's own error (symbolic name and/or code and message); "" when valid.
        library: Library and version as the library reports it at run time, e.g. "mbed TLS 2.28.3".
    """

    valid: bool
    error: str
    library: str

    def __post_init__(self) -> None:
        if self.valid and self.error:
            raise ValueError("a valid LibraryVerdict has no error")
        if not self.valid and not self.error:
            raise ValueError("an invalid LibraryVerdict names the library's error")
