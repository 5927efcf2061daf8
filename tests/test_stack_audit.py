"""Per-stack verdicts and dates through the whole audit, on the collected loopback lab.

The same trust store passes on one TLS stack and fails on another (issue 7):
the cross-signed Amazon Root CA 1 alone on OpenSSL 3 with and without
``X509_V_FLAG_PARTIAL_CHAIN``; Amazon Root CA 1 alone in an ESP-IDF bundle
with and without cross-signed verify; wolfSSL with and without alternative
chains; an intermediate served after the cross-sign that certifies it on mbed
TLS.  Starfield Class 2 alone breaks on 2034-06-29 where the stack checks
anchor dates (mbed TLS, OpenSSL) and does not where it ignores them (ESP-IDF
bundle, Android).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

import iotaudit
from iotaudit import columns as c
from iotaudit.inventory import load_inventory
from iotaudit.paths import validate_chain
from iotaudit.stacks import STACK_IDS, get_stack

DUAL = "lab-ats-dual-ats.iot.us-east-1.amazonaws.com"
OUT_OF_ORDER = "lab-out-of-order-ats.iot.us-east-1.amazonaws.com"
HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,tls_stack,pins\n"
M01_PIN = "sha256/hYx3GYxEPcNHBcgG3ihTYJGQMGJeuXHcJkVlZ2DASuE="  # lab Amazon RSA 2048 M01 (data/lab/IDENTITIES.md)
PROFILES = {
    # name: (endpoint, store, key types, stack, pins)
    "sc2-mbedtls": (DUAL, "StarfieldClass2CA", "rsa;ecdsa", "mbedtls-2.28", ""),
    "sc2-openssl": (DUAL, "StarfieldClass2CA", "rsa;ecdsa", "openssl-3", ""),
    "sc2-bundle": (DUAL, "StarfieldClass2CA", "rsa;ecdsa", "esp-idf-bundle", ""),
    "sc2-android": (DUAL, "StarfieldClass2CA", "rsa;ecdsa", "android", ""),
    "xca1-openssl": (DUAL, "G2-RootCA1", "rsa", "openssl-3", ""),
    "xca1-partial": (DUAL, "G2-RootCA1", "rsa", "openssl-3-partial-chain", ""),
    "ca1-bundle": (DUAL, "AmazonRootCA1", "rsa", "esp-idf-bundle", ""),
    "ca1-bundle-xsv": (DUAL, "AmazonRootCA1", "rsa", "esp-idf-bundle-cross-signed", ""),
    "ca1-wolf": (DUAL, "AmazonRootCA1", "rsa", "wolfssl-5", ""),
    "ca1-wolf-alt": (DUAL, "AmazonRootCA1", "rsa", "wolfssl-5-alt-chains", ""),
    "ca1-modern": (DUAL, "AmazonRootCA1", "rsa", "openssl-3-partial-chain", ""),
    "ca1-m01-pin": (DUAL, "AmazonRootCA1", "rsa", "openssl-3-partial-chain", M01_PIN),
    "g2-mbedtls-ooo": (OUT_OF_ORDER, "SFSRootCAG2", "rsa", "mbedtls-2.28", ""),
    "g2-openssl-ooo": (OUT_OF_ORDER, "SFSRootCAG2", "rsa", "openssl-3", ""),
    "verisign-only": (DUAL, "VeriSignClass3G5", "rsa", "openssl-3-partial-chain", ""),
}


@pytest.fixture(scope="module")
def stack_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stacks") / "inventory.csv"
    rows = [f"d{i},g-{stack},{name},us-east-1,{ep},{store},{keys},{stack},{pins}"
            for i, (name, (ep, store, keys, stack, pins)) in enumerate(PROFILES.items())]
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def result(lab_run, stack_inventory):  # -> AuditResult
    return iotaudit.audit(lab_run, load_inventory(stack_inventory))


def gone(not_after, stack: str) -> pd.Timestamp:
    """The first instant ``stack`` counts a certificate with ``not_after`` as expired (OpenSSL: the notAfter second)."""
    return pd.Timestamp(not_after + (timedelta(seconds=1) if get_stack(stack).not_after_inclusive else timedelta(0)))


def verdict(result, profile: str) -> str:
    return str(result.profiles.set_index(c.PROFILE).loc[profile, c.VERDICT])


def valid_chains(result, profile: str) -> int:
    cov = result.coverage
    return int(cov.loc[cov[c.PROFILE] == profile, c.VALID].sum())


def expiry_row(result, profile: str) -> pd.Series:
    return result.expiry.set_index(c.PROFILE).loc[profile]


# --- today ----------------------------------------------------------------------------------------


def test_coverage_and_profiles_name_each_profile_stack(result) -> None:
    cov = result.coverage
    stacks = dict(zip(cov[c.PROFILE].astype(str), cov[c.TLS_STACK].astype(str), strict=False))
    assert stacks == {name: spec[3] for name, spec in PROFILES.items()}
    assert isinstance(cov[c.TLS_STACK].dtype, pd.CategoricalDtype)
    assert dict(zip(result.profiles[c.PROFILE].astype(str), result.profiles[c.TLS_STACK].astype(str),
                    strict=True)) == stacks


def test_cross_signed_root_alone_needs_partial_chain_on_openssl(result) -> None:
    # OpenSSL 3 without X509_V_FLAG_PARTIAL_CHAIN takes a stored certificate as an anchor only if self-signed.
    assert verdict(result, "xca1-openssl") == "broken"
    assert verdict(result, "xca1-partial") in {"covered", "at-risk"} and valid_chains(result, "xca1-partial") > 0


def test_root_ca1_alone_needs_cross_signed_verify_in_an_esp_idf_bundle(result) -> None:
    # The bundle looks up only the top served certificate's issuer (Starfield Class 2 for the lab's chain).
    assert verdict(result, "ca1-bundle") == "broken"
    assert verdict(result, "ca1-bundle-xsv") in {"covered", "at-risk"}


def test_wolfssl_default_build_needs_every_presented_certificate_to_chain(result) -> None:
    assert verdict(result, "ca1-wolf") == "broken"
    assert verdict(result, "ca1-wolf-alt") in {"covered", "at-risk"}


def test_starfield_class2_alone_validates_today_on_every_stack_that_follows_the_cross_signs(result) -> None:
    for name in ("sc2-mbedtls", "sc2-openssl", "sc2-bundle", "sc2-android"):
        assert valid_chains(result, name) > 0, name


def test_mbedtls_refuses_an_issuer_served_before_the_certificate_it_signs(result) -> None:
    cov = result.coverage
    mbed = cov[cov[c.PROFILE] == "g2-mbedtls-ooo"]
    assert not mbed[c.VALID].any()
    assert all("mbed TLS" in reason for reason in mbed[c.REASON])
    assert valid_chains(result, "g2-openssl-ooo") > 0  # OpenSSL uses a served issuer wherever it is


def test_every_coverage_verdict_is_the_engine_verdict_on_the_profile_stack(lab_run, stack_inventory, result) -> None:
    certs = lab_run.certificate_objects()
    profiles = {p.key: p for p in load_inventory(stack_inventory).build_profiles(lab_run.catalog_object())}
    chains = dict(zip(lab_run.observations[c.OBSERVATION_ID], lab_run.observations[c.CHAIN_SHA256], strict=True))
    cov = result.coverage[result.coverage[c.OBSERVATION_ID] >= 0]
    assert len(cov)
    for row in cov.to_dict("records"):
        profile = profiles[str(row[c.PROFILE])]
        served = [certs[s] for s in chains[row[c.OBSERVATION_ID]]]
        expected = validate_chain(served, profile.store, stack=profile.stack, host=row[c.HOST],
                                  as_of=lab_run.created_at)
        assert (row[c.VALID], row[c.ANCHOR_SHA256], row[c.REASON]) == (
            expected.valid, expected.anchor_sha256, expected.reason), (row[c.PROFILE], row[c.OBSERVATION_ID])


def test_one_anchor_is_named_one_way_on_every_frame(result) -> None:
    names: dict[str, set[str]] = {}
    for frame in (result.coverage, result.anchors_expiry):
        for sha, name in zip(frame[c.ANCHOR_SHA256], frame[c.ANCHOR_NAME], strict=True):
            if sha:
                names.setdefault(str(sha), set()).add(str(name))
    assert names and all(len(v) == 1 for v in names.values()), names


# --- same store, other stacks ------------------------------------------------------------------------


def test_stack_alternatives_list_every_other_stack_for_each_profile(result) -> None:
    alt = result.stack_alternatives
    for name, spec in PROFILES.items():
        mine = alt[alt[c.PROFILE] == name]
        assert sorted(mine[c.OTHER_STACK].astype(str)) == sorted(s for s in STACK_IDS if s != spec[3])
        assert set(mine[c.TLS_STACK].astype(str)) == {spec[3]}
        assert set(mine[c.VERDICT].astype(str)) == {verdict(result, name)}
    assert (alt[c.CHANGED] == (alt[c.VERDICT].astype(str) != alt[c.OTHER_VERDICT].astype(str))).all()


def test_stack_alternatives_show_the_build_flag_that_fixes_a_store(result) -> None:
    alt = result.stack_alternatives.set_index([c.PROFILE, c.OTHER_STACK])
    assert alt.loc[("ca1-bundle", "esp-idf-bundle-cross-signed"), c.CHANGED]
    assert alt.loc[("ca1-bundle", "esp-idf-bundle-cross-signed"), c.OTHER_VERDICT] in {"covered", "at-risk"}
    assert alt.loc[("xca1-openssl", "openssl-3-partial-chain"), c.OTHER_VERDICT] in {"covered", "at-risk"}
    assert alt.loc[("ca1-wolf", "wolfssl-5-alt-chains"), c.OTHER_VERDICT] in {"covered", "at-risk"}
    # The same store on its own stack, as the profile of that stack sees it.
    assert alt.loc[("xca1-partial", "openssl-3"), c.OTHER_VERDICT] == verdict(result, "xca1-openssl")


def test_stack_alternatives_agree_with_the_profiles_of_those_stacks(result) -> None:
    alt = result.stack_alternatives.set_index([c.PROFILE, c.OTHER_STACK])
    for a, b in (("sc2-mbedtls", "sc2-bundle"), ("ca1-bundle", "ca1-modern"), ("ca1-wolf", "ca1-wolf-alt")):
        assert alt.loc[(a, PROFILES[b][3]), c.OTHER_VERDICT] == verdict(result, b), (a, b)


# --- dates per stack -----------------------------------------------------------------------------------


def test_starfield_class2_alone_breaks_in_2034_where_the_stack_checks_anchor_dates(lab_run, result) -> None:
    sc2_end = lab_run.catalog_object().entry("StarfieldClass2CA").certificate.not_valid_after_utc
    for name in ("sc2-mbedtls", "sc2-openssl"):
        row = expiry_row(result, name)
        assert row[c.FIRMWARE_BREAK_DATE] == gone(sc2_end, PROFILES[name][3]), name
        assert row[c.FIRMWARE_BREAK_CAUSE_KIND] == "anchor" and row[c.FIRMWARE_BREAK_CAUSE_NAME] == "StarfieldClass2CA"
        assert "StarfieldClass2CA" in row[c.FIRMWARE_BREAK_CAUSE] and "2034-06-29" in row[c.FIRMWARE_BREAK_CAUSE]


def test_starfield_class2_alone_outlives_2034_where_the_stack_ignores_anchor_dates(result) -> None:
    for name in ("sc2-bundle", "sc2-android"):
        row = expiry_row(result, name)
        assert pd.isna(row[c.FIRMWARE_BREAK_DATE]), name
        assert row[c.FIRMWARE_BREAK_CAUSE_KIND] == "none"


def test_a_root_anchored_profile_is_not_tied_to_the_intermediate_expiry(lab_run, result) -> None:
    catalog = lab_run.catalog_object()
    row = expiry_row(result, "ca1-modern")
    m01_end = catalog.entry("AmazonRSA2048M01").certificate.not_valid_after_utc
    ca1_end = catalog.entry("AmazonRootCA1").certificate.not_valid_after_utc
    assert row[c.FIRMWARE_BREAK_DATE] == gone(ca1_end, "openssl-3-partial-chain")
    assert row[c.FIRMWARE_BREAK_DATE] > pd.Timestamp(m01_end)
    assert row[c.FIRMWARE_BREAK_CAUSE_SHA256] == catalog.entry("AmazonRootCA1").sha256
    # "If nothing changes" stays the second date: today's leaf expires long before.
    assert row[c.BREAK_DATE] < row[c.FIRMWARE_BREAK_DATE]


def test_a_stored_cross_sign_ends_the_firmware_date_as_a_cross_sign(lab_run, result) -> None:
    row = expiry_row(result, "xca1-partial")
    end = lab_run.catalog_object().entry("G2-RootCA1").certificate.not_valid_after_utc
    assert row[c.FIRMWARE_BREAK_CAUSE_KIND] == "cross-sign" and row[c.FIRMWARE_BREAK_CAUSE_NAME] == "G2-RootCA1"
    assert row[c.FIRMWARE_BREAK_DATE] == gone(end, "openssl-3-partial-chain")


def test_a_pin_on_the_issuing_ca_ends_the_firmware_date_when_that_ca_expires(lab_run, result) -> None:
    row = expiry_row(result, "ca1-m01-pin")
    m01_end = lab_run.catalog_object().entry("AmazonRSA2048M01").certificate.not_valid_after_utc
    assert row[c.FIRMWARE_BREAK_CAUSE_KIND] == "pin" and M01_PIN in row[c.FIRMWARE_BREAK_CAUSE_NAME]
    assert row[c.FIRMWARE_BREAK_DATE] == gone(m01_end, "openssl-3-partial-chain")


def test_a_store_nothing_aws_could_serve_reaches_is_already_past_its_firmware_date(lab_run, result) -> None:
    row = expiry_row(result, "xca1-openssl")  # OpenSSL 3 cannot anchor on the cross-signed certificate at all
    assert row[c.FIRMWARE_BREAK_CAUSE_KIND] == "no-chain"
    assert row[c.FIRMWARE_BREAK_DATE] == pd.Timestamp(lab_run.created_at)


def test_expiry_has_one_row_per_profile_led_by_the_firmware_date(result) -> None:
    assert sorted(result.expiry[c.PROFILE]) == sorted(PROFILES)
    assert list(result.expiry.columns[:5]) == [c.PROFILE, c.DEVICES, c.GROUPS, c.TLS_STACK, c.FIRMWARE_BREAK_DATE]
    assert str(result.expiry[c.FIRMWARE_BREAK_DATE].dtype) == c.TIME


def test_the_cliff_leads_with_the_firmware_side_curve(lab_run, result) -> None:
    cliff = result.cliff
    assert list(cliff.columns[:4]) == [c.DATE, c.DEVICES_LOSING_FIRMWARE, c.DEVICES_CONNECTED_FIRMWARE,
                                       c.PROFILES_FIRMWARE]
    sc2_end = lab_run.catalog_object().entry("StarfieldClass2CA").certificate.not_valid_after_utc
    when = {gone(sc2_end, "mbedtls-2.28"), gone(sc2_end, "openssl-3")}
    at = {p for d, ps in zip(cliff[c.DATE], cliff[c.PROFILES_FIRMWARE], strict=True) if d in when for p in ps}
    assert {"sc2-mbedtls", "sc2-openssl"} <= at
    assert not {"sc2-bundle", "sc2-android"} & {p for ps in cliff[c.PROFILES_FIRMWARE] for p in ps}
    assert (cliff[c.DEVICES_CONNECTED_FIRMWARE].diff().dropna() <= 0).all()


def test_summary_leads_with_the_firmware_side_date(result) -> None:
    s = result.summary
    first = result.expiry[c.FIRMWARE_BREAK_DATE].dropna().min()
    assert s["earliest_firmware_break_date"] == first.isoformat()
    assert set(s["earliest_firmware_break_profiles"]) == set(
        result.expiry.loc[result.expiry[c.FIRMWARE_BREAK_DATE] == first, c.PROFILE])
    assert s["devices_by_stack"] == {stack: sum(1 for spec in PROFILES.values() if spec[3] == stack)
                                     for stack in sorted({spec[3] for spec in PROFILES.values()})}
    assert sum(s["validations_by_stack"].values()) == s["validations"] > 0
    assert set(s["validations_by_stack"]) >= {spec[3] for spec in PROFILES.values()}
