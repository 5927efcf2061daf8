"""Worker side of :mod:`iotaudit.crosscheck._mbedtls`: real mbed TLS 2.28 via ctypes, under libfaketime.

Run by :mod:`iotaudit.crosscheck._faketime` (loaded by path; stdlib, ctypes and
``cryptography`` only, never the iotaudit package).

What a TLS 1.2 client of mbed TLS 2.28 does with the server's Certificate message
(``library/ssl_tls.c`` at tag v2.28.3, ``ssl_parse_certificate_chain`` and
``ssl_parse_certificate_verify``), reproduced call for call:

1. Each served certificate is parsed, in served order, onto one ``mbedtls_x509_crt`` list
   with ``mbedtls_x509_crt_parse_der``; ``MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG +
   MBEDTLS_ERR_OID_NOT_FOUND`` skips that certificate, any other parse error is fatal.
2. ``mbedtls_x509_crt_verify_restartable(chain, ca_chain, NULL, &mbedtls_x509_crt_profile_default,
   hostname, &flags, f_vrfy, p_vrfy, NULL)``: ``ca_chain`` is the store parsed in firmware
   order (a store certificate that does not parse is left out, as ``mbedtls_x509_crt_parse``
   does for a PEM bundle); ``hostname`` is what ``mbedtls_ssl_set_hostname`` set (None: no check).
3. Secondary checks (``mbedtls_ssl_check_cert_usage`` for an ECDHE_RSA / ECDHE_ECDSA suite, the
   suites AWS IoT negotiates): keyUsage must allow digitalSignature and extendedKeyUsage must
   allow serverAuth (``mbedtls_x509_crt_check_key_usage`` / ``..._check_extended_key_usage``).
   The EC curve check passes for every curve the library parses (the default curve list is
   every compiled curve).

mbed TLS reads the time itself (``mbedtls_time`` = libc ``time()`` on Debian's build), which
is why this runs under libfaketime.

The ``esp-idf-bundle`` stack re-implements ESP-IDF's certificate-bundle verify callback
(``components/mbedtls/esp_crt_bundle/esp_crt_bundle.c``, ``esp_crt_verify_callback``, read at
esp-idf commit 0158ad3d) over this real mbed TLS: the CA list is one empty certificate (the
``s_dummy_crt``), the f_vrfy callback is called top-down by mbed TLS, and for the certificate
whose only flag (BAD_MD aside) is NOT_TRUSTED it looks the issuer's DER name up in the bundle
(subject DER + SubjectPublicKeyInfo of each store certificate, sorted by name, binary
search with ``memcmp`` over the shorter length) and checks the signature with the stored key;
success clears the flags, failure returns ``MBEDTLS_ERR_X509_CERT_VERIFY_FAILED`` (fatal).

The ``esp-idf-bundle-cross-signed`` stack (``CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY``)
adds ``esp_crt_ca_cb_callback``: mbed TLS asks it, for each child, for a trusted parent, and it
synthesises one from the bundle entry named by the child's issuer (name and key only, no dates).
Debian's mbed TLS 2.28 is built without ``MBEDTLS_X509_TRUSTED_CERTIFICATE_CALLBACK``, so here the
synthetic parents are built up front (one per bundle name, the entry the binary search finds) and
given as the CA list; mbed TLS's own trusted-first search then picks them exactly where the CA
callback would have offered them. The verify callback is the same as in the default mode.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

# ABI of libmbedx509.so.1 (mbed TLS 2.28): sizeof(mbedtls_x509_crt) is 616 and
# mbedtls_x509_buf raw = {int tag; size_t len; unsigned char *p} sits at offset 8
# (after `int own_buffer`). We only allocate list heads (mbed TLS callocs the rest), with room to spare.
_CRT_HEAD_BYTES = 2048
_RAW_LEN_OFFSET = 16
_RAW_P_OFFSET = 24

_ERR_X509_CERT_VERIFY_FAILED = -0x2700
_ERR_X509_UNKNOWN_SIG_ALG = -0x2600
_ERR_OID_NOT_FOUND = -0x002E
_ERR_SSL_BAD_HS_CERTIFICATE = -0x7A00
_KU_DIGITAL_SIGNATURE = 0x80
_OID_SERVER_AUTH = bytes([0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01])  # 1.3.6.1.5.5.7.3.1 (RFC 5280 4.2.1.12)

# include/mbedtls/x509.h, "X509 Verify codes"
BADCERT_FLAGS: tuple[tuple[int, str], ...] = (
    (0x01, "MBEDTLS_X509_BADCERT_EXPIRED"),
    (0x02, "MBEDTLS_X509_BADCERT_REVOKED"),
    (0x04, "MBEDTLS_X509_BADCERT_CN_MISMATCH"),
    (0x08, "MBEDTLS_X509_BADCERT_NOT_TRUSTED"),
    (0x10, "MBEDTLS_X509_BADCRL_NOT_TRUSTED"),
    (0x20, "MBEDTLS_X509_BADCRL_EXPIRED"),
    (0x40, "MBEDTLS_X509_BADCERT_MISSING"),
    (0x80, "MBEDTLS_X509_BADCERT_SKIP_VERIFY"),
    (0x0100, "MBEDTLS_X509_BADCERT_OTHER"),
    (0x0200, "MBEDTLS_X509_BADCERT_FUTURE"),
    (0x0400, "MBEDTLS_X509_BADCRL_FUTURE"),
    (0x0800, "MBEDTLS_X509_BADCERT_KEY_USAGE"),
    (0x1000, "MBEDTLS_X509_BADCERT_EXT_KEY_USAGE"),
    (0x2000, "MBEDTLS_X509_BADCERT_NS_CERT_TYPE"),
    (0x4000, "MBEDTLS_X509_BADCERT_BAD_MD"),
    (0x8000, "MBEDTLS_X509_BADCERT_BAD_PK"),
    (0x010000, "MBEDTLS_X509_BADCERT_BAD_KEY"),
    (0x020000, "MBEDTLS_X509_BADCRL_BAD_MD"),
    (0x040000, "MBEDTLS_X509_BADCRL_BAD_PK"),
    (0x080000, "MBEDTLS_X509_BADCRL_BAD_KEY"),
)
_BADCERT_NOT_TRUSTED = 0x08
_BADCERT_BAD_MD = 0x4000

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                    ctypes.POINTER(ctypes.c_uint32))


class _Library:
    """The loaded shared objects and their prototypes."""

    def __init__(self, x509_path: str, crypto_path: str) -> None:
        self.crypto = ctypes.CDLL(crypto_path)
        self.x509 = ctypes.CDLL(x509_path)
        x = self.x509
        x.mbedtls_x509_crt_init.argtypes = [ctypes.c_void_p]
        x.mbedtls_x509_crt_init.restype = None
        x.mbedtls_x509_crt_free.argtypes = [ctypes.c_void_p]
        x.mbedtls_x509_crt_free.restype = None
        x.mbedtls_x509_crt_parse_der.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        x.mbedtls_x509_crt_parse_der.restype = ctypes.c_int
        x.mbedtls_x509_crt_verify_restartable.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_uint32), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        x.mbedtls_x509_crt_verify_restartable.restype = ctypes.c_int
        x.mbedtls_x509_crt_verify_info.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_uint32]
        x.mbedtls_x509_crt_verify_info.restype = ctypes.c_int
        x.mbedtls_x509_crt_check_key_usage.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        x.mbedtls_x509_crt_check_key_usage.restype = ctypes.c_int
        x.mbedtls_x509_crt_check_extended_key_usage.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        x.mbedtls_x509_crt_check_extended_key_usage.restype = ctypes.c_int
        self.crypto.mbedtls_strerror.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        self.crypto.mbedtls_strerror.restype = None
        self.crypto.mbedtls_version_get_string_full.argtypes = [ctypes.c_char_p]
        self.crypto.mbedtls_version_get_string_full.restype = None
        self.profile_default = ctypes.addressof(ctypes.c_char.in_dll(x, "mbedtls_x509_crt_profile_default"))

    def version(self) -> str:
        buffer = ctypes.create_string_buffer(64)
        self.crypto.mbedtls_version_get_string_full(buffer)
        return buffer.value.decode("ascii")

    def strerror(self, code: int) -> str:
        buffer = ctypes.create_string_buffer(256)
        self.crypto.mbedtls_strerror(code, buffer, len(buffer))
        return buffer.value.decode("ascii", "replace")

    def verify_info(self, flags: int) -> str:
        buffer = ctypes.create_string_buffer(2048)
        self.x509.mbedtls_x509_crt_verify_info(buffer, len(buffer), b"", flags)
        return "; ".join(line.strip() for line in buffer.value.decode("ascii", "replace").splitlines() if line.strip())

    def new_list(self) -> ctypes.Array[ctypes.c_char]:
        head = ctypes.create_string_buffer(_CRT_HEAD_BYTES)
        self.x509.mbedtls_x509_crt_init(head)
        return head


def flag_names(flags: int) -> list[str]:
    """The MBEDTLS_X509_BADCERT_* / BADCRL_* names set in ``flags``, in header order."""
    names = [name for bit, name in BADCERT_FLAGS if flags & bit]
    unknown = flags & ~sum(bit for bit, _ in BADCERT_FLAGS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return names


def _raw_der(crt: int) -> bytes:
    length = ctypes.c_size_t.from_address(crt + _RAW_LEN_OFFSET).value
    pointer = ctypes.c_void_p.from_address(crt + _RAW_P_OFFSET).value
    return ctypes.string_at(pointer, length) if pointer else b""


# ------------------------------------------------------------------ ESP-IDF certificate bundle, re-implemented

def _name_der(certificate: x509.Certificate, issuer: bool) -> bytes:
    return (certificate.issuer if issuer else certificate.subject).public_bytes()


def _bundle(store: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """(subject DER, SPKI DER) per store certificate, sorted by name, as gen_crt_bundle.py writes the bundle."""
    entries = []
    for der in store:
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            continue  # gen_crt_bundle.py would refuse it; firmware ships no such entry
        spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
        entries.append((_name_der(certificate, issuer=False), spki))
    entries.sort(key=lambda entry: entry[0])
    return entries


def _bundle_find(bundle: Sequence[tuple[bytes, bytes]], issuer: bytes) -> tuple[bytes, bytes] | None:
    """esp_crt_find_cert: binary search, memcmp over the shorter of the two lengths."""
    start, end = 0, len(bundle) - 1
    while start <= end:
        middle = (start + end) // 2
        name = bundle[middle][0]
        size = min(len(issuer), len(name))
        a, b = issuer[:size], name[:size]
        if a == b:
            return bundle[middle]
        if a < b:
            end = middle - 1
        else:
            start = middle + 1
    return None


def _signed_by_key(child: x509.Certificate, spki: bytes) -> bool:
    """esp_crt_check_signature: the child's signature under the bundle key (any hash, SHA-1 included)."""
    key = serialization.load_der_public_key(spki)
    algorithm = child.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(child.signature, child.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


_SYNTHETIC_SIGNER: list[ec.EllipticCurvePrivateKey] = []
_SYNTHETIC_ROOTS: dict[bytes, bytes] = {}


def _synthetic_root(store_der: bytes) -> bytes:
    """A CA certificate carrying only a bundle entry's name and key, with no meaningful dates.

    Stands in for the parent ``esp_crt_ca_cb_callback`` synthesises (CROSS_SIGNED_VERIFY): version 3,
    CA, the bundle's subject and key. Its own signature is never checked (mbed TLS stops at a trusted
    parent), and it is valid from 1950 to 9999 so mbed TLS sets no EXPIRED/FUTURE on it, which is
    what ESP-IDF's callback achieves by clearing those flags on its synthetic root.
    """
    cached = _SYNTHETIC_ROOTS.get(store_der)
    if cached is not None:
        return cached
    if not _SYNTHETIC_SIGNER:
        _SYNTHETIC_SIGNER.append(ec.generate_private_key(ec.SECP256R1()))
    original = x509.load_der_x509_certificate(store_der)
    synthetic = (x509.CertificateBuilder().subject_name(original.subject).issuer_name(original.subject)
                 .public_key(original.public_key()).serial_number(1)
                 .not_valid_before(datetime(1950, 1, 1, tzinfo=timezone.utc))
                 .not_valid_after(datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .sign(_SYNTHETIC_SIGNER[0], hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    _SYNTHETIC_ROOTS[store_der] = synthetic
    return synthetic


def _cross_signed_trust(store: Sequence[bytes]) -> list[bytes]:
    """One synthetic root per bundle name: the entry esp_crt_find_cert's binary search returns."""
    usable = []
    for der in store:
        try:
            usable.append((x509.load_der_x509_certificate(der), der))
        except ValueError:
            continue
    bundle = _bundle([der for _, der in usable])
    chosen = []
    for name in sorted({entry[0] for entry in bundle}):
        entry = _bundle_find(bundle, name)
        for certificate, der in usable:
            spki = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
            if entry is not None and (_name_der(certificate, issuer=False), spki) == entry:
                chosen.append(_synthetic_root(der))
                break
    return chosen


class _EspBundleCallback:
    """esp_crt_verify_callback over one bundle; keeps the ctypes callback alive."""

    def __init__(self, bundle: Sequence[tuple[bytes, bytes]]) -> None:
        self.bundle = bundle
        self.function = _VERIFY_CALLBACK(self._call)
        self.failure = ""

    def _call(self, _context: int, crt: int, _depth: int, flags: Any) -> int:
        try:
            flags_filtered = flags[0] & ~_BADCERT_BAD_MD
            if flags_filtered != _BADCERT_NOT_TRUSTED:
                return 0
            child = x509.load_der_x509_certificate(_raw_der(crt))
            entry = _bundle_find(self.bundle, _name_der(child, issuer=True))
            if entry is not None and _signed_by_key(child, entry[1]):
                flags[0] = 0
                return 0
            self.failure = ("ESP bundle: no bundle entry for the issuer of the top served certificate"
                            if entry is None else "ESP bundle: bundle entry matched but signature verification failed")
            return _ERR_X509_CERT_VERIFY_FAILED
        except Exception as err:  # noqa: BLE001 - an exception must not cross the C frame
            self.failure = f"ESP bundle callback error: {err!r}"
            return _ERR_X509_CERT_VERIFY_FAILED


# ------------------------------------------------------------------ one case

def _verify_one(lib: _Library, stack_id: str, served: Sequence[bytes], store: Sequence[bytes],
                host: str | None) -> dict[str, Any]:
    chain = lib.new_list()
    trust = lib.new_list()
    try:
        for index, der in enumerate(served, start=1):
            ret = lib.x509.mbedtls_x509_crt_parse_der(chain, der, len(der))
            if ret in (0, _ERR_X509_UNKNOWN_SIG_ALG + _ERR_OID_NOT_FOUND):
                continue
            return {"valid": False,
                    "error": f"-0x{-ret:04x} parsing served certificate {index}: {lib.strerror(ret)}"}
        callback = None
        if stack_id == "esp-idf-bundle":
            # esp_crt_bundle_attach: mbedtls_ssl_conf_ca_chain(conf, &s_dummy_crt, NULL) + the verify callback.
            callback = _EspBundleCallback(_bundle(store))
        elif stack_id == "esp-idf-bundle-cross-signed":
            # esp_crt_bundle_attach with CROSS_SIGNED_VERIFY: mbedtls_ssl_conf_ca_cb + the verify callback.
            # Debian's 2.28 lacks MBEDTLS_X509_TRUSTED_CERTIFICATE_CALLBACK, so the synthetic parents
            # the CA callback would hand out per child are given up front as the CA list.
            callback = _EspBundleCallback(_bundle(store))
            for der in _cross_signed_trust(store):
                lib.x509.mbedtls_x509_crt_parse_der(trust, der, len(der))
        else:
            for der in store:
                lib.x509.mbedtls_x509_crt_parse_der(trust, der, len(der))  # a bad store entry is skipped
        flags = ctypes.c_uint32(0)
        ret = lib.x509.mbedtls_x509_crt_verify_restartable(
            chain, trust, None, lib.profile_default, host.encode("utf-8") if host is not None else None,
            ctypes.byref(flags), ctypes.cast(callback.function, ctypes.c_void_p) if callback else None, None, None)
        # mbedtls_ssl_check_cert_usage for the server side of ECDHE_RSA / ECDHE_ECDSA.
        usage = flags.value
        if lib.x509.mbedtls_x509_crt_check_key_usage(chain, _KU_DIGITAL_SIGNATURE) != 0:
            usage |= 0x0800
        if lib.x509.mbedtls_x509_crt_check_extended_key_usage(chain, _OID_SERVER_AUTH, len(_OID_SERVER_AUTH)) != 0:
            usage |= 0x1000
        if usage != flags.value and ret == 0:
            ret = _ERR_SSL_BAD_HS_CERTIFICATE
        if ret == 0:
            return {"valid": True, "error": ""}
        if flags.value == 0xFFFFFFFF:  # x509_crt_verify_restartable_ca_cb: a fatal error sets *flags = -1
            names, details = "fatal error (flags = -1)", ""
        else:
            names = "|".join(flag_names(usage)) or "no flags"
            details = lib.verify_info(usage)
        error = f"{names} (-0x{-ret:04x} {lib.strerror(ret)}"
        error += f"; {details})" if details else ")"
        if callback is not None and callback.failure:
            error += f" [{callback.failure}]"
        return {"valid": False, "error": error}
    finally:
        lib.x509.mbedtls_x509_crt_free(chain)
        lib.x509.mbedtls_x509_crt_free(trust)


_LIBRARIES: dict[tuple[str, str], _Library] = {}


def answer(stack_id: str, cases: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Verdicts for ``cases`` (the worker entry point :mod:`._faketime` calls)."""
    key = (options["x509"], options["crypto"])
    lib = _LIBRARIES.get(key)
    if lib is None:
        lib = _LIBRARIES[key] = _Library(*key)
    results = []
    for case in cases:
        result = _verify_one(lib, stack_id, case["served"], case["store"], case["host"])
        result["library"] = lib.version()
        results.append(result)
    return results
