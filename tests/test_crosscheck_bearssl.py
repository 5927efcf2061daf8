"""BearSSL (system libbearssl, through the C helper iotaudit/crosscheck/bearssl_helper.c) on the PKI of tests/reallib.py.

The expected verdicts are what the real library answered when the tests were written (BearSSL 0.6
on Debian 12); the path model of the bearssl stack must reproduce them. The helper is a subprocess.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from iotaudit.crosscheck import Case, _bearssl
from tests.reallib import AS_OF, HOST, aws_like_pki, case_key_pem, named_cases, require_library, serve_chain_once

pytestmark = pytest.mark.slow

STACK = "bearssl"

# case name -> "" (accepted) or the library's error.
EXPECTED: dict[str, str] = {
    "valid": "",
    "valid_as_aws_root1": "",
    "valid_as_aws_class2": "",
    "missing_intermediate": "BR_ERR_X509_NOT_TRUSTED (62) at end of chain",
    "anchor_not_in_store": "BR_ERR_X509_NOT_TRUSTED (62) at end of chain",
    "leaf_expired": "BR_ERR_X509_EXPIRED (54) at certificate 0",
    "leaf_not_yet_valid": "BR_ERR_X509_EXPIRED (54) at certificate 0",
    "leaf_at_not_after": "",
    "leaf_1s_after_not_after": "BR_ERR_X509_EXPIRED (54) at certificate 0",
    "leaf_at_not_before": "",
    "leaf_1s_before_not_before": "BR_ERR_X509_EXPIRED (54) at certificate 0",
    "anchor_expired": "",
    "anchor_expired_then_valid_twin": "",
    "anchor_valid_then_expired_twin": "",
    "wrong_host": "BR_ERR_X509_BAD_SERVER_NAME (56) at certificate 0",
    "no_host_check": "",
    "cn_only_leaf": "",
    "cn_only_leaf_wrong_host": "BR_ERR_X509_BAD_SERVER_NAME (56) at certificate 0",
    "cn_host_ip_only_san": "BR_ERR_X509_BAD_SERVER_NAME (56) at certificate 0",
    "ip_host_ip_san": "BR_ERR_X509_BAD_SERVER_NAME (56) at certificate 0",
    "trailing_dot_host": "BR_ERR_X509_BAD_SERVER_NAME (56) at certificate 0",
    "sha1_intermediate": "",
    "rsa1024_intermediate": "",
    "cross_signed_root1_alone": "",
    "intermediate_alone": "",
    "inter_after_cross_signs": "BR_ERR_X509_DN_MISMATCH (55) at certificate 1",
    "inter_after_cross_signs_class2": "BR_ERR_X509_DN_MISMATCH (55) at certificate 1",
    "expired_cross_top_root1_and_g2": "",
    "expired_cross_top_root1_only": "",
    "as_aws_root1_only_untrusted_first": "",
    "served_self_signed_root1": "",
    "served_expired_root1_store_valid": "",
    "served_cross_store_expired_then_valid": "",
    "served_cross_store_valid_then_expired": "",
    "as_aws_g2_cross_alone": "",
    "duplicate_intermediate": "",
    "unrelated_extra_before_inter": "BR_ERR_X509_DN_MISMATCH (55) at certificate 1",
    "leaf_alone_in_store": "",
    "after_class2_expiry_class2": "BR_ERR_X509_EXPIRED (54) at certificate 3",
    "after_class2_expiry_root1": "",
    "after_class2_expiry_g2": "",
}


def test_every_named_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(named_cases(aws_like_pki()))


def test_all_named_cases_in_one_batch_as_the_library_gives_them() -> None:
    require_library(STACK)
    cases = named_cases(aws_like_pki())
    verdicts = _bearssl.verify_many(STACK, list(cases.values()))
    got = {name: verdict.error for name, verdict in zip(cases, verdicts, strict=True)}
    assert got == EXPECTED
    assert all(verdict.valid == (verdict.error == "") for verdict in verdicts)
    assert {verdict.library for verdict in verdicts} == {_bearssl.library_version()}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_verdict_as_the_library_gives_it(name: str) -> None:
    require_library(STACK)
    (verdict,) = _bearssl.verify_many(STACK, [named_cases(aws_like_pki())[name]])
    assert (verdict.valid, verdict.error) == (EXPECTED[name] == "", EXPECTED[name])


def test_one_batch_answers_in_case_order_with_shared_stores() -> None:
    require_library(STACK)
    cases = list(named_cases(aws_like_pki()).values())
    forward = _bearssl.verify_many(STACK, cases)
    assert _bearssl.verify_many(STACK, cases[::-1]) == forward[::-1]


def test_anchor_dates_are_never_checked_but_served_dates_are() -> None:
    # A trust anchor is a name and a key (br_x509_trust_anchor): an expired root in the store still
    # anchors; an expired certificate the server sends is refused.
    require_library(STACK)
    cases = named_cases(aws_like_pki())
    anchor, served = _bearssl.verify_many(STACK, [cases["anchor_expired"], cases["leaf_expired"]])
    assert anchor.valid
    assert served.error == "BR_ERR_X509_EXPIRED (54) at certificate 0"


def test_the_chain_must_be_in_served_order() -> None:
    require_library(STACK)
    (verdict,) = _bearssl.verify_many(STACK, [named_cases(aws_like_pki())["inter_after_cross_signs"]])
    assert verdict.error == "BR_ERR_X509_DN_MISMATCH (55) at certificate 1"


def test_bearssl_time_counts_days_from_year_zero() -> None:
    # BearSSL's own Unix-time conversion adds 719528 days for 1970-01-01 (src/x509/x509_minimal.c).
    assert _bearssl.bearssl_time(datetime(1970, 1, 1, tzinfo=timezone.utc)) == (719528, 0)
    assert _bearssl.bearssl_time(datetime(1, 1, 1, tzinfo=timezone.utc)) == (366, 0)
    assert _bearssl.bearssl_time(datetime(2034, 6, 29, 12, 30, 5, tzinfo=timezone.utc))[1] == 45005


def test_an_undecodable_served_certificate_is_refused() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    case = Case((pki.leaf.der, b"\x30\x03\x02\x01\x00"), (pki.root1.der,), HOST, AS_OF)
    (verdict,) = _bearssl.verify_many(STACK, [case])
    assert not verdict.valid
    assert verdict.error.startswith("BR_ERR_X509_") and verdict.error.endswith("at certificate 1")


def test_an_undecodable_store_certificate_is_a_refusal_naming_it() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    case = Case((pki.leaf.der, pki.inter.der), (pki.root1.der, b"junk"), HOST, AS_OF)
    (verdict,) = _bearssl.verify_many(STACK, [case])
    assert verdict.error.startswith("br_x509_decoder cannot make a trust anchor of trust store certificate 2: BR_ERR_X509_")


def test_without_gcc_the_reason_names_the_packages(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = _bearssl._build()
    assert isinstance(reason, str)
    assert "install Debian packages libbearssl-dev and gcc" in reason


def test_the_helper_is_built_into_the_cache_directory(tmp_path, monkeypatch) -> None:
    require_library(STACK)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    built = _bearssl._build()
    assert not isinstance(built, str), built
    assert built.parent == tmp_path / "iotaudit"
    assert _bearssl._build() == built  # cached by source digest


def test_an_unknown_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="not a BearSSL stack"):
        _bearssl.verify_many("openssl-3", [])


def test_library_version_names_the_shared_library() -> None:
    require_library(STACK)
    assert _bearssl.library_version().startswith("BearSSL 0.")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_helper_decides_as_a_real_bearssl_handshake(name: str, tmp_path: Path) -> None:
    # The same anchors, time and host through br_ssl_client_reset and a real handshake with a
    # loopback server that sends the served chain: the engine must refuse exactly what 'V' refuses,
    # with the same BR_ERR_X509_* code.
    require_library(STACK)
    pki = aws_like_pki()
    case = named_cases(pki)[name]
    port, server = serve_chain_once(case.served, case_key_pem(pki, case), tmp_path)
    shaken = _bearssl.handshake(case, port)
    server.join(timeout=20)
    assert shaken.valid == (EXPECTED[name] == ""), shaken.error
    if not shaken.valid:
        assert EXPECTED[name].startswith(shaken.error.removesuffix(" in the handshake") + " ")
