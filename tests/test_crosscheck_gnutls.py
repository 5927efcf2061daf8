"""GnuTLS 3.7 (system libgnutls.so.30) through iotaudit.crosscheck._gnutls, on the PKI of tests/reallib.py.

The expected verdicts are what the real library answered when the tests were written (GnuTLS 3.7.9 on
Debian 12); the path model of the gnutls-3.7 stack must reproduce them.
"""

from __future__ import annotations

import ctypes
import os
import re
import ssl
import subprocess
from pathlib import Path

import pytest

from iotaudit.crosscheck import Case, _gnutls
from tests.reallib import (AS_OF, HOST, at, aws_like_pki, case_key_pem, issue, named_cases, require_library, require_tool,
                           rsa_key, serve_chain_once)

STACK = "gnutls-3.7"

# case name -> "" (accepted) or the library's error.
EXPECTED: dict[str, str] = {
    "valid": "",
    "valid_as_aws_root1": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND (0x42): The certificate is NOT trusted. The certificate issuer is unknown.",
    "valid_as_aws_class2": "",
    "missing_intermediate": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND (0x42): The certificate is NOT trusted. The certificate issuer is unknown.",
    "anchor_not_in_store": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND (0x42): The certificate is NOT trusted. The certificate issuer is unknown.",
    "leaf_expired": "GNUTLS_CERT_INVALID|GNUTLS_CERT_EXPIRED (0x402): The certificate is NOT trusted. The certificate chain uses expired certificate.",
    "leaf_not_yet_valid": "GNUTLS_CERT_INVALID|GNUTLS_CERT_NOT_ACTIVATED (0x202): The certificate is NOT trusted. The certificate chain uses not yet valid certificate.",
    "leaf_at_not_after": "",
    "leaf_1s_after_not_after": "GNUTLS_CERT_INVALID|GNUTLS_CERT_EXPIRED (0x402): The certificate is NOT trusted. The certificate chain uses expired certificate.",
    "leaf_at_not_before": "",
    "leaf_1s_before_not_before": "GNUTLS_CERT_INVALID|GNUTLS_CERT_NOT_ACTIVATED (0x202): The certificate is NOT trusted. The certificate chain uses not yet valid certificate.",
    "anchor_expired": "GNUTLS_CERT_INVALID|GNUTLS_CERT_EXPIRED (0x402): The certificate is NOT trusted. The certificate chain uses expired certificate.",
    "anchor_expired_then_valid_twin": "",
    "anchor_valid_then_expired_twin": "",
    "wrong_host": "GNUTLS_CERT_INVALID|GNUTLS_CERT_UNEXPECTED_OWNER (0x4002): The certificate is NOT trusted. The name in the certificate does not match the expected.",
    "no_host_check": "",
    "cn_only_leaf": "",
    "cn_only_leaf_wrong_host": "GNUTLS_CERT_INVALID|GNUTLS_CERT_UNEXPECTED_OWNER (0x4002): The certificate is NOT trusted. The name in the certificate does not match the expected.",
    "cn_host_ip_only_san": "GNUTLS_CERT_INVALID|GNUTLS_CERT_UNEXPECTED_OWNER (0x4002): The certificate is NOT trusted. The name in the certificate does not match the expected.",
    "ip_host_ip_san": "",
    "trailing_dot_host": "GNUTLS_CERT_INVALID|GNUTLS_CERT_UNEXPECTED_OWNER (0x4002): The certificate is NOT trusted. The name in the certificate does not match the expected.",
    "sha1_intermediate": "GNUTLS_CERT_INVALID|GNUTLS_CERT_INSECURE_ALGORITHM (0x102): The certificate is NOT trusted. The certificate chain uses insecure algorithm.",
    "rsa1024_intermediate": "",
    "cross_signed_root1_alone": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND (0x42): The certificate is NOT trusted. The certificate issuer is unknown.",
    "intermediate_alone": "",
    "inter_after_cross_signs": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND (0x42): The certificate is NOT trusted. The certificate issuer is unknown.",
    "inter_after_cross_signs_class2": "",
    "expired_cross_top_root1_and_g2": "",
    "expired_cross_top_root1_only": "",
    "as_aws_root1_only_untrusted_first": "",
    "served_self_signed_root1": "",
    "served_expired_root1_store_valid": "",
    "served_cross_store_expired_then_valid": "GNUTLS_CERT_INVALID|GNUTLS_CERT_EXPIRED (0x402): The certificate is NOT trusted. The certificate chain uses expired certificate.",
    "served_cross_store_valid_then_expired": "",
    "as_aws_g2_cross_alone": "",
    "duplicate_intermediate": "",
    "unrelated_extra_before_inter": "",
    "leaf_alone_in_store": "",
    "after_class2_expiry_class2": "GNUTLS_CERT_INVALID|GNUTLS_CERT_EXPIRED (0x402): The certificate is NOT trusted. The certificate chain uses expired certificate.",
    "after_class2_expiry_root1": "GNUTLS_CERT_INVALID|GNUTLS_CERT_SIGNER_NOT_FOUND|GNUTLS_CERT_EXPIRED (0x442): The certificate is NOT trusted. The certificate issuer is unknown. The certificate chain uses expired certificate.",
    "after_class2_expiry_g2": "",
}


def test_every_named_case_has_an_expectation() -> None:
    assert set(EXPECTED) == set(named_cases(aws_like_pki()))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_verdict_as_the_library_gives_it(name: str) -> None:
    require_library(STACK)
    (verdict,) = _gnutls.verify_many(STACK, [named_cases(aws_like_pki())[name]])
    assert (verdict.valid, verdict.error) == (EXPECTED[name] == "", EXPECTED[name])
    assert verdict.library.startswith("GnuTLS 3.")


def test_one_batch_answers_as_single_calls_do() -> None:
    require_library(STACK)
    cases = list(named_cases(aws_like_pki()).values())
    batch = _gnutls.verify_many(STACK, cases + cases[::-1])
    singles = [_gnutls.verify_many(STACK, [case])[0] for case in cases]
    assert batch == singles + singles[::-1]


def test_the_order_of_the_store_decides() -> None:
    # GnuTLS takes the first same-name, same-key certificate of the trust list for the served
    # cross-signed Root CA 1: an expired twin loaded first fails the chain, loaded second it does not.
    require_library(STACK)
    cases = named_cases(aws_like_pki())
    first, second = _gnutls.verify_many(STACK, [cases["served_cross_store_expired_then_valid"],
                                                cases["served_cross_store_valid_then_expired"]])
    assert "GNUTLS_CERT_EXPIRED" in first.error
    assert second.valid


def test_the_verification_time_is_the_case_time_not_the_clock() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    inside = pki.case([pki.leaf, pki.inter], [pki.root1])
    before = pki.case([pki.leaf, pki.inter], [pki.root1], as_of=AS_OF.replace(year=2025))
    assert [v.valid for v in _gnutls.verify_many(STACK, [inside, before, inside])] == [True, False, True]


def test_the_library_clock_is_given_back_after_a_batch() -> None:
    # A chain valid 2000-2100: refused inside a batch dated 1999, accepted afterwards by GnuTLS's
    # own clock (libc time), asked directly without the adapter's time function.
    require_library(STACK)
    root = issue("Clock Root", rsa_key("root1"), None, ca=True, serial=90, start=at(2000), end=at(2100))
    leaf = issue(HOST, rsa_key("leaf"), root, ca=False, serial=91, start=at(2000), end=at(2100), san=(HOST,))
    case = Case((leaf.der,), (root.der,), HOST, at(1999))
    assert "GNUTLS_CERT_NOT_ACTIVATED" in _gnutls.verify_many(STACK, [case])[0].error
    lib = _gnutls._library()
    assert lib is not None
    batch = _gnutls._Batch(lib)
    try:
        tlist = batch.trust_list(case.store)
        crt = batch.cert(leaf.der)
        status = ctypes.c_uint(0)
        array = (ctypes.c_void_p * 1)(crt)
        assert lib.tl_verify_crt2(tlist, array, 1, None, 0, _gnutls.VERIFY_FLAGS, ctypes.byref(status), None) == 0
        assert status.value == 0
    finally:
        batch.free()


def test_more_certificates_than_the_verify_depth_is_a_constraint_error() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    case = Case((pki.leaf.der,) + (pki.inter.der,) * 16, (pki.root1.der,), HOST, AS_OF)
    (verdict,) = _gnutls.verify_many(STACK, [case])
    assert verdict.error.startswith("GNUTLS_E_CONSTRAINT_ERROR (-101): ")
    assert "17 certificates > verify depth 16" in verdict.error


def test_an_undecodable_served_certificate_is_a_refusal_naming_it() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    case = Case((pki.leaf.der, b"\x30\x03\x02\x01\x00"), (pki.root1.der,), HOST, AS_OF)
    (verdict,) = _gnutls.verify_many(STACK, [case])
    assert verdict.error == "gnutls_x509_crt_import cannot decode served certificate 1"


def test_an_undecodable_store_certificate_is_a_refusal_naming_it() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    case = Case((pki.leaf.der, pki.inter.der), (pki.root1.der, b"junk"), HOST, AS_OF)
    (verdict,) = _gnutls.verify_many(STACK, [case])
    assert verdict.error == "gnutls_x509_crt_import cannot decode trust store certificate 2"


def test_an_unknown_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="not a GnuTLS stack"):
        _gnutls.verify_many("openssl-3", [])


def test_a_non_ascii_host_is_refused_before_asking() -> None:
    require_library(STACK)
    pki = aws_like_pki()
    with pytest.raises(ValueError, match="IDNA A-label"):
        _gnutls.verify_many(STACK, [pki.case([pki.leaf, pki.inter], [pki.root1], host="bücher.example")])


# --- the adapter against a real gnutls-cli handshake on 127.0.0.1, at the case's time under libfaketime --

# gnutls-cli always checks a host name, and canonicalises it (src/cli.c canonicalize_host drops a
# trailing dot) before the library sees it; the adapter gives the library the host as the case has it.
NOT_COMPARABLE = {"no_host_check", "trailing_dot_host"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in EXPECTED if name not in NOT_COMPARABLE])
def test_the_adapter_decides_as_a_real_gnutls_cli_handshake(name: str, tmp_path: Path) -> None:
    require_library(STACK)
    gnutls_cli = require_tool("gnutls-cli", "gnutls-bin")
    faketime = require_tool("faketime", "faketime")
    pki = aws_like_pki()
    case = named_cases(pki)[name]
    assert case.host is not None
    store = tmp_path / "store.pem"
    store.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in case.store))
    port, server = serve_chain_once(case.served, case_key_pem(pki, case), tmp_path)
    command = [faketime, "-f", case.as_of.strftime("@%Y-%m-%d %H:%M:%S"), gnutls_cli, "--x509cafile", str(store),
               "--port", str(port), "--verify-hostname", case.host, "127.0.0.1"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          env=env, check=False)
    server.join(timeout=20)
    status = re.search(r"- Status: (.*)", done.stdout + done.stderr)
    assert status, done.stdout + done.stderr
    (verdict,) = _gnutls.verify_many(STACK, [case])
    assert (done.returncode == 0) == verdict.valid, status.group(1)
    assert verdict.error.endswith(status.group(1).strip()) or verdict.valid
