"""Root coverage on the collected lab: verdict kinds, risks, roots to add, fleet view, on each profile's stack.

Path validation itself (every stack's rules, and their agreement with the real
libraries) is tested in tests/test_paths.py and tests/test_crosscheck_*.py;
this module tests what coverage builds on the one engine.
"""

from __future__ import annotations

import pytest

from iotaudit.certs import cert_sha256
from iotaudit.hypothetical import without_cross_signs
from iotaudit.inventory import load_inventory
from iotaudit.lab import lab_catalog, lab_pki
from iotaudit.paths import validate_chain
from iotaudit.root_coverage import ChainJudge, analyse_coverage
from iotaudit.stacks import get_stack

from datetime import datetime, timezone

AS_OF = datetime(2026, 3, 1, tzinfo=timezone.utc)
LAB_CAS = lab_catalog()
PKI = lab_pki(AS_OF)


def lab(name: str):
    return PKI.cas[name]


def lab_rsa_chain() -> list:
    return [PKI.leaves[("rsa", "us-east-1")], lab("AmazonRSA2048M01"), lab("G2-RootCA1"), lab("SFSRootCAG2-Class2")]


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
    assert row["verdict"] == "broken" and row["reasons"]  # the wording is the engine's (tests/test_paths.py)
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


def test_roots_to_add_equal_validating_every_store_with_each_candidate_added(lab_run, lab_coverage) -> None:
    from iotaudit.root_coverage import _candidate_order, _min_cover

    result, inv = lab_coverage
    catalog = lab_run.catalog_object()
    profiles = {p.key: p for p in inv.build_profiles(catalog)}
    certs = lab_run.certificate_objects()
    chain_of = dict(zip(lab_run.observations["observation_id"], lab_run.observations["chain_sha256"], strict=True))
    order = _candidate_order(catalog)
    today = result.roots_to_add[result.roots_to_add["scenario"] == "today"].set_index("profile")
    for key, rows in result.coverage[result.coverage["observation_id"] >= 0].groupby("profile", observed=True):
        base, stack = list(profiles[str(key)].store), profiles[str(key)].stack
        fixers = []
        for obs_id, host in dict.fromkeys(zip(rows["observation_id"], rows["host"], strict=True)):
            served = [certs[s] for s in chain_of[obs_id]]
            if validate_chain(served, base, stack=stack, host=host, as_of=lab_run.created_at).valid:
                continue
            fixers.append({
                name for name in order if catalog.entry(name).certificate not in base and validate_chain(
                    served, [*base, catalog.entry(name).certificate], stack=stack, host=host,
                    as_of=lab_run.created_at, explain=False).valid
            })
        assert today.loc[key, "roots_to_add"] == _min_cover(fixers, order), key


def test_coverage_rows_carry_the_profile_stack(lab_coverage) -> None:
    result, inv = lab_coverage
    stacks = dict(zip(inv.profiles["profile_key"], inv.profiles["tls_stack"], strict=True))
    assert stacks["fw-class2-legacy"] == "openssl-1.0.1"  # path_builder legacy-chain-top maps onto it
    assert all(stacks[str(p)] == str(s) for p, s in zip(result.coverage["profile"], result.coverage["tls_stack"],
                                                        strict=True))


def test_the_judge_asks_the_engine_once_per_question(lab_run) -> None:
    judge = ChainJudge(lab_run, as_of=lab_run.created_at)
    [profile] = load_inventory_rows(lab_run, "d1,g,fw,us-east-1,*,AmazonRootCA1,rsa,,,,")
    store = judge.store_of(profile)
    first = [judge.outcome(i, store, profile.stack) for i in judge.met(profile)]
    calls = judge.engine.calls
    again = [judge.outcome(i, store, get_stack(profile.stack.id)) for i in judge.met(profile)]
    assert first == again and judge.engine.calls == calls > 0
    assert judge.engine.calls_by_stack[profile.stack.id] == calls


def load_inventory_rows(lab_run, *rows: str):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inv.csv"
        path.write_text(SAMPLE.splitlines()[0] + "\n" + "\n".join(rows) + "\n")
        return load_inventory(path).build_profiles(lab_run.catalog_object())
