"""Collect on a starved machine and against old servers (issue 9 items 4 and 10).

Local errors (EMFILE, ENFILE, ENOMEM, ENOBUFS) are facts about this machine: the fd limit is a real
``resource.setrlimit`` in a child process, and what it produces must never read as an endpoint finding.
The TLS 1.0 server is a real pyOpenSSL server on 127.0.0.1 that speaks nothing newer.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from OpenSSL import SSL

from iotaudit import columns as c
from iotaudit.auditing import audit
from iotaudit.certs import cert_sha256
from iotaudit.cli import main
from iotaudit.collection import fd_budget_concurrency, probe
from iotaudit.columns import Probe, ProbeStatus
from iotaudit.discover import Target
from iotaudit.run_drift import DriftChange, drift
from iotaudit.inventory import load_inventory
from iotaudit.metrics import render_metrics
from iotaudit.options import ExitStatus
from iotaudit.store import load_run

from .helpers import at, issue, leaf, rsa_key

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_inventory.csv"
GOOD = ("ats-dual", "ats-mtls", "ats-alpn", "legacy", "out-of-order", "leaf-expiring", "future-roots",
        "missing-intermediate", "expired-intermediate")


def _targets_file(lab, path: Path) -> Path:
    lines = [f"{t.host}:{t.port}@{t.address}" + (f" alpn={','.join(t.alpn)}" if t.alpn else "")
             for t in lab.targets if t.label in GOOD]
    path.write_text("\n".join(dict.fromkeys(lines)) + "\n")
    return path


def _child(script: str, nofile: int) -> subprocess.CompletedProcess[str]:
    prelude = ("import resource, sys\n"
               f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))\n")
    return subprocess.run([sys.executable, "-c", prelude + script], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)


# --- item 4: the fd limit ------------------------------------------------------------------------------


def test_concurrency_is_capped_by_the_fd_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert fd_budget_concurrency(3) == 3
    assert 1 <= fd_budget_concurrency(10**6) < soft


@pytest.mark.slow
def test_low_fd_limit_and_high_concurrency_give_no_false_unreachable(lab, tmp_path: Path) -> None:
    targets = _targets_file(lab, tmp_path / "targets.txt")
    out = tmp_path / "run"
    done = _child(
        "from iotaudit.cli import main\n"
        f"sys.exit(main(['collect', '--targets', {str(targets)!r}, '--concurrency', '400', '--timeout', '5',"
        f" '--quiet', '--out', {str(out)!r}]))\n", nofile=32)  # on main: 7 of 39 probes "unreachable"
    assert done.returncode == ExitStatus.OK, done.stderr
    assert "not 400: the open-files limit" in done.stderr
    run = load_run(out)
    statuses = run.observations[c.STATUS].astype(str)
    assert not statuses.isin([ProbeStatus.UNREACHABLE.value, ProbeStatus.LOCAL_ERROR.value]).any()
    assert not run.observations[c.ERROR].str.contains("Too many open files").any()
    assert run.manifest["parameters"]["concurrency_used"] < 400


@pytest.mark.slow
def test_probes_that_fail_locally_are_local_error_and_never_a_finding(lab, lab_run, tmp_path: Path) -> None:
    target = lab.target("ats-dual")
    out = tmp_path / "starved"
    # Every descriptor taken before collecting: each probe fails with EMFILE, is retried, then recorded as
    # local-error; the descriptors are given back only to write the run.
    done = _child(
        "import os\n"
        "from iotaudit.collection import collect\n"
        "from iotaudit.discover import Target\n"
        "from iotaudit.catalog import Catalog\n"
        "from iotaudit.store import write_run\n"
        f"catalog = Catalog.from_directory({str(lab.catalog_directory)!r}, kind='lab')\n"
        f"target = Target(host={target.host!r}, port={target.port}, address={target.address!r})\n"
        "collect([target], timeout=2, progress=False, catalog=catalog)  # every lazy import done first\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(os.open(os.devnull, os.O_RDONLY))\n"
        "except OSError:\n"
        "    pass\n"
        "run = collect([target], timeout=2, progress=False, catalog=catalog)\n"
        "for fd in held:\n"
        "    os.close(fd)\n"
        f"write_run(run, {str(out)!r})\n", nofile=64)
    assert done.returncode == 0, done.stderr
    run = load_run(out)
    assert set(run.observations[c.STATUS].astype(str)) == {ProbeStatus.LOCAL_ERROR.value}
    assert run.observations[c.ERROR].str.contains("EMFILE").all()
    assert run.observations[c.ERROR].str.contains("on this machine, not the endpoint").all()
    # drift: no fact, so no change about that endpoint but "not compared"
    changes = drift(lab_run, run)
    mine = changes[changes[c.HOST] == target.host]
    assert set(mine["change"].astype(str)) == {DriftChange.NOT_COMPARED.value}
    # metrics: no "chain captured 0" sample to alert on, a count of unknown probes instead
    text = render_metrics(run, as_of=run.created_at)
    assert "iotaudit_probe_chain_captured{" not in text
    assert 'iotaudit_probes_unknown{status="local-error"} 3' in text
    # audit: unknown, not broken
    summary = audit(run, load_inventory(SAMPLE)).summary
    assert summary["observations_unknown"]["local-error"] == 3
    assert summary["devices_broken"] == 0 and any("local-error" in note for note in summary["notes"])


def test_collect_exit_status_shows_local_errors(lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import iotaudit.collection as collect_module

    real_probe = collect_module.probe

    def starved_tls13(target, kind, **kwargs):  # the real probe, but TLS 1.3 sees EMFILE on socket()
        if Probe(kind) is Probe.TLS13:
            def no_socket(*args, **kw):
                raise OSError(24, "Too many open files")
            with monkeypatch.context() as m:
                m.setattr(collect_module.socket, "socket", no_socket)
                return real_probe(target, kind, **kwargs)
        return real_probe(target, kind, **kwargs)

    monkeypatch.setattr(collect_module, "probe", starved_tls13)
    monkeypatch.setattr(collect_module, "_LOCAL_BACKOFF_S", (0.0,))
    t = lab.target("ats-dual")
    code = main(["collect", "--target", f"{t.host}:{t.port}@{t.address}", "--concurrency", "1", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code == ExitStatus.LOCAL_FAILURE
    assert "1 of 3 probes failed on this machine (local-error" in capsys.readouterr().err
    obs = load_run(tmp_path / "run").observations.set_index(c.PROBE)
    assert obs.loc["tls13", c.STATUS] == ProbeStatus.LOCAL_ERROR.value
    assert "still failing after 4 retries" in obs.loc["tls13", c.ERROR]
    assert obs.loc["rsa-tls12", c.STATUS] == ProbeStatus.OK.value


# --- item 10: a TLS 1.0-only server --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls10_server() -> Iterator[tuple[int, list[str]]]:
    """A loopback server that speaks only TLS 1.0, serving leaf <- intermediate; yields (port, served sha256)."""
    root = issue("Old Root", rsa_key(0))
    mid = issue("Old Intermediate", rsa_key(1), issuer=root)
    host_leaf = leaf("old.iot.us-east-1.amazonaws.com", rsa_key(2), mid, start=at(2020), end=at(2040))
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_VERSION)
    ctx.set_cipher_list(b"ALL:@SECLEVEL=0")  # OpenSSL 3 allows TLS 1.0 only at security level 0
    ctx.use_certificate(host_leaf.cert)
    ctx.add_extra_chain_cert(mid.cert)
    ctx.use_privatekey(host_leaf.key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            sock.setblocking(True)  # pyOpenSSL works on the descriptor: a Python timeout would make it non-blocking
            conn = SSL.Connection(ctx, sock)
            conn.set_accept_state()
            try:
                conn.do_handshake()
                conn.shutdown()
            except (SSL.Error, OSError):
                pass  # a probe offering TLS 1.2+ is refused: that is the point
            finally:
                sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], [cert_sha256(host_leaf.cert), cert_sha256(mid.cert)]
    stop.set()
    thread.join(5)
    listener.close()


def test_tls10_probe_captures_the_chain_of_a_tls10_only_server(tls10_server) -> None:
    port, served = tls10_server
    target = Target(host="old.iot.us-east-1.amazonaws.com", port=port, address="127.0.0.1")
    result = probe(target, Probe.TLS10, timeout=5)
    assert result.status is ProbeStatus.OK, result.error
    assert result.tls_version == "TLSv1" and result.chain_sha256 == served
    for modern in (Probe.RSA_TLS12, Probe.TLS13):
        assert probe(target, modern, timeout=5).status is ProbeStatus.PROTOCOL_VERSION


def test_tls10_probe_is_off_by_default_and_on_with_the_flag(tls10_server, tmp_path: Path) -> None:
    port, served = tls10_server
    spec = f"old.iot.us-east-1.amazonaws.com:{port}@127.0.0.1"
    assert main(["collect", "--target", spec, "--quiet", "--out", str(tmp_path / "default")]) == 0
    assert Probe.TLS10.value not in set(load_run(tmp_path / "default").observations[c.PROBE].astype(str))
    assert main(["collect", "--target", spec, "--probe", "tls10", "--quiet", "--out", str(tmp_path / "old")]) == 0
    obs = load_run(tmp_path / "old").observations.set_index(c.PROBE)
    assert obs.loc["tls10", c.STATUS] == ProbeStatus.OK.value and list(obs.loc["tls10", c.CHAIN_SHA256]) == served
    assert obs.loc["rsa-tls12", c.STATUS] == ProbeStatus.PROTOCOL_VERSION.value


def test_tls10_probe_against_a_modern_server_is_protocol_version(lab) -> None:
    result = probe(lab.target("ats-dual"), Probe.TLS10, timeout=5)
    assert result.status is ProbeStatus.PROTOCOL_VERSION and not result.chain
