"""Ask a real wolfSSL 5 TLS client whether it accepts a served chain, by a real TLS 1.2 handshake.

wolfSSL decides inside its handshake, so each case is a handshake on 127.0.0.1 between a
wolfSSL client (ctypes) and a Python server that sends ServerHello and the Certificate
message exactly as captured; see :mod:`._wolfssl_worker`. wolfSSL reads the clock itself
(``XTIME`` = ``time()``), so the worker runs under :mod:`._faketime`.

Stacks and the library each one loads:
    ``wolfssl-5-alt-chains``: Debian's ``libwolfssl.so.35`` (``libwolfssl-dev``), built with
        ``--enable-distro``, which defines ``WOLFSSL_ALT_CERT_CHAINS`` (see
        ``/usr/include/wolfssl/options.h``).
    ``wolfssl-5``: wolfSSL's default build (no alternative chains) of the same Debian source,
        built by :mod:`._wolfssl_build` into ``IOTAUDIT_WOLFSSL_DEFAULT_DIR``
        (default ``~/.cache/iotaudit/wolfssl-5-default``).
"""

from __future__ import annotations

import ctypes
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from iotaudit.crosscheck import _faketime
from iotaudit.crosscheck._types import Case, LibraryVerdict
from iotaudit.crosscheck._wolfssl_build import DEFAULT_DIRECTORY, LIBRARY_NAME

STACK_IDS: tuple[str, ...] = ("wolfssl-5-alt-chains", "wolfssl-5")

_DEBIAN_LIBRARY = "libwolfssl.so.35"  # Debian bookworm libwolfssl35 (pulled in by libwolfssl-dev)
_WORKER = Path(__file__).with_name("_wolfssl_worker.py")


def library_path(stack_id: str) -> str:
    """The shared object that answers for ``stack_id`` (a soname for Debian's, a path for the default build)."""
    if stack_id == "wolfssl-5-alt-chains":
        return _DEBIAN_LIBRARY
    if stack_id == "wolfssl-5":
        return str(DEFAULT_DIRECTORY / LIBRARY_NAME)
    raise ValueError(f"wolfSSL adapter answers for {', '.join(STACK_IDS)}, not {stack_id!r}")


def _unavailable(stack_id: str) -> str | None:
    path = library_path(stack_id)
    try:
        ctypes.CDLL(path)
    except OSError as err:
        if stack_id == "wolfssl-5":
            return (f"the default wolfSSL build is missing ({err}): apt-get install libwolfssl-dev cmake gcc make "
                    "patch xz-utils, then python -m iotaudit.crosscheck._wolfssl_build")
        return f"wolfSSL is not installed ({err}): apt-get install libwolfssl-dev"
    return _faketime.unavailable()


def unavailable(stack_id: str = "wolfssl-5-alt-chains") -> str | None:
    """Say why wolfSSL cannot be asked here for ``stack_id``, or None when it can.

    Args:
        stack_id: One of :data:`STACK_IDS`; without one, Debian's library is checked.

    Returns:
        None if the library for that stack and libfaketime load; else a sentence naming what to install.
    """
    return _unavailable(stack_id)


def library_version(stack_id: str = "wolfssl-5-alt-chains") -> str:
    """The version wolfSSL reports (``wolfSSL_lib_version``), e.g. "wolfSSL 5.5.4", for that stack's library."""
    lib = ctypes.CDLL(library_path(stack_id))
    lib.wolfSSL_lib_version.restype = ctypes.c_char_p
    lib.wolfSSL_lib_version.argtypes = []
    return "wolfSSL " + lib.wolfSSL_lib_version().decode("ascii")


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """One real TLS 1.2 handshake per case; one faked-clock worker answers the whole batch.

    Args:
        stack_id: One of :data:`STACK_IDS`.
        cases: The questions; verdicts come back in the same order.

    Returns:
        One :class:`LibraryVerdict` per case.

    Raises:
        ValueError: ``stack_id`` is not one this adapter answers for.
        LibraryRunError: the library or libfaketime is missing, or a handshake did not reach
            the certificate check (a local failure, never a verdict).
    """
    path = library_path(stack_id)
    if not cases:
        return []
    missing = _unavailable(stack_id)
    if missing:
        raise _faketime.LibraryRunError(_WORKER, missing)
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for index, case in enumerate(cases):
        by_time[case.as_of.replace(microsecond=0)].append(index)
    ordered = sorted(by_time.items())
    groups = [(as_of, [{"served": cases[i].served, "store": cases[i].store, "host": cases[i].host}
                       for i in indexes]) for as_of, indexes in ordered]
    answers = _faketime.run_worker(_WORKER, stack_id, groups, options={"library": path})
    verdicts: dict[int, LibraryVerdict] = {}
    for (_, indexes), results in zip(ordered, answers, strict=True):
        for index, result in zip(indexes, results, strict=True):
            label = result["library"] + (" (default build)" if stack_id == "wolfssl-5" else " (Debian, alt chains)")
            verdicts[index] = LibraryVerdict(valid=result["valid"], error=result["error"], library=label)
    return [verdicts[index] for index in range(len(cases))]


def full_handshake(stack_id: str, address: str, port: int, *, store: Sequence[bytes], host: str | None,
                   as_of: datetime, cipher_list: str | None = None) -> LibraryVerdict:
    """A complete TLS 1.2 handshake of the real wolfSSL client with a real server (e.g. the lab).

    This is the reference the raw-record method of :func:`verify_many` is checked against: the
    same client setup, but the server signs its key exchange and finishes the handshake.

    Args:
        stack_id: One of :data:`STACK_IDS`.
        address: Server address (loopback only in tests).
        port: Server port.
        store: DER of each trust-store certificate, in load order.
        host: SNI and the name checked against the leaf, or None.
        as_of: The client's (faked) clock.
        cipher_list: wolfSSL cipher list, e.g. "ECDHE-RSA-AES128-GCM-SHA256" to get the RSA chain.

    Returns:
        valid when ``wolfSSL_connect`` succeeded; else its error by name and code.
    """
    path = library_path(stack_id)
    missing = _unavailable(stack_id)
    if missing:
        raise _faketime.LibraryRunError(_WORKER, missing)
    case = {"served": [], "store": tuple(store), "host": host, "connect": [address, port]}
    options = {"library": path, "cipher_list": cipher_list}
    ((result,),) = _faketime.run_worker(_WORKER, stack_id, [(as_of, [case])], options=options)
    return LibraryVerdict(valid=result["valid"], error=result["error"], library=result["library"])
