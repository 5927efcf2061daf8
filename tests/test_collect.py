"""Collect: real handshakes on 127.0.0.1 against the loopback lab and small servers of our own."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from iotaudit import columns as c
from iotaudit.certs import cert_sha256, is_signed_by, load_pem_x509_certificates
from iotaudit.cli import main
from iotaudit.collection import ProbeResult, collect, probe, summarize
from iotaudit.columns import Probe, ProbeStatus
from iotaudit.discover import ALPN_MQTT, Target, read_lab_ports
from iotaudit.errors import PemError
from iotaudit.offline import parse_chain_text
from iotaudit.store import load_run

KEY_OF_PROBE = {Probe.RSA_TLS12.value: "rsa", Probe.ECDSA_TLS12.value: "ec"}


# --- our own loopback servers (cases the lab does not have) ------------------------

NOW = dt.datetime.now(dt.timezone.utc)


def _cert(cn: str, key, issuer: x509.Certificate | None = None, issuer_key=None, ca: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write_chain(directory: Path, kind: str, host: str) -> tuple[Path, Path, list[x509.Certificate]]:
    """leaf <- intermediate <- root of key type ``kind``, written as a PEM chain and key."""
    new = (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)) if kind == "rsa" \
        else (lambda: ec.generate_private_key(ec.SECP256R1()))
    root_key, inter_key, leaf_key = new(), new(), new()
    root = _cert(f"Test {kind} root", root_key, ca=True)
    inter = _cert(f"Test {kind} intermediate", inter_key, root, root_key, ca=True)
    leaf = _cert(host, leaf_key, inter, inter_key)
    chain_path, key_path = directory / f"{kind}-chain.pem", directory / f"{kind}-key.pem"
    chain_path.write_bytes(b"".join(x.public_bytes(serialization.Encoding.PEM) for x in (leaf, inter, root)))
    key_path.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    return chain_path, key_path, [leaf, inter, root]


@contextmanager
def _server(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A threaded TCP server on 127.0.0.1 calling ``handler(conn)`` per connection; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)

            def run(conn: socket.socket = conn) -> None:
                with conn:
                    try:
                        handler(conn)
                    except (OSError, ssl.SSLError):
                        pass

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()
        for thread in threads:
            thread.join(timeout=6)


def _tls_handler(context: ssl.SSLContext) -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    return handle


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("pki")
    out = {}
    for kind in ("rsa", "ec"):
        out[kind] = _write_chain(directory, kind, "own.example")
    return out


def _rsa_only_context(pki: dict, max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if max_version is not None:
        ctx.maximum_version = max_version
    chain_path, key_path, _ = pki["rsa"]
    ctx.load_cert_chain(chain_path, key_path)
    return ctx


# --- the lab, collected once (tests/conftest.py lab_run) ----------------------------


def _obs(run, label: str, probe_value: str, region: str | None = None) -> dict:
    frame = run.observations
    hit = frame[(frame[c.LABEL] == label) & (frame[c.PROBE] == probe_value)]
    if region is not None:
        hit = hit[hit[c.REGION] == region]
    assert len(hit) >= 1, f"no observation for {label} / {probe_value}"
    return hit.iloc[0].to_dict()


def test_every_target_and_probe_is_one_row(lab, lab_run) -> None:
    assert len(lab_run.observations) == 3 * len(lab.targets)
    assert lab_run.observations[c.OBSERVATION_ID].tolist() == list(range(len(lab_run.observations)))


def test_both_chains_from_every_endpoint_equal_what_the_lab_served_in_order(lab, lab_run) -> None:
    served = read_lab_ports(lab.ports_file).served
    checked = 0
    for obs in lab_run.observations.to_dict("records"):
        key = KEY_OF_PROBE.get(obs[c.PROBE])
        expected = served[(obs[c.HOST], obs[c.PORT])].get(key) if key else None
        if not expected:
            continue
        assert obs[c.STATUS] in c.CHAIN_STATUSES, obs
        assert list(obs[c.CHAIN_SHA256]) == list(expected), (obs[c.LABEL], obs[c.PROBE])
        checked += 1
    dual = [t for t in lab.targets if t.label == "ats-dual"]
    assert dual and checked >= 2 * len(dual)


def test_dual_endpoint_rsa_and_ecdsa_chains_differ(lab_run) -> None:
    rsa_obs = _obs(lab_run, "ats-dual", "rsa-tls12")
    ec_obs = _obs(lab_run, "ats-dual", "ecdsa-tls12")
    certs = lab_run.certificates.set_index(c.SHA256)
    assert certs.loc[rsa_obs[c.CHAIN_SHA256][0], c.KEY_TYPE] == "rsa"
    assert certs.loc[ec_obs[c.CHAIN_SHA256][0], c.KEY_TYPE] == "ec"
    assert "ECDHE-RSA" in rsa_obs[c.CIPHER] and "ECDHE-ECDSA" in ec_obs[c.CIPHER]
    assert rsa_obs[c.TLS_VERSION] == ec_obs[c.TLS_VERSION] == "TLSv1.2"


def test_tls13_probe_captures_one_of_the_served_chains(lab, lab_run) -> None:
    obs = _obs(lab_run, "ats-dual", "tls13")
    served = lab.served[obs[c.HOST]]
    assert obs[c.TLS_VERSION] == "TLSv1.3"
    assert list(obs[c.CHAIN_SHA256]) in (served["rsa"], served["ec"])


def test_mtls_endpoint_chain_captured_with_client_cert_required(lab, lab_run) -> None:
    served = lab.served[lab.target("ats-mtls").host]
    for probe_value in ("rsa-tls12", "ecdsa-tls12", "tls13"):
        obs = _obs(lab_run, "ats-mtls", probe_value)
        assert obs[c.STATUS] == ProbeStatus.CLIENT_CERT_REQUIRED.value, obs[c.ERROR]
        assert list(obs[c.CHAIN_SHA256]) in (served["rsa"], served["ec"])


@pytest.mark.parametrize("probe_value", ["rsa-tls12", "ecdsa-tls12", "tls13"])
def test_mtls_endpoint_ok_with_the_lab_client_certificate(lab, probe_value: str) -> None:
    target = lab.target("ats-mtls")
    result = probe(target, probe_value, timeout=5.0, client_certificate=lab.client_certificate,
                   client_key=lab.client_key)
    assert result.status is ProbeStatus.OK, result.error
    assert result.certificate_requested
    assert result.chain_sha256 in (lab.served[target.host]["rsa"], lab.served[target.host]["ec"])


def test_alpn_endpoint_negotiates_x_amzn_mqtt_ca(lab_run) -> None:
    obs = _obs(lab_run, "ats-alpn", "rsa-tls12")
    assert obs[c.ALPN_OFFERED] == ALPN_MQTT
    assert obs[c.ALPN] == ALPN_MQTT


def test_expired_intermediate_chain_is_captured(lab_run) -> None:
    obs = _obs(lab_run, "expired-intermediate", "rsa-tls12")
    assert obs[c.STATUS] == "ok"
    certs = lab_run.certificates.set_index(c.SHA256)
    expired = [s for s in obs[c.CHAIN_SHA256] if certs.loc[s, c.NOT_AFTER] < pd.Timestamp(lab_run.created_at)]
    assert expired and expired[0] != obs[c.CHAIN_SHA256][0]  # an intermediate, not the leaf, has expired


def test_rsa_only_endpoints_answer_ecdsa_probes_with_no_shared_cipher(lab_run) -> None:
    # The lab sends handshake_failure and lets the client close first, so the
    # alert is read even when many handshakes run at once.
    for label in ("legacy", "expired-intermediate"):
        assert _obs(lab_run, label, "ecdsa-tls12")[c.STATUS] == "no-shared-cipher"


def test_missing_intermediate_chain_has_length_one(lab_run) -> None:
    for probe_value in ("rsa-tls12", "ecdsa-tls12"):
        obs = _obs(lab_run, "missing-intermediate", probe_value)
        assert obs[c.STATUS] == "ok" and obs[c.CHAIN_LENGTH] == 1


def test_out_of_order_chain_keeps_the_served_order(lab, lab_run) -> None:
    obs = _obs(lab_run, "out-of-order", "rsa-tls12")
    assert list(obs[c.CHAIN_SHA256]) == lab.served[obs[c.HOST]]["rsa"]
    certs = {cert_sha256(x): x for x in (load_pem_x509_certificates(p)[0] for p in lab_run.certificates[c.PEM])}
    leaf, second, third = (certs[s] for s in obs[c.CHAIN_SHA256])
    assert not is_signed_by(leaf, second) and is_signed_by(leaf, third)


def test_silent_endpoint_times_out(lab_run) -> None:
    obs = _obs(lab_run, "silent", "tls13")
    assert obs[c.STATUS] == ProbeStatus.TIMEOUT.value and obs[c.CHAIN_LENGTH] == 0
    assert obs[c.HANDSHAKE_MS] >= 2000.0  # the deadline was honoured, not cut short


def test_slow_drip_endpoint_hits_the_single_deadline(lab) -> None:
    # The server sends a byte every 0.5 s: a per-read timeout would never fire and
    # the probe would end only when the lab hangs up (status "closed").
    result = probe(lab.target("slow-drip"), Probe.RSA_TLS12, timeout=1.2)
    assert result.status is ProbeStatus.TIMEOUT, result.error


def test_garbage_endpoint_is_not_tls(lab_run) -> None:
    obs = _obs(lab_run, "garbage", "rsa-tls12")
    assert obs[c.STATUS] == ProbeStatus.NOT_TLS.value, obs[c.ERROR]


def test_refused_endpoint(lab_run) -> None:
    obs = _obs(lab_run, "refused", "ecdsa-tls12")
    assert obs[c.STATUS] == ProbeStatus.REFUSED.value
    assert "refused" in obs[c.ERROR]


def test_run_round_trip_through_the_run_directory(lab_run) -> None:
    assert lab_run.path is not None and lab_run.manifest["catalog"] == "lab"
    for column, dtype in c.OBSERVATION_DTYPES.items():
        if dtype != "object":
            assert str(lab_run.observations[column].dtype) == str(pd.Series(dtype=dtype).dtype), column
    chains = lab_run.chains.sort_values([c.OBSERVATION_ID, c.POSITION])
    rebuilt = chains.groupby(c.OBSERVATION_ID)[c.SHA256].apply(list).to_dict()
    for obs in lab_run.observations.to_dict("records"):
        assert rebuilt.get(obs[c.OBSERVATION_ID], []) == list(obs[c.CHAIN_SHA256])
    assert set(chains[c.SHA256]) == set(lab_run.certificates[c.SHA256])
    assert lab_run.observations[c.STARTED_AT].min() >= pd.Timestamp(lab_run.created_at)


def test_certificates_are_labelled_with_the_lab_catalogue(lab_run) -> None:
    obs = _obs(lab_run, "ats-dual", "rsa-tls12")
    certs = lab_run.certificates.set_index(c.SHA256)
    names = [certs.loc[s, c.CATALOG_NAME] for s in obs[c.CHAIN_SHA256]]
    assert names[0] == ""  # the leaf is in no catalogue
    assert all(names[1:]), names  # intermediate, cross-signed root, Starfield root: all known


def test_summary_one_line_per_observation(lab_run) -> None:
    summary = summarize(lab_run)
    assert len(summary) == len(lab_run.observations)
    line = summary[(summary[c.LABEL] == "ats-dual") & (summary[c.PROBE] == "rsa-tls12")].iloc[0]
    assert line["chain"].count(" <- ") == line[c.CHAIN_LENGTH] - 1 and "(iotaudit lab)" in line["chain"]
    assert line["top_catalog_name"] != "" and pd.notna(line["earliest_not_after"])


# --- an independent client agrees ------------------------------------------------

OPENSSL = shutil.which("openssl")
_OPENSSL_CIPHERS = {"rsa-tls12": "ECDHE+aRSA:!eNULL:@SECLEVEL=0", "ecdsa-tls12": "ECDHE+aECDSA:!eNULL:@SECLEVEL=0"}


def _s_client(target: Target, probe_value: str, lab) -> list[str]:
    cmd = [OPENSSL, "s_client", "-connect", f"{target.address}:{target.port}", "-servername", target.host,
           "-showcerts", "-tls1_2", "-cipher", _OPENSSL_CIPHERS[probe_value]]
    if target.alpn:
        cmd += ["-alpn", ",".join(target.alpn)]
    if target.label == "ats-mtls":  # complete the handshake (the chain is the same either way)
        cmd += ["-cert", str(lab.client_certificate), "-key", str(lab.client_key)]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
    if "BEGIN CERTIFICATE" not in done.stdout:
        return []
    return [hashlib.sha256(der).hexdigest() for der in parse_chain_text(done.stdout, "s_client output").chain]


@pytest.mark.skipif(OPENSSL is None, reason="openssl command not installed")
def test_openssl_s_client_receives_the_same_chains(lab, lab_run) -> None:
    jobs = [(t, p) for t in lab.targets if lab.served.get(t.host) for p in _OPENSSL_CIPHERS
            if KEY_OF_PROBE[p] in lab.served[t.host]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        theirs = list(pool.map(lambda job: _s_client(job[0], job[1], lab), jobs))
    frame = lab_run.observations
    assert len(jobs) >= 10
    for (target, probe_value), chain in zip(jobs, theirs, strict=True):
        ours = frame[(frame[c.HOST] == target.host) & (frame[c.PORT] == target.port) & (frame[c.PROBE] == probe_value)]
        assert chain, f"openssl got no chain from {target.label} ({probe_value})"
        assert list(ours.iloc[0][c.CHAIN_SHA256]) == chain, (target.label, probe_value)


# --- failure statuses, each on its own -------------------------------------------


def test_no_shared_cipher_when_server_has_no_ecdsa_chain(pki: dict) -> None:
    with _server(_tls_handler(_rsa_only_context(pki))) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.ECDSA_TLS12, timeout=5.0)
    assert result.status is ProbeStatus.NO_SHARED_CIPHER, result.error
    assert result.chain == ()


def test_protocol_version_when_server_stops_at_tls12(pki: dict) -> None:
    with _server(_tls_handler(_rsa_only_context(pki, ssl.TLSVersion.TLSv1_2))) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.TLS13, timeout=5.0)
    assert result.status is ProbeStatus.PROTOCOL_VERSION, result.error


def test_own_server_chain_matches_what_it_serves(pki: dict) -> None:
    with _server(_tls_handler(_rsa_only_context(pki))) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.RSA_TLS12, timeout=5.0)
    assert result.status is ProbeStatus.OK
    assert result.chain_sha256 == [cert_sha256(x) for x in pki["rsa"][2]]


def test_closed_when_server_hangs_up_without_a_word() -> None:
    def hang_up(conn: socket.socket) -> None:
        conn.recv(1)

    with _server(hang_up) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.RSA_TLS12, timeout=5.0)
    assert result.status is ProbeStatus.CLOSED, result.error


def test_timeout_against_a_listener_that_never_accepts() -> None:
    # The kernel completes the TCP handshake from the backlog; nobody ever reads or writes.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    with listener:
        result = probe(Target("own.example", listener.getsockname()[1], "127.0.0.1"), Probe.TLS13, timeout=0.5)
    assert result.status is ProbeStatus.TIMEOUT
    assert result.handshake_ms >= 500.0


def test_garbage_speaking_server_is_not_tls() -> None:
    def garbage(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        conn.recv(1)

    with _server(garbage) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.RSA_TLS12, timeout=5.0)
    assert result.status is ProbeStatus.NOT_TLS, result.error


def test_refused_on_a_closed_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # bound, never listened: nothing accepts on it now
    result = probe(Target("own.example", port, "127.0.0.1"), Probe.RSA_TLS12, timeout=2.0)
    assert result.status is ProbeStatus.REFUSED


def test_dns_failure_without_network_traffic() -> None:
    # A 64-character label is invalid in DNS (RFC 1035 section 2.3.4): glibc's
    # resolver rejects the name before sending any query (checked with strace:
    # no socket is opened), whereas a plain ".invalid" name IS sent to the
    # configured nameserver by glibc.
    result = probe(Target("a" * 64 + ".invalid", 443), Probe.RSA_TLS12, timeout=2.0)
    assert result.status is ProbeStatus.DNS_FAILURE, result.error
    assert "cannot resolve" in result.error


def test_sni_sent_for_names_and_not_for_ip_literals(pki: dict) -> None:
    seen: list[str | None] = []
    ctx = _rsa_only_context(pki)
    ctx.sni_callback = lambda sslobj, name, context: seen.append(name)
    with _server(_tls_handler(ctx)) as port:
        by_name = probe(Target("own.example", port, "127.0.0.1"), Probe.RSA_TLS12, timeout=5.0)
        by_ip = probe(Target("127.0.0.1", port), Probe.RSA_TLS12, timeout=5.0)
    assert by_name.status is by_ip.status is ProbeStatus.OK
    assert seen == ["own.example", None]  # RFC 6066 section 3: no IP literals in server_name


def test_unreadable_client_certificate_is_a_pem_error(tmp_path: Path) -> None:
    bad = tmp_path / "client.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(PemError, match="client.pem"):
        collect([Target("own.example", 443, "127.0.0.1")], client_certificate=bad, progress=False)


def test_probe_result_with_ok_status_needs_a_chain() -> None:
    with pytest.raises(ValueError, match="must carry the served chain"):
        ProbeResult(target=Target("x.example", 443), probe=Probe.TLS13, status=ProbeStatus.OK, started_at=NOW)


def test_probe_result_failure_carries_no_chain() -> None:
    with pytest.raises(ValueError, match="carries no chain"):
        ProbeResult(target=Target("x.example", 443), probe=Probe.TLS13, status=ProbeStatus.TIMEOUT,
                    started_at=NOW, chain=(b"x",))


def test_import_probe_cannot_be_made() -> None:
    with pytest.raises(ValueError, match="makes no handshake"):
        probe(Target("x.example", 443), Probe.IMPORT, timeout=1.0)


def test_failing_target_does_not_stop_the_run(pki: dict) -> None:
    with _server(_tls_handler(_rsa_only_context(pki))) as port:
        targets = [Target("a" * 64 + ".invalid", 443), Target("own.example", port, "127.0.0.1")]
        run = collect(targets, probes=[Probe.RSA_TLS12], timeout=5.0, progress=False)
    assert run.observations[c.STATUS].tolist() == ["dns-failure", "ok"]
    assert run.manifest["catalog"] == "aws" and run.manifest["parameters"]["targets"] == 2


def test_progress_bar_only_when_asked(pki: dict, capsys: pytest.CaptureFixture[str]) -> None:
    with _server(_tls_handler(_rsa_only_context(pki))) as port:
        target = Target("own.example", port, "127.0.0.1")
        collect([target], probes=[Probe.RSA_TLS12], progress=False)
        assert capsys.readouterr().err == ""
        collect([target], probes=[Probe.RSA_TLS12], progress=True)
        assert "collect" in capsys.readouterr().err


# --- command line -----------------------------------------------------------


def test_cli_collect_lab_then_show(lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["collect", "--lab", str(lab.ports_file), "--timeout", "0.5", "--quiet", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    run = load_run(out)
    assert run.manifest["catalog"] == "lab" and len(run.observations) == 3 * len(lab.targets)
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "ats-dual" in shown and "client-cert-required" in shown


def test_cli_collect_without_targets_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--out", str(tmp_path / "run")]) == 2
    assert "no targets" in capsys.readouterr().err


def _client_auth_context(pki: dict, mode: ssl.VerifyMode) -> ssl.SSLContext:
    ctx = _rsa_only_context(pki)
    ctx.verify_mode = mode
    ctx.load_verify_locations(cadata=pki["ec"][2][2].public_bytes(serialization.Encoding.PEM).decode())
    return ctx


@pytest.mark.parametrize("probe_value", [Probe.RSA_TLS12, Probe.TLS13])
def test_client_cert_required_by_an_openssl_server_sending_the_alert(pki: dict, probe_value: Probe) -> None:
    with _server(_tls_handler(_client_auth_context(pki, ssl.CERT_REQUIRED))) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), probe_value, timeout=5.0)
    assert result.status is ProbeStatus.CLIENT_CERT_REQUIRED, result.error
    assert result.chain_sha256 == [cert_sha256(x) for x in pki["rsa"][2]]
    assert "alert" in result.error


def test_optional_client_cert_request_is_ok(pki: dict) -> None:
    with _server(_tls_handler(_client_auth_context(pki, ssl.CERT_OPTIONAL))) as port:
        result = probe(Target("own.example", port, "127.0.0.1"), Probe.TLS13, timeout=5.0)
    assert result.status is ProbeStatus.OK, result.error
    assert result.certificate_requested and "did not require" in result.error
