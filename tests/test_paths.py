"""The path engine on the AWS-shaped lab PKI: each stack rule, its plain-words reason, the memo and the labeller.

The real libraries' verdicts on the whole matrix are in tests/test_differential.py; these tests pin the
reasons and the engine's bookkeeping, one rule per test.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from iotaudit.catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from iotaudit.paths import RULES, PathEngine, PathVerdict, anchor_label, leaf_matches_host, validate_chain
from iotaudit.stacks import STACK_IDS, UnknownStackError
from tests.stackmatrix import CHAINS, DATES, HOST, STORES, WRONG_HOST, pki, when


def verdict(chain: str, store: str, stack: str, date: str = "inside", host: str | None = HOST) -> PathVerdict:
    p = pki()
    return validate_chain(p.certs_of(CHAINS[chain]), p.certs_of(STORES[store]), stack=stack, host=host, as_of=DATES[date])


# --- the value ---------------------------------------------------------------------------------


def test_verdict_checks_itself() -> None:
    with pytest.raises(ValueError):
        PathVerdict(True)
    with pytest.raises(ValueError):
        PathVerdict(False, anchor_sha256="ab", reason="x", rule="no-anchor")
    with pytest.raises(ValueError, match="rule"):
        PathVerdict(False, reason="why", rule="made-up")
    assert not PathVerdict(False, reason="why", rule="no-anchor").valid


@pytest.mark.parametrize("stack", STACK_IDS)
def test_every_stack_validates_the_served_chain_with_all_roots(stack: str) -> None:
    v = verdict("as-served", "all", stack)
    assert v.valid, v.reason
    p = pki()
    assert v.path_sha256[0] == p.sha("leaf") and v.path_sha256[-1] == v.anchor_sha256
    assert v.anchor_sha256 in {p.sha(s) for s in STORES["all"]}


def test_unknown_stack_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownStackError, match="mbedtls-2.28"):
        verdict("as-served", "root1", "mbedtls-9")


def test_naive_time_is_refused() -> None:
    p = pki()
    with pytest.raises(ValueError, match="timezone"):
        validate_chain(p.chain("as-served"), [p.cert("root1")], stack="openssl-3", host=HOST, as_of=datetime(2025, 1, 1))


def test_empty_chain_and_empty_store_are_verdicts() -> None:
    p = pki()
    assert validate_chain([], [p.cert("root1")], stack="bearssl", host=HOST, as_of=when("inside")).rule == "empty-chain"
    assert validate_chain(p.chain("as-served"), [], stack="bearssl", host=HOST, as_of=when("inside")).rule == "empty-store"


# --- anchors: which path, which anchor -----------------------------------------------------------


def test_trusted_first_stops_at_root_ca_1_although_the_cross_signs_are_served() -> None:
    v = verdict("as-served", "all", "mbedtls-2.28")
    assert v.anchor_sha256 == pki().sha("root1") and len(v.path_sha256) == 3


def test_openssl_3_needs_a_self_signed_anchor() -> None:
    v = verdict("as-served", "cross-signed-root1", "openssl-3")
    assert v.rule == "self-signed-anchor"
    assert "self-signed" in v.reason and "PARTIAL_CHAIN" in v.reason
    ok = verdict("as-served", "cross-signed-root1", "openssl-3-partial-chain")
    assert ok.valid and ok.anchor_sha256 == pki().sha("root1x")


def test_an_intermediate_in_the_store_is_an_anchor_for_partial_chain_stacks() -> None:
    for stack in ("openssl-3-partial-chain", "mbedtls-2.28", "bearssl", "android"):
        v = verdict("as-served", "intermediate", stack)
        assert v.valid and v.anchor_sha256 == pki().sha("m01"), stack
    assert not verdict("as-served", "intermediate", "openssl-3").valid


def test_openssl_1_0_1_only_looks_up_the_top_issuer() -> None:
    v = verdict("as-served", "root1", "openssl-1.0.1")
    assert v.rule == "no-anchor" and "no alternative chains" in v.reason
    assert verdict("as-served", "root1", "openssl-1.0.2").valid
    assert verdict("as-served", "starfield-class-2", "openssl-1.0.1").valid


def test_mbedtls_uses_a_served_issuer_only_after_the_certificate_it_signs() -> None:
    v = verdict("intermediate-last", "starfield-class-2", "mbedtls-2.28")
    assert v.rule == "served-order"
    assert "only if it comes after the one it signs" in v.reason
    assert verdict("as-served", "starfield-class-2", "mbedtls-2.28").valid
    assert verdict("intermediate-last", "starfield-class-2", "openssl-3").valid


def test_esp_idf_bundle_looks_up_only_the_top_served_certificates_issuer() -> None:
    v = verdict("as-served", "root1", "esp-idf-bundle")
    assert v.rule == "no-anchor" and "top served certificate" in v.reason
    assert verdict("as-served", "starfield-class-2", "esp-idf-bundle").valid
    assert verdict("as-served", "root1", "esp-idf-bundle-cross-signed").valid
    assert verdict("no-top-cross", "sfsg2", "esp-idf-bundle").valid


def test_wolfssl_default_build_needs_every_served_certificate_to_chain() -> None:
    v = verdict("as-served", "root1", "wolfssl-5")
    assert v.rule == "all-presented" and "every served certificate" in v.reason
    assert verdict("as-served", "root1", "wolfssl-5-alt-chains").valid
    assert verdict("as-served", "starfield-class-2", "wolfssl-5").valid     # wolfSSL/wolfMQTT#184


def test_gnutls_needs_the_sorted_tops_issuer_or_its_name_and_key() -> None:
    v = verdict("as-served", "root1", "gnutls-3.7")
    assert v.rule == "no-anchor" and "trust list" in v.reason
    assert verdict("no-top-cross", "root1", "gnutls-3.7").valid             # Root CA 1 trimmed by name and key
    assert verdict("reversed", "sfsg2", "gnutls-3.7").valid                 # sorted first


def test_gnutls_takes_the_first_same_name_same_key_certificate_in_store_order() -> None:
    first_expired = verdict("no-top-cross", "expired-then-valid-root1", "gnutls-3.7")
    assert first_expired.rule == "anchor-expired" and "first stored certificate" in first_expired.reason
    assert verdict("no-top-cross", "valid-then-expired-root1", "gnutls-3.7").valid


def test_mbedtls_and_openssl_prefer_a_valid_twin_wherever_it_is_stored() -> None:
    for stack in ("mbedtls-2.28", "openssl-3"):
        for store in ("expired-then-valid-root1", "valid-then-expired-root1"):
            v = verdict("no-cross", store, stack)
            assert v.valid and v.anchor_sha256 == pki().sha("root1"), (stack, store)


def test_bearssl_follows_the_served_order() -> None:
    v = verdict("intermediate-last", "root1", "bearssl")
    assert v.rule == "served-order" and "issued by the next one" in v.reason
    assert verdict("extra-unrelated", "sfsg2", "bearssl").rule == "served-order"
    assert verdict("extra-unrelated", "root1", "bearssl").valid            # trusted before the extra one


def test_missing_intermediate_is_named() -> None:
    v = verdict("leaf-only", "root1", "openssl-3")
    assert v.rule == "missing-intermediate" and "Lab Amazon RSA 2048 M01" in v.reason


def test_no_anchor_names_where_the_chain_ends() -> None:
    v = verdict("as-served", "root3", "mbedtls-2.28")
    assert v.rule == "no-anchor" and "Lab Starfield Class 2 CA" in v.reason


# --- dates ---------------------------------------------------------------------------------------


def test_an_expired_leaf_is_named() -> None:
    v = verdict("as-served", "all", "bearssl", date="after-leaf")
    assert v.rule == "expired" and "leaf" in v.reason and "2036-01-01" in v.reason


def test_openssl_counts_the_notafter_second_as_past_others_do_not() -> None:
    assert verdict("no-cross", "root1", "openssl-3", date="at-leaf-end").rule == "expired"
    for stack in ("mbedtls-2.28", "gnutls-3.7", "bearssl", "wolfssl-5-alt-chains"):
        assert verdict("no-cross", "root1", stack, date="at-leaf-end").valid, stack


def test_anchor_expiry_per_stack_when_starfield_class_2_ends() -> None:
    """A Starfield-Class-2-only store, the G2 cross-sign renewed past 2034-06-29 (issue 7, "Dates, per stack")."""
    for stack in ("mbedtls-2.28", "openssl-3", "openssl-3-partial-chain", "gnutls-3.7"):
        v = verdict("renewed-cross", "starfield-class-2", stack, date="after-starfield")
        assert v.rule == "anchor-expired" and "2034-06-29" in v.reason, stack
    for stack in ("esp-idf-bundle", "esp-idf-bundle-cross-signed", "android", "bearssl"):
        assert verdict("renewed-cross", "starfield-class-2", stack, date="after-starfield").valid, stack
    for stack in ("mbedtls-2.28", "esp-idf-bundle", "android"):
        assert verdict("renewed-cross", "starfield-class-2", stack, date="inside").valid, stack


def test_wolfssl_does_not_load_an_expired_ca() -> None:
    v = verdict("no-cross", "expired-root1", "wolfssl-5-alt-chains")
    assert v.rule == "anchor-expired" and "does not load" in v.reason


def test_wolfssl_checks_a_served_certificates_dates_only_once_its_signer_is_known() -> None:
    # After 2034-06-28 the served G2 cross-sign is expired: fatal with Starfield Class 2 loaded (2034-06-28T12),
    # ignored when nothing in the store signs it.
    fatal = verdict("as-served", "starfield-class-2", "wolfssl-5-alt-chains", date="after-sfsg2-cross")
    assert fatal.rule == "expired" and "once its signer is known" in fatal.reason
    assert verdict("as-served", "root1", "wolfssl-5-alt-chains", date="after-sfsg2-cross").valid


# --- algorithms and names ------------------------------------------------------------------------


def test_sha1_intermediate_is_refused_by_the_stacks_that_refuse_it() -> None:
    for stack in ("openssl-3", "mbedtls-2.28", "gnutls-3.7", "android"):
        v = verdict("sha1-intermediate-no-cross", "root1", stack)
        assert v.rule == "sha1" and "SHA-1" in v.reason, stack
    for stack in ("openssl-1.0.2", "wolfssl-5-alt-chains", "bearssl"):
        assert verdict("sha1-intermediate-no-cross", "root1", stack).valid, stack


def test_esp_idf_bundle_tolerates_sha1_on_the_certificate_it_checks_itself() -> None:
    # esp_crt_verify_callback: flags_filtered = flags & ~MBEDTLS_X509_BADCERT_BAD_MD on the top certificate.
    assert verdict("sha1-intermediate-no-cross", "root1", "esp-idf-bundle").valid
    assert verdict("sha1-intermediate", "starfield-class-2", "esp-idf-bundle").rule == "sha1"


def test_rsa_1024_is_refused_by_mbedtls_only() -> None:
    v = verdict("rsa1024-intermediate", "all", "mbedtls-2.28")
    assert v.rule == "rsa-key" and "1024-bit" in v.reason and "2048" in v.reason
    for stack in ("openssl-3", "gnutls-3.7", "bearssl", "wolfssl-5-alt-chains"):
        assert verdict("rsa1024-intermediate", "all", stack).valid, stack


def test_a_cn_only_leaf_names_its_host_except_on_android() -> None:
    for stack in STACK_IDS:
        v = verdict("leaf-without-san", "all", stack)
        if stack == "android":
            assert v.rule == "hostname" and "no CN fallback" in v.reason
        else:
            assert v.valid, (stack, v.reason)


def test_a_wrong_host_is_refused_naming_the_host() -> None:
    v = verdict("as-served", "all", "openssl-3", host=WRONG_HOST)
    assert v.rule == "hostname" and WRONG_HOST in v.reason and "*.iot.lab.example" in v.reason


def test_wildcards_match_one_leftmost_label() -> None:
    leaf = pki().cert("leaf")
    assert leaf_matches_host(leaf, "a.iot.lab.example", "openssl-3")
    assert not leaf_matches_host(leaf, "a.b.iot.lab.example", "openssl-3")
    assert not leaf_matches_host(leaf, "iot.lab.example", "openssl-3")
    assert leaf_matches_host(leaf, "A.IOT.lab.example", "mbedtls-2.28")


def test_no_host_skips_the_name_check() -> None:
    assert verdict("as-served", "all", "openssl-3", host=None).valid


# --- depth ---------------------------------------------------------------------------------------


def test_depth_limits_name_the_real_limit_not_a_missing_root() -> None:
    v = verdict("depth-9", "root1", "mbedtls-2.28")
    assert v.rule == "depth" and "limit of mbed TLS" in v.reason and "8 intermediate" in v.reason
    assert "does not hold" not in v.reason
    w = verdict("depth-9", "root1", "wolfssl-5-alt-chains")
    assert w.rule == "depth" and "MAX_CHAIN_DEPTH" in w.reason
    assert verdict("depth-8", "root1", "mbedtls-2.28").valid
    assert verdict("depth-9", "root1", "openssl-3").valid


def test_every_rule_is_reachable() -> None:
    rules = {verdict(c, s, st, d).rule for c in CHAINS for s in STORES for st in STACK_IDS
             for d in ("inside", "after-starfield", "after-sfsg2-cross", "before-leaf")}
    rules |= {verdict("as-served", "all", "openssl-3", host=WRONG_HOST).rule}
    assert RULES - {"empty-chain", "empty-store", "signature", "not-ca"} <= rules


# --- the engine ----------------------------------------------------------------------------------


def test_engine_memoises_per_stack_and_counts() -> None:
    p = pki()
    engine = PathEngine()
    served = engine.add(p.chain("as-served"))
    store = engine.add([p.cert("root1")])
    for _ in range(3):
        assert engine.valid(served, store, stack="mbedtls-2.28", host=HOST, as_of=when("inside"))
    assert not engine.valid(served, store, stack="openssl-1.0.1", host=HOST, as_of=when("inside"))
    assert engine.calls == 2
    assert engine.calls_by_stack == {"mbedtls-2.28": 1, "openssl-1.0.1": 1}


def test_engine_shares_one_validation_between_hosts_of_one_wildcard() -> None:
    p = pki()
    engine = PathEngine()
    served = engine.add(p.chain("as-served"))
    store = engine.add([p.cert("root1")])
    a = engine.validate(served, store, stack="openssl-3", host="a.iot.lab.example", as_of=when("inside"))
    b = engine.validate(served, store, stack="openssl-3", host="b.iot.lab.example", as_of=when("inside"))
    assert a is b and engine.calls == 1
    wrong = engine.validate(served, store, stack="openssl-3", host="x.other.example", as_of=when("inside"))
    wrong2 = engine.validate(served, store, stack="openssl-3", host="y.other.example", as_of=when("inside"))
    assert "x.other.example" in wrong.reason and "y.other.example" in wrong2.reason


def test_engine_keys_on_store_order() -> None:
    p = pki()
    engine = PathEngine()
    served = engine.add(p.chain("no-top-cross"))
    old, new = engine.add([p.cert("root1old"), p.cert("root1")])
    assert not engine.valid(served, (old, new), stack="gnutls-3.7", host=HOST, as_of=when("inside"))
    assert engine.valid(served, (new, old), stack="gnutls-3.7", host=HOST, as_of=when("inside"))


def test_engine_names_an_unknown_certificate() -> None:
    with pytest.raises(KeyError, match="never added"):
        PathEngine().validate(("ab" * 32,), ("cd" * 32,), stack="openssl-3", host=HOST, as_of=when("inside"))


def test_engine_result_equals_validate_chain() -> None:
    p = pki()
    engine = PathEngine({p.sha(s): p.cert(s) for s in p.certs})
    for chain in ("as-served", "intermediate-last", "no-top-cross"):
        for store in ("root1", "sfsg2", "all"):
            served = tuple(p.sha(s) for s in CHAINS[chain])
            stored = tuple(p.sha(s) for s in STORES[store])
            for stack in STACK_IDS:
                assert engine.validate(served, stored, stack=stack, host=HOST, as_of=when("inside")) == \
                    verdict(chain, store, stack)


# --- the labeller --------------------------------------------------------------------------------


def test_anchor_label_names_catalogue_certificates_their_twins_and_strangers() -> None:
    p = pki()
    catalog = Catalog([CatalogEntry("AmazonRootCA1", "Amazon Root CA 1", CatalogRole.ROOT, CatalogStatus.IN_USE,
                                    certificate=p.cert("root1"), source="root1.pem")], kind="lab")
    certs = {p.sha(s): p.cert(s) for s in p.certs}
    assert anchor_label(p.sha("root1"), catalog, certs) == "AmazonRootCA1"
    assert anchor_label(p.sha("root1x"), catalog, certs) == "AmazonRootCA1 (same key, other issuer)"
    assert anchor_label(p.sha("sfc2"), catalog, certs) == "Lab Starfield Class 2 CA"
    assert anchor_label("", catalog, certs) == ""
    assert anchor_label("00" * 32, catalog, certs) == ""


def test_validation_does_not_depend_on_a_clock() -> None:
    # Same question, same answer, whatever the wall clock says: every date comes from as_of.
    a = verdict("renewed-cross", "starfield-class-2", "mbedtls-2.28", date="after-starfield")
    b = verdict("renewed-cross", "starfield-class-2", "mbedtls-2.28", date="after-starfield")
    assert a == b and DATES["after-starfield"].tzinfo is timezone.utc


def test_gnutls_sees_a_stored_root_only_through_the_buckets_it_looks_in() -> None:
    # "Lab Collision G2 4" hashes into the bucket of "Lab Collision Root CA" (hash_pjw_bare % 127): the real
    # GnuTLS accepts this chain (tests/test_differential.py), and refuses the same shape without the collision.
    assert verdict("gnutls-bucket-collision", "collision-root", "gnutls-3.7").valid
    assert not verdict("as-served", "root1", "gnutls-3.7").valid


def test_an_ip_only_subject_alt_name_ends_the_cn_fallback_except_on_openssl() -> None:
    from tests.reallib import HOST as LAB_HOST
    from tests.reallib import aws_like_pki

    lab = aws_like_pki()
    served = [lab.leaf_ip_san.certificate, lab.inter.certificate]
    store = [lab.root1.certificate]
    as_of = datetime(2026, 6, 1, tzinfo=timezone.utc)
    for stack in ("openssl-3", "wolfssl-5"):
        assert validate_chain(served, store, stack=stack, host=LAB_HOST, as_of=as_of).valid, stack
    for stack in ("mbedtls-2.28", "gnutls-3.7", "bearssl", "wolfssl-5-alt-chains"):
        v = validate_chain(served, store, stack=stack, host=LAB_HOST, as_of=as_of)
        assert v.rule == "hostname", stack
    for stack in ("openssl-3", "gnutls-3.7", "wolfssl-5-alt-chains"):
        assert validate_chain(served, store, stack=stack, host="127.0.0.1", as_of=as_of).valid, stack
    v = validate_chain(served, store, stack="openssl-3", host="127.0.0.2", as_of=as_of)
    assert v.rule == "hostname" and "127.0.0.1" in v.reason


def test_a_leaf_alone_in_the_store_is_trusted_where_the_library_trusts_it() -> None:
    p = pki()
    leaf = p.cert("leaf")
    for stack in ("openssl-3-partial-chain", "bearssl", "wolfssl-5-alt-chains", "gnutls-3.7"):
        v = validate_chain([leaf], [leaf], stack=stack, host=HOST, as_of=when("inside"))
        assert v.valid and v.anchor_sha256 == p.sha("leaf"), stack
    for stack in ("openssl-3", "mbedtls-2.28", "wolfssl-5"):
        assert not validate_chain([leaf], [leaf], stack=stack, host=HOST, as_of=when("inside")).valid, stack
    expired = validate_chain([leaf], [leaf], stack="bearssl", host=HOST, as_of=when("after-leaf"))
    assert expired.rule == "expired"


def test_the_twin_and_signer_date_behaviours_drive_the_builders() -> None:
    import dataclasses

    from iotaudit.stacks import STACKS

    p = pki()
    served, store = p.chain("no-cross"), p.certs_of(STORES["expired-then-valid-root1"])
    naive = dataclasses.replace(STACKS["mbedtls-2.28"], prefers_valid_twin=False)
    assert validate_chain(served, store, stack="mbedtls-2.28", host=HOST, as_of=when("inside")).valid
    assert validate_chain(served, store, stack=naive, host=HOST, as_of=when("inside")).rule == "anchor-expired"
    eager = dataclasses.replace(STACKS["wolfssl-5-alt-chains"], served_dates_need_signer=False)
    served, store = p.chain("as-served"), [p.cert("root1")]
    assert validate_chain(served, store, stack="wolfssl-5-alt-chains", host=HOST, as_of=when("after-sfsg2-cross")).valid
    assert validate_chain(served, store, stack=eager, host=HOST, as_of=when("after-sfsg2-cross")).rule == "expired"
