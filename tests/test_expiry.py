"""Expiry timelines: break dates found by re-validation agree with validation at every boundary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509

from iotaudit import columns as c
from iotaudit import expiry
from iotaudit.catalog import CatalogRole, CatalogStatus
from iotaudit.certs import cert_sha256, load_pem_file
from iotaudit.paths import validate_chain
from iotaudit.root_coverage import coverage as coverage_of
from iotaudit.stacks import DEFAULT_STACK_ID, PATH_BUILDER_STACKS, get_stack
from tests.helpers import (
    AS_OF,
    at,
    ec_key,
    issue,
    leaf,
    make_catalog,
    make_inventory,
    make_run,
    rsa_key,
)

SECOND = timedelta(seconds=1)
# The first instant the default stack (OpenSSL 3) counts a certificate as expired: OpenSSL's X509_cmp_time
# takes the notAfter second as past, RFC 5280 4.1.2.5 as still valid (iotaudit.stacks.Stack.not_after_inclusive).
END = SECOND if get_stack(DEFAULT_STACK_ID).not_after_inclusive else timedelta(0)


# --- fixtures: a small hierarchy with every kind of certificate ----------------------------------


@pytest.fixture(scope="module")
def pki():
    """Root R (to 2040), cross-signer S (to 2040), R cross-signed by S (to 2027), intermediate I (to 2030)."""
    root = issue("Test Root CA 1", rsa_key(0), end=at(2040))
    signer = issue("Test Starfield Root G2", rsa_key(1), end=at(2040))
    cross = issue("Test Root CA 1", rsa_key(0), issuer=signer, start=at(2020), end=at(2027))
    inter = issue("Test RSA M01", rsa_key(2), issuer=root, start=at(2021), end=at(2030))
    ec_root = issue("Test Root CA 3", ec_key(0), end=at(2040))
    ec_inter = issue("Test ECDSA M01", ec_key(1), issuer=ec_root, start=at(2021), end=at(2030))
    return {"root": root, "signer": signer, "cross": cross, "inter": inter, "ec_root": ec_root, "ec_inter": ec_inter}


def boundaries(certs: Sequence[x509.Certificate]) -> list[datetime]:
    out = set()
    for cert in certs:
        out |= {cert.not_valid_before_utc, cert.not_valid_after_utc + SECOND}
    return sorted(out)


def assert_break_is_exact(served, anchors, host, builder, result: expiry.ChainBreak, until: datetime) -> None:
    """Validate day by day and at every boundary +-1 s: valid before the break, invalid at it."""
    times = {AS_OF + timedelta(days=d) for d in range(0, (until - AS_OF).days + 1, 7)}
    for b in boundaries([*served, *anchors]):
        times |= {b - SECOND, b, b + SECOND}
    for t in sorted(t for t in times if AS_OF <= t <= until):
        ok = validate_chain(served, anchors, host=host, as_of=t, stack=PATH_BUILDER_STACKS[builder]).valid
        if result.break_date is None or t < result.break_date:
            assert ok, f"expected a valid path at {t}, the break date is {result.break_date}"
        elif t == result.break_date:
            assert not ok, f"expected no valid path at the break date {t}"


CASES = {
    # name: (served, anchors, builder, expected break)
    "leaf expires first": (lambda p, lf: [lf.cert, p["inter"].cert], lambda p: [p["root"].cert], "modern",
                           lambda p, lf: lf.cert.not_valid_after_utc + END),
    "anchor expires before the served chain": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["cross"].cert], "modern",
        lambda p, lf: p["cross"].cert.not_valid_after_utc + END),
    "cross-sign path, modern survives via the self-signed root": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["root"].cert, p["signer"].cert],
        "modern", lambda p, lf: lf.cert.not_valid_after_utc + END),
    "cross-sign path, legacy chain-top breaks with the cross-sign": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["root"].cert, p["signer"].cert],
        "legacy-chain-top", lambda p, lf: p["cross"].cert.not_valid_after_utc + END),
    "intermediate expires first": (
        lambda p, lf: [lf.cert, p["inter"].cert], lambda p: [p["root"].cert], "modern",
        lambda p, lf: p["inter"].cert.not_valid_after_utc + END),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chain_break_equals_the_first_failing_instant(pki, case: str) -> None:
    served_f, anchors_f, builder, expected_f = CASES[case]
    end = at(2029) if case != "intermediate expires first" else at(2035)
    lf = leaf("a1-ats.iot.us-east-1.amazonaws.com", ec_key(5), pki["inter"], start=at(2024), end=end)
    served, anchors = served_f(pki, lf), anchors_f(pki)
    result = expiry.chain_break(served, anchors, host="a1-ats.iot.us-east-1.amazonaws.com", as_of=AS_OF,
                                stack=PATH_BUILDER_STACKS[builder])
    assert result.valid_at_as_of
    assert result.break_date == expected_f(pki, lf)
    assert_break_is_exact(served, anchors, "a1-ats.iot.us-east-1.amazonaws.com", builder, result,
                          result.break_date + timedelta(days=30))
    assert result.reason  # the validator says why at the break


def test_break_date_is_not_the_minimum_served_not_after(pki) -> None:
    lf = leaf("h", ec_key(5), pki["inter"], start=at(2024), end=at(2029))
    served = [lf.cert, pki["inter"].cert, pki["cross"].cert]
    result = expiry.chain_break(served, [pki["root"].cert, pki["signer"].cert], host="h", as_of=AS_OF)
    earliest_served = min(x.not_valid_after_utc for x in served)
    assert earliest_served == pki["cross"].cert.not_valid_after_utc
    assert result.break_date > earliest_served + timedelta(days=365)
    assert result.last_path_sha256[-1] == cert_sha256(pki["root"].cert)  # the surviving path


def test_anchor_expiring_first_is_named_as_the_cause(pki) -> None:
    lf = leaf("h", ec_key(5), pki["inter"], start=at(2024), end=at(2029))
    result = expiry.chain_break([lf.cert, pki["inter"].cert, pki["cross"].cert], [pki["cross"].cert],
                                host="h", as_of=AS_OF)
    assert result.cause_sha256 == (cert_sha256(pki["cross"].cert),)
    assert "expired" in result.reason


def test_chain_invalid_at_as_of_has_no_break_date(pki) -> None:
    lf = leaf("h", ec_key(5), pki["inter"])
    result = expiry.chain_break([lf.cert, pki["inter"].cert], [pki["ec_root"].cert], host="h", as_of=AS_OF)
    assert not result.valid_at_as_of and result.break_date is None and result.reason


def test_no_break_within_a_short_horizon(pki) -> None:
    lf = leaf("h", ec_key(5), pki["inter"], end=at(2029))
    result = expiry.chain_break([lf.cert, pki["inter"].cert], [pki["root"].cert], host="h", as_of=AS_OF,
                                horizon_years=2)
    assert result.valid_at_as_of and result.break_date is None
    assert result.last_path_sha256 == result.path_sha256


def test_naive_as_of_is_refused(pki) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        expiry.chain_break([pki["inter"].cert], [pki["root"].cert], host=None, as_of=datetime(2025, 1, 1))


# --- fleet-level frames ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(pki, tmp_path_factory):
    """Two endpoints (RSA and EC chains each) and five profiles showing every break state."""
    tmp = tmp_path_factory.mktemp("fleet")
    host = "a1-ats.iot.us-east-1.amazonaws.com"
    rsa_leaf = leaf(host, rsa_key(3), pki["inter"], start=at(2024), end=at(2026, 6))
    ec_leaf = leaf(host, ec_key(3), pki["ec_inter"], start=at(2024), end=at(2027, 3))
    catalog = make_catalog({
        "AmazonRootCA1": (pki["root"], CatalogRole.ROOT, CatalogStatus.IN_USE),
        "AmazonRootCA3": (pki["ec_root"], CatalogRole.ROOT, CatalogStatus.IN_USE),
        "SFSRootCAG2": (pki["signer"], CatalogRole.ROOT, CatalogStatus.CROSS_SIGNER),
        "G2-RootCA1": (pki["cross"], CatalogRole.CROSS_SIGNED, CatalogStatus.IN_USE),
        "AmazonRSA2048M01": (pki["inter"], CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
        "AmazonECDSA256M01": (pki["ec_inter"], CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
    })
    run = make_run(tmp, [
        (host, "rsa-tls12", [rsa_leaf, pki["inter"], pki["cross"]]),
        (host, "ecdsa-tls12", [ec_leaf, pki["ec_inter"]]),
    ], catalog)
    inventory = make_inventory(tmp, [
        {"profile": "both-roots", "devices": 5, "trust_store": "AmazonRootCA1;AmazonRootCA3"},
        {"profile": "rsa-only-store", "devices": 3, "trust_store": "AmazonRootCA1"},
        {"profile": "starfield-only", "devices": 2, "trust_store": "SFSRootCAG2", "key_types": "rsa"},
        {"profile": "nothing-trusted", "devices": 4, "trust_store": "AmazonRootCA3", "key_types": "rsa"},
        {"profile": "elsewhere", "devices": 7, "trust_store": "AmazonRootCA1", "region": "eu-west-1"},
    ])
    anchors = inventory.resolve(run.catalog_object())
    profiles = inventory.build_profiles(run.catalog_object())
    coverage = coverage_of(run, inventory, as_of=AS_OF)
    return {"run": run, "inventory": inventory, "anchors": anchors, "profiles": profiles, "coverage": coverage,
            "rsa_leaf": rsa_leaf,
            "ec_leaf": ec_leaf, "host": host}


def by_profile(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["profile"]: r for r in frame.to_dict("records")}


def test_break_dates_states_and_dates(fleet, pki) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    rows = by_profile(frame)
    rsa_end = fleet["rsa_leaf"].cert.not_valid_after_utc + END
    ec_end = fleet["ec_leaf"].cert.not_valid_after_utc + END
    assert rows["both-roots"]["state"] == "breaks"
    assert rows["both-roots"]["break_date"] == pd.Timestamp(rsa_end)  # first chain it may meet to break
    assert rows["both-roots"]["dark_date"] == pd.Timestamp(ec_end)    # its last valid path
    assert rows["both-roots"]["chains"] == 2 and rows["both-roots"]["chains_valid"] == 2
    assert rows["rsa-only-store"]["state"] == "partly-broken"         # no anchor for the EC chain
    assert rows["rsa-only-store"]["dark_date"] == pd.Timestamp(rsa_end)
    assert rows["starfield-only"]["break_date"] == pd.Timestamp(min(rsa_end, pki["cross"].cert.not_valid_after_utc + END))
    assert rows["nothing-trusted"]["state"] == "broken" and pd.isna(rows["nothing-trusted"]["break_date"])
    assert rows["nothing-trusted"]["break_reason"]
    assert rows["elsewhere"]["state"] == "no-chains"
    assert str(frame["break_date"].dtype) == c.TIME and str(frame["dark_date"].dtype) == c.TIME


def test_every_chain_break_date_holds_when_revalidated(fleet) -> None:
    chains = expiry.chain_break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF,
                                      coverage=fleet["coverage"])
    certs = fleet["run"].certificate_objects()
    profiles = fleet["inventory"].profiles.set_index("profile_key")
    assert len(chains) == 6  # 2 + 2 + 1 + 1; the profile in another region meets none
    for row in chains[chains["break_date"].notna()].to_dict("records"):
        obs = fleet["run"].observations.set_index(c.OBSERVATION_ID).loc[row[c.OBSERVATION_ID]]
        served = [certs[fp] for fp in obs[c.CHAIN_SHA256]]
        anchors = fleet["anchors"][row["profile"]]
        builder = {v: k for k, v in PATH_BUILDER_STACKS.items()}[profiles.loc[row["profile"], "tls_stack"]]
        when = row["break_date"].to_pydatetime()
        assert validate_chain(served, anchors, host=row[c.HOST], as_of=when - SECOND, stack=PATH_BUILDER_STACKS[builder]).valid
        assert not validate_chain(served, anchors, host=row[c.HOST], as_of=when, stack=PATH_BUILDER_STACKS[builder]).valid


def test_cliff_counts_devices_losing_every_path(fleet) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    curve = expiry.cliff(frame, as_of=AS_OF)
    assert curve["date"].iloc[0] == pd.Timestamp(AS_OF)
    assert curve["date"].iloc[-1] == pd.Timestamp(at(2040))
    assert curve["devices_losing"].iloc[0] == 4                 # nothing-trusted: already dark
    assert curve["devices_connected"].iloc[0] == 5 + 3 + 2      # the no-chains profile is not counted
    assert curve["devices_connected"].iloc[-1] == 0
    assert curve["devices_losing"].sum() == 5 + 3 + 2 + 4
    assert curve["devices_connected"].is_monotonic_decreasing
    rsa_end = pd.Timestamp(fleet["rsa_leaf"].cert.not_valid_after_utc + END)
    at_rsa = curve[curve["date"] == rsa_end].iloc[0]
    assert at_rsa["devices_losing"] == 3 + 2  # rsa-only-store and starfield-only go dark; both-roots only breaks
    assert "both-roots" in at_rsa["profiles"]


def test_cliff_ignores_dates_beyond_the_horizon(fleet) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    curve = expiry.cliff(frame, as_of=AS_OF, horizon_years=1)
    assert list(curve["date"]) == [pd.Timestamp(AS_OF), pd.Timestamp(at(2026))]
    assert curve["devices_connected"].iloc[-1] == 5 + 3 + 2


def test_certificate_expiry_roles_days_left_and_hosts(fleet, pki) -> None:
    frame = expiry.certificate_expiry(fleet["run"], fleet["coverage"], as_of=AS_OF)
    rows = {r["sha256"]: r for r in frame.to_dict("records")}
    role = {k: rows[cert_sha256(pki[k].cert)]["role"] for k in ("inter", "cross")}
    assert role == {"inter": "intermediate", "cross": "cross-signed root"}
    assert rows[cert_sha256(fleet["rsa_leaf"].cert)]["role"] == "leaf"
    assert rows[cert_sha256(pki["root"].cert)]["role"] == "root"          # met as an anchor, not served
    assert not rows[cert_sha256(pki["root"].cert)]["served"]
    assert rows[cert_sha256(pki["root"].cert)]["on_valid_path"]
    assert rows[cert_sha256(pki["cross"].cert)]["hosts"] == [fleet["host"]]
    assert rows[cert_sha256(pki["cross"].cert)]["days_left"] == (at(2027) - AS_OF).days
    assert rows[cert_sha256(pki["cross"].cert)]["catalog_name"] == "G2-RootCA1"
    assert frame["not_after"].is_monotonic_increasing


def test_anchor_expiry_per_profile_and_in_use(fleet, pki) -> None:
    frame = expiry.anchor_expiry(fleet["run"], fleet["profiles"], as_of=AS_OF,
                                 coverage=fleet["coverage"])
    rows = {(r["profile"], r["anchor_name"]): r for r in frame.to_dict("records")}
    assert rows[("both-roots", "AmazonRootCA1")]["days_left"] == (at(2040) - AS_OF).days
    assert rows[("both-roots", "AmazonRootCA1")]["in_use"]
    assert rows[("both-roots", "AmazonRootCA1")]["devices"] == 5
    assert not rows[("nothing-trusted", "AmazonRootCA3")]["in_use"]
    without = expiry.anchor_expiry(fleet["run"], fleet["profiles"], as_of=AS_OF)
    assert without["in_use"].isna().all()


def test_anchor_expiry_flags_an_expired_anchor(fleet) -> None:
    frame = expiry.anchor_expiry(fleet["run"], fleet["profiles"], as_of=at(2041))
    assert frame["expired"].all() and (frame["days_left"] < 0).all()


# --- the lab -----------------------------------------------------




def test_lab_break_dates_hold_when_revalidated(lab_run, tmp_path) -> None:
    as_of = lab_run.created_at
    names = ";".join(n for n in ("AmazonRootCA1", "AmazonRootCA3") if n in lab_run.catalog_object().names)
    inventory = make_inventory(tmp_path, [
        {"profile": "modern", "devices": 10, "trust_store": names, "region": "*"},
        {"profile": "legacy", "devices": 4, "trust_store": names, "region": "*", "path_builder": "legacy-chain-top"},
    ])
    anchors = inventory.resolve(lab_run.catalog_object())
    profiles = inventory.build_profiles(lab_run.catalog_object())
    coverage = coverage_of(lab_run, inventory, as_of=as_of)
    chains = expiry.chain_break_dates(lab_run, profiles, as_of=as_of, coverage=coverage)
    assert not chains.empty
    certs = lab_run.certificate_objects()
    obs = lab_run.observations.set_index(c.OBSERVATION_ID)
    builders = {"modern": "modern", "legacy": "legacy-chain-top"}
    checked = 0
    for row in chains.to_dict("records"):
        served = [certs[fp] for fp in obs.loc[row[c.OBSERVATION_ID], c.CHAIN_SHA256]]
        anchors_p = anchors[row["profile"]]
        builder = builders[row["profile"]]
        valid_now = validate_chain(served, anchors_p, host=row[c.HOST], as_of=as_of, stack=PATH_BUILDER_STACKS[builder]).valid
        assert valid_now == row["valid_at_as_of"]
        if pd.notna(row["break_date"]):
            when = row["break_date"].to_pydatetime()
            assert validate_chain(served, anchors_p, host=row[c.HOST], as_of=when - SECOND, stack=PATH_BUILDER_STACKS[builder]).valid
            assert not validate_chain(served, anchors_p, host=row[c.HOST], as_of=when, stack=PATH_BUILDER_STACKS[builder]).valid
            checked += 1
    assert checked > 0
    frame = expiry.break_dates(lab_run, profiles, as_of=as_of, chain_breaks=chains)
    assert set(frame["profile"]) == {"modern", "legacy"}
    curve = expiry.cliff(frame, as_of=as_of)
    assert curve["devices_connected"].iloc[-1] <= curve["devices_connected"].iloc[0]


def test_break_dates_without_coverage_finds_the_same_chains(fleet) -> None:
    given = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    derived = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF)
    pd.testing.assert_frame_equal(given, derived)


AWS_CA = Path(__file__).resolve().parents[1] / "data" / "aws-ca"


@pytest.fixture(scope="module")
def aws():
    files = {
        "AmazonRSA2048M01": "intermediate/amazon_rsa_2048_m01.pem",
        "G2-RootCA1": "cross/amazon_root_ca_1__cross-signed-by_sfs-root-g2.pem",
        "SFSRootCAG2-Class2": "cross/sfs_root_g2__cross-signed-by_starfield-class2.pem",
        "SFSRootCAG2": "root/Starfield_Services_Root_Certificate_Authority_-_G2.pem",
        "AmazonRootCA1": "root/Amazon_Root_CA_1.pem",
        "StarfieldClass2CA": "root/Starfield_Class_2_CA.pem",
    }
    return {n: load_pem_file(AWS_CA / f)[0] for n, f in files.items()}


def test_real_legacy_builder_with_only_the_self_signed_root_is_already_broken(aws) -> None:
    """The served top is the cross-signed Amazon Root CA 1: a chain-top builder needs Starfield G2 or the cross-sign."""
    chain = [aws["AmazonRSA2048M01"], aws["G2-RootCA1"]]
    result = expiry.chain_break(chain, [aws["AmazonRootCA1"]], host=None, as_of=AS_OF, stack="openssl-1.0.1")
    assert not result.valid_at_as_of and result.reason


# --- the firmware side: nothing AWS could serve validates any more ---------------------------------


def _hypothetical(fleet, horizon_years: int = 15):
    from iotaudit.hypothetical import HypotheticalPki

    end = expiry.horizon_end(AS_OF, horizon_years)
    return HypotheticalPki(fleet["run"].catalog_object(), AS_OF, until=end + timedelta(days=2))


def _profile(fleet, key: str, **changes):
    from dataclasses import replace

    found = {p.key: p for p in fleet["profiles"]}[key]
    return replace(found, **changes) if changes else found


def test_firmware_date_is_not_the_intermediate_or_leaf_expiry(fleet, pki) -> None:
    hypo = _hypothetical(fleet, 14)
    result = expiry.firmware_break(_profile(fleet, "rsa-only-store"), hypo, as_of=AS_OF, horizon_years=14)
    # Amazon Root CA 1 (to 2040) outlives a 14-year horizon; the served M01 (to 2030) and leaf (2026) are renewed by AWS.
    assert result.date is None and result.kind is c.FirmwareCause.NONE
    longer = expiry.firmware_break(_profile(fleet, "rsa-only-store"), _hypothetical(fleet, 20), as_of=AS_OF,
                                   horizon_years=20)
    assert longer.date == pki["root"].cert.not_valid_after_utc + END and longer.kind is c.FirmwareCause.ANCHOR
    assert longer.name == "AmazonRootCA1" and longer.sha256 == cert_sha256(pki["root"].cert)


def test_firmware_date_of_a_stored_cross_sign_is_its_expiry(fleet, pki) -> None:
    profile = _profile(fleet, "rsa-only-store", store=(pki["cross"].cert,))
    result = expiry.firmware_break(profile, _hypothetical(fleet), as_of=AS_OF)
    assert result.date == pki["cross"].cert.not_valid_after_utc + END
    assert result.kind is c.FirmwareCause.CROSS_SIGN and result.name == "G2-RootCA1"
    assert "G2-RootCA1" in result.cause and "rejects an expired anchor" in result.cause


def test_firmware_date_follows_the_stack_anchor_expiry_rule(fleet, pki) -> None:
    from iotaudit.stacks import STACKS, AnchorExpiry

    ignoring = [s for s in STACKS.values() if s.anchor_expiry is AnchorExpiry.IGNORED]
    checking = [s for s in STACKS.values() if s.anchor_expiry is AnchorExpiry.AT_VERIFY]
    assert ignoring and checking
    hypo = _hypothetical(fleet)
    store = (pki["cross"].cert,)  # valid today on every stack that anchors on any stored certificate
    for stack in ignoring:
        result = expiry.firmware_break(_profile(fleet, "rsa-only-store", store=store, stack=stack), hypo, as_of=AS_OF)
        assert result.kind in {c.FirmwareCause.NONE, c.FirmwareCause.NO_CHAIN}, stack.id
        assert result.kind is c.FirmwareCause.NO_CHAIN or result.date is None, stack.id


def test_firmware_date_of_an_untrusting_store_is_as_of(fleet, pki) -> None:
    profile = _profile(fleet, "nothing-trusted")  # Amazon Root CA 3 only, RSA only
    result = expiry.firmware_break(profile, _hypothetical(fleet), as_of=AS_OF)
    assert result.date == AS_OF and result.kind is c.FirmwareCause.NO_CHAIN and result.cause
    empty = expiry.firmware_break(_profile(fleet, "nothing-trusted", store=(pki["inter"].cert,)),
                                  _hypothetical(fleet), as_of=AS_OF)
    assert empty.kind is c.FirmwareCause.NO_CHAIN and "no catalogue root" in empty.cause


def test_firmware_date_of_a_pin_on_the_issuing_ca_is_its_expiry(fleet, pki) -> None:
    from iotaudit.certs import spki_pin
    from iotaudit.pins import parse_pin

    pin = parse_pin(spki_pin(pki["inter"].cert))
    profile = _profile(fleet, "rsa-only-store", pins=(pin,))
    result = expiry.firmware_break(profile, _hypothetical(fleet), as_of=AS_OF, served=[pki["inter"].cert])
    assert result.date == pki["inter"].cert.not_valid_after_utc + END
    assert result.kind is c.FirmwareCause.PIN and pin.text in result.name
    # A pin on the root key survives every renewal; an expired pin set is not enforced at all.
    root_pin = parse_pin(spki_pin(pki["root"].cert))
    kept = expiry.firmware_break(_profile(fleet, "rsa-only-store", pins=(root_pin,)), _hypothetical(fleet, 14),
                                 as_of=AS_OF, horizon_years=14)
    assert kept.date is None
    lapsed = expiry.firmware_break(_profile(fleet, "rsa-only-store", pins=(pin,), pin_expiry=at(2026)),
                                   _hypothetical(fleet, 14), as_of=AS_OF, horizon_years=14, served=[pki["inter"].cert])
    assert lapsed.date is None


def test_break_dates_have_one_firmware_date_per_profile(fleet) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["profiles"], as_of=AS_OF, coverage=fleet["coverage"],
                               horizon_years=14)
    assert sorted(frame["profile"]) == sorted(p.key for p in fleet["profiles"])
    rows = by_profile(frame)
    assert rows["nothing-trusted"]["firmware_break_cause_kind"] == "no-chain"
    assert rows["both-roots"]["firmware_break_cause_kind"] == "none" and pd.isna(rows["both-roots"]["firmware_break_date"])
    assert str(frame["firmware_break_date"].dtype) == c.TIME


def test_firmware_break_checks_itself() -> None:
    with pytest.raises(ValueError, match="exactly when"):
        expiry.FirmwareBreak(None, c.FirmwareCause.ANCHOR)
    with pytest.raises(ValueError, match="exactly when"):
        expiry.FirmwareBreak(AS_OF, c.FirmwareCause.NONE)
