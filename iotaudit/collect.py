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
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from .errors import IotauditError, PemError, TargetError
from .store import Run, RunRecords, load_run, make_manifest, preload_writer

if TYPE_CHECKING:
    import pandas as pd  # summarize() imports it; the collect command runs without it (issue 11)

DEFAULT_PROBES: tuple[Probe, ...] = (Probe.RSA_TLS12, Probe.ECDSA_TLS12, Probe.TLS13)

# OpenSSL cipher strings.  "ECDHE+aRSA" is every suite with ephemeral ECDH key
# exchange and RSA authentication, so the server must answer with its RSA
# chain; likewise aECDSA.  eNULL suites are excluded (they authenticate but
# never appear on AWS).  @SECLEVEL=0 because this is a scanner: it must see
# legacy endpoints (SHA-1 signatures, small keys) that a device may still meet;
# OpenSSL's default security level would abort those handshakes first.
_CIPHERS: dict[Probe, bytes] = {
    Probe.RSA_TLS12: b"ECDHE+aRSA:!eNULL:@SECLEVEL=0",
    Probe.ECDSA_TLS12: b"ECDHE+aECDSA:!eNULL:@SECLEVEL=0",
    Probe.TLS13: b"DEFAULT:@SECLEVEL=0",
}
_VERSIONS: dict[Probe, int] = {
    Probe.RSA_TLS12: SSL.TLS1_2_VERSION,
    Probe.ECDSA_TLS12: SSL.TLS1_2_VERSION,
    Probe.TLS13: SSL.TLS1_3_VERSION,
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
        if self.status.value not in c.CHAIN_STATUSES and self.chain:
            raise ValueError(f"ProbeResult with status {self.status.value} carries no chain (only ok / client-cert-required do)")
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
    ctx.set_min_proto_version(_VERSIONS[probe])
    ctx.set_max_proto_version(_VERSIONS[probe])
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


def _connect(target: Target, deadline: float, timeout: float) -> socket.socket:
    # Name resolution uses the system resolver, which cannot be interrupted;
    # it is the one step not bounded by the probe deadline.
    try:
        infos = socket.getaddrinfo(_host_bytes(target.address), target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise _Failure(ProbeStatus.DNS_FAILURE, f"cannot resolve {target.address!r}: {err.strerror}") from err
    except UnicodeError as err:
        raise _Failure(ProbeStatus.DNS_FAILURE, f"cannot resolve {target.address!r}: not a valid host name ({err})") from err
    last_errno = 0
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
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
        if code == -1 or code in (errno.ECONNRESET, errno.EPIPE, 0):
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
    """:func:`probe`, with any unexpected exception turned into a ``tls-error`` row."""
    started = datetime.now(timezone.utc)
    try:
        return probe(target, kind, timeout=timeout, client_certificate=cert, client_key=key)
    except IotauditError:
        raise
    except Exception as err:  # one target's bug never stops a fleet run
        return ProbeResult(target=target, probe=kind, status=ProbeStatus.TLS_ERROR, started_at=started,
                           error=f"internal error while probing: {type(err).__name__}: {err}")


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
        raise ValueError(f"probes must be among {', '.join(p.value for p in _VERSIONS)}; got {bad or 'none'}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
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
    show = sys.stderr.isatty() if progress is None else bool(progress)
    if jobs:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)), thread_name_prefix="iotaudit-probe") as pool, \
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


def summarize(run: Run) -> pd.DataFrame:
    """One line per host / port / probe: what was served, for people.

    Columns: ``host``, ``port``, ``label``, ``probe``, ``status``, ``tls_version``,
    ``cipher``, ``chain`` (subject CNs in served order joined by `` <- ``),
    ``top_catalog_name`` (catalogue name of the last certificate served, with
    ``(key)`` when only its key matches, e.g. a cross-signed copy),
    ``chain_length``, ``earliest_not_after`` and ``error``.
    """
    import pandas as pd

    certs = run.certificates.set_index(c.SHA256)
    cn = certs[c.SUBJECT_CN].to_dict() if len(certs) else {}
    name = certs[c.CATALOG_NAME].to_dict() if len(certs) else {}
    match = certs[c.CATALOG_MATCH].astype("string").to_dict() if len(certs) else {}
    not_after = certs[c.NOT_AFTER].to_dict() if len(certs) else {}
    rows = []
    for obs in run.observations.to_dict("records"):
        chain = list(obs[c.CHAIN_SHA256] or [])
        top = ""
        if chain:
            top = str(name.get(chain[-1]) or "")
            if top and match.get(chain[-1]) == "key":
                top += " (key)"
        dates = [not_after[s] for s in chain if s in not_after]
        rows.append({
            c.HOST: obs[c.HOST], c.PORT: obs[c.PORT], c.LABEL: obs[c.LABEL], c.PROBE: obs[c.PROBE],
            c.STATUS: obs[c.STATUS], c.TLS_VERSION: obs[c.TLS_VERSION], c.CIPHER: obs[c.CIPHER],
            SUMMARY_CHAIN: " <- ".join(str(cn.get(s, s[:12])) for s in chain),
            SUMMARY_TOP: top, c.CHAIN_LENGTH: len(chain),
            SUMMARY_EARLIEST: min(dates) if dates else pd.NaT, c.ERROR: obs[c.ERROR],
        })
    frame = pd.DataFrame.from_records(rows, columns=[
        c.HOST, c.PORT, c.LABEL, c.PROBE, c.STATUS, c.TLS_VERSION, c.CIPHER, SUMMARY_CHAIN, SUMMARY_TOP,
        c.CHAIN_LENGTH, SUMMARY_EARLIEST, c.ERROR,
    ])
    frame[SUMMARY_EARLIEST] = pd.to_datetime(frame[SUMMARY_EARLIEST], utc=True).astype(c.TIME)
    return frame


def format_summary(summary: pd.DataFrame) -> str:
    """Plain-text rendering of :func:`summarize` for the terminal."""
    if summary.empty:
        return "(no observations)"
    shown = summary.copy()
    shown[SUMMARY_EARLIEST] = shown[SUMMARY_EARLIEST].dt.strftime("%Y-%m-%d").fillna("")
    shown[c.ERROR] = shown[c.ERROR].fillna("").str.slice(0, 60)
    return shown.to_string(index=False, na_rep="")


# --- command line -----------------------------------------------------------

COLLECT_EPILOG = """\
examples:
  # the loopback lab started by `iotaudit lab serve --dir lab/`
  iotaudit collect --lab lab/lab.json --out runs/lab
  # an AWS account's ATS endpoints in two regions, every data port
  iotaudit collect --prefix a1b2c3d4e5f6g7 --regions us-east-1,eu-west-1 --out runs/today
  # legacy VeriSign endpoints too, only MQTT ports
  iotaudit collect --prefix a1b2c3d4e5f6g7 --regions us-east-1 \\
      --endpoint-types iot:Data-ATS,iot:Data --ports 8883,443/x-amzn-mqtt-ca --out runs/mqtt
  # ask AWS (needs boto3 and credentials)
  iotaudit collect --describe-endpoint --regions us-east-1 --out runs/described
  # explicit targets; HOST:PORT@ADDRESS connects to ADDRESS with SNI HOST (like curl --resolve)
  iotaudit collect --target a1b2-ats.iot.us-east-1.amazonaws.com:8883@10.1.2.3 --targets more.txt --out runs/x

targets file lines: HOST:PORT[@ADDRESS] [alpn=P,...] [region=R] [type=T] [label=L]   (# comments)
port specs: PORT or PORT/ALPN, e.g. 8883, 443/x-amzn-mqtt-ca, 443, 8443
an endpoint that wants a client certificate still has its chain captured (status client-cert-required);
pass --client-cert/--client-key to complete the handshake instead.
"""


def _csv(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``collect`` and ``show`` commands to the ``iotaudit`` command line."""
    p = subparsers.add_parser(
        "collect", help="capture the certificate chains endpoints serve (one run directory)",
        description="Make real TLS handshakes (RSA TLS 1.2, ECDSA TLS 1.2, TLS 1.3) with every target and "
                    "store the served chains, in served order, as a run directory.",
        epilog=COLLECT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("targets (combine freely)")
    src.add_argument("--target", action="append", default=[], metavar="HOST:PORT[@ADDRESS]",
                     help="one endpoint; repeatable")
    src.add_argument("--targets", action="append", default=[], metavar="FILE", help="a targets file; repeatable")
    src.add_argument("--lab", metavar="PORTS_JSON",
                     help="the lab's lab.json: its endpoints, labelled with the lab's catalogue")
    src.add_argument("--prefix", metavar="P", help="account endpoint prefix, e.g. a1b2c3d4e5f6g7 (with --regions)")
    src.add_argument("--regions", metavar="R,...", help="comma-separated AWS regions")
    src.add_argument("--endpoint-types", default="iot:Data-ATS", metavar="T,...",
                     help="iot:Data-ATS, iot:Data, iot:CredentialProvider, iot:Jobs (default iot:Data-ATS)")
    src.add_argument("--ports", metavar="SPEC,...",
                     help="PORT or PORT/ALPN specs (default per type: 8883,443/x-amzn-mqtt-ca,443,8443 for data)")
    src.add_argument("--describe-endpoint", action="store_true",
                     help="ask AWS for each type's endpoint in each of --regions (needs boto3)")
    how = p.add_argument_group("how")
    how.add_argument("--probes", default=",".join(k.value for k in DEFAULT_PROBES), metavar="P,...",
                     help="handshakes per target (default: %(default)s)")
    how.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds per probe (default 5)")
    how.add_argument("--concurrency", type=int, default=32, metavar="N", help="probes in flight (default 32)")
    how.add_argument("--client-cert", metavar="FILE", help="PEM client certificate to present")
    how.add_argument("--client-key", metavar="FILE", help="its PEM private key (default: --client-cert)")
    how.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace RUN if it exists")
    p.set_defaults(func=_cmd_collect)

    s = subparsers.add_parser("show", help="print what a run found, one line per endpoint and probe",
                              description="Print the summary of a run directory.")
    s.add_argument("run", metavar="RUN", help="run directory written by collect or import")
    s.set_defaults(func=_cmd_show)


def _cmd_collect(args: argparse.Namespace) -> int:
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
    preload_writer()  # pyarrow's import overlaps the handshakes
    recorded = collect(
        targets, probes=_csv(args.probes), timeout=args.timeout, concurrency=args.concurrency,
        progress=False if args.quiet else None, catalog=catalog,
        client_certificate=args.client_cert, client_key=args.client_key, parameters=sources, build=run_records,
    )
    written = recorded.write(args.out, overwrite=args.overwrite)  # pyarrow only: this command never imports pandas
    if not args.quiet:
        print(format_records_summary(recorded))
    print(written)
    return 0


def format_records_summary(recorded: RunRecords) -> str:
    """:func:`format_summary` of a collection still in rows (the same lines, no pandas)."""
    certs = {row[c.SHA256]: row for row in recorded.tables["certificates"]}
    head = [c.HOST, c.PORT, c.LABEL, c.PROBE, c.STATUS, c.TLS_VERSION, c.CIPHER, SUMMARY_CHAIN, SUMMARY_TOP,
            c.CHAIN_LENGTH, SUMMARY_EARLIEST, c.ERROR]
    rows = []
    for obs in recorded.tables["observations"]:
        chain = list(obs[c.CHAIN_SHA256] or [])
        top = ""
        if chain and chain[-1] in certs:
            top = str(certs[chain[-1]][c.CATALOG_NAME] or "")
            if top and certs[chain[-1]][c.CATALOG_MATCH] == "key":
                top += " (key)"
        dates = [certs[s][c.NOT_AFTER] for s in chain if s in certs]
        rows.append([obs[c.HOST], obs[c.PORT], obs[c.LABEL], obs[c.PROBE], obs[c.STATUS], obs[c.TLS_VERSION],
                     obs[c.CIPHER], " <- ".join(str(certs[s][c.SUBJECT_CN]) if s in certs else s[:12] for s in chain),
                     top, len(chain), min(dates).strftime("%Y-%m-%d") if dates else "", (obs[c.ERROR] or "")[:60]])
    if not rows:
        return "(no observations)"
    cells = [[str(v if v is not None else "") for v in row] for row in [head, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    return "\n".join(" ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells)


def _cmd_show(args: argparse.Namespace) -> int:
    print(format_summary(summarize(load_run(args.run))))
    return 0
