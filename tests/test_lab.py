"""The loopback lab: real TLS handshakes on 127.0.0.1 against what lab.json says is served."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from iotaudit.catalog import Catalog, aws_catalog
from iotaudit.certs import cert_pem, cert_sha256, load_pem_file, spki_pin, spki_sha256
from iotaudit.discover import ALPN_MQTT, Target
from iotaudit.lab import (
    LAB_ORGANIZATION,
    Lab,
    LabError,
    lab_ca_certificates,
    lab_data_directory,
    lab_pki,
    read_ports_file,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
# TLS 1.2 suites restricted to one server key type, as the collector's probes offer them.
SUITES = {
    "rsa": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
    "ec": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
}
TIMEOUT = 3.0
CHAIN_LABELS = ("ats-dual", "ats-mtls", "ats-alpn", "legacy", "expired-intermediate", "missing-intermediate",
                "out-of-order", "leaf-expiring", "future-roots")


# --- helpers ---------------------------------------------------------------

def _client_context(key_type: str | None = None, *, cafile: Path | None = None,
                    version: ssl.TLSVersion | None = ssl.TLSVersion.TLSv1_2,
                    alpn: tuple[str, ...] = (), client: Lab | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=cafile)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if key_type is not None:
        ctx.set_ciphers(SUITES[key_type])
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if client is not None:
        ctx.load_cert_chain(client.client_certificate, client.client_key)
    return ctx


def _handshake(target: Target, ctx: ssl.SSLContext) -> tuple[list[str], str, str | None]:
    """Handshake with ``target``; returns (served chain SHA-256s in order, cipher, ALPN)."""
    with socket.create_connection((target.address, target.port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=target.host) as tls:
            # SSLSocket.get_unverified_chain() is public from Python 3.13; the same method sits on _sslobj before.
            chain = getattr(tls, "get_unverified_chain", None) or tls._sslobj.get_unverified_chain
            ders = [cert.public_bytes(ssl._ssl.ENCODING_DER) for cert in chain()]
            return [hashlib.sha256(der).hexdigest() for der in ders], tls.cipher()[0], tls.selected_alpn_protocol()


def _targets(lab: Lab, label: str) -> list[Target]:
    found = [t for t in lab.targets if t.label == label]
    assert found, f"lab has no {label} endpoint"
    return found


def _served_certificates(lab: Lab) -> dict[str, x509.Certificate]:
    certs = {}
    for path in (lab.directory / "served").glob("*.pem"):
        for cert in load_pem_file(path):
            certs[cert_sha256(cert)] = cert
    return certs


def _anchor_file(tmp_path: Path, lab: Lab, *names: str) -> Path:
    path = tmp_path / ("-".join(names) + ".pem")
    path.write_text("".join(cert_pem(c) for c in lab.catalog.certificates(names)), encoding="ascii")
    return path


def _verifier(lab: Lab, host: str, anchors: list[str], at: datetime) -> verification.ServerVerifier:
    # As the analysis will configure it: a device TLS stack, not a browser (no CA/B Forum-only rules).
    ee = verification.ExtensionPolicy.permit_all().require_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None)
    ca = verification.ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, verification.Criticality.AGNOSTIC, None)
    return (verification.PolicyBuilder().store(verification.Store(lab.catalog.certificates(anchors)))
            .time(at).extension_policies(ca_policy=ca, ee_policy=ee)
            .build_server_verifier(verification.DNSName(host)))


# --- served chains ---------------------------------------------------------

@pytest.mark.parametrize("key_type", ["rsa", "ec"])
@pytest.mark.parametrize("label", CHAIN_LABELS)
def test_each_endpoint_serves_the_chain_recorded_in_lab_json(lab: Lab, label: str, key_type: str) -> None:
    for target in _targets(lab, label):
        served = lab.served[target.host]
        if key_type not in served:
            continue
        chain, cipher, _ = _handshake(target, _client_context(key_type, client=lab))
        assert chain == served[key_type], f"{target.host} {key_type}"
        assert cipher.startswith("ECDHE-RSA-" if key_type == "rsa" else "ECDHE-ECDSA-")


@pytest.mark.parametrize("label", ["legacy", "expired-intermediate"])
def test_rsa_only_endpoint_refuses_ecdsa_suites_with_an_alert(lab: Lab, label: str) -> None:
    target = _targets(lab, label)[0]
    assert set(lab.served[target.host]) == {"rsa"}
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        _handshake(target, _client_context("ec"))


def test_default_tls13_handshake_gets_a_served_chain(lab: Lab) -> None:
    target = _targets(lab, "ats-dual")[0]
    chain, _, _ = _handshake(target, _client_context(version=ssl.TLSVersion.TLSv1_3))
    assert chain in list(lab.served[target.host].values())


@pytest.mark.parametrize("anchors", [("AmazonRootCA1", "AmazonRootCA3"), ("SFSRootCAG2",), ("StarfieldClass2CA",)])
@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_ats_chains_verify_with_openssl_against_amazon_or_starfield_anchors(
    lab: Lab, tmp_path: Path, key_type: str, anchors: tuple[str, ...]
) -> None:
    cafile = _anchor_file(tmp_path, lab, *anchors)
    for target in _targets(lab, "ats-dual"):
        chain, _, _ = _handshake(target, _client_context(key_type, cafile=cafile))
        assert chain == lab.served[target.host][key_type]


def test_ats_chain_fails_openssl_verification_without_a_lab_anchor(lab: Lab, tmp_path: Path) -> None:
    cafile = _anchor_file(tmp_path, lab, "VeriSignClass3G5")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_targets(lab, "ats-dual")[0], _client_context("rsa", cafile=cafile))


def test_legacy_chain_verifies_with_openssl_against_verisign_g5(lab: Lab, tmp_path: Path) -> None:
    cafile = _anchor_file(tmp_path, lab, "VeriSignClass3G5")
    target = _targets(lab, "legacy")[0]
    chain, _, _ = _handshake(target, _client_context("rsa", cafile=cafile))
    assert chain == lab.served[target.host]["rsa"]


def test_real_aws_roots_do_not_verify_lab_chains(lab: Lab, tmp_path: Path) -> None:
    real = tmp_path / "real.pem"
    real.write_text("".join(cert_pem(e.certificate) for e in aws_catalog().roots()), encoding="ascii")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_targets(lab, "ats-dual")[0], _client_context("rsa", cafile=real))


def test_served_ats_chain_has_the_aws_shape(lab: Lab) -> None:
    target = _targets(lab, "ats-dual")[0]
    names = {
        kt: [lab.catalog.by_sha256(fp).name if lab.catalog.by_sha256(fp) else "leaf" for fp in chain]
        for kt, chain in lab.served[target.host].items()
    }
    assert names == {
        "rsa": ["leaf", "AmazonRSA2048M01", "G2-RootCA1", "SFSRootCAG2-Class2"],
        "ec": ["leaf", "AmazonECDSA256M01", "G2-RootCA3", "SFSRootCAG2-Class2"],
    }


def test_out_of_order_endpoint_serves_cross_signed_root_before_intermediate(lab: Lab) -> None:
    served = lab.served[_targets(lab, "out-of-order")[0].host]["rsa"]
    assert [lab.catalog.by_sha256(fp).name if lab.catalog.by_sha256(fp) else "leaf" for fp in served] == [
        "leaf", "G2-RootCA1", "AmazonRSA2048M01"]


def test_missing_intermediate_endpoint_serves_the_leaf_only(lab: Lab) -> None:
    served = lab.served[_targets(lab, "missing-intermediate")[0].host]
    assert {kt: len(chain) for kt, chain in served.items()} == {"rsa": 1, "ec": 1}


# --- validity, as the Python verifier of the analysis sees it ------------

@pytest.mark.parametrize(("label", "anchors"), [
    ("ats-dual", ["AmazonRootCA1", "AmazonRootCA3"]),
    ("ats-dual", ["SFSRootCAG2"]),
    ("ats-dual", ["StarfieldClass2CA"]),
    ("legacy", ["VeriSignClass3G5"]),
    ("out-of-order", ["AmazonRootCA1", "AmazonRootCA3"]),
    ("leaf-expiring", ["AmazonRootCA1", "AmazonRootCA3"]),
    ("future-roots", ["AmazonRootCA2", "AmazonRootCA4"]),
])
def test_lab_chains_validate_with_cryptography_verifier_now(lab: Lab, label: str, anchors: list[str]) -> None:
    certs = _served_certificates(lab)
    now = datetime.now(timezone.utc)
    for target in _targets(lab, label):
        for chain in lab.served[target.host].values():
            path = _verifier(lab, target.host, anchors, now).verify(certs[chain[0]], [certs[fp] for fp in chain[1:]])
            assert cert_sha256(path[-1]) in {cert_sha256(c) for c in lab.catalog.certificates(anchors)}


def test_future_roots_chain_does_not_validate_with_in_use_roots(lab: Lab) -> None:
    certs = _served_certificates(lab)
    target = _targets(lab, "future-roots")[0]
    chain = lab.served[target.host]["rsa"]
    verifier = _verifier(lab, target.host, ["AmazonRootCA1", "AmazonRootCA3", "SFSRootCAG2"], datetime.now(timezone.utc))
    with pytest.raises(verification.VerificationError):
        verifier.verify(certs[chain[0]], [certs[fp] for fp in chain[1:]])


def test_expired_intermediate_chain_fails_validation(lab: Lab) -> None:
    certs = _served_certificates(lab)
    target = _targets(lab, "expired-intermediate")[0]
    chain = lab.served[target.host]["rsa"]
    verifier = _verifier(lab, target.host, ["AmazonRootCA1"], datetime.now(timezone.utc))
    with pytest.raises(verification.VerificationError, match="not valid at validation time"):
        verifier.verify(certs[chain[0]], [certs[fp] for fp in chain[1:]])


def test_missing_intermediate_chain_fails_validation(lab: Lab) -> None:
    certs = _served_certificates(lab)
    target = _targets(lab, "missing-intermediate")[0]
    chain = lab.served[target.host]["rsa"]
    verifier = _verifier(lab, target.host, ["AmazonRootCA1", "SFSRootCAG2"], datetime.now(timezone.utc))
    with pytest.raises(verification.VerificationError):
        verifier.verify(certs[chain[0]], [])


def test_expired_intermediate_is_really_expired(lab: Lab) -> None:
    certs = _served_certificates(lab)
    chain = lab.served[_targets(lab, "expired-intermediate")[0].host]["rsa"]
    intermediate = certs[chain[1]]
    assert intermediate.not_valid_after_utc < datetime.now(timezone.utc)
    assert lab.catalog.by_sha256(chain[1]).name == "AmazonServerCA1B"
    assert certs[chain[0]].not_valid_after_utc > datetime.now(timezone.utc)  # only the intermediate is expired


def test_leaf_expiring_has_under_30_days_left(lab: Lab) -> None:
    certs = _served_certificates(lab)
    now = datetime.now(timezone.utc)
    for chain in lab.served[_targets(lab, "leaf-expiring")[0].host].values():
        left = certs[chain[0]].not_valid_after_utc - now
        assert timedelta(0) < left < timedelta(days=30)


def test_ordinary_leaves_have_about_a_year_left(lab: Lab) -> None:
    certs = _served_certificates(lab)
    now = datetime.now(timezone.utc)
    for chain in lab.served[_targets(lab, "ats-dual")[0].host].values():
        leaf = certs[chain[0]]
        assert leaf.not_valid_after_utc - now > timedelta(days=300)
        assert timedelta(days=380) < leaf.not_valid_after_utc - leaf.not_valid_before_utc < timedelta(days=410)


def test_leaves_are_issued_relative_to_as_of() -> None:
    as_of = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)
    pki = lab_pki(as_of, ["ap-southeast-2"])
    leaf = pki.leaves[("rsa", "ap-southeast-2")]
    assert leaf.not_valid_before_utc == as_of - timedelta(days=30)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["*.iot.ap-southeast-2.amazonaws.com",
                                                     "iot.ap-southeast-2.amazonaws.com"]
    expiring = pki.leaves[("rsa-expiring", "ap-southeast-2")]
    assert expiring.not_valid_after_utc == as_of + timedelta(days=20)


def test_lab_pki_rejects_naive_as_of() -> None:
    with pytest.raises(LabError, match="tz-aware"):
        lab_pki(datetime(2030, 1, 1))


def test_lab_rejects_a_region_with_dots(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="regions"):
        Lab(tmp_path, regions=["us-east-1.evil"])


def test_lab_rejects_negative_extra_endpoints(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="extra_endpoints"):
        Lab(tmp_path, extra_endpoints=-1)


# --- mTLS and ALPN -----------------------------------------------------------

def test_mtls_endpoint_rejects_a_client_without_certificate_tls12(lab: Lab) -> None:
    with pytest.raises(ssl.SSLError, match="HANDSHAKE_FAILURE"):
        _handshake(_targets(lab, "ats-mtls")[0], _client_context("rsa"))


def test_mtls_endpoint_rejects_a_client_without_certificate_tls13(lab: Lab) -> None:
    target = _targets(lab, "ats-mtls")[0]
    ctx = _client_context(version=ssl.TLSVersion.TLSv1_3)
    with socket.create_connection((target.address, target.port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=target.host) as tls:
            # TLS 1.3: the client's handshake ends before the server has checked its certificate;
            # the refusal arrives as a certificate_required alert (RFC 8446 section 4.4.2.4).
            with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
                tls.recv(1)


def test_mtls_endpoint_accepts_the_lab_client_certificate(lab: Lab) -> None:
    target = _targets(lab, "ats-mtls")[0]
    ctx = _client_context(version=ssl.TLSVersion.TLSv1_3, client=lab)
    with socket.create_connection((target.address, target.port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=target.host) as tls:
            tls.sendall(b"ping")
            tls.unwrap()  # the server answers close_notify only if it accepted us; a refusal raises here


def test_mtls_endpoint_rejects_a_certificate_from_another_ca(lab: Lab, tmp_path: Path) -> None:
    # A lab *server* leaf and key: a certificate the client CA never issued.
    certs = _served_certificates(lab)
    leaf = certs[lab.served[_targets(lab, "ats-dual")[0].host]["ec"][0]]
    cert_file = tmp_path / "stranger.pem"
    cert_file.write_text(cert_pem(leaf), encoding="ascii")
    ctx = _client_context("rsa")
    ctx.load_cert_chain(cert_file, lab_data_directory() / "keys" / "leaf-ec.key.pem")
    with pytest.raises(ssl.SSLError):
        _handshake(_targets(lab, "ats-mtls")[0], ctx)


def test_alpn_endpoint_negotiates_x_amzn_mqtt_ca(lab: Lab) -> None:
    target = _targets(lab, "ats-alpn")[0]
    assert target.alpn == (ALPN_MQTT,)
    _, _, alpn = _handshake(target, _client_context("ec", alpn=(ALPN_MQTT, "http/1.1")))
    assert alpn == "x-amzn-mqtt-ca"


def test_alpn_endpoint_negotiates_nothing_when_not_offered(lab: Lab) -> None:
    _, _, alpn = _handshake(_targets(lab, "ats-alpn")[0], _client_context("rsa"))
    assert alpn is None


# --- lab marking and the catalogue ------------------------------------------

def test_every_lab_certificate_is_marked_lab_in_its_subject(lab: Lab) -> None:
    certs = list(_served_certificates(lab).values()) + [e.certificate for e in lab.catalog.entries]
    certs += load_pem_file(lab.client_certificate)
    for cert in certs:
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert orgs == [LAB_ORGANIZATION], cert.subject.rfc4514_string()
    for entry in lab.catalog.entries:
        cn = entry.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn.endswith("(iotaudit lab)"), cn
        assert "(lab" in entry.display_name


def test_lab_catalogue_has_every_real_catalogue_name_with_same_role_and_status(lab: Lab) -> None:
    for real in aws_catalog().entries:
        mine = lab.catalog.entry(real.name)
        assert (mine.role, mine.status) == (real.role, real.status), real.name
    assert lab.catalog.kind == "lab"


def test_lab_catalogue_shares_no_certificate_or_key_with_the_real_one(lab: Lab) -> None:
    real = aws_catalog()
    for entry in lab.catalog.entries:
        assert real.by_sha256(entry.sha256) is None
        assert real.by_spki(entry.spki_sha256) == []


def test_inventory_style_names_resolve_to_lab_roots(lab: Lab) -> None:
    on_disk = Catalog.from_directory(read_ports_file(lab.ports_file)["catalog_dir"])
    assert on_disk.kind == "lab"
    roots = on_disk.certificates("AmazonRootCA1;AmazonRootCA3".split(";"))
    assert [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in roots] == [
        "Amazon Root CA 1 (iotaudit lab)", "Amazon Root CA 3 (iotaudit lab)"]
    assert [cert_sha256(c) for c in roots] == [lab.catalog.entry(n).sha256 for n in ("AmazonRootCA1", "AmazonRootCA3")]


def test_cross_signed_roots_share_key_and_subject_with_self_signed_roots(lab: Lab) -> None:
    for root, cross in (("AmazonRootCA1", "G2-RootCA1"), ("AmazonRootCA3", "G2-RootCA3"),
                        ("SFSRootCAG2", "SFSRootCAG2-Class2")):
        a, b = lab.catalog.entry(root).certificate, lab.catalog.entry(cross).certificate
        assert a.subject == b.subject and spki_sha256(a) == spki_sha256(b) and a.issuer != b.issuer
    assert lab.catalog.entry("G2-RootCA1").certificate.not_valid_after_utc == datetime(
        2037, 12, 31, 1, 0, tzinfo=timezone.utc)


# --- stable identities -------------------------------------------------------

def test_ca_certificates_are_identical_when_generated_again() -> None:
    first = {name: cert_sha256(c) for name, c in lab_ca_certificates.__wrapped__().items()}
    second = {name: cert_sha256(c) for name, c in lab_ca_certificates.__wrapped__().items()}
    assert first == second


def test_ca_certificates_match_the_committed_identities(lab: Lab) -> None:
    table = (lab_data_directory() / "IDENTITIES.md").read_text(encoding="utf-8")
    rows = {m[0]: (m[1], m[2]) for m in re.findall(r"^\| (\S+) \| [^|]+ \| `([0-9a-f]{64})` \| `(sha256/\S+)` \|$",
                                                   table, re.MULTILINE)}
    current = lab_ca_certificates()
    assert set(rows) == set(current)
    for name, cert in current.items():
        assert rows[name] == (cert_sha256(cert), spki_pin(cert)), name


def test_two_lab_starts_serve_the_same_ca_certificates(lab: Lab, tmp_path: Path) -> None:
    def ca_fingerprints(running: Lab) -> set[str]:
        return {fp for chains in running.served.values() for chain in chains.values() for fp in chain[1:]}

    with Lab(tmp_path, regions=["us-east-1"], hostile=False) as again:
        assert ca_fingerprints(again) <= ca_fingerprints(lab)
        assert [e.sha256 for e in again.catalog.entries] == [e.sha256 for e in lab.catalog.entries]


# --- ports file -------------------------------------------------------------

def test_ports_file_has_the_documented_format(lab: Lab) -> None:
    doc = json.loads(lab.ports_file.read_text(encoding="utf-8"))
    assert set(doc) == {"format", "pid", "catalog_dir", "client_certificate", "client_key", "targets"}
    assert doc["format"] == "iotaudit-lab/1" and doc["pid"] == os.getpid()
    assert Path(doc["client_certificate"]) == lab.client_certificate and lab.client_key.exists()
    for record, target in zip(doc["targets"], lab.targets, strict=True):
        assert set(record) == {"host", "port", "address", "alpn", "region", "endpoint_type", "label", "served"}
        assert record["address"] == "127.0.0.1"
        assert Target(host=record["host"], port=record["port"], address=record["address"],
                      alpn=tuple(record["alpn"]), region=record["region"],
                      endpoint_type=record["endpoint_type"], label=record["label"]) == target
        assert record["host"].endswith(f".iot.{record['region']}.amazonaws.com")
    hostile = {t["label"]: t["served"] for t in doc["targets"] if t["label"] in {"silent", "garbage", "slow-drip", "refused"}}
    assert hostile == {"silent": {}, "garbage": {}, "slow-drip": {}, "refused": {}}


def test_every_region_has_the_four_regular_endpoints(lab: Lab) -> None:
    per_region = {(t.region, t.label, t.endpoint_type.value) for t in lab.targets}
    for region in ("us-east-1", "eu-west-1"):
        assert {(region, "ats-dual", "iot:Data-ATS"), (region, "ats-mtls", "iot:Data-ATS"),
                (region, "ats-alpn", "iot:Data-ATS"), (region, "legacy", "iot:Data")} <= per_region
    assert next(t for t in lab.targets if t.label == "legacy").host == "lab-legacy.iot.us-east-1.amazonaws.com"


# --- hostile endpoints --------------------------------------------------------

def test_silent_endpoint_accepts_tcp_and_never_answers(lab: Lab) -> None:
    target = _targets(lab, "silent")[0]
    ctx = _client_context("rsa")
    with socket.create_connection((target.address, target.port), timeout=1.0) as raw:
        with pytest.raises(TimeoutError):
            ctx.wrap_socket(raw, server_hostname=target.host)


def test_garbage_endpoint_answers_with_non_tls_text(lab: Lab) -> None:
    target = _targets(lab, "garbage")[0]
    with socket.create_connection((target.address, target.port), timeout=TIMEOUT) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        assert raw.recv(1024).startswith(b"HTTP/1.0 400 Bad Request\r\n")


def test_garbage_endpoint_fails_a_tls_handshake(lab: Lab) -> None:
    with pytest.raises(ssl.SSLError, match="WRONG_VERSION_NUMBER|record layer failure|packet length"):
        _handshake(_targets(lab, "garbage")[0], _client_context("rsa"))


def test_slow_drip_endpoint_sends_tls_looking_bytes_that_never_complete(lab: Lab) -> None:
    target = _targets(lab, "slow-drip")[0]
    with socket.create_connection((target.address, target.port), timeout=TIMEOUT) as raw:
        assert raw.recv(1) == b"\x16"  # a TLS handshake record starts
        assert raw.recv(1) == b"\x03"  # and keeps coming, one byte at a time


def test_slow_drip_endpoint_times_out_a_tls_handshake(lab: Lab) -> None:
    target = _targets(lab, "slow-drip")[0]
    ctx = _client_context("rsa")
    with socket.create_connection((target.address, target.port), timeout=1.5) as raw:
        with pytest.raises(TimeoutError):
            ctx.wrap_socket(raw, server_hostname=target.host)


def test_refused_endpoint_refuses_tcp(lab: Lab) -> None:
    target = _targets(lab, "refused")[0]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((target.address, target.port), timeout=TIMEOUT).close()


def test_a_silent_client_does_not_block_other_handshakes(lab: Lab) -> None:
    target = _targets(lab, "ats-dual")[0]
    idle = [socket.create_connection((target.address, target.port), timeout=TIMEOUT) for _ in range(5)]
    try:
        chain, _, _ = _handshake(target, _client_context("rsa"))
        assert chain == lab.served[target.host]["rsa"]
    finally:
        for sock in idle:
            sock.close()


def test_lab_without_hostile_cases_has_none(tmp_path: Path) -> None:
    with Lab(tmp_path, regions=["eu-west-1"], hostile=False, extra_endpoints=2) as running:
        labels = [t.label for t in running.targets]
        assert not {"silent", "garbage", "slow-drip", "refused"} & set(labels)
        assert [t.host for t in running.targets if t.label == "bench"] == [
            "lab-bench01-ats.iot.eu-west-1.amazonaws.com", "lab-bench02-ats.iot.eu-west-1.amazonaws.com"]
    assert not running.ports_file.exists()  # removed when the lab stops


# --- background service and CLI -------------------------------------------------

def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iotaudit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a lab (for the "never signal a stranger" test)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_cli_lab_serve_in_background_then_stop(tmp_path: Path) -> None:
    served = _cli("lab", "serve", "--dir", "lab", "--regions", "us-east-1", "--no-hostile", cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    ports = tmp_path / "lab" / "lab.json"
    assert str(ports) in served.stdout and "ats-dual" in served.stdout
    doc = read_ports_file(ports)
    pid = doc["pid"]
    try:
        assert pid != os.getpid() and _pid_alive(pid)
        record = next(t for t in doc["targets"] if t["label"] == "ats-dual")
        target = Target(host=record["host"], port=record["port"], address=record["address"])
        assert _handshake(target, _client_context("ec"))[0] == record["served"]["ec"]
        stopped = _cli("lab", "stop", "--dir", "lab", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stdout
        assert not ports.exists() and not _pid_alive(pid)
    finally:
        if _pid_alive(pid):
            os.kill(pid, 9)


@pytest.mark.slow
def test_stop_with_a_stale_pid_removes_the_ports_file(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "lab.json").write_text(json.dumps({"format": "iotaudit-lab/1", "pid": gone.pid, "targets": []}))
    assert stop(tmp_path) is False
    assert not (tmp_path / "lab.json").exists()


@pytest.mark.slow
def test_stop_never_signals_a_process_that_is_not_a_lab(tmp_path: Path, idle_process: subprocess.Popen[bytes]) -> None:
    (tmp_path / "lab.json").write_text(json.dumps({"format": "iotaudit-lab/1", "pid": idle_process.pid, "targets": []}))
    assert stop(tmp_path) is False
    assert idle_process.poll() is None
    assert not (tmp_path / "lab.json").exists()


def test_stop_without_a_lab_is_a_no_op(tmp_path: Path) -> None:
    assert stop(tmp_path) is False


def test_stop_rejects_a_file_that_is_not_a_ports_file(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text("{}")
    with pytest.raises(LabError, match="not a lab ports file"):
        stop(tmp_path)


@pytest.mark.slow
def test_lab_in_a_child_process_serves_and_stops(tmp_path: Path) -> None:
    with Lab(tmp_path, regions=["us-east-1"], hostile=False, process=True) as running:
        pid = read_ports_file(running.ports_file)["pid"]
        assert pid != os.getpid()
        target = running.target("ats-dual")
        assert _handshake(target, _client_context("rsa"))[0] == running.served[target.host]["rsa"]
    assert not _pid_alive(pid)
    assert not running.ports_file.exists()


@pytest.mark.slow
def test_python_m_iotaudit_lab_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "iotaudit.lab", "--dir", str(tmp_path), "--regions", "us-east-1",
                             "--no-hostile", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ports = tmp_path / "lab.json"
        deadline = time.monotonic() + 60
        while not ports.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_ports_file(ports)["pid"] == proc.pid
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert not ports.exists()  # the lab removes its own ports file on the way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
