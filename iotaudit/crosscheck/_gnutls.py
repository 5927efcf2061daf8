"""GnuTLS 3.7 (the system ``libgnutls.so.30``) asked as its TLS client asks it.

A GnuTLS client that verifies the server (``gnutls_session_set_verify_cert(session, host, 0)``,
``lib/auto-verify.c``) ends in ``_gnutls_x509_cert_verify_peers`` (``lib/cert-session.c``, 3.7.9):

- more certificates than the credentials' verify depth (``DEFAULT_MAX_VERIFY_DEPTH`` = 16) is a
  handshake error ``GNUTLS_E_CONSTRAINT_ERROR`` before any verification;
- otherwise ``gnutls_x509_trust_list_verify_crt2(cred->tlist, peer_list, n, data, elements,
  cred->verify_flags | session->internals.additional_verify_flags, &status, NULL)`` with the peer
  list in the order received, ``data`` = one ``GNUTLS_DT_DNS_HOSTNAME`` (none without a host);
- ``cred->verify_flags`` is 0 after ``gnutls_certificate_allocate_credentials`` (``lib/cert-cred.c``),
  and the default priority "NORMAL" adds the verification profile ``GNUTLS_PROFILE_LOW``
  (``lib/priority.c``, ``pgroups``): ``GNUTLS_PROFILE_TO_VFLAGS(GNUTLS_PROFILE_LOW)``;
- the trust list is filled as ``gnutls_certificate_set_x509_trust`` / ``_trust_mem`` fill it
  (``lib/cert-cred-x509.c``): every certificate, in the order given, flag ``GNUTLS_TL_USE_IN_TLS``,
  duplicates kept.

Any ``status`` other than 0 fails the handshake (``auto_verify_cb``). The host name check
(``lib/x509/hostname-verify.c``) consults the subject CN only when the certificate has no DNS
subjectAltName and no other supported SAN, is acceptable for TLS WWW server use (no EKU, or EKU with
serverAuth), and has exactly one CN.

The verification time is set in process with ``gnutls_global_set_time_function``: every
``gnutls_time(0)`` in ``lib/x509/verify.c`` calls it. It is global to the process, so calls are
serialised by a lock and the C library's ``time`` is put back afterwards.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from ctypes import POINTER, c_char_p, c_int, c_uint, c_void_p

from ._types import Case, LibraryVerdict

STACK_IDS: tuple[str, ...] = ("gnutls-3.7",)

# include/gnutls/gnutls.h and x509.h (3.7)
_GNUTLS_X509_FMT_DER = 0
_GNUTLS_CRT_X509 = 1
_GNUTLS_DT_DNS_HOSTNAME = 1
_GNUTLS_TL_USE_IN_TLS = 1 << 1
_GNUTLS_PROFILE_LOW = 2
_GNUTLS_E_CONSTRAINT_ERROR = -101
_DEFAULT_MAX_VERIFY_DEPTH = 16  # lib/gnutls_int.h, the credentials' verify_depth
# cred->verify_flags (0) | the "NORMAL" priority's profile.
VERIFY_FLAGS = _GNUTLS_PROFILE_LOW << 24  # GNUTLS_PROFILE_TO_VFLAGS

_STATUS_NAMES = {
    1 << 1: "INVALID", 1 << 5: "REVOKED", 1 << 6: "SIGNER_NOT_FOUND", 1 << 7: "SIGNER_NOT_CA",
    1 << 8: "INSECURE_ALGORITHM", 1 << 9: "NOT_ACTIVATED", 1 << 10: "EXPIRED", 1 << 11: "SIGNATURE_FAILURE",
    1 << 12: "REVOCATION_DATA_SUPERSEDED", 1 << 14: "UNEXPECTED_OWNER",
    1 << 15: "REVOCATION_DATA_ISSUED_IN_FUTURE", 1 << 16: "SIGNER_CONSTRAINTS_FAILURE", 1 << 17: "MISMATCH",
    1 << 18: "PURPOSE_MISMATCH", 1 << 19: "MISSING_OCSP_STATUS", 1 << 20: "INVALID_OCSP_STATUS",
    1 << 21: "UNKNOWN_CRIT_EXTENSIONS",
}

_INSTALL = "install the Debian package libgnutls30 (libgnutls28-dev, gnutls-bin) so that libgnutls.so.30 loads"


class _Datum(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("size", c_uint)]


class _TypedVdata(ctypes.Structure):
    _fields_ = [("type", c_int), ("data", c_char_p), ("size", c_uint)]


_TIME_FUNC = ctypes.CFUNCTYPE(ctypes.c_long, POINTER(ctypes.c_long))


class _Lib:
    """The libgnutls entry points this adapter calls, with their C signatures."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libgnutls.so.30")
        p = c_void_p

        def bind(name: str, restype: object, *argtypes: object) -> object:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.check_version = bind("gnutls_check_version", c_char_p, c_char_p)
        self.strerror = bind("gnutls_strerror", c_char_p, c_int)
        self.crt_init = bind("gnutls_x509_crt_init", c_int, POINTER(p))
        self.crt_import = bind("gnutls_x509_crt_import", c_int, p, POINTER(_Datum), c_int)
        self.crt_deinit = bind("gnutls_x509_crt_deinit", None, p)
        self.tl_init = bind("gnutls_x509_trust_list_init", c_int, POINTER(p), c_uint)
        self.tl_deinit = bind("gnutls_x509_trust_list_deinit", None, p, c_uint)
        self.tl_add_cas = bind("gnutls_x509_trust_list_add_cas", c_int, p, POINTER(p), c_uint, c_uint)
        self.tl_verify_crt2 = bind("gnutls_x509_trust_list_verify_crt2", c_int, p, POINTER(p), c_uint,
                                   POINTER(_TypedVdata), c_uint, c_uint, POINTER(c_uint), p)
        self.status_print = bind("gnutls_certificate_verification_status_print", c_int, c_uint, c_int,
                                 POINTER(_Datum), c_uint)
        self.set_time_function = bind("gnutls_global_set_time_function", None, p)
        self.free = ctypes.CFUNCTYPE(None, p).in_dll(lib, "gnutls_free")
        self.libc_time = ctypes.cast(ctypes.CDLL(None).time, p)


_lib: _Lib | None = None
_load_error: str | None = None
_lock = threading.Lock()


def _library() -> _Lib | None:
    global _lib, _load_error
    with _lock:
        if _lib is None and _load_error is None:
            try:
                lib = _Lib()
            except (OSError, AttributeError, ValueError) as err:
                _load_error = f"GnuTLS cannot be loaded ({err}); {_INSTALL}"
            else:
                version = lib.check_version(None).decode()
                if not version.startswith("3."):
                    _load_error = f"the loaded libgnutls is {version}, not GnuTLS 3; {_INSTALL}"
                else:
                    _lib = lib
        return _lib


def unavailable(stack_id: str = "") -> str | None:
    """None if GnuTLS 3 can be asked here; else a sentence naming the Debian package to install.

    ``stack_id`` is accepted for the adapter contract; one library answers for every stack of this adapter.
    """
    return None if _library() is not None else _load_error


def library_version(stack_id: str = "") -> str:
    """``"GnuTLS <version>"`` as ``gnutls_check_version(NULL)`` reports it."""
    lib = _library()
    if lib is None:
        raise RuntimeError(_load_error)
    return f"GnuTLS {lib.check_version(None).decode()}"


def _import(lib: _Lib, der: bytes) -> int | None:
    """A new ``gnutls_x509_crt_t`` holding ``der``, or None if GnuTLS cannot decode it."""
    crt = c_void_p()
    if lib.crt_init(ctypes.byref(crt)) < 0:
        raise MemoryError("gnutls_x509_crt_init failed")
    buffer = ctypes.create_string_buffer(der, len(der))
    datum = _Datum(ctypes.cast(buffer, c_void_p), len(der))
    if lib.crt_import(crt, ctypes.byref(datum), _GNUTLS_X509_FMT_DER) < 0:
        lib.crt_deinit(crt)
        return None
    return crt.value


class _Batch:
    """Decoded served certificates and trust lists of one :func:`verify_many` call, freed together."""

    def __init__(self, lib: _Lib) -> None:
        self.lib = lib
        self.served: dict[bytes, int | None] = {}
        self.lists: dict[tuple[bytes, ...], int | str] = {}

    def cert(self, der: bytes) -> int | None:
        if der not in self.served:
            self.served[der] = _import(self.lib, der)
        return self.served[der]

    def trust_list(self, ders: tuple[bytes, ...]) -> int | str:
        if ders not in self.lists:
            crts = []
            for number, der in enumerate(ders, start=1):
                crt = _import(self.lib, der)
                if crt is None:
                    for done in crts:
                        self.lib.crt_deinit(done)
                    self.lists[ders] = f"gnutls_x509_crt_import cannot decode trust store certificate {number}"
                    return self.lists[ders]
                crts.append(crt)
            tlist = c_void_p()
            if self.lib.tl_init(ctypes.byref(tlist), 0) < 0:
                raise MemoryError("gnutls_x509_trust_list_init failed")
            array = (c_void_p * max(len(crts), 1))(*crts)
            # The trust list owns the certificates from here on (deinit(tlist, 1) frees them).
            if crts and self.lib.tl_add_cas(tlist, array, len(crts), _GNUTLS_TL_USE_IN_TLS) < 0:
                raise MemoryError("gnutls_x509_trust_list_add_cas failed")
            self.lists[ders] = tlist.value
        return self.lists[ders]

    def free(self) -> None:
        for tlist in self.lists.values():
            if isinstance(tlist, int):
                self.lib.tl_deinit(tlist, 1)
        for crt in self.served.values():
            if crt is not None:
                self.lib.crt_deinit(crt)


def _status_text(lib: _Lib, status: int) -> str:
    out = _Datum()
    names = "|".join(f"GNUTLS_CERT_{name}" for bit, name in _STATUS_NAMES.items() if status & bit) or "GNUTLS_CERT_?"
    if lib.status_print(status, _GNUTLS_CRT_X509, ctypes.byref(out), 0) < 0:
        return f"{names} (0x{status:x})"
    try:
        text = ctypes.string_at(out.data, out.size).decode("utf-8", "replace").rstrip("\x00").strip()
    finally:
        lib.free(out.data)
    return f"{names} (0x{status:x}): {text}"


def _verify_one(lib: _Lib, batch: _Batch, case: Case, version: str, clock: list[int]) -> LibraryVerdict:
    if len(case.served) > _DEFAULT_MAX_VERIFY_DEPTH:
        message = lib.strerror(_GNUTLS_E_CONSTRAINT_ERROR).decode()
        return LibraryVerdict(False, f"GNUTLS_E_CONSTRAINT_ERROR ({_GNUTLS_E_CONSTRAINT_ERROR}): {message} "
                                     f"({len(case.served)} certificates > verify depth {_DEFAULT_MAX_VERIFY_DEPTH})", version)
    tlist = batch.trust_list(case.store)
    if isinstance(tlist, str):
        return LibraryVerdict(False, tlist, version)
    crts = []
    for number, der in enumerate(case.served):
        crt = batch.cert(der)
        if crt is None:
            return LibraryVerdict(False, f"gnutls_x509_crt_import cannot decode served certificate {number}", version)
        crts.append(crt)
    array = (c_void_p * len(crts))(*crts)
    if case.host is None:
        data, elements = None, 0
    else:
        host = case.host.encode("ascii")
        data, elements = ctypes.byref(_TypedVdata(_GNUTLS_DT_DNS_HOSTNAME, host, 0)), 1
    status = c_uint(0)
    clock[0] = int(case.as_of.timestamp())
    ret = lib.tl_verify_crt2(tlist, array, len(crts), data, elements, VERIFY_FLAGS, ctypes.byref(status), None)
    if ret < 0:
        return LibraryVerdict(False, f"gnutls_x509_trust_list_verify_crt2 ({ret}): {lib.strerror(ret).decode()}", version)
    if status.value == 0:
        return LibraryVerdict(True, "", version)
    return LibraryVerdict(False, _status_text(lib, status.value), version)


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """Ask GnuTLS, configured as a default GnuTLS 3.7 client, about every case (in process, one batch).

    Args:
        stack_id: ``"gnutls-3.7"``.
        cases: The questions.

    Returns:
        One verdict per case, in order; a refusal's error names the ``GNUTLS_CERT_*`` status bits and
        quotes ``gnutls_certificate_verification_status_print``.

    Raises:
        ValueError: ``stack_id`` is not a GnuTLS stack, or a host name is not ASCII.
        RuntimeError: GnuTLS cannot be loaded here (see :func:`unavailable`).
    """
    if stack_id not in STACK_IDS:
        raise ValueError(f"tls_stack {stack_id!r} is not a GnuTLS stack; known: {', '.join(STACK_IDS)}")
    lib = _library()
    if lib is None:
        raise RuntimeError(_load_error)
    version = library_version()
    for case in cases:
        if case.host is not None and not case.host.isascii():
            raise ValueError(f"host {case.host!r} is not ASCII; give its IDNA A-label")
    clock = [0]

    def now(out: ctypes._Pointer) -> int:  # type: ignore[type-arg]
        if out:
            out[0] = clock[0]
        return clock[0]

    callback = _TIME_FUNC(now)
    with _lock:
        batch = _Batch(lib)
        lib.set_time_function(ctypes.cast(callback, c_void_p))
        try:
            return [_verify_one(lib, batch, case, version, clock) for case in cases]
        finally:
            lib.set_time_function(lib.libc_time)
            batch.free()
