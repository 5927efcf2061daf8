"""Ask the real mbed TLS 2.28 (Debian ``libmbedtls-dev``) whether a served chain validates.

The verification is the library's own ``mbedtls_x509_crt_verify_restartable`` with
``mbedtls_x509_crt_profile_default``, called exactly as ``ssl_parse_certificate_verify``
(``library/ssl_tls.c``, mbed TLS v2.28.3) calls it for a TLS client: the served chain parsed in
served order as the peer chain, the store in firmware order as ``ca_chain``, the expected CN =
host. See :mod:`._mbedtls_worker` for every step, and :mod:`._faketime` for the clock
(mbed TLS reads ``time()`` itself).

Stacks:
    ``mbedtls-2.28``: a plain CA list (``mbedtls_ssl_conf_ca_chain``).
    ``esp-idf-bundle``: ESP-IDF bundle logic re-implemented over real mbed TLS 2.28 (the default
        mode of ``esp_crt_bundle.c``: empty dummy CA + its verify callback). ESP-IDF itself ships
        mbed TLS 3.x; the chain building here is 2.28's.
    ``esp-idf-bundle-cross-signed``: ESP-IDF bundle logic re-implemented over real mbed TLS 2.28,
        with ``CROSS_SIGNED_VERIFY``'s CA callback emulated by a CA list of synthetic name+key
        roots (Debian's build lacks ``MBEDTLS_X509_TRUSTED_CERTIFICATE_CALLBACK``); see
        :mod:`._mbedtls_worker`.

Errors are the ``MBEDTLS_X509_BADCERT_*`` flag names, then the return code with
``mbedtls_strerror`` and the ``mbedtls_x509_crt_verify_info`` text.
"""

from __future__ import annotations

import ctypes
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from iotaudit.crosscheck import _faketime
from iotaudit.crosscheck._types import Case, LibraryVerdict

STACK_IDS: tuple[str, ...] = ("mbedtls-2.28", "esp-idf-bundle", "esp-idf-bundle-cross-signed")

# Debian bookworm libmbedx509-1 / libmbedcrypto7 (pulled in by libmbedtls-dev).
_X509 = "libmbedx509.so.1"
_CRYPTO = "libmbedcrypto.so.7"
_WORKER = Path(__file__).with_name("_mbedtls_worker.py")
_PACKAGE_HINT = "apt-get install libmbedtls-dev"


def _load() -> ctypes.CDLL:
    return ctypes.CDLL(_CRYPTO)


def unavailable(stack_id: str = "") -> str | None:
    """Say why mbed TLS 2.28 cannot be asked here, or None when it can.

    ``stack_id`` is accepted for the adapter contract; one library answers for every stack of this adapter.

    Returns:
        None if the library and libfaketime load; else a sentence naming the Debian package.
    """
    try:
        ctypes.CDLL(_X509)
        version = library_version()
    except OSError as err:
        return f"mbed TLS 2.28 is not installed ({err}): {_PACKAGE_HINT}"
    if not version.startswith("mbed TLS 2.28."):
        return f"found {version}, not mbed TLS 2.28 ({_X509}): {_PACKAGE_HINT}"
    return _faketime.unavailable()


def library_version(stack_id: str = "") -> str:
    """The version mbed TLS reports at run time (``mbedtls_version_get_string_full``), e.g. "mbed TLS 2.28.3"."""
    crypto = _load()
    crypto.mbedtls_version_get_string_full.argtypes = [ctypes.c_char_p]
    crypto.mbedtls_version_get_string_full.restype = None
    buffer = ctypes.create_string_buffer(64)
    crypto.mbedtls_version_get_string_full(buffer)
    return buffer.value.decode("ascii")


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """Ask the real mbed TLS about each case; one faked-clock worker answers the whole batch.

    Args:
        stack_id: One of :data:`STACK_IDS`.
        cases: The questions; verdicts come back in the same order.

    Returns:
        One :class:`LibraryVerdict` per case.

    Raises:
        ValueError: ``stack_id`` is not one this adapter answers for.
        LibraryRunError: the library or libfaketime is missing, or the worker failed
            (a local failure, never a verdict).
    """
    if stack_id not in STACK_IDS:
        raise ValueError(f"mbed TLS adapter answers for {', '.join(STACK_IDS)}, not {stack_id!r}")
    if not cases:
        return []
    missing = unavailable()
    if missing:
        raise _faketime.LibraryRunError(_WORKER, missing)
    by_time: dict[datetime, list[int]] = defaultdict(list)
    for index, case in enumerate(cases):
        by_time[case.as_of.replace(microsecond=0)].append(index)
    groups = [(as_of, [{"served": cases[i].served, "store": cases[i].store, "host": cases[i].host}
                       for i in indexes]) for as_of, indexes in sorted(by_time.items())]
    answers = _faketime.run_worker(_WORKER, stack_id, groups, options={"x509": _X509, "crypto": _CRYPTO})
    verdicts: list[LibraryVerdict | None] = [None] * len(cases)
    for (_, indexes), results in zip(sorted(by_time.items()), answers, strict=True):
        for index, result in zip(indexes, results, strict=True):
            verdicts[index] = LibraryVerdict(valid=result["valid"], error=result["error"], library=result["library"])
    return [verdict for verdict in verdicts if verdict is not None]
