"""BearSSL (the system ``libbearssl``) asked as its TLS client asks it.

BearSSL's X.509 "minimal" engine (``src/x509/x509_minimal.t0``) is configured by inline setters on
a large context struct, so it is driven from a small C program, ``bearssl_helper.c`` (in this
package), compiled with gcc on first use into ``$XDG_CACHE_HOME/iotaudit`` (default
``~/.cache/iotaudit``) and run once per :func:`verify_many` call with the whole batch on stdin.

What the helper does, and why it is BearSSL's TLS client decision:

- the engine is set up by ``br_ssl_client_init_full`` itself (``src/ssl/ssl_client_full.c``): every
  hash from MD5 to SHA-512, the default RSA and ECDSA verifiers, minimum RSA size 128 bytes;
- trust anchors are built from the store's certificates as ``brssl ta`` builds them
  (``tools/certs.c``): subject DN, public key, ``BR_X509_TA_CA`` if the certificate is a CA. An
  anchor has no dates: BearSSL never checks an anchor's validity, nor its signature;
- the served certificates are pushed in served order (``start_chain(server_name)``, then
  ``start_cert``/``append``/``end_cert`` each, then ``end_chain``), as the SSL engine does with the
  Certificate message; the time is ``br_x509_minimal_set_time(days since 0000-01-01, seconds)``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path

from ._types import Case, LibraryVerdict

STACK_IDS: tuple[str, ...] = ("bearssl",)

_INSTALL = "install Debian packages libbearssl-dev and gcc"

# BR_ERR_X509_* from bearssl_x509.h (BearSSL 0.6).
_ERROR_NAMES = {
    32: "OK", 33: "INVALID_VALUE", 34: "TRUNCATED", 35: "EMPTY_CHAIN", 36: "INNER_TRUNC", 37: "BAD_TAG_CLASS",
    38: "BAD_TAG_VALUE", 39: "INDEFINITE_LENGTH", 40: "EXTRA_ELEMENT", 41: "UNEXPECTED", 42: "NOT_CONSTRUCTED",
    43: "NOT_PRIMITIVE", 44: "PARTIAL_BYTE", 45: "BAD_BOOLEAN", 46: "OVERFLOW", 47: "BAD_DN", 48: "BAD_TIME",
    49: "UNSUPPORTED", 50: "LIMIT_EXCEEDED", 51: "WRONG_KEY_TYPE", 52: "BAD_SIGNATURE", 53: "TIME_UNKNOWN",
    54: "EXPIRED", 55: "DN_MISMATCH", 56: "BAD_SERVER_NAME", 57: "CRITICAL_EXTENSION", 58: "NOT_CA",
    59: "FORBIDDEN_KEY_USAGE", 60: "WEAK_PUBLIC_KEY", 62: "NOT_TRUSTED",
}
_NO_HOST = 0xFFFFFFFF

_lock = threading.Lock()
_state: dict[str, str | Path] = {}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iotaudit"


def _build() -> Path | str:
    """The compiled helper (building it if needed), or why it cannot be built."""
    source = resources.files(__package__).joinpath("bearssl_helper.c").read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / f"bearssl_helper-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        return f"gcc is not on PATH to build the BearSSL helper; {_INSTALL}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as work:
            c_file = Path(work) / "bearssl_helper.c"
            c_file.write_bytes(source)
            out = Path(work) / "helper"
            done = subprocess.run([gcc, "-O2", "-o", str(out), str(c_file), "-lbearssl"],
                                  capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                first = (done.stderr.strip().splitlines() or ["no output"])[0]
                return f"the BearSSL helper does not compile ({first}); {_INSTALL}"
            os.replace(out, target)  # atomic: a concurrent build leaves one complete file
    except OSError as err:
        return f"cannot build the BearSSL helper in {target.parent} ({err}); {_INSTALL}"
    return target


def _helper() -> Path | None:
    with _lock:
        if "helper" not in _state and "error" not in _state:
            built = _build()
            if isinstance(built, Path):
                _state["helper"] = built
            else:
                _state["error"] = built
        helper = _state.get("helper")
        return helper if isinstance(helper, Path) else None


def unavailable(stack_id: str = "") -> str | None:
    """None if the BearSSL helper is built (or can be); else a sentence naming the packages to install.

    ``stack_id`` is accepted for the adapter contract; one library answers for every stack of this adapter.
    """
    return None if _helper() is not None else str(_state["error"])


def _run(helper: Path, request: bytes) -> bytes:
    done = subprocess.run([str(helper)], input=request, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{helper} failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def library_version(stack_id: str = "") -> str:
    """``"BearSSL <version>"``, the version being that of the shared library file the helper loaded.

    BearSSL has no run-time version call; the helper reports the path of the ``libbearssl`` it runs
    with (``dladdr``), whose real file name carries the version (``libbearssl.so.0.6``).
    """
    helper = _helper()
    if helper is None:
        raise RuntimeError(_state["error"])
    if "version" not in _state:
        reply = _run(helper, b"I")
        (length,) = struct.unpack(">I", reply[:4])
        path = Path(reply[4:4 + length].decode())
        real = path.resolve().name
        match = re.search(r"\.so\.(\d+(?:\.\d+)*)$", real)
        _state["version"] = f"BearSSL {match.group(1) if match else 'unknown'} ({real})"
    return str(_state["version"])


def _blob(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def bearssl_time(as_of: datetime) -> tuple[int, int]:
    """``(days, seconds)`` as ``br_x509_minimal_set_time`` takes them: days since 0000-01-01 (proleptic
    Gregorian; year 0 is a leap year, so 0001-01-01 is day 366) and seconds since midnight UTC."""
    day = as_of.date()
    seconds = as_of.hour * 3600 + as_of.minute * 60 + as_of.second
    return day.toordinal() + 365, seconds


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """Ask BearSSL's minimal X.509 engine, as its TLS client sets it up, about every case (one helper run).

    Args:
        stack_id: ``"bearssl"``.
        cases: The questions.

    Returns:
        One verdict per case, in order; a refusal's error reads
        ``"BR_ERR_X509_<NAME> (<code>) at certificate N"`` (N = served index, or "at end of chain").

    Raises:
        ValueError: ``stack_id`` is not ``"bearssl"``, or a host name is not ASCII.
        RuntimeError: The helper cannot be built here (see :func:`unavailable`) or failed.
    """
    if stack_id not in STACK_IDS:
        raise ValueError(f"tls_stack {stack_id!r} is not a BearSSL stack; known: {', '.join(STACK_IDS)}")
    helper = _helper()
    if helper is None:
        raise RuntimeError(_state["error"])
    version = library_version()
    store_ids: dict[tuple[bytes, ...], int] = {}
    request = bytearray()
    plan: list[tuple[str, int]] = []  # per reply: ("A", store id) or ("V", case index)
    case_store: list[int] = []
    for index, case in enumerate(cases):
        if case.store not in store_ids:
            store_id = store_ids[case.store] = len(store_ids)
            request += b"A" + struct.pack(">II", store_id, len(case.store))
            for der in case.store:
                request += _blob(der)
            plan.append(("A", store_id))
        case_store.append(store_ids[case.store])
        if case.host is not None and not case.host.isascii():
            raise ValueError(f"host {case.host!r} is not ASCII; give its IDNA A-label")
        request += b"V" + struct.pack(">I", store_ids[case.store])
        request += struct.pack(">I", _NO_HOST) if case.host is None else _blob(case.host.encode("ascii"))
        request += struct.pack(">III", *bearssl_time(case.as_of), len(case.served))
        for der in case.served:
            request += _blob(der)
        plan.append(("V", index))
    reply = _run(helper, bytes(request))
    if len(reply) != 8 * len(plan):
        raise RuntimeError(f"{helper} answered {len(reply)} bytes for {len(plan)} requests")
    bad_store: dict[int, str] = {}
    verdicts: list[LibraryVerdict] = []
    for number, (kind, key) in enumerate(plan):
        first, second = struct.unpack_from(">II", reply, 8 * number)
        if kind == "A":
            if first:
                name = _ERROR_NAMES.get(second, "UNKNOWN")
                bad_store[key] = (f"br_x509_decoder cannot make a trust anchor of trust store certificate {first}: "
                                  f"BR_ERR_X509_{name} ({second})")
            continue
        if case_store[key] in bad_store:
            verdicts.append(LibraryVerdict(False, bad_store[case_store[key]], version))
        elif first == 0:
            verdicts.append(LibraryVerdict(True, "", version))
        else:
            name = _ERROR_NAMES.get(first, "UNKNOWN")
            where = "at end of chain" if second >= len(cases[key].served) else f"at certificate {second}"
            verdicts.append(LibraryVerdict(False, f"BR_ERR_X509_{name} ({first}) {where}", version))
    return verdicts


def handshake(case: Case, port: int) -> LibraryVerdict:
    """The same question as :func:`verify_many` asks, answered by a real BearSSL TLS client handshake.

    The helper connects to ``127.0.0.1:port`` (a server that sends ``case.served``), runs
    ``br_ssl_client_init_full`` with the case's anchors and time, ``br_ssl_client_reset`` with the
    host, and writes one byte; the verdict is ``br_ssl_engine_last_error``. The tests use it to
    prove that :func:`verify_many` decides as the handshake does.

    Args:
        case: The question; ``case.served`` is ignored (the server sends the chain).
        port: A TLS server on 127.0.0.1.

    Returns:
        The handshake's verdict; a refusal reads ``"BR_ERR_X509_<NAME> (<code>) in the handshake"``
        (or ``BR_ERR <code>`` for a non-X.509 engine error).
    """
    helper = _helper()
    if helper is None:
        raise RuntimeError(_state["error"])
    if case.host is not None and not case.host.isascii():
        raise ValueError(f"host {case.host!r} is not ASCII; give its IDNA A-label")
    request = bytearray(b"A" + struct.pack(">II", 0, len(case.store)))
    for der in case.store:
        request += _blob(der)
    request += b"H" + struct.pack(">I", 0)
    request += struct.pack(">I", _NO_HOST) if case.host is None else _blob(case.host.encode("ascii"))
    request += struct.pack(">III", *bearssl_time(case.as_of), port)
    reply = _run(helper, bytes(request))
    bad, store_err, err, _ = struct.unpack(">IIII", reply)
    version = library_version()
    if bad:
        return LibraryVerdict(False, f"br_x509_decoder cannot make a trust anchor of trust store certificate {bad}: "
                                     f"BR_ERR_X509_{_ERROR_NAMES.get(store_err, 'UNKNOWN')} ({store_err})", version)
    if err == 0:
        return LibraryVerdict(True, "", version)
    name = f"BR_ERR_X509_{_ERROR_NAMES[err]}" if err in _ERROR_NAMES else "BR_ERR"
    return LibraryVerdict(False, f"{name} ({err}) in the handshake", version)
