"""Command-line vocabulary every command shares: exit statuses and option types.

Light on purpose (standard library only): the command table in :mod:`iotaudit.cli`
and every module's ``register`` use it without importing pandas or OpenSSL.
"""

from __future__ import annotations

import argparse
import enum
import re
from datetime import datetime, timezone


class ExitStatus(enum.IntEnum):
    """What an ``iotaudit`` exit status means (see the module docstring)."""

    OK = 0
    THRESHOLD = 1
    USAGE = 2
    LOCAL_FAILURE = 3
    INTERNAL = 70  # EX_SOFTWARE, sysexits.h
    INTERRUPTED = 130


# --- argument types shared by the commands (argparse turns their ArgumentTypeError into a usage error) ---


def positive_seconds(text: str) -> float:
    """``--timeout S``: a number of seconds > 0 and at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86400:  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 and at most 86400 seconds")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (``--concurrency N``, ``--horizon-years N``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def port_number(text: str) -> int:
    """``--port N``: a TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (1-65535)")
    return value


class FailOn(enum.StrEnum):
    """``--fail-on`` threshold of ``audit`` and ``report``: exit 1 when any device has this verdict or worse.

    The values are the verdict strings of :class:`iotaudit.columns.Verdict`.
    """

    BROKEN = "broken"
    AT_RISK = "at-risk"
    NEVER = "never"


def crosses(devices_by_verdict: dict[str, int], fail_on: FailOn | str) -> bool:
    """True when any device has the ``fail_on`` verdict or a worse one (unknown crosses nothing)."""
    fail_on = FailOn(fail_on)
    if fail_on is FailOn.NEVER:
        return False
    worse = [FailOn.BROKEN.value] if fail_on is FailOn.BROKEN else [FailOn.BROKEN.value, FailOn.AT_RISK.value]
    return any(int(devices_by_verdict.get(v, 0)) > 0 for v in worse)


# Trust-store files (issue 9 item 7; read by iotaudit.inventory): a firmware store holds a handful of
# roots (ESP-IDF's full bundle, the largest real one, about 130 in 65 KiB of DER).  Past these limits a
# "trust store" is a mistake (a system bundle, /dev/zero), not a firmware store, unless the caller raises them.
MAX_TRUST_STORE_BYTES = 1024 * 1024
MAX_TRUST_STORE_CERTIFICATES = 64


def add_trust_store_options(parser: argparse.ArgumentParser) -> None:
    """``--allow-outside`` and ``--max-store-certificates``: the same trust-store file rule for audit and report."""
    parser.add_argument("--allow-outside", action="append", default=[], metavar="DIR",
                        help="let trust_store files resolve into DIR too (default: only inside the inventory's "
                             "directory); repeatable")
    parser.add_argument("--max-store-certificates", type=positive_int, default=MAX_TRUST_STORE_CERTIFICATES,
                        metavar="N", help=f"most certificates one trust-store file may hold (default "
                                          f"{MAX_TRUST_STORE_CERTIFICATES})")


def fail_on_help(what: str = "device") -> str:
    """The help text of ``--fail-on``."""
    return f"exit 1 when any {what} is broken (default), at-risk or worse (at-risk), or never"


# ISO 8601 extended format (RFC 3339 section 5.6 profile, plus reduced precision): a calendar date, or a
# date-time to the minute, second or any fraction, with "Z" or a numeric offset.  Anything else - "now",
# "today", "01/02/2025" (2 January or 1 February?), a date-time without an offset (whose time zone?) - is
# a bad row: the same inventory must mean the same thing tomorrow and everywhere.
_ISO_DATE = re.compile(r"^(?P<date>\d{4}-\d{2}-\d{2})$")
_ISO_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<hm>\d{2}:\d{2})(?P<s>:\d{2}(?P<frac>[.,]\d+)?)?"
    r"(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)$"
)


def parse_iso_instant(value: str) -> datetime | None:
    """An ISO 8601 date (midnight UTC) or date-time with ``Z`` or an offset, as a tz-aware UTC datetime.

    Fractions of a second are kept to the microsecond (iotaudit's time resolution, see
    :data:`iotaudit.columns.TIME`).  Returns None for anything else.
    """
    value = value.strip()
    if m := _ISO_DATE.match(value):
        try:
            return datetime.fromisoformat(m.group("date")).replace(tzinfo=timezone.utc)
        except ValueError:
            return None
    m = _ISO_DATETIME.match(value)
    if not m:
        return None
    frac = (m.group("frac") or "")[1:]
    seconds = (m.group("s") or ":00")[:3]
    zone = m.group("zone").upper()
    if zone == "Z":
        zone = "+00:00"
    elif len(zone) == 3:
        zone += ":00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    micro = f".{(frac + '000000')[:6]}" if frac else ""
    try:
        stamp = datetime.fromisoformat(f"{m.group('date')}T{m.group('hm')}{seconds}{micro}{zone}")
    except ValueError:
        return None
    return stamp.astimezone(timezone.utc)


def as_of_option(text: str) -> datetime:
    """``--as-of``: an ISO 8601 date (midnight UTC) or date-time with ``Z`` or an offset (see :func:`parse_iso_instant`)."""
    stamp = parse_iso_instant(text)
    if stamp is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or date-time with a time zone (write 2026-01-15 or 2026-01-15T12:00:00Z)")
    return stamp
