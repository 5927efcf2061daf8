"""The one path engine: build and validate a served chain against a trust store the way a given TLS stack does.

Each :class:`~iotaudit.stacks.SearchOrder` has its own builder here, written
from the library source cited beside it (read, not copied); the builder picks
the one path the library would pick (none of these libraries backtracks,
except Android's builder) and the common checks then apply the stack's rules
on that path: basicConstraints (RFC 5280 4.2.1.9), signatures, validity
(RFC 5280 6.1.3 (a)(2)) with the stack's anchor-expiry rule, the algorithms
the stack refuses, its depth limit and the server name (RFC 6125 6.4, with
the CN fallback these libraries still apply).

``tests/test_differential.py`` proves each builder against the real library
on a generated AWS-shaped matrix wherever the library is installed.

Imports: stacks, certs, columns (and catalog for type hints only); never
coverage/expiry/pinning/inventory, which call this module.
"""

from __future__ import annotations

import collections
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .certs import cert_sha256, common_name, is_signed_by, spki_der, spki_sha256, tolerate_serial_zero
from .columns import as_utc
from .stacks import AnchorExpiry, AnchorForm, SearchOrder, ServedIssuers, Stack, get_stack

if TYPE_CHECKING:
    from .catalog import Catalog


@dataclass(frozen=True, slots=True)
class PathVerdict:
    """Outcome of validating one served chain against one trust store on one stack at one time.

    Attributes:
        valid: A path to a trust anchor was built and validated.
        anchor_sha256: SHA-256 (lowercase hex) of the stored certificate the path ends at; "" if invalid.
        path_sha256: SHA-256 of every certificate of the validated path, leaf first, anchor last; () if invalid.
        reason: Why validation failed, in plain words naming the stack's rule; "" if valid.
        rule: Short id of the rule that failed (one of :data:`RULES`); "" if valid.
    """

    valid: bool
    anchor_sha256: str = ""
    path_sha256: tuple[str, ...] = ()
    reason: str = ""
    rule: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_sha256", tuple(self.path_sha256))
        if self.valid and (not self.anchor_sha256 or not self.path_sha256 or self.reason or self.rule):
            raise ValueError("a valid PathVerdict has an anchor, a path and no reason")
        if not self.valid and (self.anchor_sha256 or self.path_sha256 or not self.reason):
            raise ValueError("an invalid PathVerdict has a reason and no anchor or path")
        if not self.valid and self.rule not in RULES:
            raise ValueError(f"PathVerdict.rule must be one of {sorted(RULES)}, got {self.rule!r}")
        if self.valid and self.path_sha256[-1] != self.anchor_sha256:
            raise ValueError("the path of a PathVerdict ends at its anchor")


# Rule ids of an invalid PathVerdict.
RULES = frozenset({
    "empty-chain", "empty-store", "depth", "missing-intermediate", "no-anchor", "self-signed-anchor",
    "served-order", "all-presented", "expired", "not-yet-valid", "anchor-expired", "signature", "not-ca",
    "sha1", "rsa-key", "hostname",
})


class _Fail(Exception):
    """A builder's verdict that the chain does not validate (internal; becomes a PathVerdict)."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


# ---------------------------------------------------------------------------
# Certificate facts, remembered per certificate object
# ---------------------------------------------------------------------------


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of item) of the DER item at ``pos`` (X.690 8.1.2-8.1.3)."""
    tag = data[pos]
    length = data[pos + 1]
    start = pos + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    return tag, start, start + length


@dataclass(frozen=True, slots=True)
class _Facts:
    fp: str
    subject: x509.Name
    issuer: x509.Name
    subject_der: bytes
    issuer_der: bytes
    skid: bytes | None
    akid: bytes | None
    spki: bytes
    is_ca: bool
    cert_sign: bool
    rsa_bits: int
    sha1: bool
    not_before: datetime
    not_after: datetime
    self_issued: bool      # subject == issuer and the key identifiers agree (OpenSSL X509_self_signed(x, 0))
    subject_bucket: int    # GnuTLS trust-list bucket of the subject name, and of the issuer name
    issuer_bucket: int
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]   # iPAddress subjectAltNames, normalised (ipaddress.ip_address(...).compressed)
    has_san: bool
    cn: str


# Facts by id() of the certificate object, the object kept beside them so its id cannot be reused while the
# entry lives (hashing an x509.Certificate hashes its DER: far slower than the builders themselves).
_FACTS: dict[int, tuple[x509.Certificate, _Facts]] = {}
_FACTS_MAX = 200_000


def _facts(cert: x509.Certificate) -> _Facts:
    hit = _FACTS.get(id(cert))
    if hit is not None and hit[0] is cert:
        return hit[1]
    if len(_FACTS) >= _FACTS_MAX:
        _FACTS.clear()
        _SIGNED.clear()
    with tolerate_serial_zero():
        facts = _read_facts(cert)
    _FACTS[id(cert)] = (cert, facts)
    return facts


def _read_facts(cert: x509.Certificate) -> _Facts:
    tbs = cert.tbs_certificate_bytes
    _, pos, _ = _der_item(tbs, 0)                       # TBSCertificate SEQUENCE (RFC 5280 4.1)
    if tbs[pos] == 0xA0:                                # [0] version
        pos = _der_item(tbs, pos)[2]
    pos = _der_item(tbs, pos)[2]                        # serialNumber
    pos = _der_item(tbs, pos)[2]                        # signature AlgorithmIdentifier
    end = _der_item(tbs, pos)[2]
    issuer_der = tbs[pos:end]
    pos = _der_item(tbs, end)[2]                        # validity
    subject_der = tbs[pos:_der_item(tbs, pos)[2]]
    exts = cert.extensions
    try:
        skid: bytes | None = exts.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        skid = None
    try:
        akid = exts.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        akid = None
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        bc = False
    try:
        cert_sign = exts.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        cert_sign = True                                # no keyUsage: every use allowed (RFC 5280 4.2.1.3)
    try:
        key = cert.public_key()
        rsa_bits = key.key_size if isinstance(key, rsa.RSAPublicKey) else 0
    except ValueError:
        rsa_bits = 0
    try:
        exts.get_extension_for_class(x509.SubjectAlternativeName)
        has_san = True
    except x509.ExtensionNotFound:
        has_san = False
    hash_alg = cert.signature_hash_algorithm
    same_name = subject_der == issuer_der
    return _Facts(
        fp=cert_sha256(cert), cn=common_name(cert.subject), subject=cert.subject, issuer=cert.issuer,
        subject_der=subject_der, issuer_der=issuer_der, skid=skid, akid=akid, spki=spki_der(cert),
        is_ca=bool(bc), cert_sign=bool(cert_sign), rsa_bits=rsa_bits,
        sha1=hash_alg is not None and hash_alg.name == "sha1",
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        self_issued=same_name and (akid is None or skid is None or akid == skid),
        subject_bucket=_bucket(subject_der), issuer_bucket=_bucket(issuer_der), dns_names=tuple(_sans(cert)),
        ip_addresses=tuple(_ip_sans(cert)), has_san=has_san,
    )


def _fp(cert: x509.Certificate) -> str:
    return _facts(cert).fp


_SIGNED: dict[tuple[str, str], bool] = {}


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Name chaining and :func:`iotaudit.certs.is_signed_by` (the signature), remembered per pair."""
    f, g = _facts(cert), _facts(issuer)
    if f.issuer_der != g.subject_der:
        return False
    key = (f.fp, g.fp)
    hit = _SIGNED.get(key)
    if hit is None:
        hit = _SIGNED[key] = is_signed_by(cert, issuer)
    return hit


_key_signs = _signed_by   # a name-and-key anchor: the same test (its name is the stored subject)


def _names_issuer(cert: x509.Certificate, cand: x509.Certificate) -> bool:
    """Name chaining plus key-identifier agreement (OpenSSL X509_check_issued, GnuTLS is_issuer)."""
    f, g = _facts(cert), _facts(cand)
    if f.issuer_der != g.subject_der:
        return False
    return f.akid is None or g.skid is None or f.akid == g.skid


def _expired(f: _Facts, as_of: datetime, st: Stack) -> bool:
    # OpenSSL's X509_cmp_time counts notAfter itself as past; the others compare strictly (RFC 5280 4.1.2.5:
    # the validity period includes notAfter).
    return as_of > f.not_after or (as_of == f.not_after and not st.not_after_inclusive)


def _time_ok(cert: x509.Certificate, as_of: datetime, st: Stack) -> bool:
    f = _facts(cert)
    return f.not_before <= as_of and not _expired(f, as_of, st)


def _time_reason(cert: x509.Certificate, as_of: datetime, st: Stack, what: str = "certificate") -> tuple[str, str] | None:
    f = _facts(cert)
    if as_of < f.not_before:
        return "not-yet-valid", f"certificate in path not yet valid: {what} '{f.cn}' is not valid before {f.not_before:%Y-%m-%d}"
    if _expired(f, as_of, st):
        return "expired", f"expired certificate in path: {what} '{f.cn}' expired on {f.not_after:%Y-%m-%d}"
    return None


def _same_name_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    fa, fb = _facts(a), _facts(b)
    return fa.subject_der == fb.subject_der and fa.spki == fb.spki


# ---------------------------------------------------------------------------
# Host names
# ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"[A-Za-z0-9-]{1,63}")


def _dns_name_ok(value: str) -> bool:
    """RFC 1034 3.5 / RFC 1123 2.1 preferred name syntax: 1-253 characters, LDH labels."""
    if not value or len(value) > 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) and not label.startswith("-") and not label.endswith("-")
               for label in value.split("."))


def _pattern_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4.3 as these libraries apply it: exact names case-insensitively; ``*.parent``
    matches exactly one leftmost label and needs at least two labels in ``parent``
    (OpenSSL v3_utl.c valid_star, mbed TLS x509_check_wildcard, GnuTLS _gnutls_hostname_compare)."""
    if pattern.startswith("*."):
        base = pattern[2:]
        label, dot, parent = host.partition(".")
        return (bool(label) and bool(dot) and "." in base and _dns_name_ok(base)
                and _dns_name_ok(parent) and parent.lower() == base.lower())
    return _dns_name_ok(pattern) and pattern.lower() == host.lower()


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        return []


def _ip_sans(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [ip.compressed for ip in san.get_values_for_type(x509.IPAddress) if not isinstance(ip, ipaddress._BaseNetwork)]


def _ip_host(host: str) -> str | None:
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return None


def leaf_names(leaf: x509.Certificate, stack: Stack | str) -> tuple[str, ...]:
    """The names ``stack`` matches a host name against: the subjectAltName DNS names, else (CN fallback) the CN.

    OpenSSL (v3_utl.c do_x509_check) uses the subject CN when the leaf has no
    DNS subjectAltName; mbed TLS (x509_crt_verify_name), GnuTLS
    (gnutls_x509_crt_check_hostname2), BearSSL and wolfSSL's distro build only
    when it has no subjectAltName at all (``Stack.san_blocks_cn``); Android never.
    """
    f = _facts(leaf)
    st = get_stack(stack)
    if f.dns_names or not st.cn_fallback or (st.san_blocks_cn and f.has_san):
        return f.dns_names
    cns = f.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return tuple(str(a.value) for a in cns[-1:])


def leaf_matches_host(leaf: x509.Certificate, host: str, stack: Stack | str) -> bool:
    """Whether ``stack`` accepts ``leaf`` as naming ``host`` (an IP address against iPAddress names if it can)."""
    st = get_stack(stack)
    ip = _ip_host(host)
    if ip is not None and st.ip_san:
        return ip in _facts(leaf).ip_addresses
    return any(_pattern_matches(name, host) for name in leaf_names(leaf, st))


# ---------------------------------------------------------------------------
# Checks on a built path
# ---------------------------------------------------------------------------


def _check_path(path: list[x509.Certificate], n_served: int, st: Stack, as_of: datetime, *,
                anchor_cert: bool = True, sha1_exempt: frozenset[int] = frozenset(),
                check_anchor_key: bool = True) -> None:
    """The checks every stack applies to the one path it built; raises :class:`_Fail`.

    ``path`` is leaf .. anchor; ``path[:n_served]`` came from the server, the
    rest from the store.  ``anchor_cert`` False: the anchor is only a name and
    a key (no CA bit, no dates of its own).  ``sha1_exempt``: indexes whose
    SHA-1 signature the stack tolerates.
    """
    lib = st.library
    if len(path) > st.max_depth:
        raise _Fail("depth", f"the path has {len(path)} certificates, longer than the limit of {lib} "
                    f"({st.max_depth} certificates)")
    last = len(path) - 1
    for i, cert in enumerate(path):
        f = _facts(cert)
        is_anchor = i == last
        if i > 0 and not (is_anchor and not anchor_cert) and not (f.is_ca and f.cert_sign):
            raise _Fail("not-ca", f"'{f.cn}' signs another certificate of the path but is not a CA "
                        "(basicConstraints cA / keyCertSign, RFC 5280 4.2.1.9)")
        if i < last and not _key_signs(cert, path[i + 1]):
            raise _Fail("signature", f"the signature of '{f.cn}' does not verify with the key of '{_facts(path[i + 1]).cn}'")
    for i, cert in enumerate(path):
        is_anchor = i == last and i >= n_served
        if is_anchor and (not anchor_cert or st.anchor_expiry is AnchorExpiry.IGNORED):
            continue
        bad = _time_reason(cert, as_of, st, "trust anchor" if is_anchor else ("leaf" if i == 0 else "certificate"))
        if bad is not None:
            rule, reason = bad
            if is_anchor and rule == "expired":
                raise _Fail("anchor-expired", f"{reason}, and {lib} checks a trust anchor's dates")
            raise _Fail(rule, reason)
    for i, cert in enumerate(path):
        f = _facts(cert)
        if st.refuses_sha1 and i < last and f.sha1 and i not in sha1_exempt:
            raise _Fail("sha1", f"{lib} refuses the SHA-1 signature on '{f.cn}'")
        if st.min_rsa_bits and f.rsa_bits and f.rsa_bits < st.min_rsa_bits and (check_anchor_key or i < last):
            raise _Fail("rsa-key", f"{lib} refuses the {f.rsa_bits}-bit RSA key of '{f.cn}' "
                        f"(its minimum is {st.min_rsa_bits} bits)")


def _no_anchor(top: x509.Certificate, served: Sequence[x509.Certificate], path_len: int) -> _Fail:
    f = _facts(top)
    if path_len == 1:
        return _Fail("missing-intermediate", f"missing intermediate: the issuer '{common_name(f.issuer)}' of leaf '{f.cn}' "
                     "was not served and is not in the trust store")
    if f.self_issued:
        return _Fail("no-anchor", f"no path to a trusted anchor: the chain ends at root '{f.cn}', which the trust store does not hold")
    return _Fail("no-anchor", f"no path to a trusted anchor: the chain ends at '{f.cn}' issued by "
                 f"'{common_name(f.issuer)}', and the trust store holds neither")


# ---------------------------------------------------------------------------
# OpenSSL: crypto/x509/x509_vfy.c build_chain (3.0), read for the search flags
# ---------------------------------------------------------------------------


def _pick_valid_first(cands: Iterable[x509.Certificate], as_of: datetime, st: Stack) -> x509.Certificate | None:
    """First time-valid candidate, else the one expiring last (X509_STORE_CTX_get1_issuer, find_issuer)."""
    best = None
    for cand in cands:
        if _time_ok(cand, as_of, st) or not st.prefers_valid_twin:
            return cand
        if best is None or _facts(cand).not_after > _facts(best).not_after:
            best = cand
    return best


def _openssl(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
             as_of: datetime) -> tuple[list[x509.Certificate], int]:
    """The chain OpenSSL builds; returns (path, number of served certificates in it).

    Trusted-first (the OpenSSL >= 1.1.0 default) looks in the store for the
    issuer of the top at every step and stops using served certificates once a
    stored one is in the chain; untrusted-first walks the served certificates
    to their top first; alternative chains (1.0.1n+/1.0.2, unless
    X509_V_FLAG_NO_ALT_CHAINS) retry from lower served certificates.  A stored
    certificate ends the chain only when self-signed, unless
    X509_V_FLAG_PARTIAL_CHAIN (check_trust).
    """
    partial = st.anchor_form is AnchorForm.ANY_STORED
    trusted_first = st.search is SearchOrder.TRUSTED_FIRST
    may_alternate = st.search is SearchOrder.UNTRUSTED_FIRST_ALT_CHAINS
    chain = [served[0]]
    pool = list(served[1:])
    num_untrusted = 1
    S_UN, S_TR, S_ALT = 1, 2, 4
    search = S_UN | (S_TR if trusted_first else 0)
    alt_untrusted = 0
    trusted = False
    max_depth = st.max_depth

    def trusted_issuer(cert: x509.Certificate) -> x509.Certificate | None:
        return _pick_valid_first((s for s in store if _names_issuer(cert, s)), as_of, st)

    def check_trust(start: int) -> bool:
        # X509_check_trust with no auxiliary trust: a stored self-signed certificate is trusted (trust_compat).
        if any(_facts(c).self_issued for c in chain[start:]):
            return True
        return partial and num_untrusted < len(chain)

    while search:
        if search & S_TR:
            num = len(chain)
            i = alt_untrusted if search & S_ALT else num
            curr = chain[i - 1]
            issuer = trusted_issuer(curr) if num <= max_depth else None
            ok = issuer is not None
            if issuer is not None:
                self_signed = _facts(curr).self_issued
                if search & S_ALT:
                    search &= ~S_ALT
                    del chain[i:]
                    num = num_untrusted = i
                if not self_signed:
                    chain.append(issuer)
                    self_signed = _facts(issuer).self_issued
                elif _fp(curr) != _fp(issuer):
                    ok = False                      # a self-signed served certificate must be the stored one exactly
                else:
                    num -= 1
                    num_untrusted = num
                    chain[num] = issuer
                if ok:
                    search &= ~S_UN
                    if check_trust(num):
                        trusted = True
                        break
                    if not self_signed:
                        continue
            if not search & S_UN:
                if search & S_ALT:
                    alt_untrusted -= 1
                    if alt_untrusted > 0:
                        continue
                if not may_alternate or search & S_ALT or num_untrusted < 2:
                    break
                search |= S_ALT
                alt_untrusted = num_untrusted - 1
        if search & S_UN:
            curr = chain[-1]
            nxt = None
            if not _facts(curr).self_issued and len(chain) <= max_depth:
                in_chain = {_fp(c) for c in chain}
                nxt = _pick_valid_first((p for p in pool if _names_issuer(curr, p) and _fp(p) not in in_chain), as_of, st)
            if nxt is None:
                search = (search & ~S_UN) | S_TR
                continue
            pool.remove(nxt)
            chain.append(nxt)
            num_untrusted += 1
    if not trusted and partial and num_untrusted == len(chain) and any(_fp(s) == _fp(served[0]) for s in store):
        # check_trust's last resort under PARTIAL_CHAIN: the leaf itself is in the store (lookup_cert_match,
        # an exact match).  The certificates built above it are still checked (internal_verify).
        _check_path(chain, len(chain), st, as_of)
        return [served[0]], 1
    if not trusted:
        top = chain[-1]
        stored = len(chain) > num_untrusted
        if stored and not partial:
            f = _facts(top)
            raise _Fail("self-signed-anchor", f"{st.library} takes only a self-signed certificate as a trust anchor "
                        f"(X509_V_FLAG_PARTIAL_CHAIN is off): the path reaches stored '{f.cn}', issued by "
                        f"'{common_name(f.issuer)}', and the store holds no self-signed root above it")
        if not trusted_first and not may_alternate and len(chain) > 1:
            # Would a stored issuer of a lower certificate have helped? Then say the rule.
            for lower in chain[:-1]:
                if trusted_issuer(lower) is not None:
                    raise _Fail("no-anchor", f"{st.library} follows the served chain to its top '{_facts(top).cn}' and "
                                "looks for that certificate's issuer only (no alternative chains): the store holds "
                                f"the issuer of '{_facts(lower).cn}' instead")
        raise _no_anchor(top, served, len(chain))
    return chain, num_untrusted


# ---------------------------------------------------------------------------
# mbed TLS: library/x509_crt.c x509_crt_verify_chain / x509_crt_find_parent (2.28, 3.6);
# ESP-IDF's bundle: components/mbedtls/esp_crt_bundle/esp_crt_bundle.c
# ---------------------------------------------------------------------------


def _mbed_parent_ok(child: x509.Certificate, parent: x509.Certificate, trusted: bool) -> bool:
    """x509_crt_check_parent: name, CA bit and keyCertSign (v1/v2 trusted certificates need no CA bit)."""
    f, g = _facts(child), _facts(parent)
    if f.issuer_der != g.subject_der:
        return False
    if trusted and parent.version is not x509.Version.v3:
        return True
    return g.is_ca and g.cert_sign


def _mbed_find(child: x509.Certificate, cands: Iterable[x509.Certificate], trusted: bool,
               as_of: datetime, st: Stack) -> tuple[x509.Certificate | None, bool]:
    """x509_crt_find_parent_in: the first suitable candidate that is time-valid, else the first suitable one.

    A trusted candidate must verify the child's signature; an untrusted one is
    taken even with a bad signature (the child is then flagged NOT_TRUSTED).
    Returns (parent, signature good).  A name-and-key (bundle) candidate has no
    dates, so it is always "time-valid" (esp_crt_verify_callback clears them).
    """
    fallback: tuple[x509.Certificate | None, bool] = (None, False)
    for parent in cands:
        if not _mbed_parent_ok(child, parent, trusted):
            continue
        good = _signed_by(child, parent)
        if trusted and not good:
            continue
        dated = st.prefers_valid_twin and not (trusted and st.anchor_form is AnchorForm.NAME_AND_KEY)
        if dated and not _time_ok(parent, as_of, st):
            if fallback[0] is None:
                fallback = (parent, good)
            continue
        return parent, good
    return fallback


def _bundle_entry(cert: x509.Certificate, store: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """esp_crt_find_cert: the bundle entry whose name is ``cert``'s issuer (one per name: the first stored)."""
    issuer = _facts(cert).issuer_der
    return next((s for s in store if _facts(s).subject_der == issuer), None)


def _mbedtls(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
             as_of: datetime) -> tuple[list[x509.Certificate], int, frozenset[int]]:
    """The chain mbed TLS builds; returns (path, served count, SHA-1-exempt indexes).

    Trusted-first: for each certificate the trust list is searched first (a
    stored parent ends the chain, self-signed or not); otherwise only served
    certificates *after* it in the list are candidates (``child->next``).
    ESP-IDF's default bundle mode gives mbed TLS an empty CA list: the chain is
    built from served certificates only, and the verify callback then looks up
    the top certificate's issuer in the bundle by name and checks its signature
    with the stored key.  Cross-signed-verify mode supplies a bundle entry as
    a synthetic trusted parent (name and key) for every certificate instead.
    """
    chain_top = st.search is SearchOrder.CHAIN_TOP
    name_key = st.anchor_form is AnchorForm.NAME_AND_KEY
    served = list(served)
    idx = 0
    path = [served[0]]
    limit = st.max_depth - 2                      # MBEDTLS_X509_MAX_INTERMEDIATE_CA
    while True:
        child = path[-1]
        parent = None
        if not chain_top:
            cands = [e for e in [_bundle_entry(child, store)] if e is not None] if name_key else store
            parent, _ = _mbed_find(child, cands, True, as_of, st)
            if parent is not None:
                path.append(parent)
                return path, len(path) - 1, frozenset()
        parent, good = _mbed_find(child, served[idx + 1:], False, as_of, st)
        if parent is None:
            break
        if len(path) > limit:
            raise _Fail("depth", f"the chain is longer than the limit of {st.library}: more than {limit} intermediate "
                        f"certificates (MBEDTLS_X509_MAX_INTERMEDIATE_CA; {st.max_depth} certificates with leaf and "
                        "anchor), although the store may hold its root")
        if not good:
            raise _Fail("signature", f"the signature of '{_facts(child).cn}' does not verify with the key of served "
                        f"'{_facts(parent).cn}'")
        idx = next(k for k in range(idx + 1, len(served)) if served[k] is parent)
        path.append(parent)
    top = path[-1]
    if chain_top:
        entry = _bundle_entry(top, store)
        if entry is not None and _key_signs(top, entry):
            # flags_filtered = flags & ~BAD_MD: the top certificate's own SHA-1 signature is tolerated.
            return [*path, entry], len(path), frozenset({len(path) - 1})
        f = _facts(top)
        raise _Fail("no-anchor", f"{st.library} looks up only the issuer of the top served certificate: the chain "
                    f"ends at '{f.cn}', and the bundle holds no '{common_name(f.issuer)}' whose key signs it")
    # Was a served issuer skipped because it came earlier in the list?
    earlier = [c for c in served if c is not top and _signed_by(top, c)]
    if earlier:
        raise _Fail("served-order", f"{st.library} uses a served certificate as an issuer only if it comes after the "
                    f"one it signs: '{_facts(earlier[0]).cn}' is served before '{_facts(top).cn}', and the trust store "
                    "holds no issuer of it")
    raise _no_anchor(top, served, len(path))


# ---------------------------------------------------------------------------
# wolfSSL: src/internal.c ProcessPeerCerts (5.5) — the served list from its last certificate to its first
# ---------------------------------------------------------------------------


def _wolfssl(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
             as_of: datetime) -> tuple[list[x509.Certificate], int]:
    """wolfSSL's verdict: CA certificates are parsed last to first, each against the signers known so far.

    A signer is found by the certificate's authority key identifier (else its
    issuer name) among the store and the served CA certificates already
    accepted (GetCA); a signer already known by its key is not added twice
    (AlreadySigner), so the first loaded of two twins is the one used.  A
    served CA certificate without a known signer is fatal in the default build
    (every presented certificate must chain) and skipped with
    WOLFSSL_ALT_CERT_CHAINS; its dates are looked at only once its signer is
    known (ParseCertRelative reports ASN_NO_SIGNER_E first).  A stored
    certificate outside its dates at the device's clock is not loaded
    (AnchorExpiry.AT_LOAD; measured on 5.5.4, Debian's and the default build).
    """
    lib = st.library
    if st.anchor_expiry is AnchorExpiry.AT_LOAD:
        # wolfSSL_CTX_load_verify_buffer parses each CA with date checks (ParseCertRelative, VERIFY):
        # one outside its dates at the device's clock is not loaded at all (measured on 5.5.4, both builds).
        loaded = [s for s in store if _time_ok(s, as_of, st)]
        if len(loaded) < len(store):
            try:
                return _wolfssl(served, loaded, replace(st, anchor_expiry=AnchorExpiry.IGNORED), as_of)
            except _Fail as err:
                try:
                    _wolfssl(served, store, replace(st, anchor_expiry=AnchorExpiry.IGNORED), as_of)
                except _Fail:
                    raise err from None
                dropped = next(s for s in store if not _time_ok(s, as_of, st))
                rule, why = _time_reason(dropped, as_of, st, "trust anchor") or ("anchor-expired", "")
                raise _Fail("anchor-expired" if rule == "expired" else rule,
                            f"{why}, and {lib} does not load a CA certificate outside its dates, so nothing "
                            "it loaded signs the chain") from None
    if len(served) > st.max_depth - 1:
        raise _Fail("depth", f"the chain is longer than the limit of {lib}: {len(served)} certificates were served, "
                    f"it reads at most {st.max_depth - 1} (MAX_CHAIN_DEPTH)")
    signers: list[x509.Certificate] = []
    from_store: set[str] = set()
    keys: set[bytes] = set()

    def key_of(cert: x509.Certificate) -> bytes:
        f = _facts(cert)
        return f.skid if f.skid is not None else f.subject_der

    def add(cert: x509.Certificate, stored: bool) -> None:
        if key_of(cert) in keys:
            return
        keys.add(key_of(cert))
        signers.append(cert)
        if stored:
            from_store.add(_fp(cert))

    for cert in store:
        add(cert, True)

    def signer_of(cert: x509.Certificate) -> x509.Certificate | None:
        f = _facts(cert)
        if f.akid is not None:
            return next((s for s in signers if _facts(s).skid == f.akid), None)
        return next((s for s in signers if _facts(s).subject_der == f.issuer_der), None)

    used: dict[str, x509.Certificate] = {}
    for cert in reversed(served[1:]):
        f = _facts(cert)
        signer = signer_of(cert)
        if signer is None and not st.served_dates_need_signer and (bad := _time_reason(cert, as_of, st)) is not None:
            raise _Fail(bad[0], bad[1])
        if signer is None:
            if st.use_all_presented:
                raise _Fail("all-presented", f"{lib} (default build) needs every served certificate to chain to the "
                            f"store: no signer is known for served '{f.cn}' (issuer '{common_name(f.issuer)}')")
            continue
        if not _key_signs(cert, signer):
            raise _Fail("signature", f"the signature of served '{f.cn}' does not verify with the key of '{_facts(signer).cn}'")
        bad = _time_reason(cert, as_of, st)
        if bad is not None:
            raise _Fail(bad[0], f"{bad[1]} ({lib} checks a served certificate's dates once its signer is known)")
        used[_fp(cert)] = signer
        if f.is_ca:
            add(cert, False)
    leaf = served[0]
    signer = signer_of(leaf)
    if signer is None and not st.use_all_presented and key_of(leaf) in keys and any(
            _fp(s) in from_store and key_of(s) == key_of(leaf) for s in signers):
        return [leaf], 1                        # with alternative chains, a leaf loaded as a CA is trusted itself
    if signer is None:
        raise _no_anchor(leaf, served, 1) if not served[1:] else _Fail(
            "no-anchor", f"{lib} found no signer for leaf '{_facts(leaf).cn}': its issuer "
            f"'{common_name(_facts(leaf).issuer)}' is neither in the store nor a served certificate that chains to it")
    path = [leaf]
    cur = signer
    while _fp(cur) not in from_store:
        path.append(cur)
        cur = used[_fp(cur)]
        if len(path) > len(served):
            raise _Fail("no-anchor", f"{lib} found a loop among the served certificates")
    path.append(cur)
    return path, len(path) - 1


# ---------------------------------------------------------------------------
# GnuTLS 3.7: lib/x509/verify-high.c gnutls_x509_trust_list_verify_crt2, lib/x509/verify.c
# ---------------------------------------------------------------------------

_GNUTLS_BUCKETS = 127          # verify-high.c DEFAULT_SIZE (gnutls_x509_trust_list_init(list, 0))
_GNUTLS_MAX = 16               # gnutls_int.h DEFAULT_MAX_VERIFY_DEPTH
_MASK64 = (1 << 64) - 1


def _hash_pjw_bare(data: bytes) -> int:
    """gnulib hash-pjw-bare over a 64-bit size_t: the trust list's bucket hash of a raw DN."""
    h = 0
    for byte in data:
        h = (byte + (((h << 9) | (h >> 55)) & _MASK64)) & _MASK64
    return h


def _bucket(dn_der: bytes) -> int:
    return _hash_pjw_bare(dn_der) % _GNUTLS_BUCKETS


def _gnutls_sort(seg: list[x509.Certificate]) -> tuple[int, list[x509.Certificate]]:
    """_gnutls_sort_clist (lib/x509/common.c): follow each certificate's first issuer in the list from the leaf."""
    n = len(seg)
    issuer = [-1] * n
    for i in range(n):
        if _names_issuer(seg[i], seg[i]):
            continue                                # self-signed: only the trust list may end the path
        for j in range(1, n):
            if i != j and _names_issuer(seg[i], seg[j]):
                issuer[i] = j
                break
    order = [0]
    used = {0}
    prev = 0
    for _ in range(1, n):
        prev = issuer[prev]
        if prev < 0:
            break
        order.append(prev)
        used.add(prev)
    size = len(order)
    order += [j for j in range(1, n) if j not in used]
    return size, [seg[k] for k in order]


def _gnutls(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
            as_of: datetime) -> tuple[list[x509.Certificate], int]:
    """GnuTLS 3.7's trust-list verification, step by step.

    Sort the served list from the leaf by issuer (dropping duplicates and,
    once the top's issuer is in the trust list, whatever is left), cut it after
    a certificate the trust list holds exactly (in the bucket of that
    certificate's issuer name: shorten_clist), then verify the top against the
    trust-list bucket of its issuer's name; if that signer is unknown, expired
    or insecure, retry against the bucket of the top's own name.  Each attempt
    first cuts the list at the first certificate that a bucket entry matches
    by name and key, and that entry (the first such in store order) must be
    inside its dates (check_ca_sanity).
    """
    lib = st.library
    buckets: dict[int, list[x509.Certificate]] = collections.defaultdict(list)
    for cert in store:
        buckets[_facts(cert).subject_bucket].append(cert)
    lst = list(served)
    if len(lst) > _GNUTLS_MAX:
        raise _Fail("depth", f"the chain is longer than the limit of {lib}: {len(lst)} certificates were served, "
                    f"it verifies at most {_GNUTLS_MAX} (DEFAULT_MAX_VERIFY_DEPTH)")
    seen: set[str] = set()
    i = 0
    while i < len(lst):
        size, lst[i:] = _gnutls_sort(lst[i:])
        # Duplicates, from the segment's first certificate (upstream e369e67a6, in Debian's 3.7.9-2+deb12u3
        # as the CVE-2024-28835 fix): the one-slot memmove copies the next certificate over the duplicate
        # and the list loses its last entry.
        dup = next((j for j in range(size) if _fp(lst[i + j]) in seen), None)
        if dup is not None:
            k = i + dup
            if k < len(lst) - 1:
                lst[k] = lst[k + 1]
            lst.pop()
            continue
        for j in range(size):
            seen.add(_fp(lst[i]))
            i += 1
        top = lst[i - 1]
        if any(_names_issuer(top, ca) for ca in buckets.get(_facts(top).issuer_bucket, ())):
            del lst[i:]
            break
        if i < len(lst) and _names_issuer(top, lst[i]):
            continue
    # shorten_clist
    if len(lst) > 1 and _names_issuer(lst[-1], lst[-1]):
        lst.pop()
    for k in range(1, len(lst)):
        if any(_fp(ca) == _fp(lst[k]) for ca in buckets.get(_facts(lst[k]).issuer_bucket, ())):
            del lst[k + 1:]
            break

    def attempt(tcas: Sequence[x509.Certificate]) -> tuple[set[str], list[x509.Certificate], str]:
        """_gnutls_verify_crt_status: (status flags, path, reason)."""
        cl = list(lst)
        if len(cl) > 1 and _names_issuer(cl[-1], cl[-1]):
            cl.pop()
        n = len(cl)
        for k in range(n):
            ca = next((c for c in tcas if (_fp(c) == _fp(cl[k]) if k == 0 else _same_name_key(cl[k], c))), None)
            if ca is not None:
                bad = _time_reason(ca, as_of, st, "trust anchor")
                if bad is not None:
                    flag = "expired" if bad[0] == "expired" else "not-activated"
                    return {flag}, [], (f"{bad[1]}: {lib} takes the first stored certificate with the name and key "
                                        f"of served '{_facts(cl[k]).cn}', and checks its dates")
                n = k
                break
        if n == 0:
            return set(), [cl[0]], ""
        top = cl[n - 1]
        issuer = None
        for ca in tcas:                              # find_issuer: the first match, replaced by a later valid one
            if _names_issuer(top, ca) and (issuer is None or _time_ok(ca, as_of, st)):
                issuer = ca
        if issuer is None:
            return {"signer-not-found"}, [], ""
        path = [*cl[:n], issuer]
        for k in range(n - 1, -1, -1):
            child, parent = path[k], path[k + 1]
            g = _facts(parent)
            if not _names_issuer(child, parent):
                return {"signer-not-found"}, [], ""
            if not (g.is_ca and g.cert_sign) and not (parent is issuer and parent.version is x509.Version.v1):
                return {"not-ca"}, [], f"'{g.cn}' signs '{_facts(child).cn}' but is not a CA"
            if not _signed_by(child, parent):
                return {"signature"}, [], f"the signature of '{_facts(child).cn}' does not verify with the key of '{g.cn}'"
            if st.refuses_sha1 and _facts(child).sha1 and not _names_issuer(child, child):
                return {"insecure"}, [], f"{lib} refuses the SHA-1 signature on '{_facts(child).cn}'"
            for cert, what in ((parent, "trust anchor" if parent is issuer else "certificate"),
                               (child, "leaf" if k == 0 else "certificate")):
                bad = _time_reason(cert, as_of, st, what)
                if bad is not None:
                    if what == "trust anchor" and bad[0] == "expired":
                        return {"expired"}, [], f"{bad[1]}, and {lib} checks a trust anchor's dates"
                    return {"expired" if bad[0] == "expired" else "not-activated"}, [], bad[1]
        return set(), path, ""

    last = _facts(lst[-1])
    flags, path, why = attempt(buckets.get(last.issuer_bucket, ()))
    if flags & {"signer-not-found", "expired", "insecure"} and last.subject_der != last.issuer_der:
        first = flags, why
        flags, path, why = attempt(buckets.get(last.subject_bucket, ()))
        if flags and ("signer-not-found" in flags or not why) and first[1]:
            flags, why = first                      # the retry found no signer: the first attempt's reason stands
    if not flags:
        return path, len(path) - 1 if len(path) > 1 else 1
    if why:
        rule = {"expired": "expired", "not-activated": "not-yet-valid", "insecure": "sha1", "not-ca": "not-ca",
                "signature": "signature"}.get(next(iter(flags)), "no-anchor")
        if rule == "expired" and "trust anchor" in why:
            rule = "anchor-expired"
        raise _Fail(rule, why)
    top = lst[-1]
    raise _Fail("no-anchor", f"{lib} needs the issuer of the top of the sorted chain, '{last.cn}', in the trust list "
                f"(or a stored certificate with its name and key): the store holds neither '{common_name(last.issuer)}' "
                f"nor '{last.cn}'") if len(lst) > 1 else _no_anchor(top, served, 1)


# ---------------------------------------------------------------------------
# BearSSL: src/x509/x509_minimal.t0 — the chain in the order served, name-and-key trust anchors
# ---------------------------------------------------------------------------


def _bearssl(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
             as_of: datetime) -> tuple[list[x509.Certificate], int]:
    """Each served certificate is checked in order; as soon as one's issuer is a trust anchor (name, and
    the anchor's key verifies it) the chain is trusted and the rest is ignored; otherwise the next served
    certificate must be its issuer."""
    lib = st.library
    leaf = _facts(served[0])
    if any(_facts(s).subject_der == leaf.subject_der and _facts(s).spki == leaf.spki and not _facts(s).is_ca
           for s in store):
        return [served[0]], 1                   # direct trust: the end-entity itself is a (non-CA) trust anchor
    for k, cert in enumerate(served):
        if k > 0:
            prev = served[k - 1]
            if _facts(prev).issuer_der != _facts(cert).subject_der:
                raise _Fail("served-order", f"{lib} needs each served certificate issued by the next one in the list: "
                            f"'{_facts(prev).cn}' is followed by '{_facts(cert).cn}', not by its issuer "
                            f"'{common_name(_facts(prev).issuer)}'")
        for anchor in store:
            if _key_signs(cert, anchor):
                return [*served[:k + 1], anchor], k + 1
    raise _no_anchor(served[-1], served, len(served))


# ---------------------------------------------------------------------------
# Android (Conscrypt TrustManagerImpl): a path builder over the store and the served certificates
# ---------------------------------------------------------------------------


def _android(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
             as_of: datetime) -> tuple[list[x509.Certificate], int]:
    """Every path from the leaf through served certificates to a stored certificate (self-signed or not),
    trusted issuers tried first, backtracking on failure; the first path that passes the checks wins."""
    stored = {_fp(s) for s in store}
    first_fail: _Fail | None = None

    def walk(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        nonlocal first_fail
        top = path[-1]
        for anchor in store:
            if _signed_by(top, anchor) and _fp(anchor) not in {_fp(p) for p in path[:-1]}:
                cand = [*path, anchor]
                try:
                    _check_path(cand, len(path), st, as_of)
                except _Fail as err:
                    first_fail = first_fail or err
                    continue
                return cand
        if len(path) >= st.max_depth:
            return None
        on_path = {_fp(p) for p in path}
        for nxt in served[1:]:
            if _fp(nxt) not in on_path and _fp(nxt) not in stored and _signed_by(top, nxt):
                found = walk([*path, nxt])
                if found is not None:
                    return found
        return None

    found = walk([served[0]])
    if found is None:
        if first_fail is not None:
            raise first_fail
        top = [served[0]]
        while len(top) <= len(served):
            nxt = next((c for c in served[1:] if _signed_by(top[-1], c) and c not in top), None)
            if nxt is None:
                break
            top.append(nxt)
        raise _no_anchor(top[-1], served, len(top))
    return found, len(found) - 1


# ---------------------------------------------------------------------------
# The one entry point
# ---------------------------------------------------------------------------


def _build(served: Sequence[x509.Certificate], store: Sequence[x509.Certificate], st: Stack,
           as_of: datetime) -> list[x509.Certificate]:
    search = st.search
    if search in (SearchOrder.TRUSTED_FIRST, SearchOrder.UNTRUSTED_FIRST, SearchOrder.UNTRUSTED_FIRST_ALT_CHAINS) \
            and st.served_issuers is ServedIssuers.ANY_SERVED:
        path, n = _openssl(served, store, st, as_of)
        _check_path(path, n, st, as_of)
        return path
    if search in (SearchOrder.TRUSTED_FIRST, SearchOrder.CHAIN_TOP):
        path, n, exempt = _mbedtls(served, store, st, as_of)
        name_key = st.anchor_form is AnchorForm.NAME_AND_KEY
        _check_path(path, n, st, as_of, anchor_cert=not name_key, sha1_exempt=exempt,
                    check_anchor_key=st.search is not SearchOrder.CHAIN_TOP)
        return path
    if search is SearchOrder.LAST_TO_FIRST:
        path, n = _wolfssl(served, store, st, as_of)
        _check_path(path, n, st, as_of)
        return path
    if search is SearchOrder.SORTED_TRIM:
        path, n = _gnutls(served, store, st, as_of)
        return path                                  # _gnutls ran GnuTLS's own checks on its path
    if search is SearchOrder.CHAIN_ORDER:
        path, n = _bearssl(served, store, st, as_of)
        _check_path(path, n, st, as_of, anchor_cert=False)
        return path
    path, n = _android(served, store, st, as_of)
    return path


def validate_chain(
    served: Sequence[x509.Certificate],
    store: Sequence[x509.Certificate],
    *,
    stack: Stack | str,
    host: str | None,
    as_of: datetime,
    explain: bool = True,
) -> PathVerdict:
    """Validate one served chain against one (ordered) trust store the way ``stack`` does, at ``as_of``.

    Args:
        served: The certificates as the server sent them, leaf first (RFC 8446 section 4.4.2).
        store: The trust store in the order the device loads it (GnuTLS's and wolfSSL's verdicts depend on it).
        stack: A :class:`~iotaudit.stacks.Stack` or stack id.
        host: The name to check the leaf against, or None to skip the name check.
        as_of: When to validate (tz-aware).
        explain: Kept for callers that only need validity; reasons are always worked out (they are cheap).

    Returns:
        A :class:`PathVerdict`; an invalid chain is a verdict with a reason, never an exception.

    Raises:
        ValueError: when ``as_of`` is naive or ``stack`` is unknown.
    """
    del explain
    as_of = as_utc(as_of)
    st = get_stack(stack)
    if not served:
        return PathVerdict(False, reason="no certificate was served", rule="empty-chain")
    if not store:
        return PathVerdict(False, reason="the trust store is empty", rule="empty-store")
    try:
        path = _build(list(served), list(store), st, as_of)
    except _Fail as err:
        return PathVerdict(False, reason=err.reason, rule=err.rule)
    leaf = served[0]
    if host and not leaf_matches_host(leaf, host, st):
        names = _facts(leaf).ip_addresses if _ip_host(host) is not None and st.ip_san else leaf_names(leaf, st)
        valid_for = ", ".join(names) if names else "no DNS name (no subjectAltName, and no CN fallback)"
        return PathVerdict(False, reason=f"hostname mismatch: leaf '{_facts(leaf).cn}' is valid for "
                           f"{valid_for}, not {host}", rule="hostname")
    fps = tuple(_fp(cert) for cert in path)
    return PathVerdict(True, anchor_sha256=fps[-1], path_sha256=fps)


class PathEngine:
    """The one memo cache of path validations, over certificates known by SHA-256.

    A verdict depends on (served chain, ordered store, stack, time) and on the
    host only through whether the stack accepts the leaf as naming it, so the
    memo key holds that answer instead of the host when it matches; a failed
    name check names the host and is kept per host.

    Args:
        certificates: SHA-256 -> certificate for everything that may be validated.

    Attributes:
        certificates: Every certificate registered so far, by SHA-256.
        calls: Validations actually run (memo misses).
        calls_by_stack: The same, per stack id (for the benchmark).
    """

    def __init__(self, certificates: Mapping[str, x509.Certificate] | None = None) -> None:
        self.certificates: dict[str, x509.Certificate] = dict(certificates or {})
        self._cache: dict[tuple[Any, ...], PathVerdict] = {}
        self._host_keys: dict[tuple[str, str, str], Any] = {}
        self.calls = 0
        self.calls_by_stack: collections.Counter[str] = collections.Counter()

    def add(self, certs: Iterable[x509.Certificate]) -> tuple[str, ...]:
        """Register certificates; returns their SHA-256s in order."""
        out = []
        for cert in certs:
            fp = _fp(cert)
            self.certificates.setdefault(fp, cert)
            out.append(fp)
        return tuple(out)

    def host_key(self, leaf: str, host: str | None, stack: Stack | str) -> Any:
        """What a verdict on a chain with leaf ``leaf`` (SHA-256) can depend on of ``host`` on ``stack``."""
        if not host:
            return None
        st = get_stack(stack)
        key = (leaf, host, st.id)
        hit = self._host_keys.get(key)
        if hit is None:
            cert = self.certificates.get(leaf)
            hit = ("names-host",) if cert is not None and leaf_matches_host(cert, host, st) else ("host", host)
            self._host_keys[key] = hit
        return hit

    def validate(self, served: Sequence[str], store: Sequence[str], *, stack: Stack | str, host: str | None,
                 as_of: datetime, explain: bool = True) -> PathVerdict:
        """:func:`validate_chain` on certificates given by SHA-256 (``store`` in load order), memoised.

        Raises:
            KeyError: naming a SHA-256 that was never registered with :meth:`add`.
        """
        st = get_stack(stack)
        served = tuple(served)
        store = tuple(store)
        key = (served, store, st.id, self.host_key(served[0], host, st) if served else None, as_utc(as_of))
        hit = self._cache.get(key)
        if hit is None:
            self.calls += 1
            self.calls_by_stack[st.id] += 1
            try:
                certs = [self.certificates[s] for s in served], [self.certificates[s] for s in store]
            except KeyError as err:
                raise KeyError(f"certificate {err.args[0]} was never added to the PathEngine") from err
            hit = validate_chain(certs[0], certs[1], stack=st, host=host, as_of=as_of)
            self._cache[key] = hit
        return hit

    def valid(self, served: Sequence[str], store: Sequence[str], *, stack: Stack | str, host: str | None,
              as_of: datetime) -> bool:
        """Whether ``served`` validates against ``store`` on ``stack``, memoised."""
        return self.validate(served, store, stack=stack, host=host, as_of=as_of, explain=False).valid


def anchor_label(sha256: str, catalog: Catalog, certificates: Mapping[str, x509.Certificate]) -> str:
    """The one name of an anchor across every report page.

    The catalogue name of the certificate; ``"NAME (same key, other issuer)"``
    for another certificate of a catalogue key (e.g. a cross-signed twin of a
    root); else its CN; "" for no anchor.
    """
    if not sha256:
        return ""
    entry = catalog.by_sha256(sha256)
    if entry is not None:
        return entry.name
    cert = certificates.get(sha256)
    if cert is None:
        return ""
    same = catalog.by_spki(spki_sha256(cert))
    return f"{same[0].name} (same key, other issuer)" if same else common_name(cert.subject)
