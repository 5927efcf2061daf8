"""A real wolfSSL 5.5 TLS client judges AWS-shaped chains in real TLS 1.2 handshakes on 127.0.0.1.

Two builds of the same Debian source: Debian's ``libwolfssl35`` (``--enable-distro``, so
``WOLFSSL_ALT_CERT_CHAINS``: stack ``wolfssl-5-alt-chains``) and wolfSSL's default build
(``python -m iotaudit.crosscheck._wolfssl_build``: stack ``wolfssl-5``). The PKI and the case
matrix are those of ``test_crosscheck_mbedtls.py``.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotaudit.certs import cert_sha256
from iotaudit.crosscheck import _wolfssl, _wolfssl_build
from iotaudit.crosscheck._types import Case, LibraryVerdict
from iotaudit.lab import Lab
from tests.reallib import require, require_library
from tests.test_crosscheck_mbedtls import AS_OF, HOST, aws_shaped_pki, case_matrix, check

UTC = timezone.utc

def _verdicts(stack_id: str) -> dict[str, LibraryVerdict]:
    require_library(stack_id)
    matrix = case_matrix(aws_shaped_pki())
    return dict(zip(matrix, _wolfssl.verify_many(stack_id, list(matrix.values())), strict=True))


@pytest.fixture(scope="module")
def alt_chains() -> dict[str, LibraryVerdict]:
    """Debian's wolfSSL (alternative chains) on every case: one worker, one handshake per case."""
    return _verdicts("wolfssl-5-alt-chains")


@pytest.fixture(scope="module")
def default_build() -> dict[str, LibraryVerdict]:
    """wolfSSL's default build (no alternative chains) on every case."""
    return _verdicts("wolfssl-5")


NO_SIGNER = "ASN_NO_SIGNER_E (-188)"
AFTER_DATE = "ASN_AFTER_DATE_E (-151)"
EXPIRED_NOT_LOADED = "store certificate 1 not loaded: ASN_AFTER_DATE_E (-151)"

# What Debian's wolfSSL 5.5.4 (WOLFSSL_ALT_CERT_CHAINS) answered. Like mbed TLS it is
# trusted-first in effect and takes any stored certificate as an anchor; unlike mbed TLS it
# refuses an expired CA at load (wolfSSL_CTX_load_verify_buffer with the default flags gives
# ASN_AFTER_DATE_E) and does not check signature hash or CA key size by default.
ALT_CHAINS_EXPECTED: dict[str, str | None] = {
    "as-served/root-ca-1": None,
    "as-served/sfs-g2": None,
    "as-served/class-2": None,
    "as-served/all-roots": None,
    "as-served/cross-signed-root-ca-1-alone": None,
    "as-served/intermediate-alone": None,
    "as-served/unrelated-store": NO_SIGNER,
    "as-served/empty-store": NO_SIGNER,
    "missing-intermediate/root-ca-1": NO_SIGNER,
    "missing-intermediate/class-2": NO_SIGNER,
    "leaf-only/root-ca-1": NO_SIGNER,
    "leaf-only/intermediate": None,
    "leaf/one-second-before-not-after": None,
    "leaf/one-second-after-not-after": AFTER_DATE,
    "expired-anchor/alone": EXPIRED_NOT_LOADED,  # never loaded, so: no signer
    "expired-anchor/before-valid-twin": None,  # the twin loads
    "expired-anchor/after-valid-twin": None,
    "class-2-expired/class-2": EXPIRED_NOT_LOADED,
    "class-2-expired/root-ca-1": None,  # the expired served SFS G2 cross is not needed
    "class-2-expired/sfs-g2": None,
    "wrong-host": "DOMAIN_NAME_MISMATCH (-322)",
    "no-host-check": None,
    "leaf-without-san/cn-is-host": None,
    "sha1-intermediate": None,
    "rsa-1024-intermediate": None,
    "intermediate-after-cross-signs/root-ca-1": None,
    "intermediate-after-cross-signs/sfs-g2": NO_SIGNER,  # served order matters, as in mbed TLS
    "intermediate-after-cross-signs/class-2": NO_SIGNER,
    "cross-signs-reversed/class-2": NO_SIGNER,
    "duplicates/class-2": None,
    "duplicates/root-ca-1": None,
    "unrelated-extra/class-2": None,
    "unrelated-extra/root-ca-1": None,
    "top-cross-sign-removed/class-2": NO_SIGNER,
    "top-cross-sign-removed/sfs-g2": None,
}

# wolfSSL's default build: every presented certificate must chain to the store
# ("Without this, all certificates sent by a peer must be used in the trust chain",
# configure.ac --enable-altcertchains), so with AWS's served chain only a store holding
# Starfield Class 2 passes.
DEFAULT_EXPECTED: dict[str, str | None] = {
    **ALT_CHAINS_EXPECTED,
    "as-served/root-ca-1": NO_SIGNER,
    "as-served/sfs-g2": NO_SIGNER,
    "as-served/cross-signed-root-ca-1-alone": NO_SIGNER,
    "as-served/intermediate-alone": NO_SIGNER,
    "leaf/one-second-before-not-after": NO_SIGNER,
    "class-2-expired/root-ca-1": NO_SIGNER,
    "class-2-expired/sfs-g2": NO_SIGNER,
    "no-host-check": NO_SIGNER,
    "intermediate-after-cross-signs/root-ca-1": NO_SIGNER,
    "duplicates/root-ca-1": NO_SIGNER,
    "unrelated-extra/class-2": NO_SIGNER,  # the unrelated certificate cannot be used, so the chain fails
    "unrelated-extra/root-ca-1": NO_SIGNER,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", ALT_CHAINS_EXPECTED)
def test_wolfssl_alt_chains_verdict(alt_chains: dict[str, LibraryVerdict], name: str) -> None:
    check(alt_chains, name, ALT_CHAINS_EXPECTED[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", DEFAULT_EXPECTED)
def test_wolfssl_default_build_verdict(default_build: dict[str, LibraryVerdict], name: str) -> None:
    check(default_build, name, DEFAULT_EXPECTED[name])


def test_matrix_is_fully_asserted() -> None:
    names = list(case_matrix(aws_shaped_pki()))
    assert list(ALT_CHAINS_EXPECTED) == names
    assert sorted(DEFAULT_EXPECTED) == sorted(names)


def test_debian_build_has_alternative_chains() -> None:
    """The stack id follows the build: Debian's options.h defines WOLFSSL_ALT_CERT_CHAINS."""
    options = Path("/usr/include/wolfssl/options.h")
    require("wolfSSL headers (libwolfssl-dev)", None if options.is_file() else f"{options} missing")
    assert "#define WOLFSSL_ALT_CERT_CHAINS" in options.read_text(encoding="ascii")


@pytest.mark.slow
def test_default_build_has_no_alternative_chains() -> None:
    """The default build is made without the flag, and its behaviour shows it (see the matrix)."""
    require_library("wolfssl-5")
    build_notes = (_wolfssl_build.DEFAULT_DIRECTORY / "BUILD.txt").read_text(encoding="utf-8")
    assert "no WOLFSSL_ALT_CERT_CHAINS" in build_notes
    assert not any("ALT_CERT" in option.upper() for option in _wolfssl_build.CMAKE_OPTIONS)
    assert _wolfssl.library_version("wolfssl-5") == _wolfssl.library_version("wolfssl-5-alt-chains")


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", _wolfssl.STACK_IDS)
def test_wolfssl_reports_its_build(stack_id: str) -> None:
    require_library(stack_id)
    assert _wolfssl.library_version(stack_id).startswith("wolfSSL 5.")
    (verdict,) = _wolfssl.verify_many(stack_id, [case_matrix(aws_shaped_pki())["as-served/class-2"]])
    assert verdict.library.startswith(_wolfssl.library_version(stack_id))
    assert ("default build" in verdict.library) == (stack_id == "wolfssl-5")


# ------------------------------------------------------------------ an EC chain, a broken leaf


def _ec_chain() -> tuple[bytes, bytes, bytes]:
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Amazon Root CA 3 (test)")])
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(1).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
            .issuer_name(root_name).public_key(leaf_key.public_key()).serial_number(2)
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(root_key, hashes.SHA256()))
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
             .public_key(other_key.public_key()).serial_number(3).not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(other_key, hashes.SHA256()))
    der = serialization.Encoding.DER
    return root.public_bytes(der), leaf.public_bytes(der), other.public_bytes(der)


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", _wolfssl.STACK_IDS)
def test_ec_leaf_gets_an_ecdsa_suite_and_is_judged(stack_id: str) -> None:
    """The server answers an ECDHE_ECDSA suite for an EC leaf; a same-name root with another key is no signer."""
    require_library(stack_id)
    root, leaf, impostor = _ec_chain()
    ok, wrong_key = _wolfssl.verify_many(stack_id, [Case((leaf,), (root,), HOST, AS_OF),
                                                    Case((leaf,), (impostor,), HOST, AS_OF)])
    assert ok.valid, ok.error
    assert not wrong_key.valid
    assert "ASN_" in wrong_key.error


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", _wolfssl.STACK_IDS)
def test_garbage_leaf_is_a_rejection_not_a_harness_error(stack_id: str) -> None:
    require_library(stack_id)
    pki = aws_shaped_pki()
    (verdict,) = _wolfssl.verify_many(stack_id, [Case((pki.leaf[:200], pki.m01), (pki.r1,), HOST, AS_OF)])
    assert not verdict.valid
    assert verdict.error.startswith("ASN_PARSE_E (-140)"), verdict.error


def _padded_ca(index: int, names: int) -> bytes:
    """A self-signed CA nothing chains to, made big with ``names`` SAN entries (to fill records)."""
    key = _key_for_padding()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Padding CA {index} (test)")])
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
    san = x509.SubjectAlternativeName([x509.DNSName(f"padding-{index}-{n:04d}.example.com") for n in range(names)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(100 + index).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(san, critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


@functools.cache
def _key_for_padding() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.slow
def test_certificate_message_over_one_record_reaches_the_client_whole() -> None:
    """A Certificate message over 2^14 bytes goes in two records (RFC 5246 6.2.1) and is judged whole."""
    require_library("wolfssl-5-alt-chains")
    pki = aws_shaped_pki()
    chain = (pki.leaf, pki.m01, *(_padded_ca(i, 62) for i in range(7)))
    assert len(chain) == 9  # wolfSSL's MAX_CHAIN_DEPTH
    assert 16384 < sum(len(der) + 3 for der in chain) < 18000  # under MAX_CERTIFICATE_SZ (about 18 KB)
    (verdict,) = _wolfssl.verify_many("wolfssl-5-alt-chains", [Case(chain, (pki.r1,), HOST, AS_OF)])
    assert verdict.valid, verdict.error


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", _wolfssl.STACK_IDS)
def test_more_than_nine_served_certificates(stack_id: str) -> None:
    """wolfSSL reads at most MAX_CHAIN_DEPTH (9) certificates and judges those: a 10th is dropped."""
    require_library(stack_id)
    pki = aws_shaped_pki()
    nine = (pki.leaf, pki.m01, *([pki.unrelated] * 5), pki.r1_cross, pki.g2_cross)
    ten = (pki.leaf, pki.m01, *([pki.unrelated] * 6), pki.r1_cross, pki.g2_cross)
    cases = [Case(nine, (pki.r1,), HOST, AS_OF), Case(ten, (pki.r1,), HOST, AS_OF),
             Case(nine, (pki.class2,), HOST, AS_OF), Case(ten, (pki.class2,), HOST, AS_OF)]
    nine_r1, ten_r1, nine_class2, ten_class2 = _wolfssl.verify_many(stack_id, cases)
    if stack_id == "wolfssl-5-alt-chains":
        assert nine_r1.valid, nine_r1.error
        # The chain to Root CA 1 is complete within the first nine, then the rest is "extra data".
        assert ten_r1.error.startswith("wolfSSL error (-416)"), ten_r1.error
        assert nine_class2.valid, nine_class2.error
    else:  # the default build cannot use the unrelated extras
        assert nine_r1.error.startswith(NO_SIGNER), nine_r1.error
        assert not ten_r1.valid
        assert nine_class2.error.startswith(NO_SIGNER), nine_class2.error
    # The 10th certificate (SFS G2 cross, the one Class 2 signs) is never used.
    expected = NO_SIGNER if stack_id == "wolfssl-5-alt-chains" else "MAX_CHAIN_ERROR (-368)"
    assert ten_class2.error.startswith(expected), ten_class2.error


# ------------------------------------------------------------------ the raw-record method = a full handshake

LAB_AS_OF = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def rsa_lab(tmp_path_factory: pytest.TempPathFactory):  # -> iotaudit.lab.Lab
    with Lab(tmp_path_factory.mktemp("wolfssl-lab"), regions=["us-east-1"], hostile=False, as_of=LAB_AS_OF) as running:
        yield running


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", _wolfssl.STACK_IDS)
@pytest.mark.parametrize("anchor", ["AmazonRootCA1", "StarfieldClass2CA", "G2-RootCA1", "AmazonRootCA3"])
def test_raw_record_verdict_equals_full_handshake_with_the_lab(rsa_lab, stack_id: str, anchor: str) -> None:
    """Same client, same store: a full handshake with the lab's real server (real keys) and the
    raw-record replay of the chain it serves give the same verdict and the same error."""
    require_library(stack_id)
    target = rsa_lab.target("ats-dual")
    assert rsa_lab.pki is not None
    by_sha = {cert_sha256(c): c for c in [*rsa_lab.pki.cas.values(), *rsa_lab.pki.leaves.values()]}
    served = tuple(by_sha[sha].public_bytes(serialization.Encoding.DER) for sha in rsa_lab.served[target.host]["rsa"])
    store = (rsa_lab.pki.cas[anchor].public_bytes(serialization.Encoding.DER),)
    full = _wolfssl.full_handshake(stack_id, target.address, target.port, store=store, host=target.host,
                                   as_of=LAB_AS_OF + timedelta(days=1), cipher_list="ECDHE-RSA-AES128-GCM-SHA256")
    (replayed,) = _wolfssl.verify_many(stack_id, [Case(served, store, target.host, LAB_AS_OF + timedelta(days=1))])
    assert full.valid == replayed.valid, (full.error, replayed.error)
    assert full.error.split(";")[0] == replayed.error.split(";")[0]
    expected_valid = {"StarfieldClass2CA": True, "AmazonRootCA3": False}.get(anchor, stack_id == "wolfssl-5-alt-chains")
    assert full.valid is expected_valid, full.error
