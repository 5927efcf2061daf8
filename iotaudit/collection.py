"""Collect: real TLS handshakes that capture the certificate chain each endpoint serves.

Every target gets one handshake per :class:`~iotaudit.columns.Probe`: TLS 1.2
offering only ECDHE-RSA suites, TLS 1.2 offering only ECDHE-ECDSA suites, and
a default TLS 1.3 handshake.  A server holding an RSA and an ECDSA chain (as
AWS IoT ATS endpoints do) picks the chain by the client's offer, so probing
per key type is the only way to see both (sslyze issue 710 misses the ECDSA
one on ECDHE-only servers).

Capture uses pyOpenSSL because ``Connection.get_peer_cert_chain`` returns the
chain exactly as served, order kept, without verifying it; Python 3.11's
``ssl`` module can only return a verified chain.  Nothing is verified here:
path validation is the analysis step's job.

Each probe runs on a non-blocking socket under ONE deadline, so a silent,
slow-drip or garbage-speaking endpoint costs at most its timeout, and each
failure becomes a status (:class:`~iotaudit.columns.ProbeStatus`) rather than
an exception: one bad target never stops a run.
"""

from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import ipaddress
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL, crypto

from . import columns as c
from .catalog import Catalog, aws_catalog
from .certs import certificate_record, load_der_x509_certificate
from .columns import SUMMARY_CHAIN, SUMMARY_EARLIEST, SUMMARY_TOP, Probe, ProbeStatus
from .discover import (
    Target,
    describe_endpoints,
    parse_target,
    read_lab_ports,
    read_targets_file,
    targets_from_prefix,
)
from .errors import IotauditError, OptionError, PemError, TargetError
from .options import ExitStatus
from .store import Run, RunRecords, load_run, make_manifest, preload_writer, write_run_or_keep

if TYPE_CHECKING:
    import pandas as pd  # summarize() imports it; the collect command runs without it (issue 11)

DEFAULT_PROBES: tuple[Probe, ...] = (Probe.RSA_TLS12, Probe.ECDSA_TLS12, Probe.TLS13)

# OpenSSL cipher strings.  "ECDHE+aRSA" is every suite with ephemeral ECDH key
# exchange and RSA authentication, so the server must answer with its RSA
# chain; likewise aECDSA.  eNULL suites are excluded (they authenticate but
# never appear on AWS).  @SECLEVEL=0 because this is a scanner: it must see
# legacy endpoints (SHA-1 signatures, small keys) that a device may still meet;
# OpenSSL's default security level would abort those handshakes first.
# The tls10 probe (off by default, ``--probe tls10``) offers TLS 1.0 and 1.1 only, with every suite
# (RSA key exchange and CBC included: RFC 8996 deprecated both versions, but a VeriSign-era endpoint or a
# corporate TLS proxy in front of devices may speak nothing newer).  OpenSSL 3 refuses those versions
# below security level 0 (SSL_CTX_set_security_level(3): "SSL version 3 and TLS 1.0/1.1 are not
# permitted at level 1 and above"), so the probe sets @SECLEVEL=0 like the others.
_CIPHERS: dict[Probe, bytes] = {
    Probe.RSA_TLS12: b"ECDHE+aRSA:!eNULL:@SECLEVEL=0",
    Probe.ECDSA_TLS12: b"ECDHE+aECDSA:!eNULL:@SECLEVEL=0",
    Probe.TLS13: b"DEFAULT:@SECLEVEL=0",
    Probe.TLS10: b"ALL:!eNULL:@SECLEVEL=0",
}
# (lowest, highest) protocol version offered.
_VERSIONS: dict[Probe, tuple[int, int]] = {
    Probe.RSA_TLS12: (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION),
    Probe.ECDSA_TLS12: (SSL.TLS1_2_VERSION, SSL.TLS1_2_VERSION),
    Probe.TLS13: (SSL.TLS1_3_VERSION, SSL.TLS1_3_VERSION),
    Probe.TLS10: (SSL.TLS1_VERSION, SSL.TLS1_1_VERSION),
}

# After a TLS 1.3 handshake in which the server asked for a client certificate,
# the server's verdict on it arrives after our Finished (RFC 8446 section 4.4.2:
# the client's Certificate is sent with its Finished, so the handshake is
# complete on our side before the server has looked at it).  Wait this long at
# least, or three times the handshake time (it grows with load), for an alert,
# a NewSessionTicket (sent only once the server accepted our Finished) or data.
# Only a server that asks for an optional certificate and sends no tickets
# costs the whole wait; it is capped by the probe deadline.
_TLS13_VERDICT_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one handshake (or one imported chain) with one target.

    Attributes:
        target: What was probed.
        probe: Which handshake was made (:class:`~iotaudit.columns.Probe`).
        status: Outcome; only ``ok`` and ``client-cert-required`` carry a chain.
        started_at: When the probe started (tz-aware UTC).
        handshake_ms: Milliseconds from name resolution and TCP connect to the end of the handshake or the failure.
        error: Human-readable detail for anything but a plain ``ok``.
        tls_version: Negotiated protocol, e.g. ``TLSv1.2``; "" when none was negotiated.
        cipher: OpenSSL name of the negotiated suite; "" when none.
        alpn: Negotiated ALPN protocol; "" when none.
        chain: DER of every certificate the server sent, in served order.
        certificate_requested: The server sent a CertificateRequest (RFC 8446 section 4.3.2, RFC 5246 section 7.4.4).
    """

    target: Target
    probe: Probe
    status: ProbeStatus
    started_at: datetime
    handshake_ms: float = 0.0
    error: str = ""
    tls_version: str = ""
    cipher: str = ""
    alpn: str = ""
    chain: tuple[bytes, ...] = field(default=(), repr=False)
    certificate_requested: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "probe", Probe(self.probe))
        object.__setattr__(self, "status", ProbeStatus(self.status))
        object.__setattr__(self, "chain", tuple(self.chain))
        if self.started_at.tzinfo is None:
            raise ValueError("ProbeResult.started_at must be timezone-aware (UTC)")
        if self.status.value in c.CHAIN_STATUSES and not self.chain:
            raise ValueError(f"ProbeResult with status {self.status.value} must carry the served chain")
        if self.status.value not in c.CARRIES_CHAIN_STATUSES and self.chain:
            raise ValueError(f"ProbeResult with status {self.status.value} carries no chain "
                             "(only ok / client-cert-required / chain-incomplete do)")
        if self.handshake_ms < 0:
            raise ValueError("ProbeResult.handshake_ms must be >= 0")

    @property
    def chain_sha256(self) -> list[str]:
        """Lowercase hex SHA-256 of each served certificate's DER, in served order."""
        return [hashlib.sha256(der).hexdigest() for der in self.chain]


class _Failure(Exception):
    """Internal: ends a probe with a status."""

    def __init__(self, status: ProbeStatus, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


# --- one probe ----------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _context(probe: Probe, client_certificate: str | None, client_key: str | None) -> SSL.Context:
    """A client context for one probe kind (cached: contexts are read-only once built)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSIONS[probe][0])
    ctx.set_max_proto_version(_VERSIONS[probe][1])
    ctx.set_cipher_list(_CIPHERS[probe])
    # No verification while capturing: the chain is recorded as served and
    # validated later, per device profile, by iotaudit's analysis.
    ctx.set_verify(SSL.VERIFY_NONE)
    if client_certificate:
        try:
            ctx.use_certificate_chain_file(client_certificate)
        except SSL.Error as err:
            raise PemError(client_certificate, None, f"cannot use as client certificate chain ({_reasons(err)})") from err
        try:
            ctx.use_privatekey_file(client_key or client_certificate)
            ctx.check_privatekey()
        except SSL.Error as err:
            raise PemError(client_key or client_certificate, None,
                           f"cannot use as the client certificate's private key ({_reasons(err)})") from err
    return ctx


def _reasons(err: BaseException) -> str:
    """The OpenSSL reason strings of a pyOpenSSL error, joined."""
    args = getattr(err, "args", ())
    if args and isinstance(args[0], list):
        texts = [str(item[2]) if isinstance(item, tuple) and len(item) == 3 else str(item) for item in args[0]]
        return "; ".join(t for t in texts if t) or type(err).__name__
    return str(err) or type(err).__name__


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _host_bytes(name: str) -> bytes:
    """The name as bytes for getaddrinfo / SNI: ASCII as is, IDNA (RFC 5890) otherwise."""
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return name.encode("idna")


def _wait(sock: socket.socket, events: int, deadline: float, phase: str, timeout: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Failure(ProbeStatus.TIMEOUT, f"no complete handshake within {timeout:g} s ({phase})")
    poller = select.poll()
    poller.register(sock, events)
    if not poller.poll(remaining * 1000.0):
        raise _Failure(ProbeStatus.TIMEOUT, f"no complete handshake within {timeout:g} s ({phase})")


_REFUSED = {errno.ECONNREFUSED}
# Errors of *this* machine, not of the endpoint (socket(2), connect(2), getaddrinfo(3)): out of file
# descriptors (per process, system-wide), of memory, of socket buffers.  They are retried, and if they
# persist the probe is ``local-error``, which no analysis treats as a fact about the endpoint.
_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_LOCAL_GAI = frozenset(code for code in (getattr(socket, "EAI_SYSTEM", None), getattr(socket, "EAI_MEMORY", None))
                       if code is not None)
LOCAL_RETRIES = 4
_LOCAL_BACKOFF_S = (0.05, 0.2, 0.5, 1.0)


def _local(err: OSError, doing: str) -> _Failure:
    code = err.errno or 0
    return _Failure(ProbeStatus.LOCAL_ERROR, f"{doing}: {errno.errorcode.get(code, code)} ({_strerror(code)}) "
                                             "on this machine, not the endpoint")


def _connect(target: Target, deadline: float, timeout: float) -> socket.socket:
    # Name resolution uses the system resolver, which cannot be interrupted;
    # it is the one step not bounded by the probe deadline.
    try:
        infos = socket.getaddrinfo(_host_bytes(target.address), target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        if err.errno in _LOCAL_GAI:
            raise _Failure(ProbeStatus.LOCAL_ERROR, f"cannot resolve {target.address!r}: {err.strerror} "
                                                    "(a failure on this machine, not the endpoint)") from err
        raise _Failure(ProbeStatus.DNS_FAILURE, f"cannot resolve {target.address!r}: {err.strerror}") from err
    except OSError as err:
        if err.errno in _LOCAL_ERRNOS:
            raise _local(err, f"cannot resolve {target.address!r}") from err
        raise
    except UnicodeError as err:
        raise _Failure(ProbeStatus.DNS_FAILURE, f"cannot resolve {target.address!r}: not a valid host name ({err})") from err
    last_errno = 0
    for family, kind, proto, _, sockaddr in infos:
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as err:
            if err.errno in _LOCAL_ERRNOS:
                raise _local(err, "cannot open a socket") from err
            raise
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code in _LOCAL_ERRNOS:
            sock.close()
            raise _local(OSError(code, _strerror(code)), f"cannot connect to {sockaddr[0]} port {sockaddr[1]}")
        if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            try:
                _wait(sock, select.POLLOUT, deadline, f"TCP connect to {sockaddr[0]} port {sockaddr[1]}", timeout)
            except _Failure:
                sock.close()
                raise
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            return sock
        sock.close()
        last_errno = code
    where = f"{target.address} port {target.port}"
    if last_errno in _REFUSED:
        raise _Failure(ProbeStatus.REFUSED, f"connection to {where} refused")
    if last_errno in (errno.ETIMEDOUT,):
        raise _Failure(ProbeStatus.TIMEOUT, f"TCP connect to {where} timed out")
    raise _Failure(ProbeStatus.UNREACHABLE, f"cannot connect to {where}: {errno.errorcode.get(last_errno, last_errno)} "
                                            f"({_strerror(last_errno)})")


def _strerror(code: int) -> str:
    try:
        return os.strerror(code)
    except ValueError:
        return str(code)


_NOT_TLS = ("wrong version number", "packet length too long", "http request", "https proxy request",
            "unknown protocol", "record length mismatch", "record layer failure", "bad record type",
            "unexpected record", "invalid alert", "length too short", "bad packet length", "unexpected message")
_NO_SHARED = ("handshake failure", "no shared cipher", "no cipher", "insufficient security")
_VERSION = ("protocol version", "unsupported protocol", "no protocols available", "wrong ssl version",
            "version too low", "version too high", "tlsv1 alert protocol version")
_CLOSED = ("unexpected eof", "eof while reading")


def _classify(err: SSL.Error, *, chain: bool, requested: bool, presented: bool) -> tuple[ProbeStatus, str]:
    """Map a failed handshake to a status (see :class:`~iotaudit.columns.ProbeStatus`)."""
    if isinstance(err, SSL.ZeroReturnError):
        status, text = ProbeStatus.CLOSED, "peer closed the connection (close_notify) during the handshake"
    elif isinstance(err, SSL.SysCallError):
        code = err.args[0] if err.args else -1
        if code in _LOCAL_ERRNOS:
            status, text = ProbeStatus.LOCAL_ERROR, f"socket error during the handshake on this machine: {err}"
        elif code == -1 or code in (errno.ECONNRESET, errno.EPIPE, 0):
            status = ProbeStatus.CLOSED
            text = "peer closed the connection during the handshake" if code in (-1, 0) else "connection reset by peer"
        else:
            status, text = ProbeStatus.UNREACHABLE, f"socket error during the handshake: {err}"
    else:
        text = _reasons(err)
        low = text.lower()
        if "certificate required" in low:
            status = ProbeStatus.CLIENT_CERT_REQUIRED
        elif any(k in low for k in _VERSION):
            status = ProbeStatus.PROTOCOL_VERSION
        elif any(k in low for k in _NO_SHARED):
            status = ProbeStatus.NO_SHARED_CIPHER
        elif any(k in low for k in _CLOSED):
            status = ProbeStatus.CLOSED
        elif any(k in low for k in _NOT_TLS) and not chain:
            status, text = ProbeStatus.NOT_TLS, f"peer does not speak TLS ({text})"
        else:
            status = ProbeStatus.TLS_ERROR
    # The chain arrived, the server asked for a client certificate, then ended
    # the handshake: in TLS 1.2 with a handshake_failure alert after our empty
    # Certificate (RFC 5246 section 7.4.6), in TLS 1.3 with certificate_required
    # (RFC 8446 section 4.4.2.4).  That is an mTLS endpoint, chain captured.
    if chain and requested:
        if presented:
            return ProbeStatus.CLIENT_CERT_REQUIRED, f"server rejected the client certificate offered ({text})"
        return ProbeStatus.CLIENT_CERT_REQUIRED, f"server requires a client certificate; chain captured ({text})"
    if status is ProbeStatus.CLIENT_CERT_REQUIRED and not chain:
        status = ProbeStatus.TLS_ERROR
    return status, text


def _served_chain(conn: SSL.Connection) -> tuple[bytes, ...]:
    chain = conn.get_peer_cert_chain()
    if not chain:
        return ()
    return tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in chain)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def probe(
    target: Target,
    probe: Probe | str,
    *,
    timeout: float,
    client_certificate: str | Path | None = None,
    client_key: str | Path | None = None,
) -> ProbeResult:
    """Make one handshake with ``target`` and record what it served.

    Sends SNI ``target.host`` unless it is an IP literal (RFC 6066 section 3
    forbids literal addresses in server_name) and offers ``target.alpn`` when
    not empty.  Connects to ``target.address``.  The server chain is captured
    even when the server then refuses the handshake for lack of a client
    certificate (status ``client-cert-required``).

    Args:
        target: The endpoint.
        probe: Which handshake (``rsa-tls12``, ``ecdsa-tls12``, ``tls13``).
        timeout: Seconds for the whole probe (connect, handshake, client
            certificate verdict); DNS resolution is not interruptible and comes on top.
        client_certificate: PEM file with a client certificate (chain) to present, if any.
        client_key: PEM private key of ``client_certificate`` (default: the same file).

    Returns:
        A :class:`ProbeResult`; connection and TLS failures are statuses, not exceptions.

    Raises:
        ValueError: for the ``import`` probe or a non-positive timeout.
        PemError: when the client certificate or key cannot be loaded.
    """
    kind = Probe(probe)
    if kind not in _VERSIONS:
        raise ValueError(f"probe {kind.value!r} makes no handshake; use one of {', '.join(p.value for p in _VERSIONS)}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    cert = str(client_certificate) if client_certificate else None
    key = str(client_key) if client_key else None
    ctx = _context(kind, cert, key)
    started_at = datetime.now(timezone.utc)
    t0 = time.monotonic()
    deadline = t0 + timeout
    state = {"requested": False, "phase": "connecting"}
    fields: dict[str, Any] = {}
    sock: socket.socket | None = None
    conn: SSL.Connection | None = None

    def info(connection: SSL.Connection, where: int, ret: int) -> None:
        text = connection.get_state_string()
        state["phase"] = _text(text)
        if b"certificate request" in text:
            state["requested"] = True
        elif b"session ticket" in text:
            state["ticket"] = True

    def result(status: ProbeStatus, error: str = "", chain: tuple[bytes, ...] = ()) -> ProbeResult:
        return ProbeResult(
            target=target, probe=kind, status=status, started_at=started_at,
            handshake_ms=(time.monotonic() - t0) * 1000.0, error=error, chain=chain,
            certificate_requested=bool(state["requested"]), **fields,
        )

    try:
        sock = _connect(target, deadline, timeout)
        conn = SSL.Connection(ctx, sock)
        conn.set_connect_state()
        conn.set_info_callback(info)
        if not _is_ip_literal(target.host):
            conn.set_tlsext_host_name(_host_bytes(target.host))
        if target.alpn:
            conn.set_alpn_protos([p.encode("ascii") for p in target.alpn])
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                _wait(sock, select.POLLIN, deadline, f"waiting after: {state['phase']}", timeout)
            except SSL.WantWriteError:
                _wait(sock, select.POLLOUT, deadline, f"waiting to send after: {state['phase']}", timeout)
        fields = _negotiated(conn)
        chain = _served_chain(conn)
        if not chain:
            return result(ProbeStatus.TLS_ERROR, "handshake completed but the server sent no certificate")
        if state["requested"] and fields["tls_version"] == "TLSv1.3":
            verdict = _tls13_client_cert_verdict(conn, sock, deadline, t0, presented=cert is not None,
                                                     ticket=lambda: bool(state.get("ticket")))
            if verdict is not None:
                return result(ProbeStatus.CLIENT_CERT_REQUIRED, verdict, chain)
        note = "server requested a client certificate; the one offered was accepted" if state["requested"] and cert else ""
        if state["requested"] and not cert:
            note = "server requested a client certificate but did not require one"
        return result(ProbeStatus.OK, note, chain)
    except _Failure as failure:
        status, error = failure.status, failure.error
        chain = _served_chain(conn) if conn is not None else ()
        if chain and state["requested"] and cert is None:
            # Silence after our empty Certificate: still an mTLS endpoint whose chain we hold.
            return result(ProbeStatus.CLIENT_CERT_REQUIRED,
                          f"server requires a client certificate; chain captured, then {error}", chain)
        return result(status, error)
    except SSL.Error as err:
        chain = _served_chain(conn) if conn is not None else ()
        if conn is not None and not fields:
            fields = _negotiated(conn)
        status, error = _classify(err, chain=bool(chain), requested=bool(state["requested"]), presented=cert is not None)
        if status.value not in c.CHAIN_STATUSES:
            if chain:
                error += f" (after the server sent {len(chain)} certificate(s))"
            chain = ()
            fields = {}
        return result(status, error, chain)
    except OSError as err:
        if err.errno in _LOCAL_ERRNOS:
            return result(ProbeStatus.LOCAL_ERROR, _local(err, "socket error").error)
        return result(ProbeStatus.UNREACHABLE, f"socket error: {err}")
    finally:
        if conn is not None:
            try:
                conn.shutdown()  # best effort close_notify (RFC 8446 section 6.1); never waits
            except (SSL.Error, OSError):
                pass
        if sock is not None:
            sock.close()


def _negotiated(conn: SSL.Connection) -> dict[str, str]:
    version = _text(conn.get_protocol_version_name())
    return {
        "tls_version": "" if version in ("", "unknown") else version,
        "cipher": _text(conn.get_cipher_name()),
        "alpn": _text(conn.get_alpn_proto_negotiated()),
    }


def _tls13_client_cert_verdict(conn: SSL.Connection, sock: socket.socket, deadline: float, t0: float,
                               *, presented: bool, ticket: Callable[[], bool]) -> str | None:
    """Read briefly after a TLS 1.3 handshake in which a client certificate was requested.

    Returns:
        The error text when the server refused the handshake (alert or close), None when it accepted.
    """
    wait = max(_TLS13_VERDICT_WAIT_S, 3.0 * (time.monotonic() - t0))
    until = min(deadline, time.monotonic() + wait)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while True:
        try:
            conn.recv(1)
            return None  # application data: the server accepted us
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            return "server requires a client certificate; chain captured (server closed after the handshake)"
        except SSL.SysCallError:
            return "server requires a client certificate; chain captured (connection closed after the handshake)"
        except SSL.Error as err:
            if presented:
                return f"server rejected the client certificate offered ({_reasons(err)})"
            return f"server requires a client certificate; chain captured ({_reasons(err)})"
        remaining = until - time.monotonic()
        if ticket():
            return None  # a NewSessionTicket comes only after the server accepted our Finished
        if remaining <= 0 or not poller.poll(remaining * 1000.0):
            return None  # no alert: accepted (or the server waits for us to speak first)


def _probe_safely(target: Target, kind: Probe, timeout: float, cert: str | None, key: str | None) -> ProbeResult:
    """:func:`probe`, retried after a local error (see ``_LOCAL_ERRNOS``), any unexpected exception a ``tls-error`` row."""
    for attempt in range(LOCAL_RETRIES + 1):
        started = datetime.now(timezone.utc)
        try:
            result = probe(target, kind, timeout=timeout, client_certificate=cert, client_key=key)
        except IotauditError:
            raise
        except MemoryError:
            result = ProbeResult(target=target, probe=kind, status=ProbeStatus.LOCAL_ERROR, started_at=started,
                                 error="out of memory on this machine while probing")
        except Exception as err:  # one target's bug never stops a fleet run
            return ProbeResult(target=target, probe=kind, status=ProbeStatus.TLS_ERROR, started_at=started,
                               error=f"internal error while probing: {type(err).__name__}: {err}")
        if result.status is not ProbeStatus.LOCAL_ERROR or attempt == LOCAL_RETRIES:
            if result.status is ProbeStatus.LOCAL_ERROR:
                return ProbeResult(target=target, probe=kind, status=ProbeStatus.LOCAL_ERROR, started_at=result.started_at,
                                   handshake_ms=result.handshake_ms,
                                   error=f"{result.error} (still failing after {LOCAL_RETRIES} retries)")
            return result
        time.sleep(_LOCAL_BACKOFF_S[min(attempt, len(_LOCAL_BACKOFF_S) - 1)])
    raise AssertionError("unreachable")  # pragma: no cover


# Each probe holds one socket; name resolution may briefly open a few files (/etc/hosts, resolv.conf, a
# UDP socket): two descriptors per probe in flight, plus a reserve for the rest of the process.
_FDS_PER_PROBE = 2
_FD_RESERVE = 48


def fd_budget_concurrency(concurrency: int) -> int:
    """``concurrency`` capped so the probes in flight fit in this process's file-descriptor limit.

    With ``ulimit -n 256`` and ``--concurrency 400``, probes beyond the limit fail with EMFILE: a
    fact about this machine, which must not become 47% "unreachable" endpoints (issue 9 item 4).
    """
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return concurrency
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return concurrency
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 16
    room = (soft - in_use - _FD_RESERVE) // _FDS_PER_PROBE
    return max(1, min(concurrency, room))


# --- many probes -> a Run -------------------------------------------------------


def collect(
    targets: Iterable[Target],
    *,
    probes: Sequence[Probe | str] = DEFAULT_PROBES,
    timeout: float = 5.0,
    concurrency: int = 32,
    progress: bool | None = None,
    catalog: Catalog | None = None,
    client_certificate: str | Path | None = None,
    client_key: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    build: Callable[..., Any] | None = None,
) -> Run:
    """Probe every target with every probe, concurrently, and return the collection as a :class:`~iotaudit.store.Run`.

    Args:
        targets: Endpoints to probe (see :mod:`iotaudit.discover`).
        probes: Handshakes per target; default RSA TLS 1.2, ECDSA TLS 1.2, TLS 1.3.
        timeout: Seconds per probe (see :func:`probe`).
        concurrency: Probes in flight at once.
        progress: Show a progress bar on stderr; None (default) shows it only when stderr is a terminal.
        catalog: Catalogue to label certificates with (default: the real AWS one, :func:`iotaudit.catalog.aws_catalog`).
        client_certificate: PEM client certificate to present to endpoints that ask for one.
        client_key: Its private key (default: the same file).
        parameters: Extra entries for the manifest's ``parameters`` (e.g. how targets were discovered).
        build: Turns the results into what is returned (default :func:`run_from_results`; the command
            passes :func:`run_records`, which needs no pandas).

    Returns:
        A run whose ``created_at`` is the start of the collection (UTC); one observation per target x probe,
        in target then probe order, whatever the outcome.

    Raises:
        ValueError: for bad probes, a non-positive timeout or concurrency.
        PemError: when the client certificate or key cannot be loaded.
    """
    created_at = datetime.now(timezone.utc)
    target_list = list(targets)
    kinds = tuple(Probe(p) for p in probes)
    bad = [k.value for k in kinds if k not in _VERSIONS]
    if bad or not kinds:
        raise OptionError("probes", ",".join(bad) or "(none)", f"probes must be among {', '.join(p.value for p in _VERSIONS)}")
    if not timeout > 0:
        raise OptionError("timeout", timeout, "must be more than 0 seconds")
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise OptionError("concurrency", concurrency, "must be a whole number of at least 1")
    if client_key and not client_certificate:
        raise ValueError("client_key given without client_certificate")
    catalog = catalog if catalog is not None else aws_catalog()
    cert = str(client_certificate) if client_certificate else None
    key = str(client_key) if client_key else None
    if cert:
        for kind in kinds:
            _context(kind, cert, key)  # fail fast on an unusable client certificate
    jobs = [(t, k) for t in target_list for k in kinds]
    results: list[ProbeResult | None] = [None] * len(jobs)
    workers = fd_budget_concurrency(min(concurrency, max(1, len(jobs))))
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if jobs:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iotaudit-probe") as pool, \
                tqdm(total=len(jobs), disable=not show, unit="probe", desc="collect", file=sys.stderr) as bar:
            futures = {pool.submit(_probe_safely, t, k, timeout, cert, key): i for i, (t, k) in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    params: dict[str, Any] = {
        "targets": len(target_list),
        "probes": [k.value for k in kinds],
        "timeout": timeout,
        "concurrency": concurrency,
        "concurrency_used": workers,
        "client_certificate": bool(cert),
    }
    params.update(parameters or {})
    return (build or run_from_results)([r for r in results if r is not None], catalog=catalog, created_at=created_at,
                                       parameters=params)


def run_from_results(
    results: Sequence[ProbeResult],
    *,
    catalog: Catalog,
    created_at: datetime,
    parameters: Mapping[str, Any],
) -> Run:
    """Build the run tables (observations, chains, certificates, catalogue) from probe results.

    Args:
        results: One result per observation, in the order the observations get their ids.
        catalog: Labels the certificates (``catalog_name``, ``catalog_match``, ``catalog_status``).
        created_at: The run's time (tz-aware).
        parameters: The manifest's ``parameters``.
    """
    return run_records(results, catalog=catalog, created_at=created_at, parameters=parameters).to_run()


def run_records(
    results: Sequence[ProbeResult],
    *,
    catalog: Catalog,
    created_at: datetime,
    parameters: Mapping[str, Any],
) -> RunRecords:
    """:func:`run_from_results` as plain rows (:class:`~iotaudit.store.RunRecords`), without pandas."""
    observations, chains = [], []
    ders: dict[str, bytes] = {}
    for oid, res in enumerate(results):
        digests = res.chain_sha256
        t = res.target
        observations.append({
            c.OBSERVATION_ID: oid, c.HOST: t.host, c.PORT: t.port, c.ADDRESS: t.address, c.REGION: t.region,
            c.ENDPOINT_TYPE: t.endpoint_type.value, c.LABEL: t.label, c.ALPN_OFFERED: ";".join(t.alpn),
            c.PROBE: res.probe.value, c.STATUS: res.status.value, c.ERROR: res.error,
            c.TLS_VERSION: res.tls_version, c.CIPHER: res.cipher, c.ALPN: res.alpn, c.CHAIN_SHA256: digests,
            c.CHAIN_LENGTH: len(digests), c.HANDSHAKE_MS: res.handshake_ms, c.STARTED_AT: res.started_at,
        })
        for position, (digest, der) in enumerate(zip(digests, res.chain, strict=True)):
            chains.append({c.OBSERVATION_ID: oid, c.POSITION: position, c.SHA256: digest})
            ders.setdefault(digest, der)
    certificates = []
    for digest, der in ders.items():
        try:
            cert = load_der_x509_certificate(der)
        except ValueError:
            # A served blob that is not a certificate stays in chains (by hash) but
            # cannot get a certificates row; the analysis treats it as unknown.
            continue
        certificates.append(catalog.label_record(certificate_record(cert)))
    manifest = make_manifest(catalog_kind=catalog.kind, parameters=parameters, created_at=created_at)
    return RunRecords(tables={"observations": observations, "chains": chains, "certificates": certificates,
                              "catalog": catalog.records()}, manifest=manifest)


# --- summary ------------------------------------------------------------------

# The summary's columns, in order: :func:`summarize`'s frame and :func:`format_records_summary`'s lines.
_SUMMARY_COLUMNS = (c.HOST, c.PORT, c.LABEL, c.PROBE, c.STATUS, c.TLS_VERSION, c.CIPHER, SUMMARY_CHAIN, SUMMARY_TOP,
                    c.CHAIN_LENGTH, SUMMARY_EARLIEST, c.ERROR)
_SUMMARY_NUMBERS = (c.PORT, c.CHAIN_LENGTH)  # numeric columns of summarize()'s frame


def _summary_row(obs: Mapping[str, Any], certificates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One summary line of one observation, without pandas: :func:`summarize` and the collect command share it.

    Args:
        obs: An observations row (a ``RunRecords`` dict, or a frame row as a dict).
        certificates: ``sha256`` -> its certificates row (``subject_cn``, ``catalog_name``,
            ``catalog_match``, ``not_after``).
    """
    chain = list(obs[c.CHAIN_SHA256] if obs[c.CHAIN_SHA256] is not None else [])
    top = ""
    last = certificates.get(chain[-1]) if chain else None
    if last is not None:
        top = str(last[c.CATALOG_NAME] or "")
        if top and last[c.CATALOG_MATCH] == "key":
            top += " (key)"
    dates = [certificates[s][c.NOT_AFTER] for s in chain if s in certificates]
    return {
        c.HOST: obs[c.HOST], c.PORT: obs[c.PORT], c.LABEL: obs[c.LABEL], c.PROBE: obs[c.PROBE],
        c.STATUS: obs[c.STATUS], c.TLS_VERSION: obs[c.TLS_VERSION], c.CIPHER: obs[c.CIPHER],
        SUMMARY_CHAIN: " <- ".join(str(certificates[s][c.SUBJECT_CN]) if s in certificates else s[:12] for s in chain),
        SUMMARY_TOP: top, c.CHAIN_LENGTH: len(chain),
        SUMMARY_EARLIEST: min(dates) if dates else None, c.ERROR: obs[c.ERROR],
    }


def summarize(run: Run) -> pd.DataFrame:
    """One line per host / port / probe: what was served, for people.

    Columns: ``host``, ``port``, ``label``, ``probe``, ``status``, ``tls_version``,
    ``cipher``, ``chain`` (subject CNs in served order joined by `` <- ``),
    ``top_catalog_name`` (catalogue name of the last certificate served, with
    ``(key)`` when only its key matches, e.g. a cross-signed copy),
    ``chain_length``, ``earliest_not_after`` and ``error``.
    """
    import pandas as pd

    certs = run.certificates[[c.SHA256, c.SUBJECT_CN, c.CATALOG_NAME, c.CATALOG_MATCH, c.NOT_AFTER]]
    by_sha = {row[c.SHA256]: row for row in _plain(certs).to_dict("records")}
    rows = [_summary_row(obs, by_sha) for obs in run.observations.to_dict("records")]
    frame = pd.DataFrame.from_records(rows, columns=list(_SUMMARY_COLUMNS))
    frame[SUMMARY_EARLIEST] = pd.to_datetime(frame[SUMMARY_EARLIEST], utc=True).astype(c.TIME)
    return frame


# Fitting a terminal: text columns shortened (widest first, down to _ROOMY_WIDTH, with "..."), then
# columns left out in _DROPPABLE order, then shortened again down to _MIN_WIDTH; host, port, probe,
# status and chain are never left out.  ``--wide`` (show, collect) prints everything.
_FLEXIBLE = (SUMMARY_CHAIN, c.ERROR, c.HOST, SUMMARY_TOP, c.CIPHER, c.LABEL)
_DROPPABLE = (c.LABEL, c.CIPHER, SUMMARY_TOP, c.CHAIN_LENGTH, c.TLS_VERSION, SUMMARY_EARLIEST, c.ERROR)
_MIN_WIDTH = 16
_ROOMY_WIDTH = 36
# Written as pandas' DataFrame.to_string writes them (pandas/io/formats/printing.py, pprint_thing's
# escape_chars), so a stray newline in an error message cannot break a table line.
_ESCAPES = str.maketrans({"\t": "\\t", "\r": "\\r", "\n": "\\n"})


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every missing value (NaN, NaT, NA) as None, so rows read as plain Python values."""
    return frame.astype(object).where(frame.notna(), None)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def _cell(value: Any) -> str:
    """A summary value as table text: None -> "", a time -> its date, anything else ``str``."""
    if value is None:
        return ""
    if isinstance(value, datetime):  # pandas.Timestamp is a datetime
        return value.strftime("%Y-%m-%d")
    return str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None, *,
                 numeric: Collection[str] = (), flexible: Sequence[str] = _FLEXIBLE,
                 droppable: Sequence[str] = _DROPPABLE) -> str:
    """Right-aligned text columns, one space apart, fitted to ``width``; pure Python (the collect process has no pandas).

    The lines are those of pandas' ``DataFrame.to_string(index=False)`` over the same strings, so
    ``iotaudit show`` (a frame) and ``iotaudit collect`` (rows) print the same table.

    Args:
        header: Column names.
        rows: One sequence of cell strings per line, as long as ``header``.
        width: Fit every line in this many characters: the widest ``flexible`` columns are shortened
            with ``...`` down to 36 characters, then ``droppable`` columns are left out in order, then
            ``flexible`` ones shortened down to 16.  When even that is too wide the lines are left to wrap
            (the other columns are never dropped).  None prints every value in full.
        numeric: Columns of numbers: their name gets one space more room, as pandas leaves for a sign
            (pandas/io/formats/format.py, ``DataFrameFormatter`` gives numeric column labels a leading space).
        flexible: Columns that may be shortened, in the order ties are broken.
        droppable: Columns that may be left out, least telling first.

    Raises:
        ValueError: when a row's length differs from the header's.
    """
    cells = [[text.translate(_ESCAPES) for text in row] for row in rows]
    bad = next((i for i, row in enumerate(cells) if len(row) != len(header)), None)
    if bad is not None:
        raise ValueError(f"table row {bad} has {len(cells[bad])} cells for {len(header)} columns")
    names = list(header)
    titles = {name: f" {name}" if name in numeric else name for name in names}
    full = {name: max([len(titles[name]), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)}
    limits = {name: full[name] for name in flexible if name in full}
    leave_out = [name for name in droppable if name in full]
    dropped: list[str] = []

    def shown_width(name: str) -> int:
        if name not in limits or limits[name] >= full[name]:
            return full[name]
        i = names.index(name)
        return max([len(titles[name]), *(len(_clip(row[i], limits[name])) for row in cells)])

    widths = dict(full)
    floor = _ROOMY_WIDTH  # shorten to this first, then leave columns out, then shorten to _MIN_WIDTH
    # Every line is padded to the same length, so the longest is the sum of the kept columns' widths.
    while width is not None and (longest := sum(widths[n] for n in names if n not in dropped)
                                 + len(names) - len(dropped) - 1) > width:
        col = max((k for k in limits if k not in dropped and limits[k] > floor), key=lambda k: limits[k], default=None)
        if col is not None:
            limits[col] = max(floor, limits[col] - (longest - width))
            widths[col] = shown_width(col)
        elif len(dropped) < len(leave_out):
            dropped.append(leave_out[len(dropped)])
        elif floor > _MIN_WIDTH:
            floor = _MIN_WIDTH
        else:
            break  # as narrow as it gets: lines wrap rather than lose host, probe, status or chain
    kept = [(i, name) for i, name in enumerate(names) if name not in dropped]
    lines = [" ".join(titles[name].rjust(widths[name]) for _, name in kept)]
    for row in cells:
        lines.append(" ".join((_clip(row[i], limits[name]) if name in limits else row[i]).rjust(widths[name])
                              for i, name in kept))
    return "\n".join(lines)


def format_summary(summary: pd.DataFrame, width: int | None = None) -> str:
    """Plain-text rendering of :func:`summarize` for the terminal.

    Args:
        summary: :func:`summarize` output.
        width: Fit every line in this many characters: long text columns (chain, error, host ...)
            are shortened with ``...``, then the least telling columns left out (label, cipher, ...);
            None prints every column and value in full (``iotaudit show --wide``).  See :func:`format_table`.
    """
    if summary.empty:
        return "(no observations)"
    from pandas.api.types import is_numeric_dtype

    rows = [[_cell(v) for v in row] for row in _plain(summary).itertuples(index=False, name=None)]
    numbers = [str(name) for name, dtype in summary.dtypes.items() if is_numeric_dtype(dtype)]
    return format_table([str(name) for name in summary.columns], rows, width, numeric=numbers)


def format_records_summary(recorded: RunRecords, width: int | None = None) -> str:
    """:func:`format_summary` of a collection still in rows: the same lines, without pandas (issue 11).

    Args:
        recorded: What :func:`collect` returns with ``build=run_records``.
        width: As :func:`format_summary`.
    """
    certificates = {row[c.SHA256]: row for row in recorded.tables["certificates"]}
    rows = [[_cell(row[name]) for name in _SUMMARY_COLUMNS]
            for row in (_summary_row(obs, certificates) for obs in recorded.tables["observations"])]
    if not rows:
        return "(no observations)"
    return format_table(list(_SUMMARY_COLUMNS), rows, width, numeric=_SUMMARY_NUMBERS)


def terminal_width() -> int:
    """Columns of the terminal (``$COLUMNS`` when set, 100 when not a terminal)."""
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


# --- command line -----------------------------------------------------------

def _csv(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def collect_command(args: argparse.Namespace) -> int:
    """``iotaudit collect`` (arguments defined in :mod:`iotaudit.cli`); returns the exit status."""
    targets: list[Target] = []
    catalog: Catalog | None = None
    sources: dict[str, Any] = {}
    for spec in args.target:
        targets.append(parse_target(spec))
    if args.target:
        sources["target"] = list(args.target)
    for path in args.targets:
        targets.extend(read_targets_file(path))
    if args.targets:
        sources["targets_files"] = [str(Path(x).resolve()) for x in args.targets]
    types = _csv(args.endpoint_types)
    ports = _csv(args.ports) or None
    if args.prefix:
        if not args.regions:
            raise TargetError(args.prefix, "--prefix needs --regions")
        targets.extend(targets_from_prefix(args.prefix, _csv(args.regions), types, ports))
        sources.update(prefix=args.prefix, regions=_csv(args.regions), endpoint_types=types, ports=ports)
    if args.describe_endpoint:
        if not args.regions:
            raise TargetError("describe-endpoint", "--describe-endpoint needs --regions")
        targets.extend(describe_endpoints(_csv(args.regions), types, ports))
        sources.update(describe_endpoint=True, regions=_csv(args.regions), endpoint_types=types, ports=ports)
    if args.lab:
        lab = read_lab_ports(args.lab)
        targets.extend(lab.targets)
        sources["lab"] = str(Path(args.lab).resolve())
        if lab.catalog_dir is not None:
            catalog = Catalog.from_directory(lab.catalog_dir, kind="lab")
    if not targets:
        raise TargetError("collect", "no targets: give --target, --targets, --lab, --prefix or --describe-endpoint")
    targets = list(dict.fromkeys(targets))
    probes = list(dict.fromkeys([*_csv(args.probes), *args.probe]))
    unknown = [p for p in probes if p not in {k.value for k in _VERSIONS}]
    if unknown:
        raise OptionError("--probes", ",".join(unknown), f"unknown probe (use {', '.join(k.value for k in _VERSIONS)})")
    if not args.overwrite and Path(args.out).exists():
        raise OptionError("--out", args.out, "already exists (choose a new directory, or --overwrite)")
    preload_writer()  # pyarrow's import overlaps the handshakes
    recorded = collect(
        targets, probes=probes, timeout=args.timeout, concurrency=args.concurrency,
        progress=False if args.quiet else None, catalog=catalog,
        client_certificate=args.client_cert, client_key=args.client_key, parameters=sources, build=run_records,
    )
    # pyarrow only (RunRecords): this command never imports pandas (issue 11); a path that cannot be
    # written keeps the collection in a fallback directory (write_run_or_keep).
    written = write_run_or_keep(recorded, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(format_records_summary(recorded, width=None if args.wide else terminal_width()))
    print(written)
    statuses = [str(obs[c.STATUS]) for obs in recorded.tables["observations"]]
    local = sum(status == ProbeStatus.LOCAL_ERROR.value for status in statuses)
    used = int(recorded.manifest.get("parameters", {}).get("concurrency_used", args.concurrency))
    if used < min(args.concurrency, len(statuses)):
        print(f"iotaudit collect: note: ran {used} probes at a time, not {args.concurrency}: the open-files limit "
              "(ulimit -n) allows no more", file=sys.stderr)
    if local:
        print(f"iotaudit collect: {local} of {len(statuses)} probes failed on this machine (local-error: out of "
              "file descriptors, memory or buffers); those endpoints are unknown, not unreachable: exit 3",
              file=sys.stderr)
        return ExitStatus.LOCAL_FAILURE
    return ExitStatus.OK


def show_command(args: argparse.Namespace) -> int:
    """``iotaudit show``; returns the exit status."""
    print(format_summary(summarize(load_run(args.run)), width=None if args.wide else terminal_width()))
    return ExitStatus.OK
