"""Import keeps the served chain (issue 9 items 1 and 9): s_client without -showcerts, DER, PKCS#7, keys in shared files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from iotaudit import columns as c
from iotaudit.auditing import audit
from iotaudit.catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from iotaudit.certs import cert_der, cert_pem, cert_sha256
from iotaudit.cli import main
from iotaudit.columns import ProbeStatus
from iotaudit.errors import PemError
from iotaudit.inventory import load_inventory
from iotaudit.offline import import_chains, name_key, parse_chain_text, printed_name_key, read_chain_file
from iotaudit.store import load_run, write_run

HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"

def _require_openssl() -> None:
    """Skip without the openssl command locally; in CI (CI=true) that is a failure, not a skip."""
    if shutil.which("openssl") is None:
        message = "needs the openssl command (Debian package openssl)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _s_client(target, *extra: str) -> str:
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"{target.address}:{target.port}", "-servername", target.host,
         "-tls1_2", "-cipher", "ECDHE+aRSA", *extra],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
    assert "Certificate chain" in done.stdout, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def transcripts(lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real s_client transcripts of the lab's dual endpoint (RSA), with and without -showcerts."""
    _require_openssl()
    where = tmp_path_factory.mktemp("transcripts")
    target = lab.target("ats-dual")
    out = {}
    for name, extra in (("showcerts", ("-showcerts",)), ("plain", ())):
        path = where / f"{name}.txt"
        path.write_text(_s_client(target, *extra), encoding="utf-8")
        out[name] = path
    return out


def _inventory(tmp_path: Path, trust_store: str = "AmazonRootCA1") -> Path:
    path = tmp_path / "inv.csv"
    path.write_text(HEADER + "".join(f"d{i},g,fw,us-east-1,*,{trust_store},rsa,,,,\n" for i in range(5)))
    return path


# --- item 1: the chain listing is the served chain --------------------------------------------------


def test_transcript_without_showcerts_keeps_the_served_length_and_says_it_resolved_by_name(lab, transcripts) -> None:
    target = lab.target("ats-dual")
    served = lab.served[target.host]["rsa"]
    imported = read_chain_file(transcripts["plain"])
    assert len(imported.listed) == len(served) and imported.missing == tuple(range(1, len(served)))
    run = import_chains([transcripts["plain"]], host=target.host, port=target.port, catalog=lab.catalog)
    obs = run.observations.iloc[0]
    assert obs[c.STATUS] == ProbeStatus.OK.value
    assert list(obs[c.CHAIN_SHA256]) == served and obs[c.CHAIN_LENGTH] == len(served)
    assert "resolved by name (subject and issuer) from the lab catalogue" in obs[c.ERROR]


def test_audit_of_a_plain_transcript_calls_nothing_broken_that_showcerts_calls_covered(
        lab, transcripts, tmp_path: Path) -> None:
    target = lab.target("ats-dual")
    inventory = load_inventory(_inventory(tmp_path))
    results = {}
    for name, path in transcripts.items():
        run = write_run(import_chains([path], host=target.host, port=target.port, catalog=lab.catalog),
                        tmp_path / name)
        results[name] = audit(run, inventory).summary
    assert results["showcerts"]["devices_broken"] == 0 and results["showcerts"]["devices_covered"] + \
        results["showcerts"]["devices_at_risk"] == 5
    assert results["plain"]["devices_by_verdict"] == results["showcerts"]["devices_by_verdict"]


def test_certificate_the_catalogue_cannot_name_makes_the_chain_incomplete_and_unknown(
        lab, transcripts, tmp_path: Path) -> None:
    target = lab.target("ats-dual")
    # A catalogue with the lab roots but none of its intermediates or cross-signs.
    roots = Catalog([e for e in lab.catalog.entries if e.role is CatalogRole.ROOT], kind="lab")
    run = write_run(import_chains([transcripts["plain"]], host=target.host, port=target.port, catalog=roots),
                    tmp_path / "run")
    obs = load_run(run.path).observations.iloc[0]
    assert obs[c.STATUS] == ProbeStatus.CHAIN_INCOMPLETE.value
    assert "not resolved: position 1" in obs[c.ERROR] and "-showcerts" in obs[c.ERROR]
    assert list(obs[c.CHAIN_SHA256]) == lab.served[target.host]["rsa"][:1]  # the leaf the file carries
    summary = audit(run, load_inventory(_inventory(tmp_path))).summary
    assert summary["devices_broken"] == 0 and summary["devices_covered"] == 0
    assert summary["devices_unknown"] == 5 and summary["observations_unknown"]["chain-incomplete"] == 1
    assert any("unknown, not broken" in note for note in summary["notes"])


def test_two_catalogue_certificates_with_the_same_names_are_not_guessed(lab, tmp_path: Path) -> None:
    pki = lab.pki
    target = lab.target("ats-dual")
    served = lab.served[target.host]["rsa"]
    by_hash = {cert_sha256(cert): cert for cert in [*pki.cas.values(), *pki.leaves.values()]}
    leaf, intermediate = by_hash[served[0]], by_hash[served[1]]
    # Same subject and issuer as the served intermediate, another key: a re-issue.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    twin = (x509.CertificateBuilder().subject_name(intermediate.subject).issuer_name(intermediate.issuer)
            .public_key(key.public_key()).serial_number(7).not_valid_before(intermediate.not_valid_before_utc)
            .not_valid_after(intermediate.not_valid_after_utc).sign(key, intermediate.signature_hash_algorithm))
    catalog = Catalog([*lab.catalog.entries, CatalogEntry("Twin", "Twin", CatalogRole.INTERMEDIATE,
                                                          CatalogStatus.ISSUING_CA, twin)], kind="lab")
    listing = "".join(f" {i} s:{_printed(by_hash[s].subject)}\n   i:{_printed(by_hash[s].issuer)}\n"
                      for i, s in enumerate(served[:2]))
    path = tmp_path / "cut.txt"
    path.write_text(f"CONNECTED(00000003)\n---\nCertificate chain\n{listing}---\nServer certificate\n{cert_pem(leaf)}"
                    "subject=x\n---\n", encoding="ascii")
    obs = import_chains([path], host=target.host, catalog=catalog).observations.iloc[0]
    assert obs[c.STATUS] == ProbeStatus.CHAIN_INCOMPLETE.value
    assert "2 catalogue certificates match" in obs[c.ERROR]


def _printed(name: x509.Name) -> str:
    """A name the way OpenSSL 1.0 printed it (slash form): the parser reads both forms."""
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C", "organizationalUnitName": "OU"}
    return "".join(f"/{short.get(a.oid._name, a.oid._name)}={a.value}" for a in name)


def test_printed_names_match_certificate_names_in_both_openssl_forms(lab) -> None:
    cert = next(iter(lab.pki.cas.values()))
    assert printed_name_key(_printed(cert.subject)) == name_key(cert.subject)
    parts = [f"{ {'commonName': 'CN', 'organizationName': 'O', 'countryName': 'C'}[a.oid._name]} = {a.value}"
             for a in cert.subject]
    assert printed_name_key(", ".join(parts)) == name_key(cert.subject)
    assert printed_name_key('O = "Starfield Technologies, Inc.", CN = x') == (
        ("commonname", "x"), ("organizationname", "Starfield Technologies, Inc."))


def test_listing_that_skips_a_position_is_an_error() -> None:
    text = "Certificate chain\n 0 s:CN = a\n   i:CN = b\n 2 s:CN = b\n   i:CN = c\n---\n"
    with pytest.raises(PemError, match="not numbered 0..1"):
        parse_chain_text(text, "odd.txt")


# --- item 9: DER, PKCS#7, private keys --------------------------------------------------------------


def _lab_chain(lab) -> list[x509.Certificate]:
    pki = lab.pki
    by_hash = {cert_sha256(cert): cert for cert in [*pki.cas.values(), *pki.leaves.values()]}
    return [by_hash[s] for s in lab.served[lab.target("ats-dual").host]["rsa"]]


def test_der_certificate_imports(lab, tmp_path: Path) -> None:
    leaf = _lab_chain(lab)[0]
    path = tmp_path / "leaf.cer"
    path.write_bytes(cert_der(leaf))
    obs = import_chains([path], host="x.iot.us-east-1.amazonaws.com", catalog=lab.catalog).observations.iloc[0]
    assert list(obs[c.CHAIN_SHA256]) == [cert_sha256(leaf)] and "DER certificate" in obs[c.ERROR]


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_pkcs7_bundle_imports_in_issuance_order(lab, tmp_path: Path, encoding: serialization.Encoding) -> None:
    chain = _lab_chain(lab)
    shuffled = [chain[2], chain[0], *chain[3:], chain[1]]
    path = tmp_path / "chain.p7b"
    path.write_bytes(pkcs7.serialize_certificates(shuffled, encoding))
    obs = import_chains([path], host="x.iot.us-east-1.amazonaws.com", catalog=lab.catalog).observations.iloc[0]
    assert list(obs[c.CHAIN_SHA256]) == [cert_sha256(cert) for cert in chain]
    assert "PKCS#7 bundle: certificates put in issuance order" in obs[c.ERROR]


def test_binary_garbage_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.der"
    path.write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(PemError, match=r"junk\.der: binary file is neither a DER certificate"):
        read_chain_file(path)


def test_private_key_in_a_shared_file_warns_and_is_not_imported(
        lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    path = tmp_path / "ticket.pem"
    path.write_text(key_pem + "".join(cert_pem(cert) for cert in _lab_chain(lab)), encoding="ascii")
    warnings: list[str] = []
    run = import_chains([path], host="x.iot.us-east-1.amazonaws.com", catalog=lab.catalog, on_warning=warnings.append)
    assert len(warnings) == 1 and "private key" in warnings[0] and "ticket.pem" in warnings[0]
    assert "private key (not imported)" in run.observations.iloc[0][c.ERROR]
    assert "PRIVATE KEY" not in run.certificates[c.PEM].str.cat()
    code = main(["import", str(path), "--host", "x.iot.us-east-1.amazonaws.com", "--lab-catalog",
                 str(lab.catalog_directory), "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0 and "warning:" in capsys.readouterr().err
