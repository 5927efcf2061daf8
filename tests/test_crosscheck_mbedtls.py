"""The real mbed TLS 2.28 (Debian libmbedtls-dev) judges AWS-shaped chains, under libfaketime.

Each test asks the library itself (``iotaudit.crosscheck._mbedtls``) and asserts what it
answered; the PKI is made here, shaped like AWS's (Starfield Class 2 -> SFS G2 cross ->
Amazon Root CA 1 cross -> M01 -> leaf, plus the self-signed roots). This module also
holds that PKI and the case matrix for ``test_crosscheck_wolfssl.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotaudit.crosscheck import _faketime, _mbedtls
from iotaudit.crosscheck._types import Case, LibraryVerdict
from tests.reallib import require, require_library

UTC = timezone.utc
AS_OF = datetime(2025, 6, 1, tzinfo=UTC)
HOST = "a1b2c3-ats.iot.eu-west-1.amazonaws.com"
LEAF_NOT_AFTER = datetime(2026, 1, 1, tzinfo=UTC)
CLASS2_NOT_AFTER = datetime(2034, 6, 29, 17, 39, 16, tzinfo=UTC)  # as the real Starfield Class 2
AFTER_CLASS2 = datetime(2034, 7, 1, tzinfo=UTC)

# ------------------------------------------------------------------ an AWS-shaped PKI


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotaudit test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@functools.cache
def _key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _issue(subject: str, key: rsa.RSAPrivateKey, issuer: str, issuer_key: rsa.RSAPrivateKey, not_before: datetime,
           not_after: datetime, *, ca: bool, san: bool = True, hash_algorithm: hashes.HashAlgorithm | None = None,
           serial: int | None = None) -> bytes:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False),
                                  critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False, decipher_only=False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    certificate = builder.sign(issuer_key, hashes.SHA256())
    if isinstance(hash_algorithm, hashes.SHA1):
        return _resign_sha1(certificate, issuer_key)
    return _der(certificate)


_SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")  # OID 1.2.840.113549.1.1.11 (RFC 4055)
_SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")  # OID 1.2.840.113549.1.1.5 (RFC 3279)


def _resign_sha1(certificate: x509.Certificate, issuer_key: rsa.RSAPrivateKey) -> bytes:
    """The same certificate signed with sha1WithRSAEncryption (cryptography refuses to build SHA-1 ones).

    Both OIDs have the same length and an RSA signature keeps its length, so the DER is
    patched in place: the two AlgorithmIdentifiers, then the signature over the new TBS.
    """
    der = _der(certificate)
    assert der.count(_SHA256_WITH_RSA) == 2
    tbs = certificate.tbs_certificate_bytes.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    patched = der.replace(_SHA256_WITH_RSA, _SHA1_WITH_RSA).replace(certificate.signature, signature)
    assert x509.load_der_x509_certificate(patched).signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.5"
    return patched


def _t(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AwsShapedPki:
    """DER of every certificate of the test PKI, by role (names follow AWS's, "(test)" appended)."""

    class2: bytes          # Starfield Class 2 (test), self-signed, expires like the real one
    g2: bytes              # SFS Root G2 (test), self-signed
    g2_cross: bytes        # SFS Root G2, issued by Class 2 (same key as g2)
    r1: bytes              # Amazon Root CA 1 (test), self-signed
    r1_cross: bytes        # Amazon Root CA 1, issued by G2 (same key as r1)
    r1_expired: bytes      # Amazon Root CA 1, self-signed, same name and key, expired before AS_OF
    m01: bytes             # Amazon RSA 2048 M01 (test), issued by r1
    m01_sha1: bytes        # M01, same name and key, signed with SHA-1
    weak_ca: bytes         # an RSA-1024 intermediate issued by r1
    long_ca: bytes         # an intermediate valid past Class 2's expiry
    leaf: bytes            # HOST, SAN + CN, issued by m01, until LEAF_NOT_AFTER
    leaf_no_san: bytes     # HOST in the CN only
    leaf_weak: bytes       # HOST, issued by weak_ca
    leaf_long: bytes       # HOST, issued by long_ca, valid past Class 2's expiry
    unrelated: bytes       # a self-signed CA nothing here chains to

    @property
    def served(self) -> tuple[bytes, ...]:
        """The chain as AWS serves it: leaf, intermediate, Root CA 1 cross, SFS G2 cross."""
        return (self.leaf, self.m01, self.r1_cross, self.g2_cross)


@functools.cache
def aws_shaped_pki() -> AwsShapedPki:
    """Build the PKI once per session (RSA keys are slow to make)."""
    class2, g2, r1 = _key("class2"), _key("g2"), _key("r1")
    m01, weak, long_ca, leaf = _key("m01"), _key("weak", 1024), _key("long"), _key("leaf")
    unrelated = _key("unrelated")
    c2n, g2n, r1n = "Starfield Class 2 CA (test)", "Starfield Services Root CA - G2 (test)", "Amazon Root CA 1 (test)"
    m01n = "Amazon RSA 2048 M01 (test)"
    return AwsShapedPki(
        class2=_issue(c2n, class2, c2n, class2, _t(2004, 6, 29), CLASS2_NOT_AFTER, ca=True),
        g2=_issue(g2n, g2, g2n, g2, _t(2009, 9, 1), _t(2037, 12, 31), ca=True),
        g2_cross=_issue(g2n, g2, c2n, class2, _t(2009, 9, 2), _t(2034, 6, 28, ), ca=True),
        r1=_issue(r1n, r1, r1n, r1, _t(2015, 5, 26), _t(2038, 1, 17), ca=True),
        r1_cross=_issue(r1n, r1, g2n, g2, _t(2015, 5, 25), _t(2037, 12, 31), ca=True),
        r1_expired=_issue(r1n, r1, r1n, r1, _t(2015, 5, 26), _t(2024, 12, 31), ca=True),
        m01=_issue(m01n, m01, r1n, r1, _t(2022, 8, 23), _t(2030, 8, 23), ca=True),
        m01_sha1=_issue(m01n, m01, r1n, r1, _t(2022, 8, 23), _t(2030, 8, 23), ca=True, hash_algorithm=hashes.SHA1()),
        weak_ca=_issue("Weak RSA 1024 CA (test)", weak, r1n, r1, _t(2022, 1, 1), _t(2030, 1, 1), ca=True),
        long_ca=_issue("Amazon RSA 2048 M99 (test)", long_ca, r1n, r1, _t(2022, 1, 1), _t(2037, 1, 1), ca=True),
        leaf=_issue(HOST, leaf, m01n, m01, _t(2025, 1, 1), LEAF_NOT_AFTER, ca=False),
        leaf_no_san=_issue(HOST, leaf, m01n, m01, _t(2025, 1, 1), LEAF_NOT_AFTER, ca=False, san=False),
        leaf_weak=_issue(HOST, leaf, "Weak RSA 1024 CA (test)", weak, _t(2025, 1, 1), LEAF_NOT_AFTER, ca=False),
        leaf_long=_issue(HOST, leaf, "Amazon RSA 2048 M99 (test)", long_ca, _t(2025, 1, 1), _t(2036, 1, 1), ca=False),
        unrelated=_issue("Unrelated Root (test)", unrelated, "Unrelated Root (test)", unrelated, _t(2015, 1, 1),
                         _t(2040, 1, 1), ca=True),
    )


def case_matrix(pki: AwsShapedPki) -> dict[str, Case]:
    """Every case of the brief, by name (what the real-library tests of each stack assert on)."""
    p = pki
    served = p.served

    def case(chain: Sequence[bytes], store: Sequence[bytes], host: str | None = HOST, as_of: datetime = AS_OF) -> Case:
        return Case(served=tuple(chain), store=tuple(store), host=host, as_of=as_of)

    return {
        "as-served/root-ca-1": case(served, [p.r1]),
        "as-served/sfs-g2": case(served, [p.g2]),
        "as-served/class-2": case(served, [p.class2]),
        "as-served/all-roots": case(served, [p.r1, p.g2, p.class2]),
        "as-served/cross-signed-root-ca-1-alone": case(served, [p.r1_cross]),
        "as-served/intermediate-alone": case(served, [p.m01]),
        "as-served/unrelated-store": case(served, [p.unrelated]),
        "as-served/empty-store": case(served, []),
        "missing-intermediate/root-ca-1": case([p.leaf, p.r1_cross, p.g2_cross], [p.r1]),
        "missing-intermediate/class-2": case([p.leaf, p.r1_cross, p.g2_cross], [p.class2]),
        "leaf-only/root-ca-1": case([p.leaf], [p.r1]),
        "leaf-only/intermediate": case([p.leaf], [p.m01]),
        "leaf/one-second-before-not-after": case(served, [p.r1], as_of=LEAF_NOT_AFTER - timedelta(seconds=1)),
        "leaf/one-second-after-not-after": case(served, [p.r1], as_of=LEAF_NOT_AFTER + timedelta(seconds=1)),
        "expired-anchor/alone": case([p.leaf, p.m01], [p.r1_expired]),
        "expired-anchor/before-valid-twin": case([p.leaf, p.m01], [p.r1_expired, p.r1]),
        "expired-anchor/after-valid-twin": case([p.leaf, p.m01], [p.r1, p.r1_expired]),
        "class-2-expired/class-2": case([p.leaf_long, p.long_ca, p.r1_cross, p.g2_cross], [p.class2], as_of=AFTER_CLASS2),
        "class-2-expired/root-ca-1": case([p.leaf_long, p.long_ca, p.r1_cross, p.g2_cross], [p.r1], as_of=AFTER_CLASS2),
        "class-2-expired/sfs-g2": case([p.leaf_long, p.long_ca, p.r1_cross, p.g2_cross], [p.g2], as_of=AFTER_CLASS2),
        "wrong-host": case(served, [p.r1], host="other.iot.eu-west-1.amazonaws.com"),
        "no-host-check": case(served, [p.r1], host=None),
        "leaf-without-san/cn-is-host": case([p.leaf_no_san, p.m01], [p.r1]),
        "sha1-intermediate": case([p.leaf, p.m01_sha1], [p.r1]),
        "rsa-1024-intermediate": case([p.leaf_weak, p.weak_ca], [p.r1]),
        "intermediate-after-cross-signs/root-ca-1": case([p.leaf, p.r1_cross, p.g2_cross, p.m01], [p.r1]),
        "intermediate-after-cross-signs/sfs-g2": case([p.leaf, p.r1_cross, p.g2_cross, p.m01], [p.g2]),
        "intermediate-after-cross-signs/class-2": case([p.leaf, p.r1_cross, p.g2_cross, p.m01], [p.class2]),
        "cross-signs-reversed/class-2": case([p.leaf, p.m01, p.g2_cross, p.r1_cross], [p.class2]),
        "duplicates/class-2": case([p.leaf, p.m01, p.m01, p.r1_cross, p.r1_cross, p.g2_cross], [p.class2]),
        "duplicates/root-ca-1": case([p.leaf, p.m01, p.m01, p.r1_cross, p.r1_cross, p.g2_cross], [p.r1]),
        "unrelated-extra/class-2": case([p.leaf, p.m01, p.unrelated, p.r1_cross, p.g2_cross], [p.class2]),
        "unrelated-extra/root-ca-1": case([p.leaf, p.m01, p.unrelated, p.r1_cross, p.g2_cross], [p.r1]),
        "top-cross-sign-removed/class-2": case([p.leaf, p.m01, p.r1_cross], [p.class2]),
        "top-cross-sign-removed/sfs-g2": case([p.leaf, p.m01, p.r1_cross], [p.g2]),
    }


# ------------------------------------------------------------------ mbed TLS


def _verdicts(stack_id: str) -> dict[str, LibraryVerdict]:
    require_library(stack_id)
    matrix = case_matrix(aws_shaped_pki())
    return dict(zip(matrix, _mbedtls.verify_many(stack_id, list(matrix.values())), strict=True))


@pytest.fixture(scope="module")
def mbedtls() -> dict[str, LibraryVerdict]:
    """The real mbed TLS's verdict on every case of the matrix (one worker)."""
    return _verdicts("mbedtls-2.28")


@pytest.fixture(scope="module")
def esp_bundle() -> dict[str, LibraryVerdict]:
    """The ESP-IDF bundle callback re-implemented over the real mbed TLS, on every case."""
    return _verdicts("esp-idf-bundle")


def check(verdicts: dict[str, LibraryVerdict], name: str, expected: str | None) -> None:
    """Assert the library's verdict on case ``name``: accepted (None) or rejected naming ``expected``."""
    verdict = verdicts[name]
    if expected is None:
        assert verdict.valid, f"{name}: rejected with {verdict.error}"
        assert verdict.error == ""
    else:
        assert not verdict.valid, f"{name}: accepted"
        assert expected in verdict.error, f"{name}: {verdict.error}"


NOT_TRUSTED = "MBEDTLS_X509_BADCERT_NOT_TRUSTED"
EXPIRED = "MBEDTLS_X509_BADCERT_EXPIRED"

# What the real mbed TLS 2.28.3 answered (x509_crt_verify_chain, library/x509_crt.c):
# trusted-first, any stored certificate is an anchor, a valid same-name twin is preferred,
# and a served certificate is an issuer only if it comes *after* its child
# (x509_crt_find_parent_in searches child->next onwards).
MBEDTLS_EXPECTED: dict[str, str | None] = {
    "as-served/root-ca-1": None,
    "as-served/sfs-g2": None,
    "as-served/class-2": None,
    "as-served/all-roots": None,
    "as-served/cross-signed-root-ca-1-alone": None,  # a non-self-signed anchor is fine
    "as-served/intermediate-alone": None,
    "as-served/unrelated-store": NOT_TRUSTED,
    "as-served/empty-store": NOT_TRUSTED,
    "missing-intermediate/root-ca-1": NOT_TRUSTED,
    "missing-intermediate/class-2": NOT_TRUSTED,
    "leaf-only/root-ca-1": NOT_TRUSTED,
    "leaf-only/intermediate": None,
    "leaf/one-second-before-not-after": None,
    "leaf/one-second-after-not-after": EXPIRED,
    "expired-anchor/alone": EXPIRED,  # not NOT_TRUSTED: the expired anchor is found and its dates checked
    "expired-anchor/before-valid-twin": None,  # the time-valid twin wins wherever it sits in the store
    "expired-anchor/after-valid-twin": None,
    "class-2-expired/class-2": EXPIRED,  # the 2034-06-29 cliff for a Class-2-only store
    "class-2-expired/root-ca-1": None,  # the expired served cross-signs are never looked at
    "class-2-expired/sfs-g2": None,
    "wrong-host": "MBEDTLS_X509_BADCERT_CN_MISMATCH",
    "no-host-check": None,
    "leaf-without-san/cn-is-host": None,  # x509_crt_verify_name falls back to the CN without a SAN
    "sha1-intermediate": "MBEDTLS_X509_BADCERT_BAD_MD",  # mbedtls_x509_crt_profile_default: SHA-2 only
    "rsa-1024-intermediate": "MBEDTLS_X509_BADCERT_BAD_KEY",  # default profile: RSA >= 2048
    "intermediate-after-cross-signs/root-ca-1": None,  # the store certifies M01 directly
    "intermediate-after-cross-signs/sfs-g2": NOT_TRUSTED,  # M01's issuer comes before M01
    "intermediate-after-cross-signs/class-2": NOT_TRUSTED,
    "cross-signs-reversed/class-2": NOT_TRUSTED,  # Root CA 1 cross's issuer (G2 cross) comes before it
    "duplicates/class-2": None,
    "duplicates/root-ca-1": None,
    "unrelated-extra/class-2": None,
    "unrelated-extra/root-ca-1": None,
    "top-cross-sign-removed/class-2": NOT_TRUSTED,
    "top-cross-sign-removed/sfs-g2": None,
}

NO_BUNDLE_ENTRY = "no bundle entry for the issuer of the top served certificate"

# ESP-IDF bundle (default mode) over the real mbed TLS: chain-top, name + key, no anchor
# dates; the served certificates' own flags (EXPIRED, BAD_KEY, CN_MISMATCH) still count,
# BAD_MD does not (esp_crt_verify_callback filters it).
ESP_EXPECTED: dict[str, str | None] = {
    "as-served/root-ca-1": NO_BUNDLE_ENTRY,  # the top served is SFS G2 cross: its issuer, Class 2, is needed
    "as-served/sfs-g2": NO_BUNDLE_ENTRY,
    "as-served/class-2": None,
    "as-served/all-roots": None,
    "as-served/cross-signed-root-ca-1-alone": NO_BUNDLE_ENTRY,
    "as-served/intermediate-alone": NO_BUNDLE_ENTRY,
    "as-served/unrelated-store": NO_BUNDLE_ENTRY,
    "as-served/empty-store": NO_BUNDLE_ENTRY,
    "missing-intermediate/root-ca-1": NO_BUNDLE_ENTRY,
    "missing-intermediate/class-2": NO_BUNDLE_ENTRY,  # the top (G2 cross) is fine, but the leaf has no parent
    "leaf-only/root-ca-1": NO_BUNDLE_ENTRY,
    "leaf-only/intermediate": None,
    "leaf/one-second-before-not-after": NO_BUNDLE_ENTRY,
    "leaf/one-second-after-not-after": NO_BUNDLE_ENTRY,
    "expired-anchor/alone": None,  # the bundle has no dates: an expired root still anchors
    "expired-anchor/before-valid-twin": None,
    "expired-anchor/after-valid-twin": None,
    "class-2-expired/class-2": EXPIRED,  # Class 2 is fine, but the served SFS G2 cross (2034-06-28) is expired
    "class-2-expired/root-ca-1": EXPIRED,
    "class-2-expired/sfs-g2": EXPIRED,
    "wrong-host": NO_BUNDLE_ENTRY,  # the top is judged first and fails first
    "no-host-check": NO_BUNDLE_ENTRY,
    "leaf-without-san/cn-is-host": None,
    "sha1-intermediate": None,  # BAD_MD is filtered for the bundle-checked certificate
    "rsa-1024-intermediate": "MBEDTLS_X509_BADCERT_BAD_KEY",  # on the leaf, signed by the 1024-bit key
    "intermediate-after-cross-signs/root-ca-1": None,  # mbed TLS stops at M01 (no later issuer): R1 is its issuer
    "intermediate-after-cross-signs/sfs-g2": NO_BUNDLE_ENTRY,
    "intermediate-after-cross-signs/class-2": NO_BUNDLE_ENTRY,
    "cross-signs-reversed/class-2": NO_BUNDLE_ENTRY,  # the top is Root CA 1 cross: G2 is needed
    "duplicates/class-2": None,
    "duplicates/root-ca-1": NO_BUNDLE_ENTRY,
    "unrelated-extra/class-2": None,
    "unrelated-extra/root-ca-1": NO_BUNDLE_ENTRY,
    "top-cross-sign-removed/class-2": NO_BUNDLE_ENTRY,
    "top-cross-sign-removed/sfs-g2": None,
}


# CROSS_SIGNED_VERIFY (its CA callback emulated, see _mbedtls_worker): trusted-first like plain
# mbed TLS, any bundle entry is an anchor, and anchors have no dates; served certificates keep theirs.
ESP_CROSS_SIGNED_EXPECTED: dict[str, str | None] = {
    **MBEDTLS_EXPECTED,
    "as-served/unrelated-store": NO_BUNDLE_ENTRY,
    "as-served/empty-store": NO_BUNDLE_ENTRY,
    "missing-intermediate/root-ca-1": NO_BUNDLE_ENTRY,
    "missing-intermediate/class-2": NO_BUNDLE_ENTRY,
    "leaf-only/root-ca-1": NO_BUNDLE_ENTRY,
    "expired-anchor/alone": None,  # no anchor dates
    "class-2-expired/class-2": EXPIRED,  # Class 2 has no dates here, but the served SFS G2 cross expired 2034-06-28
    "intermediate-after-cross-signs/sfs-g2": NO_BUNDLE_ENTRY,
    "intermediate-after-cross-signs/class-2": NO_BUNDLE_ENTRY,
    "cross-signs-reversed/class-2": NO_BUNDLE_ENTRY,
    "top-cross-sign-removed/class-2": NO_BUNDLE_ENTRY,
}


@pytest.fixture(scope="module")
def esp_cross_signed() -> dict[str, LibraryVerdict]:
    """ESP-IDF's bundle with CROSS_SIGNED_VERIFY, re-implemented over the real mbed TLS, on every case."""
    return _verdicts("esp-idf-bundle-cross-signed")


@pytest.mark.slow
@pytest.mark.parametrize("name", ESP_CROSS_SIGNED_EXPECTED)
def test_esp_bundle_cross_signed_verdict(esp_cross_signed: dict[str, LibraryVerdict], name: str) -> None:
    check(esp_cross_signed, name, ESP_CROSS_SIGNED_EXPECTED[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", MBEDTLS_EXPECTED)
def test_mbedtls_verdict(mbedtls: dict[str, LibraryVerdict], name: str) -> None:
    check(mbedtls, name, MBEDTLS_EXPECTED[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", ESP_EXPECTED)
def test_esp_bundle_verdict(esp_bundle: dict[str, LibraryVerdict], name: str) -> None:
    check(esp_bundle, name, ESP_EXPECTED[name])


def test_matrix_is_fully_asserted() -> None:
    """Every case of the matrix has an expected verdict for each stack (no case silently unchecked)."""
    names = list(case_matrix(aws_shaped_pki()))
    assert list(MBEDTLS_EXPECTED) == names
    assert list(ESP_EXPECTED) == names
    assert list(ESP_CROSS_SIGNED_EXPECTED) == names


@pytest.mark.slow
def test_mbedtls_reports_its_version() -> None:
    require_library("mbedtls-2.28")
    assert _mbedtls.library_version().startswith("mbed TLS 2.28.")
    verdict = _mbedtls.verify_many("mbedtls-2.28", [case_matrix(aws_shaped_pki())["as-served/root-ca-1"]])[0]
    assert verdict.library == _mbedtls.library_version()


@pytest.mark.slow
def test_mbedtls_verdicts_keep_case_order_across_times() -> None:
    """Cases at several as_of values are grouped per time in one worker, answered in the asked order."""
    require_library("mbedtls-2.28")
    matrix = case_matrix(aws_shaped_pki())
    names = ["leaf/one-second-after-not-after", "as-served/root-ca-1", "leaf/one-second-before-not-after",
             "class-2-expired/class-2", "wrong-host"] * 3
    verdicts = _mbedtls.verify_many("mbedtls-2.28", [matrix[name] for name in names])
    assert [v.valid for v in verdicts] == [False, True, True, False, False] * 3


@pytest.mark.slow
def test_mbedtls_unparsable_served_certificate_is_fatal() -> None:
    """ssl_parse_certificate_chain: a served certificate that does not parse ends the handshake."""
    require_library("mbedtls-2.28")
    pki = aws_shaped_pki()
    broken = Case(served=(pki.leaf, pki.m01[:-10]), store=(pki.r1,), host=HOST, as_of=AS_OF)
    (verdict,) = _mbedtls.verify_many("mbedtls-2.28", [broken])
    assert not verdict.valid
    assert "parsing served certificate 2" in verdict.error


def test_mbedtls_refuses_unknown_stack() -> None:
    with pytest.raises(ValueError, match="mbedtls-2.28"):
        _mbedtls.verify_many("openssl-3", [])


# ------------------------------------------------------------------ the faked clock itself


@pytest.mark.slow
def test_faketime_worker_reads_the_fake_clock(tmp_path) -> None:
    """The worker's time() and libc time() say as_of, for each group in one process."""
    require("libfaketime", _faketime.unavailable())
    worker = tmp_path / "clock_worker.py"
    worker.write_text("import time\n"
                      "def answer(stack_id, cases, options):\n"
                      "    return [{'valid': True, 'error': '', 'now': int(time.time())} for _ in cases]\n",
                      encoding="utf-8")
    times = [datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2034, 6, 29, 17, 39, 17, tzinfo=UTC),
             datetime(2051, 1, 1, tzinfo=UTC)]
    case = {"served": [b"x"], "store": [], "host": None}
    answers = _faketime.run_worker(worker, "clock", [(when, [case, case]) for when in times])
    assert [[result["now"] for result in group] for group in answers] == [[int(when.timestamp())] * 2 for when in times]


@pytest.mark.slow
def test_faketime_worker_failure_is_a_library_run_error(tmp_path) -> None:
    require("libfaketime", _faketime.unavailable())
    worker = tmp_path / "broken_worker.py"
    worker.write_text("def answer(stack_id, cases, options):\n    raise RuntimeError('boom')\n", encoding="utf-8")
    with pytest.raises(_faketime.LibraryRunError, match="boom"):
        _faketime.run_worker(worker, "x", [(AS_OF, [{"served": [b"x"], "store": [], "host": None}])])


@pytest.mark.slow
def test_faketime_worker_whose_clock_moves_is_refused(tmp_path) -> None:
    """A worker whose clock does not read as_of throughout its group gives no verdicts."""
    require("libfaketime", _faketime.unavailable())
    worker = tmp_path / "clock_mover.py"
    worker.write_text("import os\n"
                      "def answer(stack_id, cases, options):\n"
                      "    os.environ['FAKETIME'] = '2001-01-01 00:00:00'\n"
                      "    return [{'valid': True, 'error': ''} for _ in cases]\n", encoding="utf-8")
    with pytest.raises(_faketime.LibraryRunError, match="libfaketime did not take effect"):
        _faketime.run_worker(worker, "x", [(AS_OF, [{"served": [b"x"], "store": [], "host": None}])])


def test_faketime_text_is_utc_to_the_second() -> None:
    when = datetime(2030, 1, 2, 4, 4, 5, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert _faketime.faketime_text(when) == "2030-01-02 03:04:05"
    with pytest.raises(ValueError, match="tz-aware"):
        _faketime.faketime_text(datetime(2030, 1, 1))
