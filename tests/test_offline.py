"""Offline import: PEM bundles and openssl s_client transcripts become the same rows as a collection."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from iotaudit import columns as c
from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_pem, cert_sha256
from iotaudit.cli import main
from iotaudit.columns import Probe, ProbeStatus
from iotaudit.errors import PemError, TargetError
from iotaudit.offline import import_chains, parse_chain_text
from iotaudit.store import load_run, write_run

HOST = "a1b2c3-ats.iot.eu-west-1.amazonaws.com"


@pytest.fixture(scope="module")
def lab_chain(lab) -> list[str]:
    """PEM of each certificate the lab's dual endpoint serves for RSA, in served order."""
    pki = lab.pki
    assert pki is not None
    target = lab.target("ats-dual")
    served = lab.served[target.host]["rsa"]
    by_hash = {}
    for cert in [*pki.cas.values(), *pki.leaves.values()]:
        by_hash[cert_sha256(cert)] = cert
    return [cert_pem(by_hash[s]) for s in served]


def _transcript(chain: list[str], version: str = "TLSv1.2", cipher: str = "ECDHE-RSA-AES128-GCM-SHA256") -> str:
    blocks = "".join(f" {i} s:CN = cert {i}\n   i:CN = issuer {i}\n{pem}" for i, pem in enumerate(chain))
    return (f"CONNECTED(00000003)\n---\nCertificate chain\n{blocks}---\nServer certificate\nsubject=CN = cert 0\n"
            f"---\nNo client certificate CA names sent\n---\nNew, {version}, Cipher is {cipher}\n"
            f"ALPN protocol: x-amzn-mqtt-ca\nSSL-Session:\n    Protocol  : {version}\n    Cipher    : {cipher}\n---\n")


def test_pem_bundle_keeps_file_order(lab, lab_chain: list[str], tmp_path: Path) -> None:
    bundle = tmp_path / "chain.pem"
    reordered = [lab_chain[0], lab_chain[2], lab_chain[1], *lab_chain[3:]]
    bundle.write_text("# saved from a ticket\n" + "".join(reordered), encoding="ascii")
    run = import_chains([bundle], host=HOST, port=8883, catalog=lab.catalog)
    obs = run.observations.iloc[0]
    served = lab.served[lab.target("ats-dual").host]["rsa"]
    assert list(obs[c.CHAIN_SHA256]) == [served[0], served[2], served[1], *served[3:]]
    assert (obs[c.PROBE], obs[c.STATUS], obs[c.PORT], obs[c.LABEL]) == (
        Probe.IMPORT.value, ProbeStatus.OK.value, 8883, "chain.pem")
    assert (obs[c.REGION], obs[c.ENDPOINT_TYPE]) == ("eu-west-1", "iot:Data-ATS")
    assert obs[c.TLS_VERSION] == "" and obs[c.CIPHER] == ""


def test_transcript_picks_up_version_cipher_alpn(lab, lab_chain: list[str], tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_text(_transcript(lab_chain, "TLSv1.3", "TLS_AES_256_GCM_SHA384"), encoding="ascii")
    run = import_chains([path], host=HOST, catalog=lab.catalog)
    obs = run.observations.iloc[0]
    assert (obs[c.TLS_VERSION], obs[c.CIPHER], obs[c.ALPN]) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384", "x-amzn-mqtt-ca")
    assert list(obs[c.CHAIN_SHA256]) == lab.served[lab.target("ats-dual").host]["rsa"]


def test_old_transcript_repeating_the_leaf_is_not_a_longer_chain(lab_chain: list[str]) -> None:
    # OpenSSL 1.0.x printed the server certificate again after the chain.
    text = _transcript(lab_chain).replace("Server certificate\n", "Server certificate\n" + lab_chain[0])
    assert len(parse_chain_text(text, "old.txt").chain) == len(lab_chain)


def test_several_files_several_observations_and_round_trip(lab, lab_chain: list[str], tmp_path: Path) -> None:
    one, two = tmp_path / "one.pem", tmp_path / "two.txt"
    one.write_text("".join(lab_chain[:2]), encoding="ascii")
    two.write_text(_transcript(lab_chain), encoding="ascii")
    run = write_run(import_chains([one, two], host=HOST, catalog=lab.catalog), tmp_path / "run")
    back = load_run(run.path)
    assert back.observations[c.LABEL].tolist() == ["one.pem", "two.txt"]
    assert back.observations[c.CHAIN_LENGTH].tolist() == [2, len(lab_chain)]
    assert back.manifest["catalog"] == "lab" and back.manifest["parameters"]["host"] == HOST
    assert set(back.chains[c.SHA256]) == set(back.certificates[c.SHA256])


def test_default_catalogue_is_the_real_aws_one(tmp_path: Path) -> None:
    bundle = tmp_path / "root.pem"
    bundle.write_text(cert_pem(aws_catalog().entry("AmazonRootCA1").certificate), encoding="ascii")
    run = import_chains([bundle], host=HOST)
    assert run.manifest["catalog"] == "aws"
    assert run.certificates[c.CATALOG_NAME].tolist() == ["AmazonRootCA1"]


def _bad_block(lab_chain: list[str]) -> str:
    lines = lab_chain[1].splitlines()
    lines[3] = lines[3][:10] + "!!!!" + lines[3][14:]
    return lab_chain[0] + "\n".join(lines) + "\n"


def test_malformed_pem_names_file_and_block(lab_chain: list[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.pem"
    path.write_text(_bad_block(lab_chain), encoding="ascii")
    with pytest.raises(PemError, match=r"broken\.pem, PEM block 2") as info:
        import_chains([path], host=HOST)
    assert info.value.block == 2


def test_malformed_transcript_names_file_and_block(lab_chain: list[str], tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_text(_transcript([lab_chain[0], _bad_block(lab_chain)[len(lab_chain[0]):]]), encoding="ascii")
    with pytest.raises(PemError, match=r"capture\.txt, PEM block 2"):
        import_chains([path], host=HOST)


def test_truncated_pem_names_file(lab_chain: list[str], tmp_path: Path) -> None:
    path = tmp_path / "cut.pem"
    path.write_text(lab_chain[0] + lab_chain[1][:200], encoding="ascii")
    with pytest.raises(PemError, match=r"cut\.pem, PEM block 2.*without a matching END"):
        import_chains([path], host=HOST)


def test_file_without_certificates(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("CONNECTED(00000003)\nerror: connection refused\n", encoding="ascii")
    with pytest.raises(PemError, match=r"empty\.txt: no PEM CERTIFICATE block"):
        import_chains([path], host=HOST)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PemError, match=r"gone\.pem: cannot read file"):
        import_chains([tmp_path / "gone.pem"], host=HOST)


def test_no_files_is_an_error() -> None:
    with pytest.raises(TargetError, match="no files"):
        import_chains([], host=HOST)


def test_port_that_is_not_a_number_is_a_target_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="port 'x' is not a number"):
        import_chains([tmp_path / "any.pem"], host=HOST, port="x")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command not installed")
def test_real_s_client_transcript_imports_like_a_collection(lab, lab_run, tmp_path: Path) -> None:
    target = lab.target("ats-dual")
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"{target.address}:{target.port}", "-servername", target.host,
         "-showcerts", "-tls1_2", "-cipher", "ECDHE+aECDSA"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
    path = tmp_path / "s_client.txt"
    path.write_text(done.stdout, encoding="utf-8")
    imported = import_chains([path], host=target.host, port=target.port, catalog=lab.catalog).observations.iloc[0]
    frame = lab_run.observations
    ours = frame[(frame[c.HOST] == target.host) & (frame[c.PROBE] == "ecdsa-tls12")].iloc[0]
    assert list(imported[c.CHAIN_SHA256]) == list(ours[c.CHAIN_SHA256])
    assert imported[c.TLS_VERSION] == "TLSv1.2" and imported[c.CIPHER].startswith("ECDHE-ECDSA-")


def test_cli_import(lab, lab_chain: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "chain.pem"
    bundle.write_text("".join(lab_chain), encoding="ascii")
    out = tmp_path / "run"
    code = main(["import", str(bundle), "--host", HOST, "--port", "8883",
                 "--lab-catalog", str(lab.catalog_directory), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "import" in printed
    assert load_run(out).manifest["catalog"] == "lab"


def test_cli_import_malformed_is_exit_2(lab_chain: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.pem"
    path.write_text(_bad_block(lab_chain), encoding="ascii")
    assert main(["import", str(path), "--host", HOST, "--out", str(tmp_path / "run")]) == 2
    assert "broken.pem, PEM block 2" in capsys.readouterr().err
