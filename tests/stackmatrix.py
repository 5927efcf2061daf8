"""A lab PKI shaped like AWS's, and the matrix of (chain order x store x date x host) cases the differential tests run.

Shape (after AWS's ATS chain as awsdocs/aws-iot-docs#6 and wolfSSL/wolfMQTT#436 show it served)::

    leaf <- M01 (RSA) <- Root CA 1 (self-signed; also cross-signed by SFS G2)
         <- SFS G2 (self-signed; also cross-signed by Starfield Class 2, SHA-1 self-signed like the real one)
    leaf3 <- M02 (EC) <- Root CA 3 (EC, self-signed; also cross-signed by SFS G2)

plus the variants the rules need: an expired Root CA 1 twin (same name and key), an expired M01 twin, a
SHA-1-signed M01, an RSA-1024 intermediate, a leaf with its host only in the CN, a G2 cross-sign renewed
past Starfield Class 2's end, an unrelated root, a 9-deep chain for the depth limits, and a small family
whose names share a GnuTLS trust-list bucket.  Dates are chosen around the lab certificates' boundaries;
``matrix()`` is every chain x store x date with the right host, plus every chain x store with a wrong one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from iotaudit.certs import cert_sha256

UTC = timezone.utc
HOST = "dev1.iot.lab.example"
WRONG_HOST = "dev1.other.example"

DATES: dict[str, datetime] = {
    "before-leaf": datetime(2024, 6, 1, tzinfo=UTC),        # leaf not yet valid
    "at-leaf-start": datetime(2025, 1, 1, tzinfo=UTC),      # the leaf's notBefore second
    "inside": datetime(2025, 6, 1, tzinfo=UTC),             # everything valid (but the old Root CA 1 twin)
    "after-sfsg2-cross": datetime(2034, 6, 28, 12, tzinfo=UTC),  # SFS G2 cross-sign expired, Starfield Class 2 valid
    "after-starfield": datetime(2034, 7, 1, tzinfo=UTC),    # Starfield Class 2 expired too; leaf still valid
    "at-leaf-end": datetime(2036, 1, 1, tzinfo=UTC),        # the leaf's notAfter second (OpenSSL: already past)
    "after-leaf": datetime(2036, 6, 1, tzinfo=UTC),         # the leaf expired
}


def when(label: str) -> datetime:
    return DATES[label]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotaudit lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _d(y: int, m: int = 1, d: int = 1) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@dataclass(frozen=True)
class _Spec:
    cn: str
    key: str
    issuer: str | None          # None: self-signed
    start: datetime
    end: datetime
    ca: bool = True
    hash_name: str = "sha256"
    san: bool = True


_SHA256_RSA = bytes.fromhex("06092a864886f70d01010b0500")   # sha256WithRSAEncryption, NULL parameters
_SHA1_RSA = bytes.fromhex("06092a864886f70d0101050500")     # sha1WithRSAEncryption (RFC 3279 2.2.1)


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _resign_sha1(cert: x509.Certificate, signer: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with SHA-1 (cryptography >= 45 no longer signs X.509 with SHA-1).

    RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING };
    the algorithm appears in the TBS too, and both OIDs have the same encoded length.
    """
    tbs = cert.tbs_certificate_bytes
    if tbs.count(_SHA256_RSA) != 1:
        raise ValueError("expected one sha256WithRSAEncryption AlgorithmIdentifier in the TBS")
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    bits = b"\x00" + signature
    body = tbs + bytes([0x30, len(_SHA1_RSA)]) + _SHA1_RSA + b"\x03" + _der_length(len(bits)) + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_length(len(body)) + body)


class Pki:
    """The lab certificates by short name, built once per session."""

    def __init__(self) -> None:
        self.keys = {
            "sfc2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "sfsg2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "root1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "root3": ec.generate_private_key(ec.SECP256R1()),
            "m01": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "m02": ec.generate_private_key(ec.SECP256R1()),
            "weak": rsa.generate_private_key(public_exponent=65537, key_size=1024),
            "leaf": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "leaf3": ec.generate_private_key(ec.SECP256R1()),
            "other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            **{f"level{k}": ec.generate_private_key(ec.SECP256R1()) for k in range(1, 10)},
            **{k: ec.generate_private_key(ec.SECP256R1()) for k in ("ctop", "cg2", "croot", "cm", "cleaf")},
            "leaf8": ec.generate_private_key(ec.SECP256R1()),
            "leaf9": ec.generate_private_key(ec.SECP256R1()),
        }
        specs = {
            # Starfield Class 2 is SHA-1 self-signed, like the real one (a trust anchor's own signature is not checked).
            "sfc2": _Spec("Lab Starfield Class 2 CA", "sfc2", None, _d(2004, 6, 29), _d(2034, 6, 29), hash_name="sha1"),
            "sfsg2": _Spec("Lab Starfield Services Root CA G2", "sfsg2", None, _d(2009, 9, 1), _d(2037, 12, 31)),
            "sfsg2x": _Spec("Lab Starfield Services Root CA G2", "sfsg2", "sfc2", _d(2009, 9, 2), _d(2034, 6, 28)),
            # A G2 cross-sign renewed past Starfield Class 2's end, as AWS would have to serve for Class 2 to matter.
            "sfsg2xr": _Spec("Lab Starfield Services Root CA G2", "sfsg2", "sfc2", _d(2024, 1, 1), _d(2040, 1, 1)),
            "root1": _Spec("Lab Amazon Root CA 1", "root1", None, _d(2015, 5, 26), _d(2038, 1, 17)),
            "root1x": _Spec("Lab Amazon Root CA 1", "root1", "sfsg2", _d(2015, 5, 25), _d(2037, 12, 31)),
            "root1old": _Spec("Lab Amazon Root CA 1", "root1", None, _d(2010, 1, 1), _d(2024, 12, 31)),
            "root3": _Spec("Lab Amazon Root CA 3", "root3", None, _d(2015, 5, 26), _d(2040, 5, 26)),
            "root3x": _Spec("Lab Amazon Root CA 3", "root3", "sfsg2", _d(2015, 5, 25), _d(2037, 12, 31)),
            "m01": _Spec("Lab Amazon RSA 2048 M01", "m01", "root1", _d(2022, 8, 23), _d(2037, 8, 23)),
            # An earlier M01 (same name and key) that ended before the leaf did: a served intermediate past its end.
            "m01old": _Spec("Lab Amazon RSA 2048 M01", "m01", "root1", _d(2019, 1, 1), _d(2024, 12, 31)),
            "m01sha1": _Spec("Lab Amazon RSA 2048 M01", "m01", "root1", _d(2022, 8, 23), _d(2037, 8, 23), hash_name="sha1"),
            "m02": _Spec("Lab Amazon ECDSA 256 M02", "m02", "root3", _d(2022, 8, 23), _d(2037, 8, 23)),
            "weak": _Spec("Lab Amazon RSA 1024 W01", "weak", "root1", _d(2022, 8, 23), _d(2037, 8, 23)),
            "leaf": _Spec("*.iot.lab.example", "leaf", "m01", _d(2025, 1, 1), _d(2036, 1, 1), ca=False),
            "leafnosan": _Spec(HOST, "leaf", "m01", _d(2025, 1, 1), _d(2036, 1, 1), ca=False, san=False),
            "leafweak": _Spec("*.iot.lab.example", "leaf", "weak", _d(2025, 1, 1), _d(2036, 1, 1), ca=False),
            "leaf3": _Spec("*.iot.lab.example", "leaf3", "m02", _d(2025, 1, 1), _d(2036, 1, 1), ca=False),
            "other": _Spec("Lab Unrelated Root CA", "other", None, _d(2015, 1, 1), _d(2040, 1, 1)),
        }
        # A deep chain under Root CA 1 for the depth limits: level1 <- root1, level(k) <- level(k-1).
        for k in range(1, 10):
            specs[f"level{k}"] = _Spec(f"Lab Level {k} CA", f"level{k}", "root1" if k == 1 else f"level{k - 1}",
                                       _d(2022, 1, 1), _d(2037, 1, 1))
        for k in (8, 9):
            specs[f"leaf{k}"] = _Spec("*.iot.lab.example", f"leaf{k}", f"level{k}", _d(2025, 1, 1), _d(2036, 1, 1), ca=False)
        # GnuTLS keeps its trust list in 127 buckets by hash_pjw_bare of the subject DN (verify-high.c): "Lab Collision
        # G2 4" and "Lab Collision Root CA" share a bucket, so a stored Collision Root is seen when GnuTLS looks in
        # the G2's bucket, and trims the served cross-signed Collision Root by name and key.  Without the collision
        # the chain fails on GnuTLS like the AWS-shaped one against Root CA 1 alone.
        specs.update({
            "ctop": _Spec("Lab Collision Top CA", "ctop", None, _d(2010, 1, 1), _d(2040, 1, 1)),
            "cg2x": _Spec("Lab Collision G2 4", "cg2", "ctop", _d(2010, 1, 1), _d(2040, 1, 1)),
            "croot": _Spec("Lab Collision Root CA", "croot", None, _d(2010, 1, 1), _d(2040, 1, 1)),
            "crootx": _Spec("Lab Collision Root CA", "croot", "cg2x", _d(2010, 1, 1), _d(2040, 1, 1)),
            "cm": _Spec("Lab Collision M01", "cm", "croot", _d(2022, 1, 1), _d(2037, 1, 1)),
            "cleaf": _Spec("*.iot.lab.example", "cleaf", "cm", _d(2025, 1, 1), _d(2036, 1, 1), ca=False),
        })
        self.certs: dict[str, x509.Certificate] = {}
        for short in specs:
            self._make(short, specs)

    def _make(self, short: str, specs: dict[str, _Spec]) -> x509.Certificate:
        if short in self.certs:
            return self.certs[short]
        s = specs[short]
        key = self.keys[s.key]
        if s.issuer is None:
            issuer_name, signer, issuer_pub = _name(s.cn), key, key.public_key()
        else:
            parent = self._make(s.issuer, specs)
            issuer_name, signer, issuer_pub = parent.subject, self.keys[specs[s.issuer].key], self.keys[specs[s.issuer].key].public_key()
        b = (x509.CertificateBuilder().subject_name(_name(s.cn)).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(s.start).not_valid_after(s.end)
             .add_extension(x509.BasicConstraints(ca=s.ca, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_pub), critical=False))
        if s.ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                              crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                              data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                              crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            b = b.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            if s.san:
                b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(s.cn)]), critical=False)
        cert = b.sign(signer, hashes.SHA256())
        if s.hash_name == "sha1":
            cert = _resign_sha1(cert, signer)
        self.certs[short] = cert
        return cert

    def cert(self, short: str) -> x509.Certificate:
        return self.certs[short]

    def sha(self, short: str) -> str:
        return cert_sha256(self.certs[short])

    def chain(self, label: str) -> list[x509.Certificate]:
        return [self.certs[s] for s in CHAINS[label]]

    def certs_of(self, shorts: Sequence[str]) -> list[x509.Certificate]:
        return [self.certs[s] for s in shorts]


@functools.cache
def pki() -> Pki:
    return Pki()


# Served chains, by label: certificate short names in the order served.
CHAINS: dict[str, tuple[str, ...]] = {
    "as-served": ("leaf", "m01", "root1x", "sfsg2x"),
    "renewed-cross": ("leaf", "m01", "root1x", "sfsg2xr"),
    "intermediate-last": ("leaf", "root1x", "sfsg2x", "m01"),
    "reversed": ("leaf", "sfsg2x", "root1x", "m01"),
    "duplicates": ("leaf", "m01", "m01", "root1x", "sfsg2x", "sfsg2x"),
    "extra-unrelated": ("leaf", "m01", "other", "root1x", "sfsg2x"),
    "expired-intermediate": ("leaf", "m01old", "root1x", "sfsg2x"),
    "expired-then-valid-intermediate": ("leaf", "m01old", "m01"),
    "no-top-cross": ("leaf", "m01", "root1x"),
    "no-cross": ("leaf", "m01"),
    "root-served": ("leaf", "m01", "root1"),
    "leaf-only": ("leaf",),
    "ec-as-served": ("leaf3", "m02", "root3x", "sfsg2x"),
    "ec-no-cross": ("leaf3", "m02"),
    "sha1-intermediate": ("leaf", "m01sha1", "root1x", "sfsg2x"),
    "sha1-intermediate-no-cross": ("leaf", "m01sha1"),
    "rsa1024-intermediate": ("leafweak", "weak", "root1x", "sfsg2x"),
    "leaf-without-san": ("leafnosan", "m01", "root1x", "sfsg2x"),
    # 8 and 9 intermediates under Root CA 1: mbed TLS's MBEDTLS_X509_MAX_INTERMEDIATE_CA is 8, wolfSSL's
    # MAX_CHAIN_DEPTH 9 served certificates.
    "gnutls-bucket-collision": ("cleaf", "cm", "crootx", "cg2x"),
    "depth-8": ("leaf8", *(f"level{k}" for k in range(8, 0, -1))),
    "depth-9": ("leaf9", *(f"level{k}" for k in range(9, 0, -1))),
}

# Trust stores, by label: short names in the order the firmware loads them.
STORES: dict[str, tuple[str, ...]] = {
    "root1": ("root1",),
    "root3": ("root3",),
    "sfsg2": ("sfsg2",),
    "starfield-class-2": ("sfc2",),
    "cross-signed-root1": ("root1x",),
    "intermediate": ("m01",),
    "expired-root1": ("root1old",),
    "expired-then-valid-root1": ("root1old", "root1"),
    "valid-then-expired-root1": ("root1", "root1old"),
    "unrelated": ("other",),
    "collision-root": ("croot",),
    "all": ("root1", "root3", "sfsg2", "sfc2"),
    "all-reversed": ("sfc2", "sfsg2", "root3", "root1"),
}


@dataclass(frozen=True)
class MatrixCase:
    """One labelled question of the differential matrix."""

    chain: str
    store: str
    date: str
    host: str

    @property
    def label(self) -> str:
        return f"chain={self.chain} store={self.store} date={self.date} host={self.host}"


def matrix() -> list[MatrixCase]:
    """Every chain x store x date with the right host name, plus every chain x store with a wrong one."""
    out = [MatrixCase(c, s, d, HOST) for c in CHAINS for s in STORES for d in DATES]
    out += [MatrixCase(c, s, "inside", WRONG_HOST) for c in CHAINS for s in STORES]
    return out
