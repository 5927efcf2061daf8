"""Expiry timelines: break dates found by re-validation agree with validation at every boundary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pandas as pd
import pytest
from cryptography import x509

from iotaudit import columns as c
from iotaudit import expiry
from iotaudit.catalog import CatalogRole, CatalogStatus
from iotaudit.certs import cert_sha256
from iotaudit.coverage import validate_chain
from tests.helpers import (
    AS_OF,
    at,
    coverage_frame,
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
    coverage = coverage_frame(run, inventory, anchors, AS_OF)
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
    from iotaudit.coverage import run_certificate_objects

    certs = run_certificate_objects(fleet["run"])
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


# --- the lab (once lab.py / collect.py land) -----------------------------------------------------


def _lab_available() -> bool:
    try:
        import iotaudit.collect  # noqa: F401
        import iotaudit.lab  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _lab_available(), reason="iotaudit.lab / iotaudit.collect not there yet")
def test_lab_break_dates_hold_when_revalidated(lab_run, tmp_path) -> None:
    from iotaudit.coverage import run_certificate_objects

    as_of = lab_run.created_at
    names = ";".join(n for n in ("AmazonRootCA1", "AmazonRootCA3") if n in lab_run.catalog_object().names)
    inventory = make_inventory(tmp_path, [
        {"profile": "modern", "devices": 10, "trust_store": names, "region": "*"},
        {"profile": "legacy", "devices": 4, "trust_store": names, "region": "*", "path_builder": "legacy-chain-top"},
    ])
    anchors = inventory.resolve(lab_run.catalog_object())
    coverage = coverage_frame(lab_run, inventory, anchors, as_of)
    chains = expiry.chain_break_dates(lab_run, inventory, anchors, as_of=as_of, coverage=coverage)
    assert not chains.empty
    certs = run_certificate_objects(lab_run)
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
