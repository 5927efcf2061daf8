"""Worker side of :mod:`iotaudit.crosscheck._wolfssl`: a real wolfSSL TLS 1.2 client, under libfaketime.

Run by :mod:`iotaudit.crosscheck._faketime` (loaded by path; stdlib, ctypes and
``cryptography`` only, never the iotaudit package).

wolfSSL judges the server's chain inside its handshake (``ProcessPeerCerts`` in
``src/internal.c``, when the Certificate message arrives, before any signature of the
server), so each case is one real TLS 1.2 handshake on 127.0.0.1:

* client: ``wolfTLSv1_2_client_method``, ``wolfSSL_CTX_set_verify(WOLFSSL_VERIFY_PEER)``,
  ``wolfSSL_CTX_load_verify_buffer`` (DER) for each store certificate in firmware order,
  ``wolfSSL_UseSNI`` + ``wolfSSL_check_domain_name`` for the host, ``wolfSSL_connect``;
* server (Python, same thread, non-blocking): reads the ClientHello, answers a ServerHello
  with a suite the client offered that matches the leaf's key (ECDHE_RSA or ECDHE_ECDSA, AES-GCM
  first) and the Certificate message exactly as captured (served order, no reordering), then
  shuts down its sending side.

Verdict: the ServerHello goes first, alone; the client must read all of it and ask for more
(``WANT_READ``), else this harness failed (raised, never a verdict). Then the Certificate
message: the client accepted the chain when it read all of it (the kernel's queues are empty:
nothing unacknowledged on the server side, nothing unread on the client side) and still wants
more (it waits for the ServerKeyExchange) without an alert. Any error at that point is the
client's rejection of the Certificate message; it is reported as ``wolfSSL_get_error`` by name
and code, the alert it sent (``DoCertFatalAlert`` in ``src/internal.c``; the default build sends
none for ``ASN_PARSE_E``), and the store certificates that failed to load.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import socket
import struct
import termios
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

_WOLFSSL_SUCCESS = 1
_WOLFSSL_FILETYPE_ASN1 = 2
_WOLFSSL_VERIFY_PEER = 1
_WOLFSSL_SNI_HOST_NAME = 0
_WANT_READ = 2  # WOLFSSL_ERROR_WANT_READ as wolfSSL_get_error returns it
_SOCKET_PEER_CLOSED_E = -397

# Error codes a certificate check can end with (wolfssl/error-ssl.h, wolfssl/wolfcrypt/error-crypt.h).
ERROR_NAMES: dict[int, str] = {
    -130: "RSA_WRONG_TYPE_E", -131: "RSA_BUFFER_E", -140: "ASN_PARSE_E", -141: "ASN_VERSION_E",
    -142: "ASN_GETINT_E", -143: "ASN_RSA_KEY_E", -144: "ASN_OBJECT_ID_E", -145: "ASN_TAG_NULL_E",
    -147: "ASN_BITSTR_E", -148: "ASN_UNKNOWN_OID_E", -149: "ASN_DATE_SZ_E", -150: "ASN_BEFORE_DATE_E",
    -151: "ASN_AFTER_DATE_E", -152: "ASN_SIG_OID_E", -153: "ASN_TIME_E", -154: "ASN_INPUT_E",
    -155: "ASN_SIG_CONFIRM_E", -156: "ASN_SIG_HASH_E", -157: "ASN_SIG_KEY_E", -158: "ASN_DH_KEY_E",
    -160: "ASN_CRIT_EXT_E", -161: "ASN_ALT_NAME_E", -170: "ECC_BAD_ARG_E", -171: "ASN_ECC_KEY_E",
    -172: "ECC_CURVE_OID_E", -173: "BAD_FUNC_ARG", -188: "ASN_NO_SIGNER_E", -198: "ASN_NAME_INVALID_E",
    -221: "ASN_NO_SKID", -222: "ASN_NO_AKID", -223: "ASN_NO_KEYUSAGE", -229: "SIG_VERIFY_E",
    -237: "ASN_PATHLEN_SIZE_E", -238: "ASN_PATHLEN_INV_E", -275: "ASN_SELF_SIGNED_E",
    -306: "PARSE_ERROR", -308: "SOCKET_ERROR_E", -311: "UNKNOWN_RECORD_TYPE", -313: "FATAL_ERROR",
    -322: "DOMAIN_NAME_MISMATCH", -325: "IPADDR_MISMATCH", -326: "VERSION_ERROR", -328: "BUFFER_ERROR",
    -329: "VERIFY_CERT_ERROR", -341: "LENGTH_ERROR", -343: "ZERO_RETURN", -345: "NO_PEER_CERT",
    -368: "MAX_CHAIN_ERROR", -373: "OUT_OF_ORDER_E", -394: "SANITY_MSG_E", -397: "SOCKET_PEER_CLOSED_E",
    -409: "RSA_KEY_SIZE_E", -410: "ECC_KEY_SIZE_E", -501: "MATCH_SUITE_ERROR",
}

# RFC 5246 7.2 alert descriptions (DoCertFatalAlert in src/internal.c sends the certificate ones).
ALERT_NAMES: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
    42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
    46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied",
    50: "decode_error", 51: "decrypt_error", 70: "protocol_version", 80: "internal_error",
    110: "unsupported_extension", 112: "unrecognized_name",
}

# RFC 5289 / RFC 4492 suites, preferred first, by the leaf's key type.
_RSA_SUITES = (0xC02F, 0xC030, 0xC027, 0xC028, 0xC013, 0xC014, 0xCCA8)
_EC_SUITES = (0xC02B, 0xC02C, 0xC023, 0xC024, 0xC009, 0xC00A, 0xCCA9)
_RENEGOTIATION_INFO = 0xFF01  # RFC 5746
_SCSV = 0x00FF
_MAX_FRAGMENT = 16384  # RFC 5246 6.2.1
_STEP_TIMEOUT = 10.0  # seconds for any one wait on the loopback socket


class HarnessError(RuntimeError):
    """Raised when a handshake did not reach the certificate check (not a verdict)."""


class _Library:
    def __init__(self, path: str) -> None:
        lib = self.lib = ctypes.CDLL(path)
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, restype, argtypes in (
            ("wolfSSL_Init", ci, []),
            ("wolfSSL_lib_version", cp, []),
            ("wolfTLSv1_2_client_method", vp, []),
            ("wolfSSL_CTX_new", vp, [vp]),
            ("wolfSSL_CTX_free", None, [vp]),
            ("wolfSSL_CTX_set_verify", None, [vp, ci, vp]),
            ("wolfSSL_CTX_load_verify_buffer", ci, [vp, cp, ctypes.c_long, ci]),
            ("wolfSSL_CTX_set_cipher_list", ci, [vp, cp]),
            ("wolfSSL_new", vp, [vp]),
            ("wolfSSL_free", None, [vp]),
            ("wolfSSL_UseSNI", ci, [vp, ctypes.c_ubyte, cp, ctypes.c_ushort]),
            ("wolfSSL_check_domain_name", ci, [vp, cp]),
            ("wolfSSL_set_fd", ci, [vp, ci]),
            ("wolfSSL_connect", ci, [vp]),
            ("wolfSSL_get_error", ci, [vp, ci]),
            ("wolfSSL_ERR_reason_error_string", cp, [ctypes.c_ulong]),
        ):
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        if lib.wolfSSL_Init() != _WOLFSSL_SUCCESS:
            raise HarnessError(f"wolfSSL_Init failed in {path}")
        self.version = "wolfSSL " + lib.wolfSSL_lib_version().decode("ascii")

    def reason(self, code: int) -> str:
        text = self.lib.wolfSSL_ERR_reason_error_string(ctypes.c_ulong(code & 0xFFFFFFFFFFFFFFFF))
        return text.decode("ascii", "replace") if text else ""


# ------------------------------------------------------------------ the raw-record server

def _records(data: bytes) -> list[tuple[int, bytes]]:
    """Split a byte stream into complete TLS records (RFC 5246 6.2.1)."""
    out, offset = [], 0
    while offset + 5 <= len(data):
        kind, _version, length = struct.unpack("!BHH", data[offset:offset + 5])
        if offset + 5 + length > len(data):
            break
        out.append((kind, data[offset + 5:offset + 5 + length]))
        offset += 5 + length
    return out


def _offered(client_hello: bytes) -> tuple[list[int], set[int]]:
    """Cipher suites and extension types of a ClientHello handshake body (RFC 5246 7.4.1.2)."""
    offset = 2 + 32
    offset += 1 + client_hello[offset]
    (suites_length,) = struct.unpack("!H", client_hello[offset:offset + 2])
    suites = list(struct.unpack(f"!{suites_length // 2}H", client_hello[offset + 2:offset + 2 + suites_length]))
    offset += 2 + suites_length
    offset += 1 + client_hello[offset]
    extensions: set[int] = set()
    if offset + 2 <= len(client_hello):
        (total,) = struct.unpack("!H", client_hello[offset:offset + 2])
        end, offset = offset + 2 + total, offset + 2
        while offset + 4 <= end:
            kind, length = struct.unpack("!HH", client_hello[offset:offset + 4])
            extensions.add(kind)
            offset += 4 + length
    return suites, extensions


def _leaf_is_ec(leaf: bytes) -> bool:
    try:
        return isinstance(x509.load_der_x509_certificate(leaf).public_key(), ec.EllipticCurvePublicKey)
    except ValueError:
        return False  # an unparsable leaf: any suite will do, the client rejects it on parsing


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _as_records(stream: bytes) -> bytes:
    """Handshake bytes as TLS 1.2 handshake records of at most 2^14 bytes each (RFC 5246 6.2.1)."""
    return b"".join(struct.pack("!BHH", 22, 0x0303, len(stream[i:i + _MAX_FRAGMENT])) + stream[i:i + _MAX_FRAGMENT]
                    for i in range(0, len(stream), _MAX_FRAGMENT))


def _server_flight(client_hello: bytes, served: Sequence[bytes]) -> tuple[bytes, bytes]:
    """ServerHello, then Certificate (served order, as captured), each as its own TLS 1.2 records."""
    suites, extensions = _offered(client_hello)
    preferred = _EC_SUITES if _leaf_is_ec(served[0]) else _RSA_SUITES
    chosen = next((suite for suite in preferred if suite in suites), None)
    if chosen is None:
        raise HarnessError(f"the client offered no suite for this leaf's key type: {[hex(s) for s in suites]}")
    hello_extensions = b""
    if _SCSV in suites or _RENEGOTIATION_INFO in extensions:
        hello_extensions += struct.pack("!HHB", _RENEGOTIATION_INFO, 1, 0)
    server_hello = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!HB", chosen, 0)
                    + struct.pack("!H", len(hello_extensions)) + hello_extensions)
    certificate_list = b"".join(len(der).to_bytes(3, "big") + der for der in served)
    certificate = len(certificate_list).to_bytes(3, "big") + certificate_list
    return _as_records(_handshake(2, server_hello)), _as_records(_handshake(11, certificate))


def _read_available(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _client_hello(sock: socket.socket) -> bytes:
    """Read records until one complete ClientHello handshake message is in."""
    data = b""
    while True:
        ready, _, _ = select.select([sock], [], [], _STEP_TIMEOUT)
        if not ready:
            raise HarnessError("no ClientHello from the wolfSSL client")
        chunk = sock.recv(65536)
        if not chunk:
            raise HarnessError("the wolfSSL client closed before its ClientHello was complete")
        data += chunk
        handshake = b"".join(body for kind, body in _records(data) if kind == 22)
        if len(handshake) >= 4:
            length = int.from_bytes(handshake[1:4], "big")
            if handshake[0] != 1:
                raise HarnessError(f"first handshake message is type {handshake[0]}, not ClientHello")
            if len(handshake) >= 4 + length:
                return handshake[4:4 + length]


# ------------------------------------------------------------------ one case

def _connect(lib: _Library, ssl: int) -> int:
    """One wolfSSL_connect step: 0 on success, else wolfSSL_get_error (WANT_READ while it waits)."""
    ret = lib.lib.wolfSSL_connect(ssl)
    return 0 if ret == _WOLFSSL_SUCCESS else lib.lib.wolfSSL_get_error(ssl, ret)


def _queued(sock: socket.socket, request: int) -> int:
    count = ctypes.c_int(0)
    fcntl.ioctl(sock.fileno(), request, count)
    return count.value


def _drive(lib: _Library, ssl: int, client: socket.socket, server: socket.socket) -> int:
    """Run the client until it has read everything the server sent and wants more, or stops with an error.

    "Read everything" is the kernel's word: nothing left unacknowledged in the server's send
    queue (TIOCOUTQ) and nothing unread in the client's receive queue (FIONREAD).
    """
    deadline = time.monotonic() + _STEP_TIMEOUT
    while True:
        error = _connect(lib, ssl)
        if error != _WANT_READ:
            return error
        if _queued(server, termios.TIOCOUTQ) == 0 and _queued(client, termios.FIONREAD) == 0:
            return _WANT_READ
        select.select([client], [], [], 0.01)
        if time.monotonic() > deadline:
            raise HarnessError("the wolfSSL client did not finish reading the server's flight in time")


def _error_text(lib: _Library, code: int) -> str:
    name = ERROR_NAMES.get(code, "")
    reason = lib.reason(code)
    return f"{name or 'wolfSSL error'} ({code}){': ' + reason if reason else ''}"


def _client(lib: _Library, store: Sequence[bytes], host: str | None,
            cipher_list: str | None = None) -> tuple[int, int, list[str]]:
    """A wolfSSL client as firmware sets one up: (ctx, ssl, store certificates that failed to load)."""
    ctx = lib.lib.wolfSSL_CTX_new(lib.lib.wolfTLSv1_2_client_method())
    if not ctx:
        raise HarnessError("wolfSSL_CTX_new failed")
    lib.lib.wolfSSL_CTX_set_verify(ctx, _WOLFSSL_VERIFY_PEER, None)
    if cipher_list is not None and lib.lib.wolfSSL_CTX_set_cipher_list(ctx, cipher_list.encode("ascii")) != 1:
        lib.lib.wolfSSL_CTX_free(ctx)
        raise HarnessError(f"wolfSSL_CTX_set_cipher_list({cipher_list!r}) failed")
    load_failures = []
    for index, der in enumerate(store, start=1):
        ret = lib.lib.wolfSSL_CTX_load_verify_buffer(ctx, der, len(der), _WOLFSSL_FILETYPE_ASN1)
        if ret != _WOLFSSL_SUCCESS:
            load_failures.append(f"store certificate {index} not loaded: {_error_text(lib, ret)}")
    ssl = lib.lib.wolfSSL_new(ctx)
    if not ssl:
        lib.lib.wolfSSL_CTX_free(ctx)
        raise HarnessError("wolfSSL_new failed")
    if host is not None:
        name = host.encode("utf-8")
        if lib.lib.wolfSSL_UseSNI(ssl, _WOLFSSL_SNI_HOST_NAME, name, len(name)) != _WOLFSSL_SUCCESS:
            raise HarnessError("wolfSSL_UseSNI failed")
        if lib.lib.wolfSSL_check_domain_name(ssl, name) != _WOLFSSL_SUCCESS:
            raise HarnessError("wolfSSL_check_domain_name failed")
    return ctx, ssl, load_failures


def _full_handshake(lib: _Library, address: str, port: int, store: Sequence[bytes], host: str | None,
                    cipher_list: str | None) -> dict[str, Any]:
    """A complete blocking TLS 1.2 handshake with a real server (the lab): valid when it succeeds."""
    ctx, ssl, load_failures = _client(lib, store, host, cipher_list)
    sock = socket.create_connection((address, port), timeout=_STEP_TIMEOUT)
    try:
        # A Python time-out makes the descriptor non-blocking; wolfSSL needs it blocking, with
        # the kernel's own time-outs so a silent server cannot hang the worker.
        sock.setblocking(True)
        timeval = struct.pack("ll", int(_STEP_TIMEOUT), 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        lib.lib.wolfSSL_set_fd(ssl, sock.fileno())
        error = _connect(lib, ssl)
        if error == 0:
            return {"valid": True, "error": ""}
        text = _error_text(lib, error)
        if load_failures:
            text += "; " + "; ".join(load_failures)
        return {"valid": False, "error": text}
    finally:
        lib.lib.wolfSSL_free(ssl)
        lib.lib.wolfSSL_CTX_free(ctx)
        sock.close()


def _verify_one(lib: _Library, served: Sequence[bytes], store: Sequence[bytes], host: str | None) -> dict[str, Any]:
    ctx, ssl, load_failures = _client(lib, store, host)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server = None
    try:
        client.connect(_listener().getsockname())
        server, _ = _listener().accept()
        client.setblocking(False)
        server.setblocking(False)
        lib.lib.wolfSSL_set_fd(ssl, client.fileno())
        if _connect(lib, ssl) != _WANT_READ:
            raise HarnessError("wolfSSL_connect did not wait for the ServerHello")
        hello, certificate = _server_flight(_client_hello(server), served)
        server.setblocking(True)
        server.sendall(hello)
        error = _drive(lib, ssl, client, server)
        if error != _WANT_READ:
            raise HarnessError(f"the client refused this harness's ServerHello: {_error_text(lib, error)}")
        # The ServerHello is consumed and accepted: whatever happens next is about the Certificate.
        server.sendall(certificate)
        error = _drive(lib, ssl, client, server)
        server.setblocking(False)
        alerts = [(body[0], body[1]) for kind, body in _records(_read_available(server))
                  if kind == 21 and len(body) >= 2]
        if error == _WANT_READ and not alerts:
            # Everything is consumed and the client wants the next message (ServerKeyExchange).
            return {"valid": True, "error": ""}
        if error == _WANT_READ:
            raise HarnessError(f"the client sent {alerts} but still waits: not a verdict")
        fatal = [description for level, description in alerts if level == 2]
        text = _error_text(lib, error)
        text += f"; alert {ALERT_NAMES.get(fatal[0], 'unknown')}({fatal[0]})" if fatal else "; no alert sent"
        if load_failures:
            text += "; " + "; ".join(load_failures)
        return {"valid": False, "error": text}
    finally:
        if ssl:
            lib.lib.wolfSSL_free(ssl)
        lib.lib.wolfSSL_CTX_free(ctx)
        for sock in (server, client):
            if sock is not None:
                sock.close()


_LIBRARIES: dict[str, _Library] = {}
_LISTENERS: list[socket.socket] = []


def _listener() -> socket.socket:
    """The worker's one loopback listening socket (127.0.0.1, an ephemeral port), made on first use."""
    if not _LISTENERS:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        _LISTENERS.append(listener)
    return _LISTENERS[0]


def answer(stack_id: str, cases: Sequence[Mapping[str, Any]], options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Verdicts for ``cases`` (the worker entry point :mod:`._faketime` calls)."""
    path = options["library"]
    lib = _LIBRARIES.get(path)
    if lib is None:
        lib = _LIBRARIES[path] = _Library(path)
    results = []
    for case in cases:
        if "connect" in case:  # a full handshake with a real server
            address, port = case["connect"]
            result = _full_handshake(lib, address, port, case["store"], case["host"], options.get("cipher_list"))
        else:
            result = _verify_one(lib, case["served"], case["store"], case["host"])
        result["library"] = lib.version
        results.append(result)
    return results
