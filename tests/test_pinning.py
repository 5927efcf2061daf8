"""Pinning risks: pin formats, scopes, scenarios, flags, and the seed's warning on real certificates."""

from __future__ import annotations

import base64
from datetime import datetime, timezone

import pandas as pd
import pytest

from iotaudit import pinning
from iotaudit.columns import typed_frame
from iotaudit.catalog import CatalogRole, CatalogStatus, aws_catalog
from iotaudit.certs import cert_sha1, cert_sha256, spki_pin, spki_sha256
from iotaudit.paths import validate_chain
from iotaudit.root_coverage import coverage as coverage_of
from iotaudit.pinning import (
    CertIdentity,
    KnownCertificates,
    Pin,
    PinError,
    PinKind,
    PinScope,
    Scenario,
    apply_scenario,
    parse_pin,
    pin_matches_chain,
    pin_set_matches_chain,
    scoped_certificates,
)
from tests.helpers import at, ec_key, issue, leaf, make_catalog, make_inventory, make_run, rsa_key

UTC = timezone.utc
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
DIGEST = bytes(range(32))


# --- parsing: each format ------------------------------------------------------------------------

FORMATS = {
    "okhttp base64": ("sha256/" + base64.b64encode(DIGEST).decode(), PinKind.SPKI_SHA256, DIGEST.hex()),
    "rfc 7469 pin-sha256": ('pin-sha256="' + base64.b64encode(DIGEST).decode() + '"', PinKind.SPKI_SHA256, DIGEST.hex()),
    "spki hex": ("spki-sha256:" + DIGEST.hex(), PinKind.SPKI_SHA256, DIGEST.hex()),
    "cert sha256 hex": ("cert-sha256:" + DIGEST.hex(), PinKind.CERT_SHA256, DIGEST.hex()),
    "cert sha1 hex": ("cert-sha1:" + DIGEST[:20].hex(), PinKind.CERT_SHA1, DIGEST[:20].hex()),
    "openssl fingerprint style": ("CERT-SHA256:" + ":".join(f"{b:02X}" for b in DIGEST), PinKind.CERT_SHA256, DIGEST.hex()),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_parse_pin_format(fmt: str) -> None:
    text, kind, digest = FORMATS[fmt]
    pin = parse_pin(f"  {text} ")
    assert (pin.kind, pin.digest, pin.text) == (kind, digest, text)


def test_spki_pin_canonical_form_is_the_okhttp_one() -> None:
    assert parse_pin("spki-sha256:" + DIGEST.hex()).canonical == "sha256/" + base64.b64encode(DIGEST).decode()


def test_parse_pin_rejects_an_empty_pin() -> None:
    with pytest.raises(PinError, match="empty pin"):
        parse_pin("   ")


def test_parse_pin_rejects_an_unknown_format() -> None:
    with pytest.raises(PinError, match=r"pin 'md5:abcd': unknown pin format; expected sha256/<base64>"):
        parse_pin("md5:abcd")


def test_parse_pin_rejects_bad_base64() -> None:
    with pytest.raises(PinError, match=r"pin 'sha256/@@@': the SPKI SHA-256 digest is not valid base64"):
        parse_pin("sha256/@@@")


def test_parse_pin_rejects_base64_of_the_wrong_length() -> None:
    with pytest.raises(PinError, match="decodes to 3 bytes; SHA-256 needs 32"):
        parse_pin("sha256/AAAA")


def test_parse_pin_rejects_non_hex() -> None:
    with pytest.raises(PinError, match="cert-sha256 digest is not hexadecimal"):
        parse_pin("cert-sha256:" + "zz" * 32)


def test_parse_pin_rejects_hex_of_the_wrong_length() -> None:
    with pytest.raises(PinError, match="cert-sha1 digest has 64 hex digits; it needs 40"):
        parse_pin("cert-sha1:" + DIGEST.hex())


def test_parse_pin_rejects_okhttp2_sha1_pins() -> None:
    with pytest.raises(PinError, match=r"SPKI SHA-1 pins \(sha1/...\) are not supported"):
        parse_pin("sha1/" + base64.b64encode(DIGEST[:20]).decode())


def test_pin_value_object_checks_itself() -> None:
    with pytest.raises(PinError, match="must be 40 lowercase hex digits"):
        Pin("x", PinKind.CERT_SHA1, DIGEST.hex())


# --- a small lab-like hierarchy ----------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    root1 = issue("Test Amazon Root CA 1", rsa_key(0))
    signer = issue("Test Starfield Services Root G2", rsa_key(1))
    cross1 = issue("Test Amazon Root CA 1", rsa_key(0), issuer=signer, end=at(2037))
    m01 = issue("Test RSA 2048 M01", rsa_key(2), issuer=root1, start=at(2021), end=at(2030))
    m04 = issue("Test RSA 2048 M04", rsa_key(4), issuer=root1, start=at(2021), end=at(2030))
    root3 = issue("Test Amazon Root CA 3", ec_key(0))
    e01 = issue("Test ECDSA 256 M01", ec_key(1), issuer=root3, start=at(2021), end=at(2030))
    root2 = issue("Test Amazon Root CA 2", rsa_key(5))
    root4 = issue("Test Amazon Root CA 4", ec_key(6))
    host = "lab0001-ats.iot.us-east-1.amazonaws.com"
    rsa_leaf = leaf(host, rsa_key(3), m01)
    ec_leaf = leaf(host, ec_key(3), e01)
    catalog = make_catalog({
        "AmazonRootCA1": (root1, CatalogRole.ROOT, CatalogStatus.IN_USE),
        "AmazonRootCA2": (root2, CatalogRole.ROOT, CatalogStatus.RESERVED),
        "AmazonRootCA3": (root3, CatalogRole.ROOT, CatalogStatus.IN_USE),
        "AmazonRootCA4": (root4, CatalogRole.ROOT, CatalogStatus.RESERVED),
        "SFSRootCAG2": (signer, CatalogRole.ROOT, CatalogStatus.CROSS_SIGNER),
        "G2-RootCA1": (cross1, CatalogRole.CROSS_SIGNED, CatalogStatus.IN_USE),
        "AmazonRSA2048M01": (m01, CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
        "AmazonRSA2048M04": (m04, CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
        "AmazonECDSA256M01": (e01, CatalogRole.INTERMEDIATE, CatalogStatus.ISSUING_CA),
    })
    known = KnownCertificates([rsa_leaf.cert, ec_leaf.cert], catalog)
    ident = {k: known.get(cert_sha256(v.cert)) for k, v in {
        "root1": root1, "signer": signer, "cross1": cross1, "m01": m01, "m04": m04, "root3": root3, "e01": e01,
        "root2": root2, "root4": root4, "rsa_leaf": rsa_leaf, "ec_leaf": ec_leaf}.items()}
    return {"catalog": catalog, "known": known, "id": ident, "host": host,
            "issued": {"root1": root1, "signer": signer, "cross1": cross1, "m01": m01, "rsa_leaf": rsa_leaf,
                       "ec_leaf": ec_leaf, "e01": e01, "root3": root3}}


def spki(ident: CertIdentity) -> Pin:
    return parse_pin("spki-sha256:" + ident.spki_sha256)


def whole(ident: CertIdentity) -> Pin:
    return parse_pin("cert-sha256:" + ident.sha256)


def served_and_cross_path(p):
    """The AWS shape: leaf, M01, cross-signed Root CA 1 served; path to Starfield."""
    i = p["id"]
    return (i["rsa_leaf"], i["m01"], i["cross1"]), (i["rsa_leaf"], i["m01"], i["cross1"], i["signer"])


# --- scopes -------------------------------------------------------------------------------------


def test_scope_any_is_every_certificate_of_the_validated_path(pki) -> None:
    served, path = served_and_cross_path(pki)
    assert scoped_certificates(PinScope.ANY, served, path) == path
    assert pin_matches_chain(spki(pki["id"]["signer"]), "any", served, path)


def test_scope_served_is_the_chain_as_sent(pki) -> None:
    served, path = served_and_cross_path(pki)
    assert scoped_certificates("served", served, path) == served
    assert not pin_matches_chain(spki(pki["id"]["signer"]), "served", served, path)  # the anchor is not sent
    assert pin_matches_chain(whole(pki["id"]["cross1"]), "served", served, path)


def test_scope_leaf_is_the_end_entity_only(pki) -> None:
    served, path = served_and_cross_path(pki)
    assert scoped_certificates("leaf", served, path) == (pki["id"]["rsa_leaf"],)
    assert not pin_matches_chain(spki(pki["id"]["m01"]), "leaf", served, path)


def test_scope_root_is_the_anchor_only(pki) -> None:
    served, path = served_and_cross_path(pki)
    assert scoped_certificates("root", served, path) == (pki["id"]["signer"],)
    assert not pin_matches_chain(spki(pki["id"]["root1"]), "root", served, path)
    assert scoped_certificates("root", served, ()) == ()  # no validated path, no anchor


def test_pin_kinds_match_on_their_own_digest(pki) -> None:
    cross = pki["id"]["cross1"]
    cert = pki["issued"]["cross1"].cert
    assert cross.sha1 == cert_sha1(cert) and cross.spki_sha256 == spki_sha256(cert)
    assert parse_pin(spki_pin(cert)).matches(cross)
    assert parse_pin("cert-sha1:" + cert_sha1(cert)).matches(cross)
    assert not parse_pin("cert-sha1:" + cert_sha1(cert)).matches(pki["id"]["root1"])  # same key, other DER
    assert parse_pin(spki_pin(cert)).matches(pki["id"]["root1"])


def test_a_set_matches_when_any_pin_matches(pki) -> None:
    served, path = served_and_cross_path(pki)
    assert pin_set_matches_chain([spki(pki["id"]["root3"]), spki(pki["id"]["root1"])], "any", served, path)
    assert not pin_set_matches_chain([spki(pki["id"]["root3"])], "any", served, path)


# --- scenarios ----------------------------------------------------------------------------------


def test_leaf_rekey_breaks_a_leaf_pin_not_a_root_pin(pki) -> None:
    served, path = served_and_cross_path(pki)
    new_served, new_path = apply_scenario(Scenario.LEAF_REKEY, served, path, pki["known"])
    assert new_path[1:] == path[1:] and new_path[0].hypothetical
    assert not pin_matches_chain(spki(pki["id"]["rsa_leaf"]), "any", new_served, new_path)
    assert pin_matches_chain(spki(pki["id"]["root1"]), "any", new_served, new_path)


def test_intermediate_change_moves_to_a_catalogue_sibling(pki) -> None:
    served, path = served_and_cross_path(pki)
    new_served, new_path = apply_scenario("intermediate-change", served, path, pki["known"])
    assert new_path[1] == pki["id"]["m04"]                                    # M01 -> M04, same root
    assert new_path[0].spki_sha256 == pki["id"]["rsa_leaf"].spki_sha256      # re-issued leaf, same key
    assert not pin_matches_chain(spki(pki["id"]["m01"]), "any", new_served, new_path)
    assert pin_matches_chain(spki(pki["id"]["rsa_leaf"]), "leaf", new_served, new_path)
    assert not pin_matches_chain(whole(pki["id"]["rsa_leaf"]), "leaf", new_served, new_path)


def test_intermediate_change_without_a_sibling_invents_a_new_key(pki) -> None:
    i = pki["id"]
    served, path = (i["ec_leaf"], i["e01"]), (i["ec_leaf"], i["e01"], i["root3"])
    _, new_path = apply_scenario("intermediate-change", served, path, pki["known"])
    assert new_path[1].hypothetical and new_path[1].spki_sha256 != i["e01"].spki_sha256
    assert new_path[2] == i["root3"]


def test_issuer_change_swaps_cross_signed_for_self_signed(pki) -> None:
    i = pki["id"]
    served, path = served_and_cross_path(pki)
    new_served, new_path = apply_scenario("issuer-change", served, path, pki["known"])
    assert new_path == (i["rsa_leaf"], i["m01"], i["root1"])
    assert new_served == (i["rsa_leaf"], i["m01"])  # a self-signed root is not sent
    assert pin_matches_chain(spki(i["cross1"]), "any", new_served, new_path)
    assert not pin_matches_chain(whole(i["cross1"]), "any", new_served, new_path)


def test_issuer_change_swaps_self_signed_for_cross_signed(pki) -> None:
    i = pki["id"]
    served, path = (i["rsa_leaf"], i["m01"]), (i["rsa_leaf"], i["m01"], i["root1"])
    new_served, new_path = apply_scenario("issuer-change", served, path, pki["known"])
    assert new_path == (i["rsa_leaf"], i["m01"], i["cross1"], i["signer"])
    assert new_served == (i["rsa_leaf"], i["m01"], i["cross1"])  # the server starts sending the cross-sign
    assert not pin_matches_chain(whole(i["root1"]), "root", new_served, new_path)
    assert not pin_matches_chain(spki(i["root1"]), "root", new_served, new_path)  # the anchor moved to Starfield
    assert pin_matches_chain(spki(i["root1"]), "any", new_served, new_path)


def test_issuer_change_flips_the_served_and_the_anchored_copy_independently(pki) -> None:
    """AWS serves the cross-signed copy while the device anchors at its self-signed copy: both flip."""
    i = pki["id"]
    served, path = (i["rsa_leaf"], i["m01"], i["cross1"]), (i["rsa_leaf"], i["m01"], i["root1"])
    new_served, new_path = apply_scenario("issuer-change", served, path, pki["known"])
    assert new_served == (i["rsa_leaf"], i["m01"])                     # the cross-sign is no longer sent
    assert new_path == (i["rsa_leaf"], i["m01"], i["cross1"], i["signer"])
    assert pin_matches_chain(whole(i["cross1"]), "served", served, path)
    assert not pin_matches_chain(whole(i["cross1"]), "served", new_served, new_path)
    assert pin_matches_chain(spki(i["root1"]), "any", new_served, new_path)


def test_key_type_switch_uses_the_other_chain(pki) -> None:
    i = pki["id"]
    served, path = served_and_cross_path(pki)
    counterpart = ((i["ec_leaf"], i["e01"]), (i["ec_leaf"], i["e01"], i["root3"]))
    new_served, new_path = apply_scenario("key-type-switch", served, path, pki["known"], counterpart=counterpart)
    assert (new_served, new_path) == counterpart
    assert not pin_set_matches_chain([spki(i["root1"])], "any", new_served, new_path)
    assert pin_set_matches_chain([spki(i["root1"]), spki(i["root3"])], "any", new_served, new_path)


def test_key_type_switch_without_a_counterpart_builds_the_catalogue_chain(pki) -> None:
    i = pki["id"]
    served, path = served_and_cross_path(pki)
    _, new_path = apply_scenario("key-type-switch", served, path, pki["known"])
    assert new_path[1:] == (i["e01"], i["root3"])


def test_reserved_roots_move_rsa_to_root_ca_2_and_ec_to_4(pki) -> None:
    i = pki["id"]
    served, path = served_and_cross_path(pki)
    _, rsa_path = apply_scenario("reserved-roots", served, path, pki["known"])
    _, ec_path = apply_scenario("reserved-roots", (i["ec_leaf"], i["e01"]), (i["ec_leaf"], i["e01"], i["root3"]),
                                pki["known"])
    assert rsa_path[-1] == i["root2"] and ec_path[-1] == i["root4"]
    assert not pin_matches_chain(spki(i["root1"]), "any", (), rsa_path)
    assert pin_matches_chain(spki(i["root2"]), "root", (), rsa_path)


# --- the seed's warning on the REAL public certificates -------------------------------------------


def test_real_cross_signed_root_ca_1_spki_pin_survives_issuer_change_cert_pin_breaks() -> None:
    """G2-RootCA1 and AmazonRootCA1 share a key but not a DER (the AWS "Server Authentication" warning)."""
    cat = aws_catalog()
    m01, g2, sfs = (cat.entry(n).certificate for n in ("AmazonRSA2048M01", "G2-RootCA1", "SFSRootCAG2"))
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    verdict = validate_chain([m01, g2], [sfs], host=None, as_of=as_of, stack="openssl-3-partial-chain")  # a real path through the cross-sign
    assert verdict.valid
    known = KnownCertificates([m01, g2, sfs], cat)
    served = tuple(known.require(fp) for fp in (cert_sha256(m01), cert_sha256(g2)))
    path = tuple(known.require(fp) for fp in verdict.path_sha256)
    spki_pin_ = parse_pin(spki_pin(g2))
    cert_pin = parse_pin("cert-sha256:" + cert_sha256(g2))
    assert spki_sha256(g2) == spki_sha256(cat.entry("AmazonRootCA1").certificate)
    assert pin_matches_chain(spki_pin_, "any", served, path) and pin_matches_chain(cert_pin, "any", served, path)
    new_served, new_path = apply_scenario("issuer-change", served, path, known, anchors=frozenset({cert_sha256(sfs)}))
    assert [c.name for c in new_path] == ["AmazonRSA2048M01", "AmazonRootCA1"]
    assert validate_chain([m01], [cat.entry("AmazonRootCA1").certificate], host=None, as_of=as_of,
                          stack="openssl-3-partial-chain").valid
    assert pin_matches_chain(spki_pin_, "any", new_served, new_path)
    assert not pin_matches_chain(cert_pin, "any", new_served, new_path)
    assert known.under_two_issuers(known.require(cert_sha256(g2)))


# --- fleet-wide: pin_risks and ranked_risks ------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(pki, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pins")
    iss, i, host = pki["issued"], pki["id"], pki["host"]
    run = make_run(tmp, [
        (host, "rsa-tls12", [iss["rsa_leaf"], iss["m01"], iss["cross1"]]),
        (host, "ecdsa-tls12", [iss["ec_leaf"], iss["e01"]]),
    ], pki["catalog"])
    p = lambda ident: spki(ident).canonical  # noqa: E731
    profiles = [
        {"profile": "spki-root-backup", "devices": 10, "trust_store": "AmazonRootCA1;AmazonRootCA3",
         "pins": f"{p(i['root1'])};{p(i['root3'])}"},
        {"profile": "spki-root-single", "devices": 20, "trust_store": "AmazonRootCA1", "key_types": "rsa",
         "pins": p(i["root1"])},
        {"profile": "whole-cert-cross", "devices": 30, "trust_store": "SFSRootCAG2", "key_types": "rsa",
         "pins": f"cert-sha256:{i['cross1'].sha256}", "pin_scope": "served"},
        {"profile": "whole-cert-served-ca1-store", "devices": 5, "trust_store": "AmazonRootCA1", "key_types": "rsa",
         "pins": f"cert-sha256:{i['cross1'].sha256}", "pin_scope": "served"},
        {"profile": "leaf-pinned", "devices": 40, "trust_store": "AmazonRootCA1", "key_types": "rsa",
         "pins": f"{p(i['rsa_leaf'])};cert-sha256:{i['rsa_leaf'].sha256}", "pin_scope": "leaf"},
        {"profile": "expired-set", "devices": 50, "trust_store": "AmazonRootCA1", "key_types": "rsa",
         "pins": p(i["m01"]), "pin_expiry": "2024-06-01"},
        {"profile": "wrong-pin", "devices": 60, "trust_store": "AmazonRootCA1", "key_types": "rsa",
         "pins": f"{p(i['root3'])};{p(i['root4'])}"},
        {"profile": "no-pins", "devices": 70, "trust_store": "AmazonRootCA1"},
    ]
    inventory = make_inventory(tmp, profiles)
    anchors = inventory.resolve(run.catalog_object())
    coverage = coverage_of(run, inventory, as_of=AS_OF)
    risks = pinning.pin_risks(run, inventory.build_profiles(run.catalog_object()), coverage, as_of=AS_OF)
    return {"run": run, "inventory": inventory, "risks": risks, "anchors": anchors, "coverage": coverage}


def row(risks: pd.DataFrame, profile: str, scenario: str, pin_prefix: str = "") -> dict:
    hits = risks[(risks["profile"] == profile) & (risks["scenario"] == scenario)
                 & risks["pin"].str.startswith(pin_prefix)]
    assert len(hits) >= 1, (profile, scenario, pin_prefix)
    return hits.iloc[0].to_dict()


def test_pin_risks_shape_and_no_rows_without_pins(fleet) -> None:
    risks = fleet["risks"]
    assert set(risks.columns) == set(pinning.PIN_RISK_COLUMNS)
    assert "no-pins" not in set(risks["profile"])
    assert len(risks[risks["profile"] == "spki-root-backup"]) == 2 * len(Scenario)


def test_matches_today_names_the_certificate(fleet, pki) -> None:
    r = row(fleet["risks"], "spki-root-backup", "leaf-rekey", spki(pki["id"]["root1"]).canonical)
    assert r["matches"] and r["matched_name"] == ["AmazonRootCA1"]
    assert r["chains"] == 2


def test_backed_up_spki_root_set_survives_key_type_switch(fleet) -> None:
    for scenario in ("leaf-rekey", "intermediate-change", "issuer-change", "key-type-switch"):
        assert not row(fleet["risks"], "spki-root-backup", scenario)["set_breaks"], scenario
    assert row(fleet["risks"], "spki-root-backup", "reserved-roots")["set_breaks"]


def test_single_root_pin_breaks_on_key_type_switch_and_reserved_roots(fleet) -> None:
    r = row(fleet["risks"], "spki-root-single", "key-type-switch")
    assert r["matches"] and r["breaks"] and r["set_breaks"]
    assert not row(fleet["risks"], "spki-root-single", "issuer-change")["set_breaks"]
    assert not row(fleet["risks"], "spki-root-single", "leaf-rekey")["breaks"]
    assert row(fleet["risks"], "spki-root-single", "reserved-roots")["set_breaks"]


def test_whole_certificate_pin_on_the_cross_sign_breaks_on_issuer_change(fleet) -> None:
    r = row(fleet["risks"], "whole-cert-cross", "issuer-change")
    assert r["matches"] and r["breaks"] and r["set_breaks"]
    assert "whole-cert-under-two-issuers" in r["flags"]
    assert not row(fleet["risks"], "whole-cert-cross", "leaf-rekey")["breaks"]


def test_served_whole_certificate_pin_breaks_when_aws_stops_sending_the_cross_sign(fleet) -> None:
    r = row(fleet["risks"], "whole-cert-served-ca1-store", "issuer-change")
    assert r["matches"] and r["breaks"] and r["set_breaks"]


def test_leaf_pins_break_on_leaf_rekey(fleet) -> None:
    r = row(fleet["risks"], "leaf-pinned", "leaf-rekey")
    assert r["matches"] and r["breaks"] and r["set_breaks"]
    spki_row = row(fleet["risks"], "leaf-pinned", "intermediate-change", "sha256/")
    cert_row = row(fleet["risks"], "leaf-pinned", "intermediate-change", "cert-sha256:")
    assert not spki_row["breaks"] and cert_row["breaks"] and not cert_row["set_breaks"]


def test_flag_no_backup_for_a_single_pin(fleet) -> None:
    assert "no-backup" in row(fleet["risks"], "spki-root-single", "leaf-rekey")["flags"]
    assert "no-backup" not in row(fleet["risks"], "spki-root-backup", "leaf-rekey")["flags"]


def test_flag_no_backup_when_all_pins_are_on_one_key(fleet) -> None:
    assert "no-backup" in row(fleet["risks"], "leaf-pinned", "leaf-rekey")["flags"]  # spki + cert pin, one key


def test_flag_pin_set_expired_and_not_enforced(fleet) -> None:
    r = row(fleet["risks"], "expired-set", "intermediate-change")
    assert "pin-set-expired" in r["flags"] and not r["enforced"]
    assert r["set_breaks"]  # what re-enabling it would do; not counted as an outage


def test_flag_no_match_today(fleet) -> None:
    r = row(fleet["risks"], "wrong-pin", "leaf-rekey")
    assert "no-match-today" in r["flags"] and not r["matches"]


def test_flag_whole_cert_under_two_issuers_not_on_spki_pins(fleet) -> None:
    assert "whole-cert-under-two-issuers" not in row(fleet["risks"], "spki-root-single", "leaf-rekey")["flags"]


def test_ranked_risks_orders_by_devices_times_severity(fleet) -> None:
    ranked = pinning.ranked_risks(fleet["risks"])
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert list(ranked["score"]) == sorted(ranked["score"], reverse=True)
    assert (ranked["score"] == ranked["devices"] * ranked["severity"]).all()
    top = ranked.iloc[0]
    assert (top["profile"], top["risk"]) == ("wrong-pin", "no-match-today")  # 60 devices x 6
    expired = ranked[ranked["profile"] == "expired-set"]
    assert set(expired["risk"]) == {"pin-set-expired", "no-backup"}  # no outage counted for an expired set
    cross = ranked[(ranked["profile"] == "whole-cert-cross") & (ranked["risk"] == "issuer-change")]
    assert len(cross) == 1 and cross.iloc[0]["detail"].startswith("whole-cert-cross (30 devices)")
    no_backup = ranked[(ranked["profile"] == "leaf-pinned") & (ranked["risk"] == "no-backup")].iloc[0]
    assert len(no_backup["pins"]) == 2  # a set-level risk lists every pin of the set


def test_ranked_risks_of_no_pins_is_empty() -> None:
    empty = pinning.ranked_risks(typed_frame([], pinning.PIN_RISK_COLUMNS))
    assert empty.empty and list(empty.columns) == list(pinning.RANKED_RISK_COLUMNS)


# --- the lab -----------------------------------------------------------------------------------




def test_lab_spki_pin_survives_issuer_change_whole_cert_pin_breaks(lab_run, tmp_path) -> None:
    cat = lab_run.catalog_object()
    root1 = cat.entry("AmazonRootCA1").certificate
    cross = [e for e in cat.entries if e.role is CatalogRole.CROSS_SIGNED and e.spki_sha256 == spki_sha256(root1)]
    assert cross, "the lab catalogue cross-signs Amazon Root CA 1"
    inventory = make_inventory(tmp_path, [
        {"profile": "spki", "devices": 3, "trust_store": "AmazonRootCA1", "region": "*", "key_types": "rsa",
         "pins": spki_pin(root1)},
        {"profile": "whole", "devices": 4, "trust_store": "AmazonRootCA1", "region": "*", "key_types": "rsa",
         "pins": "cert-sha256:" + cert_sha256(root1), "pin_scope": "root"},
    ])
    anchors = inventory.resolve(cat)
    coverage = coverage_of(lab_run, inventory, as_of=lab_run.created_at)
    risks = pinning.pin_risks(lab_run, inventory.build_profiles(cat), coverage, as_of=lab_run.created_at)
    spki_row = row(risks, "spki", "issuer-change")
    whole_row = row(risks, "whole", "issuer-change")
    assert spki_row["matches"] and whole_row["matches"]
    assert not spki_row["set_breaks"]
    assert whole_row["breaks"] and whole_row["set_breaks"]
    assert "whole-cert-under-two-issuers" in whole_row["flags"]
