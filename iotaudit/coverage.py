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

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
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
from .columns import (
    as_utc,
    ANCHOR_NAME,
    ANCHOR_SHA256,
    AT_RISK,
    BROKEN,
    CHAINS,
    COVERAGE_DTYPES,
    COVERED,
    DEVICES,
    ENDPOINTS,
    FAILING,
    FLEET_DTYPES,
    GROUP,
    GROUPS,
    KEY_TYPES,
    PATH_BUILDER,
    PATH_SHA256,
    PROFILE,
    PROFILE_KEY,
    PROFILE_VERDICT_DTYPES,
    READY,
    READY_NO_CROSS_SIGN,
    READY_RESERVED_ROOTS,
    REASON,
    REASONS,
    RISK_EXPIRES_SOON,
    RISK_LEGACY_ANCHOR,
    RISK_NEEDS_CROSS_SIGN,
    RISKS,
    ROOTS_TO_ADD,
    ROOTS_TO_ADD_DTYPES,
    SCENARIO,
    UNFIXABLE,
    UNFIXABLE_REASONS,
    VALID,
    VERDICT,
    PathBuilder,
    RootsScenario,
    Verdict,
)
from .certs import cert_sha256, common_name, is_signed_by, key_type, tolerate_serial_zero

if TYPE_CHECKING:
    from .catalog import Catalog
    from .inventory import Inventory
    from .store import Run


VERDICT_ORDER = {Verdict.COVERED.value: 0, Verdict.NOT_APPLICABLE.value: 0, Verdict.AT_RISK.value: 1, Verdict.BROKEN.value: 2}
# Back from a worst rank to the verdict it stands for (a rank of 0 reads as covered).
VERDICT_OF_RANK = {rank: verdict for verdict, rank in VERDICT_ORDER.items() if verdict != Verdict.NOT_APPLICABLE.value}
DEFAULT_AT_RISK_DAYS = 90


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








@functools.lru_cache(maxsize=2)
def _extension_policies(server: bool) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """(CA policy, end-entity policy) of :func:`_policy`; immutable, so built once."""
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    ee_policy = ExtensionPolicy.permit_all()
    if server:
        ee_policy = ee_policy.require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    return ca_policy, ee_policy


def _policy(store: Sequence[x509.Certificate], as_of: datetime, *, server: bool) -> PolicyBuilder:
    # Device-stack policy, not the CA/B Forum web PKI profile: CA certificates
    # need basicConstraints (RFC 5280 4.2.1.9), everything else is permitted.
    # A server verifier must see a subjectAltName on the leaf (cryptography
    # refuses a server policy without it; RFC 9525 section 6.3 dropped the CN
    # fallback that OpenSSL still applies).
    # The verifier tries anchors in store order, and two anchors may share a subject (Amazon Root
    # CA 1 and its Starfield cross-sign, which the AWS document suggests adding): fingerprint order
    # makes the reported path independent of how an inventory happened to list its store.
    ca_policy, ee_policy = _extension_policies(server)
    return (
        PolicyBuilder()
        .store(Store(sorted(store, key=_fp)))
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
        return f"certificate '{common_name(cert.subject)}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    if as_of > cert.not_valid_after_utc:
        return f"certificate '{common_name(cert.subject)}' expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    return ""


@functools.lru_cache(maxsize=8192)
def _fp(cert: x509.Certificate) -> str:
    """:func:`iotaudit.certs.cert_sha256`, remembered per certificate (path building asks it again and again)."""
    return cert_sha256(cert)


@functools.lru_cache(maxsize=65536)
def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """:func:`iotaudit.certs.is_signed_by`, remembered per pair (a signature check costs tens of microseconds)."""
    return is_signed_by(cert, issuer)


def _issuers(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return [cand for cand in pool if cand is not cert and _signed_by(cert, cand)]


def _structural_paths(
    leaf: x509.Certificate, untrusted: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], depth: int = 8,
) -> list[list[x509.Certificate]]:
    """Every signature-linked path leaf -> ... -> anchor, ignoring time (used to explain failures)."""
    anchor_fps = {_fp(a) for a in anchors}
    out: list[list[x509.Certificate]] = []

    def walk(path: list[x509.Certificate]) -> None:
        top = path[-1]
        if len(path) > 1 and _fp(top) in anchor_fps:
            out.append(path)
            return
        if len(path) >= depth:
            return
        seen = {_fp(p) for p in path}
        for issuer in _issuers(top, [*anchors, *untrusted]):
            if _fp(issuer) not in seen:
                walk([*path, issuer])

    if _fp(leaf) in anchor_fps:
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
                    return f"hostname mismatch: leaf '{common_name(leaf.subject)}' has no subjectAltName DNS name, so not {host}"
                return (
                    f"hostname mismatch: leaf '{common_name(leaf.subject)}' is valid for {', '.join(_sans(leaf))}, not {host}"
                )
        return f"rejected by the path validator: {error}"
    # No signature-linked path at all: where does the served chain stop?
    pool = [*served[1:], *anchors]
    top = leaf
    seen = {_fp(leaf)}
    while True:
        issuers = [i for i in _issuers(top, pool) if _fp(i) not in seen]
        if not issuers:
            break
        top = issuers[0]
        seen.add(_fp(top))
    if top is leaf and not _issuers(leaf, pool):
        return (
            f"missing intermediate: the issuer '{common_name(leaf.issuer)}' of leaf '{common_name(leaf.subject)}' "
            "was not served and is not in the trust store"
        )
    if _signed_by(top, top):
        return f"no path to a trusted anchor: the chain ends at root '{common_name(top.subject)}', which the trust store does not hold"
    return (
        f"no path to a trusted anchor: the chain ends at '{common_name(top.subject)}' issued by '{common_name(top.issuer)}', "
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
    seen = {_fp(served[0])}
    pool = list(served[1:])
    while not _signed_by(path[-1], path[-1]):
        nxt = [i for i in _issuers(path[-1], pool) if _fp(i) not in seen]
        if not nxt:
            break
        path.append(nxt[0])
        seen.add(_fp(nxt[0]))
    top = path[-1]
    anchor_fps = {_fp(a): a for a in anchors}
    if _fp(top) in anchor_fps and len(path) > 1:
        return path, top, ""
    if not _signed_by(top, top):
        for anchor in anchors:
            if _signed_by(top, anchor):
                return [*path, anchor], anchor, ""
    if _signed_by(top, top):
        return path, None, (
            f"no path to a trusted anchor (legacy chain-top builder): the served chain ends at root "
            f"'{common_name(top.subject)}', which the trust store does not hold"
        )
    if len(path) == 1:
        return path, None, (
            f"missing intermediate: the issuer '{common_name(top.issuer)}' of leaf '{common_name(top.subject)}' was not served "
            "and is not in the trust store"
        )
    return path, None, (
        f"no path to a trusted anchor (legacy chain-top builder): the served chain ends at '{common_name(top.subject)}' "
        f"issued by '{common_name(top.issuer)}', and the trust store holds neither"
    )


def validate_chain(
    served: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    host: str | None,
    as_of: datetime,
    path_builder: PathBuilder | str = PathBuilder.MODERN,
    explain: bool = True,
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
        explain: Work out a plain-words reason on failure (costs signature checks);
            False gives the verifier's own message (used when only validity matters).

    Returns:
        A :class:`PathVerdict`; a chain that does not validate is a verdict
        with a reason, not an exception.

    Raises:
        ValueError: when ``as_of`` is naive or ``path_builder`` is unknown.
    """
    as_of = as_utc(as_of)
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
            untrusted = path[1:-1] if _fp(path[-1]) == _fp(anchor) else path[1:]
        try:
            chain = _verify(served[0], untrusted, store, host, as_of)
        except VerificationError as err:
            if not explain:
                return PathVerdict(False, reason=f"rejected by the path validator: {err}")
            return PathVerdict(False, reason=_explain([served[0], *untrusted], store, host, as_of, str(err)))
    fps = tuple(_fp(cert) for cert in chain)
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



# ---------------------------------------------------------------------------
# Profiles x observations
# ---------------------------------------------------------------------------

_AWS_HOST_REGION = re.compile(r"\.iot\.([a-z0-9-]+)\.amazonaws\.com\.?$", re.IGNORECASE)


def chain_observations(run: Run) -> pd.DataFrame:
    """The run's observations that carry a chain, with the leaf ``key_type`` and a region for each.

    Observations whose region is empty (plain ``host:port`` targets, imports)
    get the region named in an AWS IoT host name (``*.iot.<region>.amazonaws.com``).

    Returns:
        ``run.observations`` restricted to :data:`iotaudit.columns.CHAIN_STATUSES`,
        plus ``key_type`` (leaf key type; a category).
    """
    obs = run.observations
    obs = obs[obs[c.STATUS].astype(str).isin(c.CHAIN_STATUSES)].copy()
    obs = obs[[len(ch) > 0 for ch in obs[c.CHAIN_SHA256]]]
    leaf_type = dict(zip(run.certificates[c.SHA256].astype(str), run.certificates[c.KEY_TYPE].astype(str), strict=True))
    obs[c.KEY_TYPE] = pd.Categorical([leaf_type.get(str(ch[0]), c.KeyType.OTHER.value) for ch in obs[c.CHAIN_SHA256]])
    regions = []
    for region, host in zip(obs[c.REGION].astype("string").fillna(""), obs[c.HOST].astype(str), strict=True):
        if not region:
            match = _AWS_HOST_REGION.search(host)
            region = match.group(1).lower() if match else ""
        regions.append(region)
    obs[c.REGION] = pd.Categorical(regions)
    return obs.reset_index(drop=True)


def _endpoint_matches(patterns: Sequence[str], host: str, port: int) -> bool:
    from fnmatch import fnmatchcase

    host = host.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == "*":
            return True
        name, _, want_port = pattern.rpartition(":") if re.search(r":\d+$", pattern) else (pattern, "", "")
        if want_port and int(want_port) != int(port):
            continue
        if fnmatchcase(host, name):
            return True
    return False


def meets(profiles_row: Mapping[str, Any] | pd.Series, observations: pd.DataFrame) -> np.ndarray:
    """Which observations a profile may meet.

    A profile meets an observation with a chain (status in
    :data:`iotaudit.columns.CHAIN_STATUSES`) in its region (``*`` = any),
    at one of its endpoints (``["*"]`` = every endpoint of the region; entries
    may be ``host``, ``host:port`` or shell patterns), whose leaf key type is
    one its TLS stack offers.

    Args:
        profiles_row: One row of ``Inventory.profiles``.
        observations: :func:`chain_observations` output (needs ``key_type``).

    Returns:
        Boolean mask over ``observations``.

    Raises:
        ValueError: when ``observations`` has no ``key_type`` column.
    """
    if c.KEY_TYPE not in observations.columns:
        raise ValueError("meets() needs observations with a key_type column (see chain_observations)")
    status_ok = observations[c.STATUS].astype(str).isin(c.CHAIN_STATUSES).to_numpy()
    region = str(profiles_row[c.REGION])
    region_ok = np.ones(len(observations), dtype=bool) if region == "*" else (
        observations[c.REGION].astype(str).str.lower() == region
    ).to_numpy()
    kinds = set(profiles_row[KEY_TYPES])
    kind_ok = observations[c.KEY_TYPE].astype(str).isin(kinds).to_numpy()
    endpoints = list(profiles_row[ENDPOINTS])
    if endpoints == ["*"]:
        endpoint_ok = np.ones(len(observations), dtype=bool)
    else:
        endpoint_ok = np.array([
            _endpoint_matches(endpoints, str(h), int(p))
            for h, p in zip(observations[c.HOST], observations[c.PORT], strict=True)
        ], dtype=bool)
    return status_ok & region_ok & kind_ok & endpoint_ok


_DNS_LABEL = re.compile(r"[A-Za-z0-9-]{1,63}")


def _dns_name_ok(value: str) -> bool:
    """Whether ``value`` is a DNS name the path validator accepts (RFC 1034 3.5 / RFC 1123 2.1 preferred syntax).

    Mirrors ``DNSName::new`` of cryptography's verifier
    (src/rust/cryptography-x509-verification/src/types.rs): 1-253 characters,
    labels of 1-63 ASCII letters, digits and hyphens, no label starting or
    ending with a hyphen.
    """
    if not value or len(value) > 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) and not label.startswith("-") and not label.endswith("-")
               for label in value.split("."))


def _san_pattern_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4.3 matching as cryptography's ``DNSPattern::matches`` does it.

    An exact name compares case-insensitively; ``*.parent`` matches exactly one
    label to the left of ``parent``; any other wildcard form (``f*o.example``,
    ``foo.*.example``) is not a pattern and matches nothing.
    """
    if pattern.startswith("*."):
        base = pattern[2:]
        _, dot, parent = host.partition(".")
        return _dns_name_ok(base) and bool(dot) and _dns_name_ok(parent) and parent.lower() == base.lower()
    return _dns_name_ok(pattern) and pattern.lower() == host.lower()


def leaf_matches_host(leaf: x509.Certificate, host: str) -> bool:
    """Whether a subjectAltName DNS name of ``leaf`` matches ``host`` (RFC 6125 6.4, RFC 9525 6.3).

    The same rule as the server verifier's name check, so two hosts that give
    the same answer for one leaf give the same validation verdict.
    """
    return any(_san_pattern_matches(san, host) for san in _sans(leaf))


class ChainValidator:
    """Memoised :func:`validate_chain` over certificates known by SHA-256.

    A verdict depends only on (served chain, store, builder, time) and on the
    host only through whether the leaf's subjectAltName matches it (RFC 6125
    6.4; the verifier's name check is the only place the host enters), so the
    memo key holds that answer, computed once per leaf x host, instead of the
    host: identical chains served on different host names of one wildcard
    share a validation.  A failure explanation that names the host
    ("hostname mismatch: ... not HOST") is the one exception and is kept per
    host.  A fleet has far fewer distinct stores than profiles, so every
    distinct question is asked once.

    Args:
        certificates: SHA-256 -> certificate for everything that may be validated.
    """

    def __init__(self, certificates: Mapping[str, x509.Certificate]) -> None:
        self.certificates: dict[str, x509.Certificate] = dict(certificates)
        self._cache: dict[tuple[Any, ...], PathVerdict] = {}
        self._names_host: dict[tuple[Any, ...], str] = {}
        self._host_keys: dict[tuple[str, str], tuple[str, Any]] = {}
        self.calls = 0

    def add(self, certs: Iterable[x509.Certificate]) -> tuple[str, ...]:
        """Register certificates; returns their SHA-256s in order."""
        out = []
        for cert in certs:
            fp = _fp(cert)
            self.certificates.setdefault(fp, cert)
            out.append(fp)
        return tuple(out)

    def host_key(self, leaf: str, host: str | None) -> tuple[str, Any] | None:
        """What a verdict on a chain with leaf ``leaf`` (SHA-256) can depend on of ``host``.

        None when no name is checked; ``("san-match", bool)`` for a valid DNS
        name; the host itself (no sharing) for a name the verifier refuses.
        """
        if not host:
            return None
        key = (leaf, host)
        hit = self._host_keys.get(key)
        if hit is None:
            if _dns_name_ok(host) and leaf in self.certificates:
                hit = ("san-match", leaf_matches_host(self.certificates[leaf], host))
            else:
                hit = ("host", host)
            self._host_keys[key] = hit
        return hit

    def validate(
        self, served: Sequence[str], store: Iterable[str], *, host: str | None, as_of: datetime,
        path_builder: PathBuilder | str, explain: bool = True,
    ) -> PathVerdict:
        """:func:`validate_chain` on certificates given by SHA-256, memoised."""
        served = tuple(served)
        store_key = frozenset(store)
        builder = PathBuilder(path_builder).value
        key: tuple[Any, ...] = (served, store_key, self.host_key(served[0], host) if served else None,
                                as_of, builder, explain)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._run(served, store_key, host, as_of, builder, explain)
            self._cache[key] = hit
            if host and host in hit.reason:
                self._names_host[key] = host
        named = self._names_host.get(key)
        if named is not None and named != host:
            # The reason names the host it was worked out for: this host gets its own.
            key = (*key, host)
            hit = self._cache.get(key)
            if hit is None:
                hit = self._run(served, store_key, host, as_of, builder, explain)
                self._cache[key] = hit
        return hit

    def valid(
        self, served: Sequence[str], store: Iterable[str], *, host: str | None, as_of: datetime,
        path_builder: PathBuilder | str,
    ) -> bool:
        """Whether ``served`` validates against ``store`` (no path, no reason), memoised.

        For the ``modern`` builder this is "some single anchor of the store
        validates it", so the answer is assembled from validations against
        one anchor at a time, shared by every store that holds that anchor: a
        path ends at exactly one trusted certificate (RFC 5280 6.1; the
        cryptography builder stops at the first store certificate it reaches),
        the other store certificates take no part in it, and the builder
        searches every candidate issuer before giving up
        (``build_chain_inner`` in cryptography-x509-verification/src/lib.rs),
        so it finds a path whenever one exists.  The ``legacy-chain-top``
        builder picks one anchor out of the whole store, so its store is
        validated as a whole.
        """
        builder = PathBuilder(path_builder)
        if builder is PathBuilder.MODERN:
            return any(self.validate(served, (anchor,), host=host, as_of=as_of, path_builder=builder,
                                     explain=False).valid for anchor in dict.fromkeys(store))
        return self.validate(served, store, host=host, as_of=as_of, path_builder=builder, explain=False).valid

    def _run(self, served: tuple[str, ...], store: frozenset[str], host: str | None, as_of: datetime,
             builder: str, explain: bool) -> PathVerdict:
        self.calls += 1
        return validate_chain(
            [self.certificates[s] for s in served], [self.certificates[s] for s in sorted(store)],
            host=host, as_of=as_of, path_builder=builder, explain=explain,
        )


def _cross_signed_keys(catalog: Catalog) -> set[str]:
    """SPKI SHA-256 of every root key the catalogue also holds as a cross-signed certificate."""
    from .catalog import CatalogRole

    return {e.spki_sha256 for e in catalog.entries if e.role is CatalogRole.CROSS_SIGNED}


def without_cross_signs(served: Sequence[x509.Certificate], catalog: Catalog) -> list[x509.Certificate]:
    """The served chain as it would be if AWS stopped serving the Starfield cross-signs.

    Drops every served certificate that is a catalogue cross-signed entry, or
    that is not self-signed but carries the key of a cross-signed catalogue
    root (e.g. "Amazon Root CA 1 issued by Starfield Services Root G2").
    """
    from .catalog import CatalogRole

    keys = _cross_signed_keys(catalog)
    out = []
    for i, cert in enumerate(served):
        entry = catalog.by_sha256(cert_sha256(cert))
        if i > 0 and entry is not None and entry.role is CatalogRole.CROSS_SIGNED:
            continue
        if i > 0 and spki_of(cert) in keys and not is_signed_by(cert, cert):
            continue
        out.append(cert)
    return out


def spki_of(cert: x509.Certificate) -> str:
    """SPKI SHA-256 (hex) of ``cert``."""
    from .certs import spki_sha256

    return spki_sha256(cert)


def anchor_label(sha256: str, catalog: Catalog, certificates: Mapping[str, x509.Certificate]) -> str:
    """Catalogue name of an anchor (``"NAME (same key)"`` for another certificate of a catalogue key), else its CN."""
    if not sha256:
        return ""
    cert = certificates.get(sha256)
    entry = catalog.by_sha256(sha256)
    if entry is not None:
        return entry.name
    if cert is None:
        return ""
    same = catalog.by_spki(spki_of(cert))
    return f"{same[0].name} (same key)" if same else common_name(cert.subject)


# ---------------------------------------------------------------------------
# Hypothetical chains: AWS serving chains to the reserved roots
# ---------------------------------------------------------------------------

# The roots-to-add question; named Scenario here (iotaudit.pinning has its own).
Scenario = RootsScenario


class HypotheticalPki:
    """A stand-in ("shadow") of the catalogue's roots and cross-signs, with keys we hold.

    Nobody outside AWS can sign under Amazon Root CA 2 or 4, so chains to them
    are built in a shadow world: every catalogue root and cross-signed
    certificate gets a shadow with the same subject, issuer, validity and key
    type but a fresh key (one per real key, so "same key" relations hold),
    signed along the catalogue's real cross-sign relations.  A device store is
    mapped into the same world entry by entry (by fingerprint, else by key and
    issuer), and the real verifier then decides.  Where the catalogue lacks a
    cross-sign of a reserved root by Starfield Services Root G2 (the public
    catalogue has no G2-RootCA2/4), one is synthesised like the existing ones:
    the AWS document says all Amazon roots are cross-signed by Starfield.

    Args:
        catalog: The run's catalogue.
        as_of: Validity of the hypothetical leaf and intermediates is centred on it.
    """

    def __init__(self, catalog: Catalog, as_of: datetime) -> None:
        from datetime import timedelta

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        from .catalog import CatalogRole, CatalogStatus

        self.catalog = catalog
        as_of = as_utc(as_of)
        entries = [e for e in catalog.entries if e.role in (CatalogRole.ROOT, CatalogRole.CROSS_SIGNED)]
        keys: dict[str, Any] = {}

        def new_key(cert: x509.Certificate) -> Any:
            public = cert.public_key()
            if isinstance(public, ec.EllipticCurvePublicKey):
                return ec.generate_private_key(public.curve)
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)

        for e in entries:
            keys.setdefault(e.spki_sha256, new_key(e.certificate))
        roots_by_subject = {e.certificate.subject: e for e in entries if e.role is CatalogRole.ROOT}

        def make(subject: x509.Name, issuer: x509.Name, key: Any, issuer_key: Any, not_before: datetime,
                 not_after: datetime, *, ca: bool, san: str | None = None) -> x509.Certificate:
            from cryptography.x509.oid import NameOID

            builder = (
                x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            )
            if san:
                builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
            del NameOID
            return builder.sign(issuer_key, hashes.SHA256())

        self.shadow: dict[str, x509.Certificate] = {}
        for e in entries:
            cert = e.certificate
            issuer_entry = e if e.role is CatalogRole.ROOT else roots_by_subject.get(cert.issuer)
            if issuer_entry is None:
                continue
            self.shadow[e.name] = make(cert.subject, cert.issuer, keys[e.spki_sha256], keys[issuer_entry.spki_sha256],
                                       cert.not_valid_before_utc, cert.not_valid_after_utc, ca=True)
        # Starfield Services Root G2: the root that cross-signs the in-use Amazon roots.
        crosses = [e for e in entries if e.role is CatalogRole.CROSS_SIGNED]
        in_use_keys = {e.spki_sha256 for e in entries if e.role is CatalogRole.ROOT and e.status is CatalogStatus.IN_USE}
        amazon_crosses = [e for e in crosses if e.spki_sha256 in in_use_keys]
        cross_signer = roots_by_subject.get(amazon_crosses[0].certificate.issuer) if amazon_crosses else None
        # The cross-sign of the cross-signer itself (Starfield Services G2 by Starfield Class 2).
        signer_crosses = [e for e in crosses if cross_signer is not None and e.spki_sha256 == cross_signer.spki_sha256]
        self.reserved: dict[str, str] = {}       # key type -> reserved root entry name
        self.reserved_cross: dict[str, str] = {}  # key type -> shadow name of its cross-sign by the cross-signer
        self.chains: dict[str, dict[str, list[x509.Certificate]]] = {}
        for root in catalog.roots(CatalogStatus.RESERVED):
            kind = key_type(root.certificate)
            if kind in self.reserved:
                continue
            self.reserved[kind] = root.name
            cross = next((e for e in crosses if e.spki_sha256 == root.spki_sha256
                          and cross_signer is not None and e.certificate.issuer == cross_signer.certificate.subject), None)
            if cross is not None and cross.name in self.shadow:
                cross_name = cross.name
            elif cross_signer is not None and amazon_crosses:
                cross_name = f"{root.name} (hypothetical cross-sign by {cross_signer.name})"
                template = amazon_crosses[0].certificate
                self.shadow[cross_name] = make(root.certificate.subject, cross_signer.certificate.subject,
                                               keys[root.spki_sha256], keys[cross_signer.spki_sha256],
                                               template.not_valid_before_utc, template.not_valid_after_utc, ca=True)
            else:
                cross_name = ""
            self.reserved_cross[kind] = cross_name
            int_key = new_key(root.certificate)
            intermediate = make(
                x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"Hypothetical intermediate under {root.display_name}")]),
                root.certificate.subject, int_key, keys[root.spki_sha256],
                as_of - timedelta(days=30), as_of + timedelta(days=5 * 365), ca=True)
            leaf_key = new_key(root.certificate)
            leaf = make(
                x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "hypothetical.iot.amazonaws.com")]),
                intermediate.subject, leaf_key, int_key, as_of - timedelta(days=1), as_of + timedelta(days=365),
                ca=False, san="hypothetical.iot.amazonaws.com")
            shapes = {"direct": [leaf, intermediate]}
            if cross_name:
                as_today = [leaf, intermediate, self.shadow[cross_name]]
                if signer_crosses and signer_crosses[0].name in self.shadow:
                    as_today.append(self.shadow[signer_crosses[0].name])
                shapes["as-today"] = as_today
            self.chains[kind] = shapes

    def map_store(self, store: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        """The shadows of the catalogue roots and cross-signs in ``store`` (others have none)."""
        out = []
        for cert in store:
            entry = self.catalog.by_sha256(cert_sha256(cert))
            if entry is None:
                same_key = self.catalog.by_spki(spki_of(cert))
                entry = next((e for e in same_key if e.certificate.issuer == cert.issuer), None)
            if entry is not None and entry.name in self.shadow:
                out.append(self.shadow[entry.name])
        return out


# ---------------------------------------------------------------------------
# Coverage, roots to add, fleet view
# ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CoverageResult:
    """Everything root coverage computes for one run x inventory x ``as_of``.

    Attributes:
        coverage: One row per profile x observation it may meets (:data:`COVERAGE_DTYPES`).
        roots_to_add: Per profile x :class:`Scenario` (:data:`ROOTS_TO_ADD_DTYPES`).
        fleet: Devices per group x endpoint x key type x verdict (:data:`FLEET_DTYPES`).
        profiles: One row per profile with its worst verdict (:data:`PROFILE_VERDICT_DTYPES`).
        validations: Distinct validations run (the memo's size; a cost figure).
    """

    coverage: pd.DataFrame
    roots_to_add: pd.DataFrame
    fleet: pd.DataFrame
    profiles: pd.DataFrame
    validations: int = 0

    def __post_init__(self) -> None:
        for name, dtypes in (("coverage", COVERAGE_DTYPES), ("roots_to_add", ROOTS_TO_ADD_DTYPES),
                             ("fleet", FLEET_DTYPES), ("profiles", PROFILE_VERDICT_DTYPES)):
            missing = [col for col in dtypes if col not in getattr(self, name).columns]
            if missing:
                raise ValueError(f"CoverageResult.{name} lacks columns {missing}")


def _candidate_order(catalog: Catalog) -> list[str]:
    """Catalogue roots and cross-signs to consider adding, most recommendable first."""
    from .catalog import CatalogRole, CatalogStatus

    status_rank = {CatalogStatus.IN_USE: 0, CatalogStatus.RESERVED: 1, CatalogStatus.CROSS_SIGNER: 2,
                   CatalogStatus.LEGACY: 3, CatalogStatus.ISSUING_CA: 4}
    entries = [e for e in catalog.entries if e.role in (CatalogRole.ROOT, CatalogRole.CROSS_SIGNED)]
    entries.sort(key=lambda e: (e.role is not CatalogRole.ROOT, status_rank.get(e.status, 9)))
    return [e.name for e in entries]


def _min_cover(fixers: list[set[str]], order: list[str], exact_limit: int = 4) -> list[str]:
    """Smallest set of names hitting every set in ``fixers``: exact up to ``exact_limit`` names, then greedy."""
    from itertools import combinations

    needed = [f for f in fixers if f]
    if not needed:
        return []
    pool = [n for n in order if any(n in f for f in needed)]
    for size in range(1, min(exact_limit, len(pool)) + 1):
        for combo in combinations(pool, size):
            chosen = set(combo)
            if all(f & chosen for f in needed):
                return list(combo)
    chosen: list[str] = []
    left = list(needed)
    while left:
        best = max(pool, key=lambda n: sum(n in f for f in left))
        chosen.append(best)
        left = [f for f in left if best not in f]
    return chosen


def analyse_coverage(
    run: Run, inventory: Inventory, *, as_of: datetime,
    anchors: Mapping[str, Sequence[x509.Certificate]] | None = None,
    at_risk_days: int = DEFAULT_AT_RISK_DAYS,
) -> CoverageResult:
    """Root coverage of every profile on every chain it may meet, roots to add, and the fleet view.

    Args:
        run: The collected run (its catalogue names the anchors).
        inventory: The device inventory.
        as_of: When to validate (tz-aware).
        anchors: ``Inventory.resolve`` output, if already computed.
        at_risk_days: A chain that stops validating within this many days is ``at-risk``.

    Returns:
        A :class:`CoverageResult`.

    Raises:
        InventoryError: when the inventory's trust stores do not resolve against the run's catalogue.
    """
    from datetime import timedelta

    from .catalog import CatalogStatus

    as_of = as_utc(as_of)
    catalog = run.catalog_object()
    if anchors is None:
        anchors = inventory.resolve(catalog)
    validator = ChainValidator(run.certificate_objects())
    for e in catalog.entries:
        validator.add([e.certificate])
    obs = chain_observations(run)
    obs_chains = [tuple(str(s) for s in ch) for ch in obs[c.CHAIN_SHA256]]
    obs_rows = obs[[c.OBSERVATION_ID, c.HOST, c.PORT, c.REGION, c.PROBE, c.KEY_TYPE]].astype(
        {c.HOST: str, c.REGION: str, c.PROBE: str, c.KEY_TYPE: str}).to_dict("records")
    later = as_of + timedelta(days=at_risk_days)
    legacy_keys = {e.spki_sha256 for e in catalog.entries if e.status is CatalogStatus.LEGACY}
    no_cross: dict[tuple[str, ...], tuple[str, ...]] = {}

    def stripped(chain: tuple[str, ...]) -> tuple[str, ...]:
        if chain not in no_cross:
            no_cross[chain] = validator.add(without_cross_signs([validator.certificates[s] for s in chain], catalog))
        return no_cross[chain]

    spki_memo: dict[str, str] = {}
    label_memo: dict[str, str] = {}

    def anchor_spki(sha: str) -> str:
        if sha not in spki_memo:
            spki_memo[sha] = spki_of(validator.certificates[sha])
        return spki_memo[sha]

    def anchor_name(sha: str) -> str:
        if sha not in label_memo:
            label_memo[sha] = anchor_label(sha, catalog, validator.certificates)
        return label_memo[sha]

    rows: list[dict[str, Any]] = []
    met_by_profile: dict[str, list[int]] = {}
    profiles = inventory.profiles
    profile_records = profiles.to_dict("records")
    # Profiles share regions, endpoints and key types far more than trust stores: one mask per combination.
    met_memo: dict[tuple[str, frozenset[str], tuple[str, ...]], list[int]] = {}
    # What one observation gives one (store, builder): every profile with both gets the same row.
    outcome_memo: dict[tuple[int, frozenset[str], PathBuilder], tuple[PathVerdict, list[str], str]] = {}
    for prow in profile_records:
        key = str(prow[PROFILE_KEY])
        store = validator.add(anchors[key])
        store_set = frozenset(store)
        builder = PathBuilder(prow[PATH_BUILDER])
        met_key = (str(prow[c.REGION]), frozenset(prow[KEY_TYPES]), tuple(prow[ENDPOINTS]))
        if met_key not in met_memo:
            met_memo[met_key] = list(np.flatnonzero(meets(prow, obs)))
        idx = met_memo[met_key]
        met_by_profile[key] = idx
        if not len(idx):
            rows.append({PROFILE: key, DEVICES: prow[DEVICES], c.OBSERVATION_ID: -1, c.HOST: "", c.PORT: 0,
                         c.REGION: prow[c.REGION], c.PROBE: "", c.KEY_TYPE: "", VALID: False, ANCHOR_SHA256: "",
                         ANCHOR_NAME: "", PATH_SHA256: [], REASON: "the profile meets no chain of this run "
                         "(no observation in its region and endpoints with a key type it offers)",
                         VERDICT: Verdict.NOT_APPLICABLE.value, RISKS: []})
            continue
        for i in idx:
            o = obs_rows[i]
            host = str(o[c.HOST])
            memo_key = (int(i), store_set, builder)
            if memo_key not in outcome_memo:
                verdict = validator.validate(obs_chains[i], store, host=host, as_of=as_of, path_builder=builder)
                risks: list[str] = []
                if verdict.valid:
                    if not validator.valid(obs_chains[i], store, host=host, as_of=later, path_builder=builder):
                        risks.append(RISK_EXPIRES_SOON)
                    if anchor_spki(verdict.anchor_sha256) in legacy_keys:
                        risks.append(RISK_LEGACY_ANCHOR)
                    bare = stripped(obs_chains[i])
                    if bare != obs_chains[i] and not validator.valid(bare, store, host=host, as_of=as_of,
                                                                     path_builder=builder):
                        risks.append(RISK_NEEDS_CROSS_SIGN)
                outcome_memo[memo_key] = (verdict, risks, anchor_name(verdict.anchor_sha256))
            verdict, risks, label = outcome_memo[memo_key]
            kind = Verdict.BROKEN if not verdict.valid else (Verdict.AT_RISK if risks else Verdict.COVERED)
            rows.append({
                PROFILE: key, DEVICES: prow[DEVICES], c.OBSERVATION_ID: int(o[c.OBSERVATION_ID]), c.HOST: host,
                c.PORT: int(o[c.PORT]), c.REGION: str(o[c.REGION]), c.PROBE: str(o[c.PROBE]),
                c.KEY_TYPE: str(o[c.KEY_TYPE]), VALID: verdict.valid, ANCHOR_SHA256: verdict.anchor_sha256,
                ANCHOR_NAME: label, PATH_SHA256: list(verdict.path_sha256), REASON: verdict.reason,
                VERDICT: kind.value, RISKS: list(risks),
            })
    cov = c.typed_frame(rows, COVERAGE_DTYPES) if rows else c.typed_frame([], COVERAGE_DTYPES)
    cov[PROFILE] = pd.Categorical(cov[PROFILE].astype(str), categories=list(profiles[PROFILE_KEY]))

    # Roots to add, per profile x scenario.
    order = _candidate_order(catalog)
    hypothetical = HypotheticalPki(catalog, as_of)
    for cert in hypothetical.shadow.values():
        validator.add([cert])
    future_by_kind = {kind: [validator.add(chain) for chain in shapes.values()]
                      for kind, shapes in hypothetical.chains.items()}
    candidates_real = {name: validator.add([catalog.entry(name).certificate])[0] for name in order}
    candidates_shadow = {name: validator.add([hypothetical.shadow[name]])[0] for name in order if name in hypothetical.shadow}
    shadow_stores: dict[tuple[str, ...], tuple[str, ...]] = {}
    answers: dict[tuple[Any, ...], tuple[int, list[set[str]], list[str]]] = {}

    def roots_question(base: tuple[str, ...], chains: list[tuple[tuple[str, ...], str | None]],
                       candidates: dict[str, str], builder: PathBuilder) -> tuple[int, list[set[str]], list[str]]:
        """(failing chains, per failing chain the candidates that fix it, reasons no candidate fixes)."""
        failing, fixers, reasons = 0, [], []
        for chain, host in chains:
            verdict = validator.validate(chain, base, host=host, as_of=as_of, path_builder=builder)
            if verdict.valid:
                continue
            failing += 1
            # A path that needs an added root ends at it, so only a candidate that validates the chain on
            # its own can fix it (one validation per chain x candidate, shared by every profile); the
            # store with it added is then asked as a whole (for modern, from the same single-root answers).
            fix = {
                name for name, sha in candidates.items() if sha not in base
                and validator.valid(chain, (sha,), host=host, as_of=as_of, path_builder=builder)
                and validator.valid(chain, (*base, sha), host=host, as_of=as_of, path_builder=builder)
            }
            fixers.append(fix)
            if not fix:
                reasons.append(verdict.reason)
        return failing, fixers, reasons

    add_rows: list[dict[str, Any]] = []
    for prow in profile_records:
        key = str(prow[PROFILE_KEY])
        builder = PathBuilder(prow[PATH_BUILDER])
        store = validator.add(anchors[key])
        questions: dict[Scenario, tuple[tuple[str, ...], list[tuple[tuple[str, ...], str | None]], dict[str, str]]] = {}
        today = [(obs_chains[i], str(obs_rows[i][c.HOST])) for i in met_by_profile[key]]
        questions[Scenario.TODAY] = (store, today, candidates_real)
        questions[Scenario.NO_CROSS_SIGN] = (store, [(stripped(ch), h) for ch, h in today], candidates_real)
        if store not in shadow_stores:
            shadow_stores[store] = validator.add(hypothetical.map_store(anchors[key]))
        future = [(chain, None) for kind in prow[KEY_TYPES] for chain in future_by_kind.get(kind, [])]
        questions[Scenario.RESERVED_ROOTS] = (shadow_stores[store], future, candidates_shadow)
        for scenario, (base, chains, candidates) in questions.items():
            distinct = list(dict.fromkeys(chains))
            # Hosts enter only through the leaf's name match (ChainValidator.host_key).
            answer_key = (frozenset(base), tuple(
                (chain, validator.host_key(chain[0], host) if chain else None) for chain, host in distinct),
                id(candidates), builder)
            if answer_key not in answers:
                answers[answer_key] = roots_question(base, distinct, candidates, builder)
            failing, fixers, reasons = answers[answer_key]
            add_rows.append({
                PROFILE: key, DEVICES: prow[DEVICES], SCENARIO: scenario.value, CHAINS: len(distinct),
                FAILING: failing, READY: failing == 0, ROOTS_TO_ADD: _min_cover(fixers, order),
                UNFIXABLE: sum(1 for f in fixers if not f), UNFIXABLE_REASONS: sorted(set(reasons)),
            })
    roots = c.typed_frame(add_rows, ROOTS_TO_ADD_DTYPES) if add_rows else c.typed_frame([], ROOTS_TO_ADD_DTYPES)

    fleet = fleet_view(cov, inventory)
    # Per-profile summary straight from the rows (one pass, no per-profile frame filtering).
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        rows_of.setdefault(row[PROFILE], []).append(row)
    summary_rows = []
    by_scenario = {(r[PROFILE], r[SCENARIO]): r for r in add_rows}
    for prow in profile_records:
        key = str(prow[PROFILE_KEY])
        mine = rows_of.get(key, [])
        verdicts = [str(r[VERDICT]) for r in mine]
        worst = max(verdicts, key=lambda v: VERDICT_ORDER[v]) if len(verdicts) else Verdict.NOT_APPLICABLE.value
        summary_rows.append({
            PROFILE: key, DEVICES: prow[DEVICES], GROUPS: list(prow[GROUPS]), VERDICT: worst,
            CHAINS: sum(1 for r in mine if r[c.OBSERVATION_ID] >= 0),
            COVERED: verdicts.count(Verdict.COVERED.value), AT_RISK: verdicts.count(Verdict.AT_RISK.value),
            BROKEN: verdicts.count(Verdict.BROKEN.value),
            RISKS: sorted({r for row in mine for r in row[RISKS]}),
            REASONS: sorted({str(row[REASON]) for row in mine
                             if row[REASON] and not str(row[REASON]).startswith("the profile meets no")}),
            ROOTS_TO_ADD: by_scenario[(key, Scenario.TODAY.value)][ROOTS_TO_ADD],
            READY_NO_CROSS_SIGN: by_scenario[(key, Scenario.NO_CROSS_SIGN.value)][READY],
            READY_RESERVED_ROOTS: by_scenario[(key, Scenario.RESERVED_ROOTS.value)][READY],
        })
    prof = c.typed_frame(summary_rows, PROFILE_VERDICT_DTYPES) if summary_rows else c.typed_frame([], PROFILE_VERDICT_DTYPES)
    return CoverageResult(coverage=cov, roots_to_add=roots, fleet=fleet, profiles=prof, validations=validator.calls)


def coverage(
    run: Run, inventory: Inventory, *, as_of: datetime,
    anchors: Mapping[str, Sequence[x509.Certificate]] | None = None, at_risk_days: int = DEFAULT_AT_RISK_DAYS,
) -> pd.DataFrame:
    """One row per profile x observation it may meet (:data:`COVERAGE_DTYPES`); see :func:`analyse_coverage`."""
    return analyse_coverage(run, inventory, as_of=as_of, anchors=anchors, at_risk_days=at_risk_days).coverage


def fleet_view(coverage_frame: pd.DataFrame, inventory: Inventory) -> pd.DataFrame:
    """Devices per group x endpoint (host, port) x key type x verdict.

    A profile's verdict on an endpoint and key type is its worst over the
    probes of that endpoint and key type; devices are counted per group with
    the inventory's per profile x group device counts (no per-device work).
    """
    cov = coverage_frame[coverage_frame[c.OBSERVATION_ID] >= 0]
    if cov.empty:
        return c.typed_frame([], FLEET_DTYPES)
    per = cov.assign(_rank=cov[VERDICT].astype(str).map(VERDICT_ORDER))
    per = per.groupby([PROFILE, c.HOST, c.PORT, c.KEY_TYPE], observed=True, sort=False)["_rank"].max().reset_index()
    counts = inventory.group_counts.copy()
    counts = counts.rename(columns={PROFILE_KEY: PROFILE})
    per[PROFILE] = per[PROFILE].astype(str)
    counts[PROFILE] = counts[PROFILE].astype(str)
    joined = per.merge(counts, on=PROFILE, how="inner")
    joined[VERDICT] = joined["_rank"].map(VERDICT_OF_RANK)
    out = joined.groupby([GROUP, c.HOST, c.PORT, c.KEY_TYPE, VERDICT], observed=True, sort=True).agg(
        devices=(DEVICES, "sum"), profiles=(PROFILE, lambda s: sorted(set(s)))).reset_index()
    return c.typed_frame(out, FLEET_DTYPES)
