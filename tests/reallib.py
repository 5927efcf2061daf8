"""Shared by the real-library tests: the skip-or-fail rule, and a small PKI shaped like AWS's.

``require_library(stack_id)`` skips a test locally when the stack's real library cannot be used here
(the message names the Debian package), and fails it in CI (``CI=true``), where ``.ci/run`` installs
every library and none of these tests may skip.

``aws_like_pki()`` builds, once per session, a PKI with AWS IoT Core's shape (``awsdocs/aws-iot-docs#6``):
``leaf <- Server CA 1B <- Root CA 1 (cross-signed by Services Root G2) <- Services Root G2
(cross-signed by Class 2 Root)``, plus the variants the tests need (expired twins, SHA-1 and RSA-1024
intermediates, a leaf whose host is only in its CN).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import shutil
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotaudit.crosscheck import Case, unavailable

UTC = timezone.utc
HOST = "device.iot.lab.example"
# Inside every "valid" certificate's validity; expired ones end before it.
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def require(what: str, reason: str | None) -> None:
    """Skip (locally) or fail (CI=true) the calling test when ``reason`` says ``what`` cannot be used here."""
    if reason is None:
        return
    message = f"{what} unavailable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_library(stack_id: str) -> None:
    """Skip (locally) or fail (CI=true) the calling test unless ``stack_id``'s real library can be asked here."""
    require(f"real library for tls_stack {stack_id!r}", unavailable(stack_id))


def require_tool(command: str, package: str) -> str:
    """The path of ``command``; skip (locally) or fail (CI=true) naming the Debian ``package`` when it is missing."""
    found = shutil.which(command)
    require(f"the {command} command", None if found is not None else f"install the Debian package {package}")
    assert found is not None
    return found


def at(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


@functools.cache
def rsa_key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    # One key per label and size, cached for the session (RSA generation is slow).
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotaudit lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True, slots=True)
class Cert:
    """One certificate of the test PKI and the key it was issued for."""

    der: bytes
    subject: str
    key: rsa.RSAPrivateKey = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


def issue(subject: str, key: rsa.RSAPrivateKey, issuer: Cert | None, *, ca: bool, serial: int,
          start: datetime = at(2020), end: datetime = at(2040), san: tuple[str, ...] | None = None,
          san_ips: tuple[str, ...] = (), hash_algorithm: hashes.HashAlgorithm | None = None) -> Cert:
    """A certificate for ``key`` named ``subject``, signed by ``issuer`` (self-signed when None)."""
    signer = issuer.key if issuer is not None else key
    issuer_name = _name(issuer.subject) if issuer is not None else _name(subject)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
    if ca:
        builder = (builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    else:
        builder = (builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if san is not None or san_ips:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in san or ()]
            names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in san_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    der = builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    if isinstance(hash_algorithm, hashes.SHA1):
        der = _resign_sha1(der, signer)
    return Cert(der, subject, key)


# sha256WithRSAEncryption and sha1WithRSAEncryption (RFC 4055 / RFC 3279), DER-encoded OIDs of equal length.
_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA_OID = bytes.fromhex("06092a864886f70d010105")


def _resign_sha1(der: bytes, signer: rsa.RSAPrivateKey) -> bytes:
    """The same certificate signed with SHA-1 (cryptography's builder refuses SHA-1 since 40).

    The signature algorithm OID appears twice (TBSCertificate.signature and Certificate.signatureAlgorithm,
    RFC 5280 4.1.1.2) with the same length for both hashes, and the RSA signature value is the last
    ``key_size / 8`` bytes of the DER, so both can be replaced in place.
    """
    assert der.count(_SHA256_RSA_OID) == 2, "expected the signature OID twice"
    der = der.replace(_SHA256_RSA_OID, _SHA1_RSA_OID)
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    return der[: len(der) - len(signature)] + signature


@dataclass(frozen=True, slots=True)
class AwsLikePki:
    """The certificates of :func:`aws_like_pki`; names follow the AWS certificates they stand for."""

    class2: Cert            # Starfield Class 2 (self-signed)
    g2: Cert                # Starfield Services Root G2 (self-signed)
    g2_cross: Cert          # G2 issued by Class 2
    root1: Cert             # Amazon Root CA 1 (self-signed)
    root1_cross: Cert       # Root CA 1 issued by G2
    root1_cross_expired: Cert  # Root CA 1 issued by G2, expired before AS_OF
    root1_expired: Cert     # Root CA 1 self-signed, same name and key, expired before AS_OF
    other_root: Cert        # an unrelated root
    inter: Cert             # Amazon Server CA 1B under Root CA 1
    inter_sha1: Cert        # the same intermediate (name, key) signed with SHA-1
    inter_1024: Cert        # another intermediate with an RSA-1024 key under Root CA 1
    leaf: Cert              # HOST in the SAN, under inter
    leaf_expired: Cert      # valid 2024-2025, under inter
    leaf_cn_only: Cert      # HOST only in the CN, no SAN, under inter
    leaf_under_1024: Cert   # under inter_1024
    leaf_ip_san: Cert       # HOST in the CN, SAN with only an IP address, under inter
    leaf_2034: Cert         # valid 2034-2035 (past Class 2's expiry), under inter

    def case(self, served: list[Cert], store: list[Cert], *, host: str | None = HOST,
             as_of: datetime = AS_OF) -> Case:
        return Case(tuple(c.der for c in served), tuple(c.der for c in store), host, as_of)

    @property
    def served_as_aws(self) -> list[Cert]:
        """The 4-deep chain as AWS IoT Core serves it (leaf first, then up to the G2 cross-sign)."""
        return [self.leaf, self.inter, self.root1_cross, self.g2_cross]


@functools.cache
def aws_like_pki() -> AwsLikePki:
    """Build the test PKI once per session (see the module docstring)."""
    class2 = issue("Lab Class 2 Root", rsa_key("class2"), None, ca=True, serial=1, start=at(2004), end=at(2034, 6, 29))
    g2 = issue("Lab Services Root G2", rsa_key("g2"), None, ca=True, serial=2, start=at(2009), end=at(2038))
    g2_cross = issue("Lab Services Root G2", rsa_key("g2"), class2, ca=True, serial=3, start=at(2009), end=at(2034, 6, 28))
    root1 = issue("Lab Root CA 1", rsa_key("root1"), None, ca=True, serial=4, start=at(2015), end=at(2038))
    root1_cross = issue("Lab Root CA 1", rsa_key("root1"), g2, ca=True, serial=5, start=at(2015), end=at(2037))
    root1_cross_expired = issue("Lab Root CA 1", rsa_key("root1"), g2, ca=True, serial=6, start=at(2015), end=at(2025))
    root1_expired = issue("Lab Root CA 1", rsa_key("root1"), None, ca=True, serial=7, start=at(2015), end=at(2025))
    other_root = issue("Lab Other Root", rsa_key("other"), None, ca=True, serial=8)
    inter = issue("Lab Server CA 1B", rsa_key("inter"), root1, ca=True, serial=9, start=at(2015), end=at(2035))
    inter_sha1 = issue("Lab Server CA 1B", rsa_key("inter"), root1, ca=True, serial=10, start=at(2015), end=at(2035),
                       hash_algorithm=hashes.SHA1())
    inter_1024 = issue("Lab Server CA 1024", rsa_key("inter1024", 1024), root1, ca=True, serial=11, start=at(2015), end=at(2035))
    leaf = issue(HOST, rsa_key("leaf"), inter, ca=False, serial=12, start=at(2026), end=at(2027), san=(HOST,))
    leaf_expired = issue(HOST, rsa_key("leaf"), inter, ca=False, serial=13, start=at(2024), end=at(2025), san=(HOST,))
    leaf_cn_only = issue(HOST, rsa_key("leaf"), inter, ca=False, serial=14, start=at(2026), end=at(2027), san=None)
    leaf_under_1024 = issue(HOST, rsa_key("leaf"), inter_1024, ca=False, serial=15, start=at(2026), end=at(2027), san=(HOST,))
    leaf_ip_san = issue(HOST, rsa_key("leaf"), inter, ca=False, serial=16, start=at(2026), end=at(2027), san_ips=("127.0.0.1",))
    leaf_2034 = issue(HOST, rsa_key("leaf"), inter, ca=False, serial=17, start=at(2034), end=at(2035), san=(HOST,))
    return AwsLikePki(class2, g2, g2_cross, root1, root1_cross, root1_cross_expired, root1_expired, other_root, inter,
                      inter_sha1, inter_1024, leaf, leaf_expired, leaf_cn_only, leaf_under_1024, leaf_ip_san, leaf_2034)


def named_cases(pki: AwsLikePki) -> dict[str, Case]:
    """The cases every adapter test asks its library about, by name (issue 7's list)."""
    p = pki
    return {
        "valid": p.case([p.leaf, p.inter], [p.root1]),
        "valid_as_aws_root1": p.case(p.served_as_aws, [p.root1]),
        "valid_as_aws_class2": p.case(p.served_as_aws, [p.class2]),
        "missing_intermediate": p.case([p.leaf], [p.root1]),
        "anchor_not_in_store": p.case([p.leaf, p.inter], [p.other_root]),
        "leaf_expired": p.case([p.leaf_expired, p.inter], [p.root1]),
        "leaf_not_yet_valid": p.case([p.leaf, p.inter], [p.root1], as_of=at(2025, 6, 1)),
        "leaf_at_not_after": p.case([p.leaf, p.inter], [p.root1], as_of=at(2027)),
        "leaf_1s_after_not_after": p.case([p.leaf, p.inter], [p.root1], as_of=at(2027).replace(second=1)),
        "leaf_at_not_before": p.case([p.leaf, p.inter], [p.root1], as_of=at(2026)),
        "leaf_1s_before_not_before": p.case([p.leaf, p.inter], [p.root1], as_of=at(2025, 12, 31).replace(hour=23, minute=59, second=59)),
        "anchor_expired": p.case([p.leaf, p.inter], [p.root1_expired]),
        "anchor_expired_then_valid_twin": p.case([p.leaf, p.inter], [p.root1_expired, p.root1]),
        "anchor_valid_then_expired_twin": p.case([p.leaf, p.inter], [p.root1, p.root1_expired]),
        "wrong_host": p.case([p.leaf, p.inter], [p.root1], host="other.iot.lab.example"),
        "no_host_check": p.case([p.leaf, p.inter], [p.root1], host=None),
        "cn_only_leaf": p.case([p.leaf_cn_only, p.inter], [p.root1]),
        "cn_only_leaf_wrong_host": p.case([p.leaf_cn_only, p.inter], [p.root1], host="other.iot.lab.example"),
        "cn_host_ip_only_san": p.case([p.leaf_ip_san, p.inter], [p.root1]),
        "ip_host_ip_san": p.case([p.leaf_ip_san, p.inter], [p.root1], host="127.0.0.1"),
        "trailing_dot_host": p.case([p.leaf, p.inter], [p.root1], host=HOST + "."),
        "sha1_intermediate": p.case([p.leaf, p.inter_sha1], [p.root1]),
        "rsa1024_intermediate": p.case([p.leaf_under_1024, p.inter_1024], [p.root1]),
        "cross_signed_root1_alone": p.case(p.served_as_aws, [p.root1_cross]),
        "intermediate_alone": p.case([p.leaf, p.inter], [p.inter]),
        "inter_after_cross_signs": p.case([p.leaf, p.root1_cross, p.g2_cross, p.inter], [p.root1]),
        "inter_after_cross_signs_class2": p.case([p.leaf, p.root1_cross, p.g2_cross, p.inter], [p.class2]),
        "expired_cross_top_root1_and_g2": p.case([p.leaf, p.inter, p.root1_cross_expired], [p.root1, p.g2]),
        "expired_cross_top_root1_only": p.case([p.leaf, p.inter, p.root1_cross_expired], [p.root1]),
        "as_aws_root1_only_untrusted_first": p.case(p.served_as_aws, [p.root1, p.g2]),
        "served_self_signed_root1": p.case([p.leaf, p.inter, p.root1], [p.root1]),
        "served_expired_root1_store_valid": p.case([p.leaf, p.inter, p.root1_expired], [p.root1]),
        "served_cross_store_expired_then_valid": p.case([p.leaf, p.inter, p.root1_cross], [p.root1_expired, p.root1]),
        "served_cross_store_valid_then_expired": p.case([p.leaf, p.inter, p.root1_cross], [p.root1, p.root1_expired]),
        "as_aws_g2_cross_alone": p.case(p.served_as_aws, [p.g2_cross]),
        "duplicate_intermediate": p.case([p.leaf, p.inter, p.inter], [p.root1]),
        "unrelated_extra_before_inter": p.case([p.leaf, p.other_root, p.inter], [p.root1]),
        "leaf_alone_in_store": p.case([p.leaf], [p.leaf]),
        "after_class2_expiry_class2": p.case([p.leaf_2034, p.inter, p.root1_cross, p.g2_cross], [p.class2],
                                             as_of=at(2034, 7, 1)),
        "after_class2_expiry_root1": p.case([p.leaf_2034, p.inter, p.root1_cross, p.g2_cross], [p.root1],
                                            as_of=at(2034, 7, 1)),
        "after_class2_expiry_g2": p.case([p.leaf_2034, p.inter, p.root1_cross, p.g2_cross], [p.g2],
                                         as_of=at(2034, 7, 1)),
    }


def case_key_pem(pki: AwsLikePki, case: Case) -> bytes:
    """The PEM private key of the leaf ``case`` serves (for a real TLS server)."""
    leaves = (pki.leaf, pki.leaf_expired, pki.leaf_cn_only, pki.leaf_under_1024, pki.leaf_ip_san, pki.leaf_2034)
    key = {leaf.der: leaf.key for leaf in leaves}[case.served[0]]
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def serve_chain_once(served: tuple[bytes, ...], key_pem: bytes, directory: Path) -> tuple[int, threading.Thread]:
    """A TLS server on 127.0.0.1 that sends ``served`` (in that order) to one client, then stops."""
    chain = directory / "served.pem"
    chain.write_text("".join(ssl.DER_cert_to_PEM_cert(der) for der in served))
    key = directory / "key.pem"
    key.write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the server send SHA-1 and RSA-1024 chains
    context.load_cert_chain(chain, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)

    def serve() -> None:
        with listener:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                try:
                    with context.wrap_socket(connection, server_side=True) as tls:
                        tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass  # the client refused the chain: that is the point

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread
