"""OpenSSL 3 (system libcrypto/libssl) through iotaudit.crosscheck._openssl, on the lab-shaped PKI of tests/reallib.py.

The expected verdicts are what the real library answered when the tests were written (OpenSSL 3.0 on
Debian 12); they are facts the path models in iotaudit/stacks.py must reproduce, and they make the
tests fail if the adapter stops asking the library the way a TLS client does.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import pytest

from iotaudit.crosscheck import Case, _openssl
from tests.reallib import (AS_OF, HOST, aws_like_pki, case_key_pem, named_cases, require_library, require_tool,
                           serve_chain_once)

# case name -> "" (accepted) or the library's error, per stack.
EXPECTED: dict[str, dict[str, str]] = {
    "openssl-3": {
        "valid": "",
        "valid_as_aws_root1": "",
        "valid_as_aws_class2": "",
        "missing_intermediate": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "anchor_not_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 1",
        "leaf_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_not_yet_valid": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "leaf_at_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_1s_after_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_at_not_before": "",
        "leaf_1s_before_not_before": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "anchor_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "anchor_expired_then_valid_twin": "",
        "anchor_valid_then_expired_twin": "",
        "wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "no_host_check": "",
        "cn_only_leaf": "",
        "cn_only_leaf_wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "cn_host_ip_only_san": "",
        "ip_host_ip_san": "",
        "trailing_dot_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "sha1_intermediate": "X509_V_ERR_CA_MD_TOO_WEAK (68): CA signature digest algorithm too weak at depth 1",
        "rsa1024_intermediate": "",
        "cross_signed_root1_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 2",
        "intermediate_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 1",
        "inter_after_cross_signs": "",
        "inter_after_cross_signs_class2": "",
        "expired_cross_top_root1_and_g2": "",
        "expired_cross_top_root1_only": "",
        "as_aws_root1_only_untrusted_first": "",
        "served_self_signed_root1": "",
        "served_expired_root1_store_valid": "",
        "served_cross_store_expired_then_valid": "",
        "served_cross_store_valid_then_expired": "",
        "as_aws_g2_cross_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 3",
        "duplicate_intermediate": "",
        "unrelated_extra_before_inter": "",
        "leaf_alone_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "after_class2_expiry_class2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 4",
        "after_class2_expiry_root1": "",
        "after_class2_expiry_g2": "",
    },
    "openssl-3-partial-chain": {
        "valid": "",
        "valid_as_aws_root1": "",
        "valid_as_aws_class2": "",
        "missing_intermediate": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "anchor_not_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 1",
        "leaf_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_not_yet_valid": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "leaf_at_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_1s_after_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_at_not_before": "",
        "leaf_1s_before_not_before": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "anchor_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "anchor_expired_then_valid_twin": "",
        "anchor_valid_then_expired_twin": "",
        "wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "no_host_check": "",
        "cn_only_leaf": "",
        "cn_only_leaf_wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "cn_host_ip_only_san": "",
        "ip_host_ip_san": "",
        "trailing_dot_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "sha1_intermediate": "X509_V_ERR_CA_MD_TOO_WEAK (68): CA signature digest algorithm too weak at depth 1",
        "rsa1024_intermediate": "",
        "cross_signed_root1_alone": "",
        "intermediate_alone": "",
        "inter_after_cross_signs": "",
        "inter_after_cross_signs_class2": "",
        "expired_cross_top_root1_and_g2": "",
        "expired_cross_top_root1_only": "",
        "as_aws_root1_only_untrusted_first": "",
        "served_self_signed_root1": "",
        "served_expired_root1_store_valid": "",
        "served_cross_store_expired_then_valid": "",
        "served_cross_store_valid_then_expired": "",
        "as_aws_g2_cross_alone": "",
        "duplicate_intermediate": "",
        "unrelated_extra_before_inter": "",
        "leaf_alone_in_store": "",
        "after_class2_expiry_class2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 4",
        "after_class2_expiry_root1": "",
        "after_class2_expiry_g2": "",
    },
    "openssl-1.0.1": {
        "valid": "",
        "valid_as_aws_root1": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "valid_as_aws_class2": "",
        "missing_intermediate": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "anchor_not_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 1",
        "leaf_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_not_yet_valid": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "leaf_at_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_1s_after_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_at_not_before": "",
        "leaf_1s_before_not_before": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "anchor_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "anchor_expired_then_valid_twin": "",
        "anchor_valid_then_expired_twin": "",
        "wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "no_host_check": "",
        "cn_only_leaf": "",
        "cn_only_leaf_wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "cn_host_ip_only_san": "",
        "ip_host_ip_san": "",
        "trailing_dot_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "sha1_intermediate": "X509_V_ERR_CA_MD_TOO_WEAK (68): CA signature digest algorithm too weak at depth 1",
        "rsa1024_intermediate": "",
        "cross_signed_root1_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "intermediate_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 1",
        "inter_after_cross_signs": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "inter_after_cross_signs_class2": "",
        "expired_cross_top_root1_and_g2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "expired_cross_top_root1_only": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 2",
        "as_aws_root1_only_untrusted_first": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "served_self_signed_root1": "",
        "served_expired_root1_store_valid": "X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN (19): self-signed certificate in certificate chain at depth 2",
        "served_cross_store_expired_then_valid": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 2",
        "served_cross_store_valid_then_expired": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 2",
        "as_aws_g2_cross_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "duplicate_intermediate": "",
        "unrelated_extra_before_inter": "",
        "leaf_alone_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "after_class2_expiry_class2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 4",
        "after_class2_expiry_root1": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
        "after_class2_expiry_g2": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 3",
    },
    "openssl-1.0.2": {
        "valid": "",
        "valid_as_aws_root1": "",
        "valid_as_aws_class2": "",
        "missing_intermediate": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "anchor_not_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 1",
        "leaf_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_not_yet_valid": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "leaf_at_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_1s_after_not_after": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 0",
        "leaf_at_not_before": "",
        "leaf_1s_before_not_before": "X509_V_ERR_CERT_NOT_YET_VALID (9): certificate is not yet valid at depth 0",
        "anchor_expired": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "anchor_expired_then_valid_twin": "",
        "anchor_valid_then_expired_twin": "",
        "wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "no_host_check": "",
        "cn_only_leaf": "",
        "cn_only_leaf_wrong_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "cn_host_ip_only_san": "",
        "ip_host_ip_san": "",
        "trailing_dot_host": "X509_V_ERR_HOSTNAME_MISMATCH (62): hostname mismatch at depth 0",
        "sha1_intermediate": "X509_V_ERR_CA_MD_TOO_WEAK (68): CA signature digest algorithm too weak at depth 1",
        "rsa1024_intermediate": "",
        "cross_signed_root1_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 2",
        "intermediate_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 1",
        "inter_after_cross_signs": "",
        "inter_after_cross_signs_class2": "",
        "expired_cross_top_root1_and_g2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 2",
        "expired_cross_top_root1_only": "",
        "as_aws_root1_only_untrusted_first": "",
        "served_self_signed_root1": "",
        "served_expired_root1_store_valid": "",
        "served_cross_store_expired_then_valid": "",
        "served_cross_store_valid_then_expired": "",
        "as_aws_g2_cross_alone": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT (2): unable to get issuer certificate at depth 3",
        "duplicate_intermediate": "",
        "unrelated_extra_before_inter": "",
        "leaf_alone_in_store": "X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY (20): unable to get local issuer certificate at depth 0",
        "after_class2_expiry_class2": "X509_V_ERR_CERT_HAS_EXPIRED (10): certificate has expired at depth 4",
        "after_class2_expiry_root1": "",
        "after_class2_expiry_g2": "",
    },
}

CASES = [(stack, name) for stack in _openssl.STACK_IDS for name in EXPECTED[stack]]


def test_every_named_case_has_an_expectation() -> None:
    names = set(named_cases(aws_like_pki()))
    for stack in _openssl.STACK_IDS:
        assert set(EXPECTED[stack]) == names, stack


@pytest.mark.parametrize(("stack", "name"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_verdict_as_the_library_gives_it(stack: str, name: str) -> None:
    require_library(stack)
    case = named_cases(aws_like_pki())[name]
    (verdict,) = _openssl.verify_many(stack, [case])
    assert (verdict.valid, verdict.error) == (EXPECTED[stack][name] == "", EXPECTED[stack][name])
    assert verdict.library.startswith("OpenSSL 3.")


@pytest.mark.parametrize("stack", _openssl.STACK_IDS)
def test_one_batch_answers_as_single_calls_do(stack: str) -> None:
    # The batch caches decoded certificates and stores; that must not change any answer or the order.
    require_library(stack)
    cases = list(named_cases(aws_like_pki()).values())
    batch = _openssl.verify_many(stack, cases + cases[::-1])
    singles = [_openssl.verify_many(stack, [case])[0] for case in cases]
    assert batch == singles + singles[::-1]


def test_trusted_first_changes_the_chosen_path() -> None:
    # The served top is an expired cross-sign whose issuer (G2) is trusted, and the self-signed
    # Root CA 1 is trusted too: trusted-first stops at Root CA 1, untrusted-first walks into the
    # expired cross-sign (the OpenSSL 1.0.2 / DST Root CA X3 failure of 2021).
    require_library("openssl-3")
    case = named_cases(aws_like_pki())["expired_cross_top_root1_and_g2"]
    assert _openssl.verify_many("openssl-3", [case])[0].valid
    for stack in ("openssl-1.0.1", "openssl-1.0.2"):
        assert _openssl.verify_many(stack, [case])[0].error.startswith("X509_V_ERR_CERT_HAS_EXPIRED (10)")


def test_security_level_one_refuses_sha1_but_not_rsa1024() -> None:
    require_library("openssl-3")
    cases = named_cases(aws_like_pki())
    sha1, rsa1024 = _openssl.verify_many("openssl-3", [cases["sha1_intermediate"], cases["rsa1024_intermediate"]])
    assert sha1.error.startswith("X509_V_ERR_CA_MD_TOO_WEAK (68)")
    assert rsa1024.valid


def test_an_undecodable_served_certificate_is_a_refusal_naming_it() -> None:
    require_library("openssl-3")
    pki = aws_like_pki()
    case = Case((pki.leaf.der, b"\x30\x03\x02\x01\x00"), (pki.root1.der,), HOST, AS_OF)
    (verdict,) = _openssl.verify_many("openssl-3", [case])
    assert not verdict.valid
    assert verdict.error == "d2i_X509 cannot decode served certificate 1"


def test_an_undecodable_store_certificate_is_a_refusal_naming_it() -> None:
    require_library("openssl-3")
    pki = aws_like_pki()
    case = Case((pki.leaf.der, pki.inter.der), (pki.root1.der, b"junk"), HOST, AS_OF)
    (verdict,) = _openssl.verify_many("openssl-3", [case])
    assert verdict.error == "d2i_X509 cannot decode trust store certificate 2"


def test_an_empty_batch_is_an_empty_answer() -> None:
    require_library("openssl-3")
    assert _openssl.verify_many("openssl-3", []) == []


def test_an_unknown_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="not an OpenSSL stack"):
        _openssl.verify_many("gnutls-3.7", [])


def test_library_version_is_what_the_library_reports() -> None:
    require_library("openssl-3")
    assert _openssl.library_version().startswith("OpenSSL 3.")


# --- the adapter against a real OpenSSL TLS client handshake on 127.0.0.1 ----------------------------

HANDSHAKE_CASES = ["valid", "valid_as_aws_root1", "valid_as_aws_class2", "missing_intermediate", "anchor_not_in_store",
                   "leaf_expired", "leaf_not_yet_valid", "leaf_at_not_after", "anchor_expired", "wrong_host",
                   "cn_only_leaf", "cn_host_ip_only_san", "sha1_intermediate", "rsa1024_intermediate",
                   "cross_signed_root1_alone", "intermediate_alone", "inter_after_cross_signs",
                   "anchor_expired_then_valid_twin", "after_class2_expiry_class2"]


def _s_client_verdict(openssl: str, case: Case, port: int, directory: Path, partial_chain: bool) -> int:
    """The X509_V_ERR code the ``openssl s_client`` TLS client ends its handshake with (0 = trusted)."""
    store = directory / "store.pem"
    store.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in case.store))
    command = [openssl, "s_client", "-connect", f"127.0.0.1:{port}",
               "-CAfile", str(store), "-attime", str(int(case.as_of.timestamp())), "-verify_return_error",
               "-auth_level", str(_openssl.SECURITY_LEVEL), "-cipher", f"DEFAULT:@SECLEVEL={_openssl.SECURITY_LEVEL}",
               "-servername", HOST]
    if case.host is not None:
        command += ["-verify_hostname", case.host]
    if partial_chain:
        command.append("-partial_chain")
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
    output = done.stdout + done.stderr
    if match := re.search(r"verify error:num=(\d+):", output):
        return int(match.group(1))
    match = re.search(r"Verify return code: (\d+)", output)
    assert match, output
    return int(match.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["openssl-3", "openssl-3-partial-chain"])
@pytest.mark.parametrize("name", HANDSHAKE_CASES)
def test_the_adapter_decides_as_a_real_openssl_handshake(stack: str, name: str, tmp_path: Path) -> None:
    require_library(stack)
    openssl = require_tool("openssl", "openssl")
    pki = aws_like_pki()
    case = named_cases(pki)[name]
    port, server = serve_chain_once(case.served, case_key_pem(pki, case), tmp_path)
    code = _s_client_verdict(openssl, case, port, tmp_path, partial_chain=stack == "openssl-3-partial-chain")
    server.join(timeout=20)
    (verdict,) = _openssl.verify_many(stack, [case])
    assert (code == 0) == verdict.valid
    if code:
        assert verdict.error.startswith(f"X509_V_ERR_{_openssl._ERROR_NAMES[code]} ({code}):")
