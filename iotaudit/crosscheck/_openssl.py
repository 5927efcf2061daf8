"""OpenSSL 3 (the system ``libcrypto.so.3`` / ``libssl.so.3``) asked as a TLS client would ask it.

The verification mirrors ``ssl_verify_cert_chain`` in OpenSSL's ``ssl/ssl_cert.c`` (3.0), which a
client runs on the server's Certificate message:

1. ``X509_STORE_CTX_init(ctx, store, leaf, chain)``: the untrusted list is the *whole* peer chain as
   received, leaf included, in the order served (``sk_X509_value(sk, 0)`` is the leaf);
2. ``X509_VERIFY_PARAM_set_auth_level(param, SSL_get_security_level(s))``;
3. ``X509_STORE_CTX_set_default(ctx, "ssl_server")`` (purpose and trust "SSL server");
4. ``X509_VERIFY_PARAM_set1(param, s->param)``: the SSL object's parameters, which carry the host
   name set by ``SSL_set1_host`` (host flags 0: RFC 6125 wildcards, and the subject CN is consulted
   only when the certificate has no DNS subjectAltName; ``crypto/x509/v3_utl.c`` ``do_x509_check``);
5. ``X509_verify_cert(ctx)``; the first error is fatal (no verify callback).

The host check uses a real ``SSL`` object from ``libssl`` (``SSL_set1_host`` then ``SSL_get0_param``),
one per case as one per connection, so whatever ``SSL_set1_host`` does with the name on this build is
what the adapter does (3.0.x turns an IP literal into an iPAddress check, and keeps it set across
later calls on the same ``SSL``).

Security level: the ``openssl-3`` stack is an OpenSSL 3 client at level 1, upstream's default
(``SSL_set_security_level(s, 1)``). Debian compiles libssl with default level 2; a Debian client
that keeps the default also refuses RSA keys under 2048 bits, which level 1 accepts. At level 1
``check_auth_level`` in ``crypto/x509/x509_vfy.c`` refuses any signature below 80 bits of security
on every certificate except the trust anchor (SHA-1 counts as 63 bits since 3.0, see
``crypto/x509/x509_set.c`` ``x509_sig_info_init``) and any issuer key below 80 bits (RSA < 1024).

Stacks (each is OpenSSL 3.0's verifier with flags; the 1.0.x ones are that verifier's emulation
of the old search order, not the old code):

- ``openssl-3``: library defaults: ``X509_V_FLAG_TRUSTED_FIRST`` (set by the "default" parameter
  table since 1.1.0), no partial chains: a stored certificate is an anchor only if self-signed.
- ``openssl-3-partial-chain``: plus ``X509_V_FLAG_PARTIAL_CHAIN``, as s2n-tls sets it in
  ``tls/s2n_x509_validator.c`` so that any certificate in the store is an anchor.
- ``openssl-1.0.1``: ``X509_V_FLAG_TRUSTED_FIRST`` cleared and ``X509_V_FLAG_NO_ALT_CHAINS`` set:
  walk the served chain first and never retry with the store.
- ``openssl-1.0.2``: ``X509_V_FLAG_TRUSTED_FIRST`` cleared, alternative chains on (1.0.2's default).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from ctypes import c_char_p, c_int, c_long, c_ulong, c_void_p

from ._types import Case, LibraryVerdict

STACK_IDS: tuple[str, ...] = ("openssl-3", "openssl-3-partial-chain", "openssl-1.0.1", "openssl-1.0.2")

# include/openssl/x509_vfy.h
_X509_V_FLAG_TRUSTED_FIRST = 0x8000
_X509_V_FLAG_PARTIAL_CHAIN = 0x80000
_X509_V_FLAG_NO_ALT_CHAINS = 0x100000

# (flags to set, flags to clear) on the verification context, per stack.
_STACK_FLAGS: dict[str, tuple[int, int]] = {
    "openssl-3": (0, 0),
    "openssl-3-partial-chain": (_X509_V_FLAG_PARTIAL_CHAIN, 0),
    "openssl-1.0.1": (_X509_V_FLAG_NO_ALT_CHAINS, _X509_V_FLAG_TRUSTED_FIRST),
    "openssl-1.0.2": (0, _X509_V_FLAG_TRUSTED_FIRST),
}

# The TLS client's security level for every stack here (upstream OpenSSL's default, see above).
SECURITY_LEVEL = 1

# X509_V_ERR_* names by code, from include/openssl/x509_vfy.h of OpenSSL 3.0 (the header is in
# libssl-dev, which a run-time machine need not have; the codes are part of the stable ABI).
_ERROR_NAMES = dict(enumerate((
    "OK", "UNSPECIFIED", "UNABLE_TO_GET_ISSUER_CERT", "UNABLE_TO_GET_CRL",
    "UNABLE_TO_DECRYPT_CERT_SIGNATURE", "UNABLE_TO_DECRYPT_CRL_SIGNATURE",
    "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY", "CERT_SIGNATURE_FAILURE", "CRL_SIGNATURE_FAILURE",
    "CERT_NOT_YET_VALID", "CERT_HAS_EXPIRED", "CRL_NOT_YET_VALID", "CRL_HAS_EXPIRED",
    "ERROR_IN_CERT_NOT_BEFORE_FIELD", "ERROR_IN_CERT_NOT_AFTER_FIELD", "ERROR_IN_CRL_LAST_UPDATE_FIELD",
    "ERROR_IN_CRL_NEXT_UPDATE_FIELD", "OUT_OF_MEM", "DEPTH_ZERO_SELF_SIGNED_CERT",
    "SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
    "CERT_CHAIN_TOO_LONG", "CERT_REVOKED", "NO_ISSUER_PUBLIC_KEY", "PATH_LENGTH_EXCEEDED",
    "INVALID_PURPOSE", "CERT_UNTRUSTED", "CERT_REJECTED", "SUBJECT_ISSUER_MISMATCH",
    "AKID_SKID_MISMATCH", "AKID_ISSUER_SERIAL_MISMATCH", "KEYUSAGE_NO_CERTSIGN",
    "UNABLE_TO_GET_CRL_ISSUER", "UNHANDLED_CRITICAL_EXTENSION", "KEYUSAGE_NO_CRL_SIGN",
    "UNHANDLED_CRITICAL_CRL_EXTENSION", "INVALID_NON_CA", "PROXY_PATH_LENGTH_EXCEEDED",
    "KEYUSAGE_NO_DIGITAL_SIGNATURE", "PROXY_CERTIFICATES_NOT_ALLOWED", "INVALID_EXTENSION",
    "INVALID_POLICY_EXTENSION", "NO_EXPLICIT_POLICY", "DIFFERENT_CRL_SCOPE",
    "UNSUPPORTED_EXTENSION_FEATURE", "UNNESTED_RESOURCE", "PERMITTED_VIOLATION", "EXCLUDED_VIOLATION",
    "SUBTREE_MINMAX", "APPLICATION_VERIFICATION", "UNSUPPORTED_CONSTRAINT_TYPE",
    "UNSUPPORTED_CONSTRAINT_SYNTAX", "UNSUPPORTED_NAME_SYNTAX", "CRL_PATH_VALIDATION_ERROR",
    "PATH_LOOP", "SUITE_B_INVALID_VERSION", "SUITE_B_INVALID_ALGORITHM", "SUITE_B_INVALID_CURVE",
    "SUITE_B_INVALID_SIGNATURE_ALGORITHM", "SUITE_B_LOS_NOT_ALLOWED",
    "SUITE_B_CANNOT_SIGN_P_384_WITH_P_256", "HOSTNAME_MISMATCH", "EMAIL_MISMATCH",
    "IP_ADDRESS_MISMATCH", "DANE_NO_MATCH", "EE_KEY_TOO_SMALL", "CA_KEY_TOO_SMALL", "CA_MD_TOO_WEAK",
    "INVALID_CALL", "STORE_LOOKUP", "NO_VALID_SCTS", "PROXY_SUBJECT_NAME_VIOLATION",
    "OCSP_VERIFY_NEEDED", "OCSP_VERIFY_FAILED", "OCSP_CERT_UNKNOWN", "UNSUPPORTED_SIGNATURE_ALGORITHM",
    "SIGNATURE_ALGORITHM_MISMATCH", "SIGNATURE_ALGORITHM_INCONSISTENCY", "INVALID_CA",
    "PATHLEN_INVALID_FOR_NON_CA", "PATHLEN_WITHOUT_KU_KEY_CERT_SIGN",
    "KU_KEY_CERT_SIGN_INVALID_FOR_NON_CA", "ISSUER_NAME_EMPTY", "SUBJECT_NAME_EMPTY",
    "MISSING_AUTHORITY_KEY_IDENTIFIER", "MISSING_SUBJECT_KEY_IDENTIFIER", "EMPTY_SUBJECT_ALT_NAME",
    "EMPTY_SUBJECT_SAN_NOT_CRITICAL", "CA_BCONS_NOT_CRITICAL", "AUTHORITY_KEY_IDENTIFIER_CRITICAL",
    "SUBJECT_KEY_IDENTIFIER_CRITICAL", "CA_CERT_MISSING_KEY_USAGE", "EXTENSIONS_REQUIRE_VERSION_3",
    "EC_KEY_EXPLICIT_PARAMS",
)))

_INSTALL = "install the Debian package libssl3 (libssl-dev for the headers) so that libcrypto.so.3 and libssl.so.3 load"


class _Lib:
    """The libcrypto and libssl entry points this adapter calls, with their C signatures."""

    def __init__(self) -> None:
        crypto = ctypes.CDLL("libcrypto.so.3")
        ssl = ctypes.CDLL("libssl.so.3")
        p = c_void_p

        def bind(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> object:
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = list(argtypes)
            return function

        self.OpenSSL_version = bind(crypto, "OpenSSL_version", c_char_p, c_int)
        self.OPENSSL_version_major = bind(crypto, "OPENSSL_version_major", ctypes.c_uint)
        self.d2i_X509 = bind(crypto, "d2i_X509", p, p, ctypes.POINTER(c_char_p), c_long)
        self.X509_free = bind(crypto, "X509_free", None, p)
        self.X509_STORE_new = bind(crypto, "X509_STORE_new", p)
        self.X509_STORE_free = bind(crypto, "X509_STORE_free", None, p)
        self.X509_STORE_add_cert = bind(crypto, "X509_STORE_add_cert", c_int, p, p)
        self.X509_STORE_CTX_new = bind(crypto, "X509_STORE_CTX_new", p)
        self.X509_STORE_CTX_free = bind(crypto, "X509_STORE_CTX_free", None, p)
        self.X509_STORE_CTX_init = bind(crypto, "X509_STORE_CTX_init", c_int, p, p, p, p)
        self.X509_STORE_CTX_set_default = bind(crypto, "X509_STORE_CTX_set_default", c_int, p, c_char_p)
        self.X509_STORE_CTX_get0_param = bind(crypto, "X509_STORE_CTX_get0_param", p, p)
        self.X509_STORE_CTX_get_error = bind(crypto, "X509_STORE_CTX_get_error", c_int, p)
        self.X509_STORE_CTX_get_error_depth = bind(crypto, "X509_STORE_CTX_get_error_depth", c_int, p)
        self.X509_VERIFY_PARAM_set1 = bind(crypto, "X509_VERIFY_PARAM_set1", c_int, p, p)
        self.X509_VERIFY_PARAM_set_auth_level = bind(crypto, "X509_VERIFY_PARAM_set_auth_level", None, p, c_int)
        self.X509_VERIFY_PARAM_set_flags = bind(crypto, "X509_VERIFY_PARAM_set_flags", c_int, p, c_ulong)
        self.X509_VERIFY_PARAM_clear_flags = bind(crypto, "X509_VERIFY_PARAM_clear_flags", c_int, p, c_ulong)
        self.X509_VERIFY_PARAM_set_time = bind(crypto, "X509_VERIFY_PARAM_set_time", None, p, ctypes.c_int64)
        self.X509_verify_cert = bind(crypto, "X509_verify_cert", c_int, p)
        self.X509_verify_cert_error_string = bind(crypto, "X509_verify_cert_error_string", c_char_p, c_long)
        self.OPENSSL_sk_new_null = bind(crypto, "OPENSSL_sk_new_null", p)
        self.OPENSSL_sk_push = bind(crypto, "OPENSSL_sk_push", c_int, p, p)
        self.OPENSSL_sk_free = bind(crypto, "OPENSSL_sk_free", None, p)
        self.ERR_clear_error = bind(crypto, "ERR_clear_error", None)
        self.TLS_client_method = bind(ssl, "TLS_client_method", p)
        self.SSL_CTX_new = bind(ssl, "SSL_CTX_new", p, p)
        self.SSL_CTX_free = bind(ssl, "SSL_CTX_free", None, p)
        self.SSL_new = bind(ssl, "SSL_new", p, p)
        self.SSL_free = bind(ssl, "SSL_free", None, p)
        self.SSL_set1_host = bind(ssl, "SSL_set1_host", c_int, p, c_char_p)
        self.SSL_get0_param = bind(ssl, "SSL_get0_param", p, p)
        self.SSL_set_security_level = bind(ssl, "SSL_set_security_level", None, p, c_int)
        self.SSL_get_security_level = bind(ssl, "SSL_get_security_level", c_int, p)


_lib: _Lib | None = None
_load_error: str | None = None
_lock = threading.Lock()


def _library() -> _Lib | None:
    global _lib, _load_error
    with _lock:
        if _lib is None and _load_error is None:
            try:
                lib = _Lib()
            except (OSError, AttributeError) as err:
                _load_error = f"OpenSSL 3 cannot be loaded ({err}); {_INSTALL}"
            else:
                if lib.OPENSSL_version_major() != 3:
                    _load_error = f"the loaded libcrypto is {lib.OpenSSL_version(0).decode()}, not OpenSSL 3; {_INSTALL}"
                else:
                    _lib = lib
        return _lib


def unavailable(stack_id: str = "") -> str | None:
    """None if OpenSSL 3 can be asked here; else a sentence naming the Debian package to install.

    ``stack_id`` is accepted for the adapter contract; one library answers for every stack of this adapter.
    """
    return None if _library() is not None else _load_error


def library_version(stack_id: str = "") -> str:
    """The library's own version text, e.g. ``"OpenSSL 3.0.15 3 Sep 2024"``."""
    lib = _library()
    if lib is None:
        raise RuntimeError(_load_error)
    return lib.OpenSSL_version(0).decode()


class _Batch:
    """Decoded certificates and built stores of one :func:`verify_many` call, freed together."""

    def __init__(self, lib: _Lib) -> None:
        self.lib = lib
        self.certs: dict[bytes, int | None] = {}
        self.stores: dict[tuple[bytes, ...], int | str] = {}

    def cert(self, der: bytes) -> int | None:
        if der not in self.certs:
            buffer = c_char_p(der)
            self.certs[der] = self.lib.d2i_X509(None, ctypes.byref(buffer), len(der))
        return self.certs[der]

    def store(self, ders: tuple[bytes, ...]) -> int | str:
        """An X509_STORE holding ``ders`` in firmware order, or the reason it cannot be built."""
        if ders not in self.stores:
            store = self.lib.X509_STORE_new()
            if not store:
                raise MemoryError("X509_STORE_new failed")
            self.stores[ders] = store
            for number, der in enumerate(ders, start=1):
                x509 = self.cert(der)
                if not x509:
                    self.stores[ders] = f"d2i_X509 cannot decode trust store certificate {number}"
                    self.lib.X509_STORE_free(store)
                    break
                # A duplicate is not an error in 3.0 (X509_STORE_add_cert ignores it).
                self.lib.X509_STORE_add_cert(store, x509)
        return self.stores[ders]

    def free(self) -> None:
        for store in self.stores.values():
            if isinstance(store, int):
                self.lib.X509_STORE_free(store)
        for x509 in self.certs.values():
            if x509:
                self.lib.X509_free(x509)


def _verify_one(lib: _Lib, batch: _Batch, ssl_ctx: int, flags: tuple[int, int], case: Case, version: str) -> LibraryVerdict:
    store = batch.store(case.store)
    if isinstance(store, str):
        return LibraryVerdict(False, store, version)
    served = []
    for number, der in enumerate(case.served):
        x509 = batch.cert(der)
        if not x509:
            # A TLS client fails to decode the Certificate message before any path building.
            return LibraryVerdict(False, f"d2i_X509 cannot decode served certificate {number}", version)
        served.append(x509)
    # A fresh SSL per case, as per connection: SSL_set1_host keeps an IP address set by an earlier
    # call (it parses an IP literal into the IP check), so one SSL must not serve two hosts.
    ssl = lib.SSL_new(ssl_ctx)
    if not ssl:
        raise MemoryError("SSL_new failed")
    chain = lib.OPENSSL_sk_new_null()
    ctx = lib.X509_STORE_CTX_new()
    try:
        if not chain or not ctx:
            raise MemoryError("OPENSSL_sk_new_null / X509_STORE_CTX_new failed")
        lib.SSL_set_security_level(ssl, SECURITY_LEVEL)
        host = None if case.host is None else case.host.encode("ascii")
        if host is not None and lib.SSL_set1_host(ssl, host) != 1:
            return LibraryVerdict(False, f"SSL_set1_host refused the host name {case.host!r}", version)
        for x509 in served:
            if not lib.OPENSSL_sk_push(chain, x509):
                raise MemoryError("OPENSSL_sk_push failed")
        if lib.X509_STORE_CTX_init(ctx, store, served[0], chain) != 1:
            raise MemoryError("X509_STORE_CTX_init failed")
        # The sequence of ssl/ssl_cert.c ssl_verify_cert_chain (OpenSSL 3.0).
        param = lib.X509_STORE_CTX_get0_param(ctx)
        lib.X509_VERIFY_PARAM_set_auth_level(param, lib.SSL_get_security_level(ssl))
        lib.X509_STORE_CTX_set_default(ctx, b"ssl_server")
        lib.X509_VERIFY_PARAM_set1(param, lib.SSL_get0_param(ssl))
        # What the application (s2n-tls, or the 1.0.x emulation) adds on top.
        set_flags, clear_flags = flags
        if set_flags:
            lib.X509_VERIFY_PARAM_set_flags(param, set_flags)
        if clear_flags:
            lib.X509_VERIFY_PARAM_clear_flags(param, clear_flags)
        lib.X509_VERIFY_PARAM_set_time(param, int(case.as_of.timestamp()))
        ok = lib.X509_verify_cert(ctx)
        if ok == 1:
            return LibraryVerdict(True, "", version)
        code = lib.X509_STORE_CTX_get_error(ctx)
        depth = lib.X509_STORE_CTX_get_error_depth(ctx)
        text = lib.X509_verify_cert_error_string(code).decode()
        name = _ERROR_NAMES.get(code, "UNKNOWN")
        return LibraryVerdict(False, f"X509_V_ERR_{name} ({code}): {text} at depth {depth}", version)
    finally:
        lib.X509_STORE_CTX_free(ctx)
        lib.OPENSSL_sk_free(chain)
        lib.SSL_free(ssl)
        lib.ERR_clear_error()


def verify_many(stack_id: str, cases: Sequence[Case]) -> list[LibraryVerdict]:
    """Ask OpenSSL 3, configured as ``stack_id``, about every case (in process, one batch).

    Args:
        stack_id: One of :data:`STACK_IDS`.
        cases: The questions.

    Returns:
        One verdict per case, in order. A refusal's error reads
        ``"X509_V_ERR_<NAME> (<code>): <X509_verify_cert_error_string> at depth N"``.

    Raises:
        ValueError: ``stack_id`` is not an OpenSSL stack, or a host name is not ASCII.
        RuntimeError: OpenSSL 3 cannot be loaded here (see :func:`unavailable`).
    """
    if stack_id not in _STACK_FLAGS:
        raise ValueError(f"tls_stack {stack_id!r} is not an OpenSSL stack; known: {', '.join(STACK_IDS)}")
    lib = _library()
    if lib is None:
        raise RuntimeError(_load_error)
    version = library_version()
    for case in cases:
        if case.host is not None and not case.host.isascii():
            raise ValueError(f"host {case.host!r} is not ASCII; give its IDNA A-label")
    flags = _STACK_FLAGS[stack_id]
    ssl_ctx = lib.SSL_CTX_new(lib.TLS_client_method())
    if not ssl_ctx:
        raise MemoryError("SSL_CTX_new failed")
    batch = _Batch(lib)
    try:
        return [_verify_one(lib, batch, ssl_ctx, flags, case, version) for case in cases]
    finally:
        batch.free()
        lib.SSL_CTX_free(ssl_ctx)
        lib.ERR_clear_error()
