"""Root coverage: which served chains each firmware profile can validate, to which anchor, and why not.

The path validator is ``cryptography.x509.verification`` configured like a
device TLS stack rather than a browser: the CA/Browser-Forum-only extension
rules are relaxed to "a CA certificate must carry basicConstraints" (RFC 5280
section 4.2.1.9) and the end-entity certificate may carry any extension, but
signatures, validity periods (RFC 5280 section 6.1.3 (a)(2)), name chaining
and the server name (RFC 6125 / RFC 9525) are checked.

Two path-building behaviours are modelled (see :class:`PathBuilder`):

``modern``
    Any path from the leaf through any served certificate to any trusted
    certificate, cross-signs included (OpenSSL >= 1.1.0 "trusted first",
    BoringSSL, the cryptography verifier itself).
``legacy-chain-top``
    Follows the served chain as sent up to its top certificate; the store must
    hold that top certificate itself or its issuer, and that exact path is then
    validated (OpenSSL 1.0.x without ``X509_V_FLAG_TRUSTED_FIRST``, many
    embedded stacks; see wolfMQTT issue 184, where only Starfield Class 2 worked).

Agreement with ``openssl verify`` (tests/test_coverage.py checks it on every
test chain)::

    openssl verify -attime <epoch> -partial_chain -CAfile <anchors> -untrusted <served[1:]> <served[0]>
    (plus -verify_hostname HOST when a host is validated; -purpose any)

``-partial_chain`` is used because a device store may hold a certificate that
is not self-signed (e.g. the Starfield cross-signed Amazon Root CA 1, as the
AWS document suggests adding) and device stacks such as mbedTLS treat every
stored certificate as an anchor; the cryptography verifier does the same.
Known differences, by design of the cryptography verifier: it rejects RSA
keys under 2048 bits and SHA-1 signatures *inside* a path (OpenSSL at security
level 1 accepts them); the self-signature of an anchor is never checked by
either (so Starfield Class 2, SHA-1 self-signed, works as an anchor in both).
OpenSSL 3 always builds trusted-first, so ``legacy-chain-top`` is compared with
``openssl verify`` restricted to the anchor the legacy builder chose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from . import columns as c
from .certs import cert_sha256, is_signed_by, key_type, load_pem_x509_certificates, tolerate_serial_zero

if TYPE_CHECKING:
    from .catalog import Catalog
    from .inventory import Inventory
    from .store import Run


class PathBuilder(str, Enum):
    """How a device's TLS stack builds the path from the served chain to its store."""

    MODERN = "modern"                      # any path to any trusted certificate (trusted-first)
    LEGACY_CHAIN_TOP = "legacy-chain-top"  # the served chain to its top, then top-or-issuer in store

    def __str__(self) -> str:
        return self.value


class Verdict(str, Enum):
    """Verdict of one profile on one served chain (``verdict`` column).

    ``covered``
        Validates at ``as_of``, still validates ``at_risk_days`` later, and its
        anchor is neither a legacy root nor reached only through a cross-sign
        AWS may stop serving.
    ``at-risk``
        Validates at ``as_of`` but: the chain stops validating within
        ``at_risk_days`` (``expires-soon``), or every path ends at a root the
        AWS document calls legacy (``legacy-anchor``: VeriSign), or the path
        needs a Starfield cross-signed certificate that AWS serves today and
        may stop serving (``needs-cross-sign``).
    ``broken``
        Does not validate at ``as_of``.
    ``not-applicable``
        The profile meets no chain of the run (row with ``observation_id`` -1).
    """

    COVERED = "covered"
    AT_RISK = "at-risk"
    BROKEN = "broken"
    NOT_APPLICABLE = "not-applicable"

    def __str__(self) -> str:
        return self.value


VERDICT_ORDER = {Verdict.COVERED.value: 0, Verdict.NOT_APPLICABLE.value: 0, Verdict.AT_RISK.value: 1, Verdict.BROKEN.value: 2}
VERDICT_DTYPE = pd.CategoricalDtype([v.value for v in Verdict])

# Risk flags behind an ``at-risk`` verdict (``risks`` column).
RISK_EXPIRES_SOON = "expires-soon"
RISK_LEGACY_ANCHOR = "legacy-anchor"
RISK_NEEDS_CROSS_SIGN = "needs-cross-sign"
DEFAULT_AT_RISK_DAYS = 90

# Column names of the coverage frame not (yet) in iotaudit.columns.
PROFILE = "profile"
DEVICES = "devices"
VALID = "valid"
ANCHOR_SHA256 = "anchor_sha256"
ANCHOR_NAME = "anchor_name"
PATH_SHA256 = "path_sha256"
REASON = "reason"
VERDICT = "verdict"
RISKS = "risks"
GROUP = "group"
GROUPS = "groups"
PROFILES = "profiles"

COVERAGE_DTYPES: dict[str, Any] = {
    PROFILE: "category",
    DEVICES: "int64",
    c.OBSERVATION_ID: "int64",
    c.HOST: "string",
    c.PORT: "int32",
    c.REGION: "category",
    c.PROBE: "category",
    c.KEY_TYPE: "category",
    VALID: "bool",
    ANCHOR_SHA256: "string",
    ANCHOR_NAME: "string",
    PATH_SHA256: "object",
    REASON: "string",
    VERDICT: VERDICT_DTYPE,
    RISKS: "object",
}


@dataclass(frozen=True, slots=True)
class PathVerdict:
    """Outcome of validating one served chain against one trust store at one time.

    Attributes:
        valid: A path to a trusted certificate was built and validated.
        anchor_sha256: SHA-256 (lowercase hex) of the trusted certificate the path ends at; "" if invalid.
        path_sha256: SHA-256 of every certificate of the validated path, leaf first, anchor last; () if invalid.
        reason: Why validation failed, in plain words; "" if valid.
    """

    valid: bool
    anchor_sha256: str = ""
    path_sha256: tuple[str, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path_sha256", tuple(self.path_sha256))
        if self.valid and (not self.anchor_sha256 or not self.path_sha256 or self.reason):
            raise ValueError("a valid PathVerdict has an anchor, a path and no reason")
        if not self.valid and (self.anchor_sha256 or self.path_sha256 or not self.reason):
            raise ValueError("an invalid PathVerdict has a reason and no anchor or path")
        if self.valid and self.path_sha256[-1] != self.anchor_sha256:
            raise ValueError("the path of a PathVerdict ends at its anchor")


def _utc(as_of: datetime) -> datetime:
    if as_of.tzinfo is None:
        raise ValueError("as_of must be a timezone-aware datetime (UTC)")
    return as_of.astimezone(timezone.utc)


def _cn(cert: x509.Certificate) -> str:
    for oid in (x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATIONAL_UNIT_NAME):
        attrs = cert.subject.get_attributes_for_oid(oid)
        if attrs:
            return str(attrs[-1].value)
    return cert.subject.rfc4514_string() or "(empty subject)"


def _issuer_cn(cert: x509.Certificate) -> str:
    for oid in (x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATIONAL_UNIT_NAME):
        attrs = cert.issuer.get_attributes_for_oid(oid)
        if attrs:
            return str(attrs[-1].value)
    return cert.issuer.rfc4514_string() or "(empty issuer)"


def _policy(store: Sequence[x509.Certificate], as_of: datetime, *, server: bool) -> PolicyBuilder:
    # Device-stack policy, not the CA/B Forum web PKI profile: CA certificates
    # need basicConstraints (RFC 5280 4.2.1.9), everything else is permitted.
    # A server verifier must see a subjectAltName on the leaf (cryptography
    # refuses a server policy without it; RFC 9525 section 6.3 dropped the CN
    # fallback that OpenSSL still applies).
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    ee_policy = ExtensionPolicy.permit_all()
    if server:
        ee_policy = ee_policy.require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    return (
        PolicyBuilder()
        .store(Store(list(store)))
        .time(as_of)
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
    )


def _verify(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], store: Sequence[x509.Certificate],
    host: str | None, as_of: datetime,
) -> list[x509.Certificate]:
    """Run the cryptography verifier; returns the chain leaf..anchor or raises VerificationError."""
    builder = _policy(store, as_of, server=bool(host))
    if host:
        return list(builder.build_server_verifier(DNSName(host)).verify(leaf, list(intermediates)))
    return list(builder.build_client_verifier().verify(leaf, list(intermediates)).chain)


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        return []


def _valid_at(cert: x509.Certificate, as_of: datetime) -> str:
    """"" if ``cert`` is inside its validity period at ``as_of``, else a plain-words reason."""
    if as_of < cert.not_valid_before_utc:
        return f"certificate '{_cn(cert)}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    if as_of > cert.not_valid_after_utc:
        return f"certificate '{_cn(cert)}' expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    return ""


def _issuers(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return [cand for cand in pool if cand is not cert and is_signed_by(cert, cand)]


def _structural_paths(
    leaf: x509.Certificate, untrusted: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], depth: int = 8,
) -> list[list[x509.Certificate]]:
    """Every signature-linked path leaf -> ... -> anchor, ignoring time (used to explain failures)."""
    anchor_fps = {cert_sha256(a) for a in anchors}
    out: list[list[x509.Certificate]] = []

    def walk(path: list[x509.Certificate]) -> None:
        top = path[-1]
        if len(path) > 1 and cert_sha256(top) in anchor_fps:
            out.append(path)
            return
        if len(path) >= depth:
            return
        seen = {cert_sha256(p) for p in path}
        for issuer in _issuers(top, [*anchors, *untrusted]):
            if cert_sha256(issuer) not in seen:
                walk([*path, issuer])

    if cert_sha256(leaf) in anchor_fps:
        out.append([leaf])
    walk([leaf])
    return out


def _explain(
    served: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], host: str | None,
    as_of: datetime, error: str,
) -> str:
    """Turn a verifier failure into plain words: expired, missing intermediate, no anchor, hostname."""
    leaf = served[0]
    leaf_time = _valid_at(leaf, as_of)
    if leaf_time:
        return f"expired certificate in path: leaf {leaf_time}" if "expired" in leaf_time else f"leaf {leaf_time}"
    paths = _structural_paths(leaf, served[1:], anchors)
    if paths:
        timed = [[_valid_at(cert, as_of) for cert in path] for path in paths]
        if all(any(t) for t in timed):
            first = next(t for t in timed[0] if t)
            kind = "expired certificate in path" if "expired" in first else "certificate in path not yet valid"
            return f"{kind}: {first}"
        if host:
            try:
                _verify(leaf, served[1:], anchors, None, as_of)
            except VerificationError:
                pass
            else:
                if not _sans(leaf):
                    return f"hostname mismatch: leaf '{_cn(leaf)}' has no subjectAltName DNS name, so not {host}"
                return (
                    f"hostname mismatch: leaf '{_cn(leaf)}' is valid for {', '.join(_sans(leaf))}, not {host}"
                )
        return f"rejected by the path validator: {error}"
    # No signature-linked path at all: where does the served chain stop?
    pool = [*served[1:], *anchors]
    top = leaf
    seen = {cert_sha256(leaf)}
    while True:
        issuers = [i for i in _issuers(top, pool) if cert_sha256(i) not in seen]
        if not issuers:
            break
        top = issuers[0]
        seen.add(cert_sha256(top))
    if top is leaf and not _issuers(leaf, pool):
        return (
            f"missing intermediate: the issuer '{_issuer_cn(leaf)}' of leaf '{_cn(leaf)}' "
            "was not served and is not in the trust store"
        )
    if is_signed_by(top, top):
        return f"no path to a trusted anchor: the chain ends at root '{_cn(top)}', which the trust store does not hold"
    return (
        f"no path to a trusted anchor: the chain ends at '{_cn(top)}' issued by '{_issuer_cn(top)}', "
        "and the trust store holds neither"
    )


def _legacy_path(
    served: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
) -> tuple[list[x509.Certificate], x509.Certificate | None, str]:
    """The path a legacy (chain-top) builder takes: (path as served, anchor or None, reason if None).

    Like OpenSSL 1.0.x without trusted-first (crypto/x509/x509_vfy.c
    ``X509_verify_cert``): follow issuers among the *served* certificates from
    the leaf until a self-signed certificate or one whose issuer was not
    served; then the store must hold that top certificate or its issuer.
    """
    path = [served[0]]
    seen = {cert_sha256(served[0])}
    pool = list(served[1:])
    while not is_signed_by(path[-1], path[-1]):
        nxt = [i for i in _issuers(path[-1], pool) if cert_sha256(i) not in seen]
        if not nxt:
            break
        path.append(nxt[0])
        seen.add(cert_sha256(nxt[0]))
    top = path[-1]
    anchor_fps = {cert_sha256(a): a for a in anchors}
    if cert_sha256(top) in anchor_fps and len(path) > 1:
        return path, top, ""
    if not is_signed_by(top, top):
        for anchor in anchors:
            if is_signed_by(top, anchor):
                return [*path, anchor], anchor, ""
    if is_signed_by(top, top):
        return path, None, (
            f"no path to a trusted anchor (legacy chain-top builder): the served chain ends at root "
            f"'{_cn(top)}', which the trust store does not hold"
        )
    if len(path) == 1:
        return path, None, (
            f"missing intermediate: the issuer '{_issuer_cn(top)}' of leaf '{_cn(top)}' was not served "
            "and is not in the trust store"
        )
    return path, None, (
        f"no path to a trusted anchor (legacy chain-top builder): the served chain ends at '{_cn(top)}' "
        f"issued by '{_issuer_cn(top)}', and the trust store holds neither"
    )


def validate_chain(
    served: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    host: str | None,
    as_of: datetime,
    path_builder: PathBuilder | str = PathBuilder.MODERN,
) -> PathVerdict:
    """Validate one served chain against one trust store at ``as_of``, like a device would.

    Args:
        served: The certificates as the server sent them; ``served[0]`` is the
            end-entity certificate (RFC 8446 section 4.4.2), the rest may come
            in any order.
        anchors: The trust store: every certificate in it is a trust anchor
            (self-signed or not; ``openssl verify -partial_chain`` semantics).
        host: The name to check the leaf against (RFC 6125), or None to skip
            the name check (e.g. to validate a CA certificate as end entity).
        as_of: When to validate (tz-aware).
        path_builder: :class:`PathBuilder` of the device's TLS stack.

    Returns:
        A :class:`PathVerdict`; a chain that does not validate is a verdict
        with a reason, not an exception.

    Raises:
        ValueError: when ``as_of`` is naive or ``path_builder`` is unknown.
    """
    as_of = _utc(as_of)
    builder = PathBuilder(path_builder)
    if not served:
        return PathVerdict(False, reason="no certificate was served")
    if not anchors:
        return PathVerdict(False, reason="the trust store is empty")
    with tolerate_serial_zero():
        store = list(anchors)
        untrusted = list(served[1:])
        if builder is PathBuilder.LEGACY_CHAIN_TOP:
            path, anchor, why = _legacy_path(served, anchors)
            if anchor is None:
                return PathVerdict(False, reason=why)
            store = [anchor]
            untrusted = path[1:-1] if cert_sha256(path[-1]) == cert_sha256(anchor) else path[1:]
        try:
            chain = _verify(served[0], untrusted, store, host, as_of)
        except VerificationError as err:
            return PathVerdict(False, reason=_explain([served[0], *untrusted], store, host, as_of, str(err)))
    fps = tuple(cert_sha256(cert) for cert in chain)
    return PathVerdict(True, anchor_sha256=fps[-1], path_sha256=fps)


def chain_key_type(chain: Sequence[x509.Certificate] | Mapping[str, Any] | pd.Series, run: Run | None = None) -> str:
    """Key type (``rsa``/``ec``) of a served chain: the key type of its leaf.

    Args:
        chain: The served certificates (leaf first), or an observation row
            (with ``chain_sha256``) of ``run``.
        run: Needed when ``chain`` is an observation row.

    Raises:
        ValueError: for an empty chain, or an observation row without ``run``.
    """
    if isinstance(chain, (Mapping, pd.Series)):
        shas = list(chain[c.CHAIN_SHA256])
        if not shas:
            raise ValueError("observation has no served chain")
        if run is None:
            raise ValueError("chain_key_type of an observation row needs the run")
        hit = run.certificates.loc[run.certificates[c.SHA256] == shas[0], c.KEY_TYPE]
        if hit.empty:
            raise ValueError(f"certificate {shas[0]} is not in the run")
        return str(hit.iloc[0])
    if not chain:
        raise ValueError("empty chain has no key type")
    return key_type(chain[0])


def run_certificate_objects(run: Run) -> dict[str, x509.Certificate]:
    """Every certificate of ``run`` parsed once: SHA-256 -> ``x509.Certificate``."""
    out: dict[str, x509.Certificate] = {}
    for sha, pem in zip(run.certificates[c.SHA256], run.certificates[c.PEM], strict=True):
        out[str(sha)] = load_pem_x509_certificates(str(pem), f"run certificate {sha}")[0]
    return out
