"""Root coverage: path validation on real AWS CA certificates and lab chains, verdict kinds, roots to add.

Every validate_chain verdict in this module is also checked against
``openssl verify -attime -partial_chain`` (skipped only when openssl is absent).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509

from iotaudit import columns as c
from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_pem, cert_sha256, is_signed_by
from iotaudit.coverage import PathBuilder, PathVerdict, analyse_coverage, validate_chain, without_cross_signs
from iotaudit.inventory import load_inventory
from iotaudit.lab import lab_catalog, lab_pki

AS_OF = datetime(2026, 3, 1, tzinfo=timezone.utc)
AWS = aws_catalog()
LAB_CAS = lab_catalog()
PKI = lab_pki(AS_OF)
HOST = "lab-ats-dual-ats.iot.us-east-1.amazonaws.com"


def aws(name: str) -> x509.Certificate:
    return AWS.entry(name).certificate


def lab(name: str) -> x509.Certificate:
    return PKI.cas[name]


def lab_rsa_chain() -> list[x509.Certificate]:
    return [PKI.leaves[("rsa", "us-east-1")], lab("AmazonRSA2048M01"), lab("G2-RootCA1"), lab("SFSRootCAG2-Class2")]


# (id, served, anchors, host, as_of, builder, expected valid, reason fragment, expected anchor name)
CASES = [
    ("aws-sfs-g2-only-accepts-cross-signed-root-ca1", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("SFSRootCAG2")], None, AS_OF, "modern", True, "", "SFSRootCAG2"),
    ("aws-class2-anchors-the-full-cross-sign-chain",
     lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1"), aws("SFSRootCAG2-Class2")],
     lambda: [aws("StarfieldClass2CA")], None, AS_OF, "modern", True, "", "StarfieldClass2CA"),
    ("aws-root-ca1-anchors-modern", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("AmazonRootCA1")], None, AS_OF, "modern", True, "", "AmazonRootCA1"),
    ("aws-root-ca3-only-rejects-rsa", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("AmazonRootCA3")], None, AS_OF, "modern", False, "no path to a trusted anchor", ""),
    ("aws-m01-expired-after-2030-08-23", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("AmazonRootCA1")], None, datetime(2030, 8, 24, tzinfo=timezone.utc), "modern", False,
     "expired", ""),
    ("aws-missing-intermediate", lambda: [aws("AmazonRSA2048M01")], lambda: [aws("SFSRootCAG2")], None, AS_OF,
     "modern", False, "missing intermediate", ""),
    ("aws-legacy-needs-top-or-its-issuer", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("AmazonRootCA1")], None, AS_OF, "legacy-chain-top", False, "legacy chain-top", ""),
    ("aws-legacy-with-issuer-of-top", lambda: [aws("AmazonRSA2048M01"), aws("G2-RootCA1")],
     lambda: [aws("SFSRootCAG2")], None, AS_OF, "legacy-chain-top", True, "", "SFSRootCAG2"),
    ("lab-root-ca1-covers-served-chain", lab_rsa_chain, lambda: [lab("AmazonRootCA1")], HOST, AS_OF, "modern",
     True, "", "AmazonRootCA1"),
    ("lab-legacy-reaches-class2", lab_rsa_chain, lambda: [lab("StarfieldClass2CA")], HOST, AS_OF,
     "legacy-chain-top", True, "", "StarfieldClass2CA"),
    ("lab-legacy-rejects-root-ca1-only", lab_rsa_chain, lambda: [lab("AmazonRootCA1")], HOST, AS_OF,
     "legacy-chain-top", False, "legacy chain-top", ""),
    ("lab-hostname-mismatch", lab_rsa_chain, lambda: [lab("AmazonRootCA1")], "device.example.com", AS_OF,
     "modern", False, "hostname mismatch", ""),
    ("lab-expired-intermediate",
     lambda: [PKI.leaves[("rsa-expired-intermediate", "us-east-1")], lab("AmazonServerCA1B"), lab("G2-RootCA1")],
     lambda: [lab("AmazonRootCA1")], HOST, AS_OF, "modern", False, "expired certificate in path", ""),
    ("lab-leaf-not-yet-valid", lab_rsa_chain, lambda: [lab("AmazonRootCA1")], HOST,
     AS_OF - timedelta(days=400), "modern", False, "not valid before", ""),
    ("lab-out-of-order-still-validates",
     lambda: [PKI.leaves[("rsa", "us-east-1")], lab("G2-RootCA1"), lab("AmazonRSA2048M01")],
     lambda: [lab("AmazonRootCA1")], HOST, AS_OF, "modern", True, "", "AmazonRootCA1"),
    ("lab-reserved-root-chain-needs-root-ca2",
     lambda: [PKI.leaves[("rsa-future", "us-east-1")], lab("AmazonRSA4096M01")],
     lambda: [lab("AmazonRootCA1"), lab("AmazonRootCA3")], HOST, AS_OF, "modern", False, "no path", ""),
    ("lab-legacy-verisign",
     lambda: [PKI.leaves[("legacy", "us-east-1")], lab("SymantecClass3ECC256G2")],
     lambda: [lab("VeriSignClass3G5")], "lab-legacy.iot.us-east-1.amazonaws.com", AS_OF, "modern", True, "",
     "VeriSignClass3G5"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validate_chain(case: tuple) -> None:
    _, served, anchors, host, as_of, builder, valid, fragment, anchor_name = case
    served_certs, anchor_certs = served(), anchors()
    verdict = validate_chain(served_certs, anchor_certs, host=host, as_of=as_of, path_builder=builder)
    assert verdict.valid is valid, verdict.reason
    if valid:
        catalog = AWS if AWS.by_sha256(verdict.anchor_sha256) else LAB_CAS
        assert catalog.by_sha256(verdict.anchor_sha256).name == anchor_name
        assert verdict.path_sha256[0] == cert_sha256(served_certs[0])
        assert verdict.path_sha256[-1] == verdict.anchor_sha256
    else:
        assert fragment in verdict.reason


def _openssl_verify(tmp: Path, served: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                    host: str | None, as_of: datetime) -> bool:
    (tmp / "ca.pem").write_text("".join(cert_pem(a) for a in anchors))
    (tmp / "untrusted.pem").write_text("".join(cert_pem(s) for s in served[1:]))
    (tmp / "leaf.pem").write_text(cert_pem(served[0]))
    # -no-CApath / -no-CAstore: only the profile's anchors, never the system trust store.
    cmd = ["openssl", "verify", "-no-CApath", "-no-CAstore", "-attime", str(int(as_of.timestamp())),
           "-partial_chain", "-CAfile", str(tmp / "ca.pem")]
    if len(served) > 1:
        cmd += ["-untrusted", str(tmp / "untrusted.pem")]
    if host:
        cmd += ["-verify_hostname", host]
    done = subprocess.run([*cmd, str(tmp / "leaf.pem")], capture_output=True, text=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_verdicts_agree_with_openssl_verify(case: tuple, tmp_path: Path) -> None:
    _, served, anchors, host, as_of, builder, _, _, _ = case
    served_certs, anchor_certs = served(), anchors()
    ours = validate_chain(served_certs, anchor_certs, host=host, as_of=as_of, path_builder=builder).valid
    if builder == PathBuilder.LEGACY_CHAIN_TOP.value:
        # OpenSSL 3 always builds trusted-first; model the legacy builder by offering it only the
        # anchors a chain-top builder can use (the served top itself, or the top's issuer).
        top = served_certs[0]
        for cert in served_certs[1:]:
            if is_signed_by(top, cert):
                top = cert
        anchor_certs = [a for a in anchor_certs if cert_sha256(a) == cert_sha256(top) or is_signed_by(top, a)]
        if not anchor_certs:
            assert ours is False
            return
    assert _openssl_verify(tmp_path, served_certs, anchor_certs, host, as_of) is ours


def test_empty_store_and_empty_chain_are_verdicts_not_errors() -> None:
    assert validate_chain([], [aws("AmazonRootCA1")], host=None, as_of=AS_OF).reason == "no certificate was served"
    assert validate_chain([aws("AmazonRSA2048M01")], [], host=None, as_of=AS_OF).reason == "the trust store is empty"


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_chain([aws("AmazonRSA2048M01")], [aws("AmazonRootCA1")], host=None, as_of=datetime(2026, 1, 1))


def test_path_verdict_checks_itself() -> None:
    with pytest.raises(ValueError):
        PathVerdict(True, anchor_sha256="", path_sha256=(), reason="")
    with pytest.raises(ValueError):
        PathVerdict(False, reason="")
    with pytest.raises(ValueError):
        PathVerdict(True, anchor_sha256="a", path_sha256=("b",))


def test_without_cross_signs_drops_the_starfield_copies() -> None:
    stripped = without_cross_signs(lab_rsa_chain(), LAB_CAS)
    assert [cert_sha256(c) for c in stripped] == [cert_sha256(c) for c in lab_rsa_chain()[:2]]


SAMPLE = """device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry
d1,g1,fw-ca1,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1,rsa,,,,
d2,g1,fw-all,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1;AmazonRootCA2;AmazonRootCA3;AmazonRootCA4;SFSRootCAG2,rsa;ecdsa,,,,
d3,g2,fw-class2-legacy,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,StarfieldClass2CA,rsa;ecdsa,legacy-chain-top,,,
d4,g2,fw-verisign,us-east-1,lab-legacy.iot.us-east-1.amazonaws.com,VeriSignClass3G5,rsa,,,,
d5,g2,fw-expiring,us-east-1,lab-leaf-expiring-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1;AmazonRootCA3,rsa;ecdsa,,,,
d6,g3,fw-missing,us-east-1,lab-missing-intermediate-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1,rsa,,,,
d7,g3,fw-nowhere,ap-south-1,*,AmazonRootCA1,rsa,,,,
d8,g3,fw-ca1,us-east-1,lab-ats-dual-ats.iot.us-east-1.amazonaws.com,AmazonRootCA1,rsa,,,,
"""


@pytest.fixture(scope="module")
def lab_coverage(lab_run, tmp_path_factory: pytest.TempPathFactory):  # -> CoverageResult
    path = tmp_path_factory.mktemp("inv") / "inv.csv"
    path.write_text(SAMPLE)
    inv = load_inventory(path)
    return analyse_coverage(lab_run, inv, as_of=lab_run.created_at), inv


def _profile(result, key: str):
    return result.profiles.set_index("profile").loc[key]


def test_lab_covered_verdict(lab_coverage) -> None:
    result, _ = lab_coverage
    row = _profile(result, "fw-ca1")
    assert row["verdict"] == "covered" and row["devices"] == 2
    cov = result.coverage[result.coverage["profile"] == "fw-ca1"]
    assert set(cov["key_type"].astype(str)) == {"rsa"} and set(cov["anchor_name"]) == {"AmazonRootCA1"}


def test_lab_at_risk_expires_soon(lab_coverage) -> None:
    result, _ = lab_coverage
    row = _profile(result, "fw-expiring")
    assert row["verdict"] == "at-risk" and row["risks"] == ["expires-soon"]


def test_lab_at_risk_legacy_builder_needs_cross_sign(lab_coverage) -> None:
    result, _ = lab_coverage
    row = _profile(result, "fw-class2-legacy")
    assert row["verdict"] == "at-risk" and row["risks"] == ["needs-cross-sign"]
    assert not row["ready_no_cross_sign"]
    adds = result.roots_to_add.set_index(["profile", "scenario"]).loc[("fw-class2-legacy", "no-cross-sign")]
    assert sorted(adds["roots_to_add"]) == ["AmazonRootCA1", "AmazonRootCA3"]


def test_lab_at_risk_legacy_verisign_anchor(lab_coverage) -> None:
    result, _ = lab_coverage
    row = _profile(result, "fw-verisign")
    assert row["verdict"] == "at-risk" and row["risks"] == ["legacy-anchor"]


def test_lab_broken_missing_intermediate_cannot_be_fixed_by_roots(lab_coverage) -> None:
    result, _ = lab_coverage
    row = _profile(result, "fw-missing")
    assert row["verdict"] == "broken" and any("missing intermediate" in r for r in row["reasons"])
    today = result.roots_to_add.set_index(["profile", "scenario"]).loc[("fw-missing", "today")]
    assert today["unfixable"] == 1 and today["roots_to_add"] == []


def test_lab_not_applicable_when_no_chain_is_met(lab_coverage) -> None:
    result, _ = lab_coverage
    assert _profile(result, "fw-nowhere")["verdict"] == "not-applicable"


def test_reserved_roots_question(lab_coverage) -> None:
    result, _ = lab_coverage
    adds = result.roots_to_add.set_index(["profile", "scenario"])
    assert adds.loc[("fw-all", "reserved-roots"), "ready"]
    assert adds.loc[("fw-ca1", "reserved-roots"), "roots_to_add"] == ["AmazonRootCA2"]
    assert sorted(adds.loc[("fw-expiring", "reserved-roots"), "roots_to_add"]) == ["AmazonRootCA2", "AmazonRootCA4"]


def test_fleet_counts_every_device_once_per_endpoint_and_key_type(lab_coverage) -> None:
    result, inv = lab_coverage
    fleet = result.fleet
    dual = fleet[(fleet["host"] == "lab-ats-dual-ats.iot.us-east-1.amazonaws.com") & (fleet["key_type"] == "rsa")]
    # fw-ca1 (d1 in g1, d8 in g3) and fw-all (d2 in g1) covered; fw-class2-legacy (d3 in g2) at-risk.
    by = {(str(g), str(v)): int(n) for g, v, n in zip(dual["group"], dual["verdict"], dual["devices"], strict=True)}
    assert by == {("g1", "covered"): 2, ("g2", "at-risk"): 1, ("g3", "covered"): 1}


def test_meets_filters_by_key_type(lab_coverage) -> None:
    result, _ = lab_coverage
    assert set(result.coverage.loc[result.coverage["profile"] == "fw-verisign", "key_type"].astype(str)) == {"rsa"}
    assert set(result.coverage.loc[result.coverage["profile"] == "fw-all", "key_type"].astype(str)) == {"rsa", "ec"}


# --- ChainValidator memo keys: the host enters only through the leaf's name match -------------

def _validator(served: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]):  # -> (validator, chain, store)
    from iotaudit.coverage import ChainValidator

    validator = ChainValidator({})
    return validator, validator.add(served), validator.add(anchors)


def test_hosts_matching_the_leaf_share_one_validation() -> None:
    validator, chain, store = _validator(lab_rsa_chain(), [lab("AmazonRootCA1")])
    first = validator.validate(chain, store, host=HOST, as_of=AS_OF, path_builder="modern")
    second = validator.validate(chain, store, host="lab-ats-alpn-ats.iot.us-east-1.amazonaws.com", as_of=AS_OF,
                                path_builder="modern")
    assert first.valid and second == first
    assert validator.calls == 1


def test_a_matching_and_a_mismatching_host_do_not_share_a_verdict() -> None:
    validator, chain, store = _validator(lab_rsa_chain(), [lab("AmazonRootCA1")])
    assert validator.validate(chain, store, host=HOST, as_of=AS_OF, path_builder="modern").valid
    other = validator.validate(chain, store, host="lab-ats-dual-ats.iot.eu-west-1.amazonaws.com", as_of=AS_OF,
                               path_builder="modern")
    assert not other.valid and "hostname mismatch" in other.reason
    assert "lab-ats-dual-ats.iot.eu-west-1.amazonaws.com" in other.reason
    # And in the other order: a cached mismatch never answers for a matching host.
    validator, chain, store = _validator(lab_rsa_chain(), [lab("AmazonRootCA1")])
    assert not validator.validate(chain, store, host="device.example.com", as_of=AS_OF, path_builder="modern").valid
    assert validator.validate(chain, store, host=HOST, as_of=AS_OF, path_builder="modern").valid


def test_a_mismatch_reason_names_its_own_host() -> None:
    validator, chain, store = _validator(lab_rsa_chain(), [lab("AmazonRootCA1")])
    one = validator.validate(chain, store, host="one.example.com", as_of=AS_OF, path_builder="modern")
    two = validator.validate(chain, store, host="two.example.com", as_of=AS_OF, path_builder="modern")
    assert one.reason.endswith("not one.example.com") and two.reason.endswith("not two.example.com")
    direct = validate_chain(lab_rsa_chain(), [lab("AmazonRootCA1")], host="two.example.com", as_of=AS_OF)
    assert two == direct


@pytest.mark.parametrize("host", [
    HOST, HOST.upper(), "iot.us-east-1.amazonaws.com", "a.b.iot.us-east-1.amazonaws.com", "iot.eu-west-1.amazonaws.com",
    "x.iot.eu-west-1.amazonaws.com", "us-east-1.amazonaws.com", "amazonaws.com", "localhost", "127.0.0.1",
])
def test_leaf_name_match_agrees_with_the_verifier(host: str) -> None:
    from iotaudit.coverage import leaf_matches_host

    served = lab_rsa_chain()
    verdict = validate_chain(served, [lab("AmazonRootCA1")], host=host, as_of=AS_OF)
    assert leaf_matches_host(served[0], host) is verdict.valid


def test_names_the_verifier_refuses_are_never_shared() -> None:
    validator, chain, _ = _validator(lab_rsa_chain(), [lab("AmazonRootCA1")])
    assert validator.host_key(chain[0], "bad_name.iot.us-east-1.amazonaws.com") == (
        "host", "bad_name.iot.us-east-1.amazonaws.com")
    assert validator.host_key(chain[0], HOST + ".") == ("host", HOST + ".")
    assert validator.host_key(chain[0], None) is None and validator.host_key(chain[0], "") is None


@pytest.mark.parametrize("builder", ["modern", "legacy-chain-top"])
def test_validity_from_single_anchors_equals_the_whole_store(builder: str) -> None:
    from itertools import combinations

    names = ["AmazonRootCA1", "AmazonRootCA3", "SFSRootCAG2", "StarfieldClass2CA", "VeriSignClass3G5"]
    chains = [lab_rsa_chain(), lab_rsa_chain()[:2], lab_rsa_chain()[:3],
              [PKI.leaves[("legacy", "us-east-1")], lab("SymantecClass3ECC256G2")]]
    validator, _, _ = _validator([], [])
    for served in chains:
        chain = validator.add(served)
        for size in (1, 2, 3):
            for combo in combinations(names, size):
                store = validator.add([lab(n) for n in combo])
                for when in (AS_OF, datetime(2040, 1, 1, tzinfo=timezone.utc)):
                    whole = validate_chain(served, [lab(n) for n in combo], host=HOST, as_of=when,
                                           path_builder=builder, explain=False).valid
                    assert validator.valid(chain, store, host=HOST, as_of=when, path_builder=builder) is whole, combo


def test_roots_to_add_equal_validating_every_store_with_each_candidate_added(lab_run, lab_coverage) -> None:
    from iotaudit.coverage import _candidate_order, _min_cover

    result, inv = lab_coverage
    catalog = lab_run.catalog_object()
    anchors = inv.resolve(catalog)
    certs = lab_run.certificate_objects()
    chain_of = dict(zip(lab_run.observations["observation_id"], lab_run.observations["chain_sha256"], strict=True))
    order = _candidate_order(catalog)
    builders = dict(zip(inv.profiles["profile_key"], inv.profiles["path_builder"], strict=True))
    today = result.roots_to_add[result.roots_to_add["scenario"] == "today"].set_index("profile")
    for key, rows in result.coverage[result.coverage["observation_id"] >= 0].groupby("profile", observed=True):
        base = anchors[str(key)]
        fixers = []
        for obs_id, host in dict.fromkeys(zip(rows["observation_id"], rows["host"], strict=True)):
            served = [certs[s] for s in chain_of[obs_id]]
            if validate_chain(served, base, host=host, as_of=lab_run.created_at, path_builder=builders[key]).valid:
                continue
            fixers.append({
                name for name in order if catalog.entry(name).certificate not in base and validate_chain(
                    served, [*base, catalog.entry(name).certificate], host=host, as_of=lab_run.created_at,
                    path_builder=builders[key], explain=False).valid
            })
        assert today.loc[key, "roots_to_add"] == _min_cover(fixers, order), key


def test_reported_anchor_does_not_depend_on_the_order_of_the_trust_store(lab_run) -> None:
    # Amazon Root CA 1 and its Starfield cross-sign share a subject: both can anchor the RSA chain.
    cat = lab_run.catalog_object()
    store = [cat.entry("AmazonRootCA1").certificate, cat.entry("G2-RootCA1").certificate]
    obs = lab_run.observations
    row = obs[(obs[c.LABEL] == "ats-dual") & (obs[c.PROBE] == "rsa-tls12")].iloc[0]
    certs = lab_run.certificate_objects()
    served = [certs[fp] for fp in row[c.CHAIN_SHA256]]
    verdicts = [validate_chain(served, order, host=row[c.HOST], as_of=lab_run.created_at)
                for order in (store, store[::-1])]
    assert verdicts[0].valid and verdicts[0] == verdicts[1]
