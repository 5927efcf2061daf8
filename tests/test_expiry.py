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
from iotaudit.coverage import coverage as coverage_of, validate_chain
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
        ok = validate_chain(served, anchors, host=host, as_of=t, path_builder=builder).valid
        if result.break_date is None or t < result.break_date:
            assert ok, f"expected a valid path at {t}, the break date is {result.break_date}"
        elif t == result.break_date:
            assert not ok, f"expected no valid path at the break date {t}"


CASES = {
    # name: (served, anchors, builder, expected break)
    "leaf expires first": (lambda p, lf: [lf.cert, p["inter"].cert], lambda p: [p["root"].cert], "modern",
                           lambda p, lf: lf.cert.not_valid_after_utc + SECOND),
    "anchor expires before the served chain": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["cross"].cert], "modern",
        lambda p, lf: p["cross"].cert.not_valid_after_utc + SECOND),
    "cross-sign path, modern survives via the self-signed root": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["root"].cert, p["signer"].cert],
        "modern", lambda p, lf: lf.cert.not_valid_after_utc + SECOND),
    "cross-sign path, legacy chain-top breaks with the cross-sign": (
        lambda p, lf: [lf.cert, p["inter"].cert, p["cross"].cert], lambda p: [p["root"].cert, p["signer"].cert],
        "legacy-chain-top", lambda p, lf: p["cross"].cert.not_valid_after_utc + SECOND),
    "intermediate expires first": (
        lambda p, lf: [lf.cert, p["inter"].cert], lambda p: [p["root"].cert], "modern",
        lambda p, lf: p["inter"].cert.not_valid_after_utc + SECOND),
}


@pytest.mark.parametrize("case", list(CASES))
def test_chain_break_equals_the_first_failing_instant(pki, case: str) -> None:
    served_f, anchors_f, builder, expected_f = CASES[case]
    end = at(2029) if case != "intermediate expires first" else at(2035)
    lf = leaf("a1-ats.iot.us-east-1.amazonaws.com", ec_key(5), pki["inter"], start=at(2024), end=end)
    served, anchors = served_f(pki, lf), anchors_f(pki)
    result = expiry.chain_break(served, anchors, host="a1-ats.iot.us-east-1.amazonaws.com", as_of=AS_OF,
                                path_builder=builder)
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
    coverage = coverage_of(run, inventory, as_of=AS_OF)
    return {"run": run, "inventory": inventory, "anchors": anchors, "coverage": coverage, "rsa_leaf": rsa_leaf,
            "ec_leaf": ec_leaf, "host": host}


def by_profile(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["profile"]: r for r in frame.to_dict("records")}


def test_break_dates_states_and_dates(fleet, pki) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    rows = by_profile(frame)
    rsa_end = fleet["rsa_leaf"].cert.not_valid_after_utc + SECOND
    ec_end = fleet["ec_leaf"].cert.not_valid_after_utc + SECOND
    assert rows["both-roots"]["state"] == "breaks"
    assert rows["both-roots"]["break_date"] == pd.Timestamp(rsa_end)  # first chain it may meet to break
    assert rows["both-roots"]["dark_date"] == pd.Timestamp(ec_end)    # its last valid path
    assert rows["both-roots"]["chains"] == 2 and rows["both-roots"]["chains_valid"] == 2
    assert rows["rsa-only-store"]["state"] == "partly-broken"         # no anchor for the EC chain
    assert rows["rsa-only-store"]["dark_date"] == pd.Timestamp(rsa_end)
    assert rows["starfield-only"]["break_date"] == pd.Timestamp(min(rsa_end, pki["cross"].cert.not_valid_after_utc + SECOND))
    assert rows["nothing-trusted"]["state"] == "broken" and pd.isna(rows["nothing-trusted"]["break_date"])
    assert rows["nothing-trusted"]["break_reason"]
    assert rows["elsewhere"]["state"] == "no-chains"
    assert str(frame["break_date"].dtype) == c.TIME and str(frame["dark_date"].dtype) == c.TIME


def test_every_chain_break_date_holds_when_revalidated(fleet) -> None:
    chains = expiry.chain_break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                                      coverage=fleet["coverage"])
    certs = fleet["run"].certificate_objects()
    profiles = fleet["inventory"].profiles.set_index("profile_key")
    assert len(chains) == 6  # 2 + 2 + 1 + 1; the profile in another region meets none
    for row in chains[chains["break_date"].notna()].to_dict("records"):
        obs = fleet["run"].observations.set_index(c.OBSERVATION_ID).loc[row[c.OBSERVATION_ID]]
        served = [certs[fp] for fp in obs[c.CHAIN_SHA256]]
        anchors = fleet["anchors"][row["profile"]]
        builder = profiles.loc[row["profile"], "path_builder"]
        when = row["break_date"].to_pydatetime()
        assert validate_chain(served, anchors, host=row[c.HOST], as_of=when - SECOND, path_builder=builder).valid
        assert not validate_chain(served, anchors, host=row[c.HOST], as_of=when, path_builder=builder).valid


def test_cliff_counts_devices_losing_every_path(fleet) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    curve = expiry.cliff(frame, as_of=AS_OF)
    assert curve["date"].iloc[0] == pd.Timestamp(AS_OF)
    assert curve["date"].iloc[-1] == pd.Timestamp(at(2040))
    assert curve["devices_losing"].iloc[0] == 4                 # nothing-trusted: already dark
    assert curve["devices_connected"].iloc[0] == 5 + 3 + 2      # the no-chains profile is not counted
    assert curve["devices_connected"].iloc[-1] == 0
    assert curve["devices_losing"].sum() == 5 + 3 + 2 + 4
    assert curve["devices_connected"].is_monotonic_decreasing
    rsa_end = pd.Timestamp(fleet["rsa_leaf"].cert.not_valid_after_utc + SECOND)
    at_rsa = curve[curve["date"] == rsa_end].iloc[0]
    assert at_rsa["devices_losing"] == 3 + 2  # rsa-only-store and starfield-only go dark; both-roots only breaks
    assert "both-roots" in at_rsa["profiles"]


def test_cliff_ignores_dates_beyond_the_horizon(fleet) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
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
    frame = expiry.anchor_expiry(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                                 coverage=fleet["coverage"])
    rows = {(r["profile"], r["anchor_name"]): r for r in frame.to_dict("records")}
    assert rows[("both-roots", "AmazonRootCA1")]["days_left"] == (at(2040) - AS_OF).days
    assert rows[("both-roots", "AmazonRootCA1")]["in_use"]
    assert rows[("both-roots", "AmazonRootCA1")]["devices"] == 5
    assert not rows[("nothing-trusted", "AmazonRootCA3")]["in_use"]
    without = expiry.anchor_expiry(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF)
    assert without["in_use"].isna().all()


def test_anchor_expiry_flags_an_expired_anchor(fleet) -> None:
    frame = expiry.anchor_expiry(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=at(2041))
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
    coverage = coverage_of(lab_run, inventory, as_of=as_of)
    chains = expiry.chain_break_dates(lab_run, inventory, anchors, as_of=as_of, coverage=coverage)
    assert not chains.empty
    certs = lab_run.certificate_objects()
    obs = lab_run.observations.set_index(c.OBSERVATION_ID)
    builders = {"modern": "modern", "legacy": "legacy-chain-top"}
    checked = 0
    for row in chains.to_dict("records"):
        served = [certs[fp] for fp in obs.loc[row[c.OBSERVATION_ID], c.CHAIN_SHA256]]
        anchors_p = anchors[row["profile"]]
        builder = builders[row["profile"]]
        valid_now = validate_chain(served, anchors_p, host=row[c.HOST], as_of=as_of, path_builder=builder).valid
        assert valid_now == row["valid_at_as_of"]
        if pd.notna(row["break_date"]):
            when = row["break_date"].to_pydatetime()
            assert validate_chain(served, anchors_p, host=row[c.HOST], as_of=when - SECOND, path_builder=builder).valid
            assert not validate_chain(served, anchors_p, host=row[c.HOST], as_of=when, path_builder=builder).valid
            checked += 1
    assert checked > 0
    frame = expiry.break_dates(lab_run, inventory, anchors, as_of=as_of, chain_breaks=chains)
    assert set(frame["profile"]) == {"modern", "legacy"}
    curve = expiry.cliff(frame, as_of=as_of)
    assert curve["devices_connected"].iloc[-1] <= curve["devices_connected"].iloc[0]


def test_break_dates_without_coverage_finds_the_same_chains(fleet) -> None:
    given = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    derived = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF)
    pd.testing.assert_frame_equal(given, derived)


# --- "if AWS keeps renewing its leaf certificates": the served chain validated from the leaf's issuer ---


def assert_renewed_is_exact(served, anchors, builder, result: expiry.RenewedBreak, until: datetime) -> None:
    """Validate the leafless chain (leaf's issuer as end entity, no host) weekly and at every boundary +-1 s."""
    leafless = expiry.leaf_issuer_chain(served)
    assert leafless is not None and result.basis is c.RenewedBasis.LEAF_ISSUER
    assert result.issuer_sha256 == cert_sha256(leafless[0])
    assert_break_is_exact(leafless, anchors, None, builder, result.chain_break, until)


@pytest.fixture(scope="module")
def roots_2038(pki):
    """The real shape of Amazon Root CA 1: self-signed to 2038, cross-signed by Starfield G2 to 2037,
    and an issuing CA that outlives both (to 2039), so only the firmware side can end a renewed chain."""
    root = issue("Test Root CA 1b", rsa_key(4), end=at(2038))
    cross = issue("Test Root CA 1b", rsa_key(4), issuer=pki["signer"], start=at(2020), end=at(2037))
    inter = issue("Test RSA M09", rsa_key(2), issuer=root, start=at(2021), end=at(2039))
    return {"root": root, "cross": cross, "inter": inter}


def after(issued) -> datetime:
    return issued.cert.not_valid_after_utc + SECOND


RENEWED_CASES = {
    # name: (leaf issuer, served, anchors, builder, expected as-served break, expected renewed break)
    "leaf expires first; renewed breaks with the intermediate": (
        lambda p, r: p["inter"], lambda p, r, lf: [lf.cert, p["inter"].cert], lambda p, r: [p["root"].cert],
        "modern", lambda p, r, lf: after(lf), lambda p, r, lf: after(p["inter"])),
    "leaf expires first; renewed breaks with the anchor (a cross-sign in the store)": (
        lambda p, r: p["inter"], lambda p, r, lf: [lf.cert, p["inter"].cert, p["cross"].cert],
        lambda p, r: [p["cross"].cert], "modern", lambda p, r, lf: after(lf), lambda p, r, lf: after(p["cross"])),
    "modern survives the cross-sign to the self-signed root": (
        lambda p, r: r["inter"], lambda p, r, lf: [lf.cert, r["inter"].cert, r["cross"].cert],
        lambda p, r: [r["root"].cert, p["signer"].cert], "modern",
        lambda p, r, lf: after(lf), lambda p, r, lf: after(r["root"])),
    "legacy chain-top breaks with the cross-sign": (
        lambda p, r: r["inter"], lambda p, r, lf: [lf.cert, r["inter"].cert, r["cross"].cert],
        lambda p, r: [r["root"].cert, p["signer"].cert], "legacy-chain-top",
        lambda p, r, lf: after(lf), lambda p, r, lf: after(r["cross"])),
    "out-of-order chain: the issuer is found by signature": (
        lambda p, r: r["inter"], lambda p, r, lf: [lf.cert, r["cross"].cert, r["inter"].cert],
        lambda p, r: [p["signer"].cert], "modern", lambda p, r, lf: after(lf), lambda p, r, lf: after(r["cross"])),
}


@pytest.mark.parametrize("case", list(RENEWED_CASES))
def test_renewed_break_equals_the_first_failing_instant_of_the_leafless_chain(pki, roots_2038, case: str) -> None:
    issuer_f, served_f, anchors_f, builder, as_served_f, renewed_f = RENEWED_CASES[case]
    host = "a1-ats.iot.us-east-1.amazonaws.com"
    lf = leaf(host, ec_key(6), issuer_f(pki, roots_2038), start=at(2024), end=at(2026, 6))
    served, anchors = served_f(pki, roots_2038, lf), anchors_f(pki, roots_2038)
    as_served = expiry.chain_break(served, anchors, host=host, as_of=AS_OF, path_builder=builder)
    result = expiry.renewed_chain_break(served, anchors, as_of=AS_OF, path_builder=builder, host=host)
    assert as_served.break_date == as_served_f(pki, roots_2038, lf)  # "if nothing changes": the leaf
    assert result.break_date == renewed_f(pki, roots_2038, lf)       # the firmware side
    assert result.break_date > as_served.break_date
    assert_renewed_is_exact(served, anchors, builder, result, result.break_date + timedelta(days=30))
    # Given the as-served result, the same answer without re-validating the served chain.
    again = expiry.renewed_chain_break(served, anchors, as_of=AS_OF, path_builder=builder, as_served=as_served)
    assert again == result


def test_renewed_break_names_the_expiring_certificate(pki, roots_2038) -> None:
    lf = leaf("h", ec_key(6), roots_2038["inter"], start=at(2024), end=at(2026))
    served = [lf.cert, roots_2038["inter"].cert, roots_2038["cross"].cert]
    anchors = [roots_2038["root"].cert, pki["signer"].cert]
    legacy = expiry.renewed_chain_break(served, anchors, host="h", as_of=AS_OF, path_builder="legacy-chain-top")
    modern = expiry.renewed_chain_break(served, anchors, host="h", as_of=AS_OF, path_builder="modern")
    assert legacy.chain_break.cause_sha256 == (cert_sha256(roots_2038["cross"].cert),)
    assert modern.chain_break.cause_sha256 == (cert_sha256(roots_2038["root"].cert),)
    assert modern.chain_break.last_path_sha256[0] == cert_sha256(roots_2038["inter"].cert)  # no leaf in the path


def test_leaf_issuer_chain_order_and_missing_issuer(pki) -> None:
    lf = leaf("h", ec_key(6), pki["inter"])
    assert expiry.leaf_issuer_chain([lf.cert, pki["cross"].cert, pki["inter"].cert]) == [pki["inter"].cert, pki["cross"].cert]
    assert expiry.leaf_issuer_chain([lf.cert, pki["inter"].cert]) == [pki["inter"].cert]
    assert expiry.leaf_issuer_chain([lf.cert]) is None
    assert expiry.leaf_issuer_chain([lf.cert, pki["cross"].cert]) is None  # the issuer was not served
    assert expiry.leaf_issuer_chain([]) is None


def test_missing_intermediate_falls_back_to_the_as_served_dates(pki) -> None:
    """The leaf alone, the store holding its issuer: valid as served, but no served issuer to renew under."""
    lf = leaf("h", ec_key(6), pki["inter"], start=at(2024), end=at(2026))
    as_served = expiry.chain_break([lf.cert], [pki["inter"].cert], host="h", as_of=AS_OF)
    result = expiry.renewed_chain_break([lf.cert], [pki["inter"].cert], host="h", as_of=AS_OF)
    assert as_served.valid_at_as_of and as_served.break_date == after(lf)
    assert result.basis is c.RenewedBasis.ISSUER_NOT_SERVED and result.issuer_sha256 == ""
    assert result.chain_break == as_served and result.break_date == after(lf)


def test_chain_invalid_at_as_of_has_no_renewed_break(pki) -> None:
    lf = leaf("h", ec_key(6), pki["inter"], start=at(2024), end=at(2026))
    result = expiry.renewed_chain_break([lf.cert, pki["inter"].cert], [pki["root"].cert], host="other-host",
                                        as_of=AS_OF)
    assert not result.chain_break.valid_at_as_of and result.break_date is None  # today is the as-served answer


def test_renewed_break_value_object_checks_itself(pki) -> None:
    lf = leaf("h", ec_key(6), pki["inter"])
    as_served = expiry.chain_break([lf.cert, pki["inter"].cert], [pki["root"].cert], host="h", as_of=AS_OF)
    with pytest.raises(ValueError, match="names the issuer"):
        expiry.RenewedBreak(c.RenewedBasis.LEAF_ISSUER, as_served)
    with pytest.raises(TypeError, match="RenewedBasis"):
        expiry.RenewedBreak("leaf-issuer", as_served, "ab")


def test_fleet_renewed_dates_states_and_cliff(fleet, pki) -> None:
    frame = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                               coverage=fleet["coverage"])
    rows = by_profile(frame)
    inter_end = pd.Timestamp(after(pki["inter"]))
    assert inter_end == pd.Timestamp(after(pki["ec_inter"]))  # both issuing CAs end 2030-01-01
    both = rows["both-roots"]
    assert both["break_date"] == pd.Timestamp(after(fleet["rsa_leaf"]))  # as served: the first leaf
    assert both["renewed_state"] == "breaks"
    assert both["renewed_break_date"] == both["renewed_dark_date"] == inter_end
    assert both["renewed_break_cause_name"] in {"AmazonRSA2048M01", "AmazonECDSA256M01"}
    assert rows["starfield-only"]["renewed_break_date"] == pd.Timestamp(after(pki["cross"]))  # its anchor path
    assert rows["starfield-only"]["renewed_break_cause_name"] == "G2-RootCA1"
    assert rows["rsa-only-store"]["renewed_state"] == "partly-broken"
    assert rows["rsa-only-store"]["renewed_dark_date"] == inter_end
    assert rows["nothing-trusted"]["renewed_state"] == "broken" and pd.isna(rows["nothing-trusted"]["renewed_break_date"])
    assert rows["elsewhere"]["renewed_state"] == "no-chains"
    assert (frame["chains_renewed_as_served"] == 0).all()
    assert str(frame["renewed_break_date"].dtype) == c.TIME and str(frame["renewed_dark_date"].dtype) == c.TIME

    curve = expiry.cliff(frame, as_of=AS_OF)
    renewed = curve.set_index("date")
    assert renewed["devices_connected_renewed"].iloc[0] == 5 + 3 + 2
    assert renewed["devices_losing_renewed"].iloc[0] == 4  # nothing-trusted: already dark either way
    assert renewed.loc[pd.Timestamp(after(pki["cross"])), "devices_losing_renewed"] == 2
    assert renewed.loc[pd.Timestamp(after(pki["cross"])), "profiles_renewed"] == ["starfield-only"]
    assert renewed.loc[inter_end, "devices_losing_renewed"] == 5 + 3
    assert renewed.loc[inter_end, "devices_connected_renewed"] == 0
    assert curve["devices_connected_renewed"].is_monotonic_decreasing
    assert curve["devices_losing_renewed"].sum() == curve["devices_losing"].sum() == 5 + 3 + 2 + 4
    # The as-served curve is unchanged by the renewed rows: it drops only on as-served dates.
    as_served_dates = set(frame["dark_date"].dropna()) | {pd.Timestamp(AS_OF)}
    assert set(curve.loc[curve["devices_losing"] > 0, "date"]) <= as_served_dates
    # Renewed connectivity is never below the as-served one.
    assert (curve["devices_connected_renewed"] >= curve["devices_connected"]).all()


def test_every_renewed_chain_break_date_holds_when_revalidated_without_the_leaf(fleet) -> None:
    chains = expiry.chain_break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                                      coverage=fleet["coverage"])
    certs = fleet["run"].certificate_objects()
    profiles = fleet["inventory"].profiles.set_index("profile_key")
    dated = chains[chains["renewed_break_date"].notna()]
    assert len(dated) == 4 and set(chains["renewed_basis"].astype(str)) == {"leaf-issuer"}
    assert (dated["renewed_break_date"] > dated["break_date"]).all()
    for row in dated.to_dict("records"):
        obs = fleet["run"].observations.set_index(c.OBSERVATION_ID).loc[row[c.OBSERVATION_ID]]
        leafless = expiry.leaf_issuer_chain([certs[fp] for fp in obs[c.CHAIN_SHA256]])
        anchors = fleet["anchors"][row["profile"]]
        builder = profiles.loc[row["profile"], "path_builder"]
        when = row["renewed_break_date"].to_pydatetime()
        assert validate_chain(leafless, anchors, host=None, as_of=when - SECOND, path_builder=builder).valid
        assert not validate_chain(leafless, anchors, host=None, as_of=when, path_builder=builder).valid
    assert chains.loc[~chains["valid_at_as_of"], "renewed_break_date"].isna().all()


def test_fleet_missing_intermediate_falls_back_and_says_so(pki, tmp_path) -> None:
    host = "a1-ats.iot.us-east-1.amazonaws.com"
    lf = leaf(host, rsa_key(3), pki["inter"], start=at(2024), end=at(2026, 6))
    catalog = make_catalog({
        "AmazonRootCA1": (pki["root"], CatalogRole.ROOT, CatalogStatus.IN_USE),
        "AmazonRSA2048M01": (pki["inter"], CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
    })
    run = make_run(tmp_path, [(host, "rsa-tls12", [lf])], catalog)  # the intermediate is not served
    inventory = make_inventory(tmp_path, [
        {"profile": "pins-the-intermediate", "devices": 6, "trust_store": "AmazonRSA2048M01", "key_types": "rsa"},
        {"profile": "root-only", "devices": 2, "trust_store": "AmazonRootCA1", "key_types": "rsa"},
    ])
    anchors = inventory.resolve(run.catalog_object())
    chains = expiry.chain_break_dates(run, inventory, anchors, as_of=AS_OF)
    rows = by_profile(chains)
    assert rows["pins-the-intermediate"]["renewed_basis"] == "issuer-not-served"
    assert rows["pins-the-intermediate"]["renewed_break_date"] == rows["pins-the-intermediate"]["break_date"] \
        == pd.Timestamp(after(lf))
    assert rows["root-only"]["renewed_basis"] == "issuer-not-served" and not rows["root-only"]["valid_at_as_of"]
    frame = by_profile(expiry.break_dates(run, inventory, anchors, as_of=AS_OF, chain_breaks=chains))
    assert frame["pins-the-intermediate"]["chains_renewed_as_served"] == 1
    assert frame["pins-the-intermediate"]["renewed_break_date"] == pd.Timestamp(after(lf))
    assert frame["root-only"]["chains_renewed_as_served"] == 0  # only chains valid today count


def test_break_dates_from_a_chain_frame_without_renewed_columns_use_the_as_served_dates(fleet) -> None:
    chains = expiry.chain_break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF,
                                      coverage=fleet["coverage"])
    old = chains.drop(columns=[c.RENEWED_BREAK_DATE, c.RENEWED_BREAK_CAUSE_SHA256, c.RENEWED_BREAK_CAUSE_NAME,
                               c.RENEWED_BASIS])
    frame = expiry.break_dates(fleet["run"], fleet["inventory"], fleet["anchors"], as_of=AS_OF, chain_breaks=old)
    assert frame["renewed_break_date"].equals(frame["break_date"])
    assert frame["renewed_dark_date"].equals(frame["dark_date"])


# --- the real public certificates ------------------------------------------------------------------


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


@pytest.mark.parametrize(("store", "served", "builder"), [
    ("SFSRootCAG2", ["AmazonRSA2048M01", "G2-RootCA1"], "modern"),
    ("SFSRootCAG2", ["AmazonRSA2048M01", "G2-RootCA1"], "legacy-chain-top"),
    ("AmazonRootCA1", ["AmazonRSA2048M01", "G2-RootCA1"], "modern"),
    ("StarfieldClass2CA", ["AmazonRSA2048M01", "G2-RootCA1", "SFSRootCAG2-Class2"], "modern"),
    ("StarfieldClass2CA", ["AmazonRSA2048M01", "G2-RootCA1", "SFSRootCAG2-Class2"], "legacy-chain-top"),
])
def test_real_aws_chains_renewed_break_with_the_issuing_ca(aws, store, served, builder) -> None:
    """The leafless chain of a real ATS endpoint, as renewed_chain_break validates it (no leaf of M01 exists
    without AWS's key): whatever the store, the firmware side ends with Amazon RSA 2048 M01 on 2030-08-23."""
    chain = [aws[n] for n in served]
    anchors = [aws[store]]
    result = expiry.chain_break(chain, anchors, host=None, as_of=AS_OF, path_builder=builder)
    assert result.valid_at_as_of
    assert result.break_date == aws["AmazonRSA2048M01"].not_valid_after_utc + SECOND
    assert result.break_date.date().isoformat() == "2030-08-23"
    assert result.cause_sha256 == (cert_sha256(aws["AmazonRSA2048M01"]),)
    when = result.break_date
    assert validate_chain(chain, anchors, host=None, as_of=when - SECOND, path_builder=builder).valid
    assert not validate_chain(chain, anchors, host=None, as_of=when, path_builder=builder).valid
    # Every boundary of the chain and store up to 2040 agrees with the one break date.
    assert_break_is_exact(chain, anchors, None, builder, result, at(2040))


def test_real_legacy_builder_with_only_the_self_signed_root_is_already_broken(aws) -> None:
    """The served top is the cross-signed Amazon Root CA 1: a chain-top builder needs Starfield G2 or the cross-sign."""
    chain = [aws["AmazonRSA2048M01"], aws["G2-RootCA1"]]
    result = expiry.chain_break(chain, [aws["AmazonRootCA1"]], host=None, as_of=AS_OF, path_builder="legacy-chain-top")
    assert not result.valid_at_as_of and "legacy chain-top" in result.reason


def test_reported_path_does_not_depend_on_the_order_of_the_trust_store(lab_run, tmp_path) -> None:
    # Amazon Root CA 1 and its Starfield cross-sign share a subject: both can anchor the RSA chain.
    paths = []
    for i, order in enumerate((["AmazonRootCA1", "G2-RootCA1"], ["G2-RootCA1", "AmazonRootCA1"])):
        (tmp_path / str(i)).mkdir()
        inventory = make_inventory(tmp_path / str(i), [{
            "profile": "p", "devices": 1, "trust_store": ";".join(order), "region": "us-east-1",
            "endpoints": "lab-ats-dual-ats.iot.us-east-1.amazonaws.com", "key_types": "rsa"}])
        anchors = inventory.resolve(lab_run.catalog_object())
        chains = expiry.chain_break_dates(lab_run, inventory, anchors, as_of=lab_run.created_at)
        assert not chains.empty
        paths.append([tuple(p) for p in chains["last_path_sha256"]])
    assert paths[0] == paths[1]
