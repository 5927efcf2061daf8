"""The one path engine: build and validate a served chain against a trust store the way a given TLS stack does.

Interim implementation (first commit of issue 7): the ``cryptography``
verifier for trusted-first stacks and the chain-top builder for the others,
as ``iotaudit.coverage`` did.  The API (PathVerdict, validate_chain,
PathEngine, anchor_label) is final; the per-stack builders replace the
internals.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from .certs import cert_sha256, common_name, is_signed_by, spki_sha256, tolerate_serial_zero
from .columns import as_utc
from .stacks import SearchOrder, Stack, get_stack

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
        rule: Short id of the rule that failed ("no-anchor", "expired", ...); "" if valid.
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
        if self.valid and self.path_sha256[-1] != self.anchor_sha256:
            raise ValueError("the path of a PathVerdict ends at its anchor")


@functools.lru_cache(maxsize=8192)
def _fp(cert: x509.Certificate) -> str:
    return cert_sha256(cert)


@functools.lru_cache(maxsize=65536)
def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return is_signed_by(cert, issuer)


def _issuers(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    return [cand for cand in pool if cand is not cert and _signed_by(cert, cand)]


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except (x509.ExtensionNotFound, ValueError):
        return []


_DNS_LABEL = re.compile(r"[A-Za-z0-9-]{1,63}")


def _dns_name_ok(value: str) -> bool:
    if not value or len(value) > 253:
        return False
    return all(_DNS_LABEL.fullmatch(label) and not label.startswith("-") and not label.endswith("-")
               for label in value.split("."))


def _pattern_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4.3: exact names case-insensitively, ``*.parent`` for exactly one leftmost label."""
    if pattern.startswith("*."):
        base = pattern[2:]
        _, dot, parent = host.partition(".")
        return _dns_name_ok(base) and bool(dot) and _dns_name_ok(parent) and parent.lower() == base.lower()
    return _dns_name_ok(pattern) and pattern.lower() == host.lower()


def leaf_names(leaf: x509.Certificate, stack: Stack | str) -> tuple[str, ...]:
    """The names ``stack`` matches a host against: subjectAltName DNS names, else (CN fallback) the CN."""
    sans = _sans(leaf)
    if sans or not get_stack(stack).cn_fallback:
        return tuple(sans)
    cns = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return tuple(str(a.value) for a in cns[-1:])


def leaf_matches_host(leaf: x509.Certificate, host: str, stack: Stack | str) -> bool:
    """Whether ``stack`` accepts ``leaf`` as naming ``host`` (RFC 6125 6.4 as the stack applies it)."""
    return any(_pattern_matches(name, host) for name in leaf_names(leaf, stack))


@functools.lru_cache(maxsize=2)
def _extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    return ca_policy, ExtensionPolicy.permit_all()


def _verify(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], store: Sequence[x509.Certificate],
            as_of: datetime) -> list[x509.Certificate]:
    ca_policy, ee_policy = _extension_policies()
    builder = (PolicyBuilder().store(Store(list(store))).time(as_of)
               .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy))
    return list(builder.build_client_verifier().verify(leaf, list(intermediates)).chain)


def _valid_at(cert: x509.Certificate, as_of: datetime) -> str:
    if as_of < cert.not_valid_before_utc:
        return f"certificate '{common_name(cert.subject)}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    if as_of > cert.not_valid_after_utc:
        return f"certificate '{common_name(cert.subject)}' expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    return ""


def _legacy_path(served: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                 ) -> tuple[list[x509.Certificate], x509.Certificate | None, str]:
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
    anchor_fps = {_fp(a) for a in anchors}
    if _fp(top) in anchor_fps and len(path) > 1:
        return path, top, ""
    if not _signed_by(top, top):
        for anchor in anchors:
            if _signed_by(top, anchor):
                return [*path, anchor], anchor, ""
    return path, None, (f"no path to a trusted anchor: the served chain ends at '{common_name(top.subject)}' "
                        f"issued by '{common_name(top.issuer)}', which the trust store does not hold")


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
        store: The trust store in the order the device loads it (GnuTLS's verdict depends on it).
        stack: A :class:`~iotaudit.stacks.Stack` or stack id.
        host: The name to check the leaf against, or None to skip the name check.
        as_of: When to validate (tz-aware).
        explain: Work out a plain-words reason on failure.

    Returns:
        A :class:`PathVerdict`; an invalid chain is a verdict with a reason, never an exception.

    Raises:
        ValueError: when ``as_of`` is naive or ``stack`` is unknown.
    """
    as_of = as_utc(as_of)
    st = get_stack(stack)
    if not served:
        return PathVerdict(False, reason="no certificate was served", rule="empty-chain")
    if not store:
        return PathVerdict(False, reason="the trust store is empty", rule="empty-store")
    leaf = served[0]
    if host and not leaf_matches_host(leaf, host, st):
        names = ", ".join(leaf_names(leaf, st)) or "no name"
        return PathVerdict(False, reason=f"hostname mismatch: leaf '{common_name(leaf.subject)}' is valid for {names}, "
                           f"not {host}", rule="hostname")
    with tolerate_serial_zero():
        anchors = sorted(store, key=_fp)
        untrusted = list(served[1:])
        if st.search in (SearchOrder.CHAIN_TOP, SearchOrder.UNTRUSTED_FIRST, SearchOrder.CHAIN_ORDER):
            path, anchor, why = _legacy_path(served, anchors)
            if anchor is None:
                return PathVerdict(False, reason=why, rule="no-anchor")
            anchors = [anchor]
            untrusted = path[1:-1] if _fp(path[-1]) == _fp(anchor) else path[1:]
        try:
            chain = _verify(leaf, untrusted, anchors, as_of)
        except VerificationError as err:
            when = next((w for w in (_valid_at(x, as_of) for x in [leaf, *untrusted, *anchors]) if w), "")
            return PathVerdict(False, reason=f"rejected by the path validator: {when or err}", rule="validator")
    fps = tuple(_fp(cert) for cert in chain)
    return PathVerdict(True, anchor_sha256=fps[-1], path_sha256=fps)


class PathEngine:
    """The one memo cache of path validations, over certificates known by SHA-256.

    A verdict depends on (served chain, ordered store, stack, time) and on the
    host only through whether the stack accepts the leaf as naming it, so the
    memo key holds that answer instead of the host; a reason that names the
    host is kept per host.

    Args:
        certificates: SHA-256 -> certificate for everything that may be validated.

    Attributes:
        calls: Validations actually run (memo misses).
        calls_by_stack: The same, per stack id.
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
        """What a verdict on a chain with leaf ``leaf`` can depend on of ``host`` on ``stack``."""
        if not host:
            return None
        st = get_stack(stack)
        key = (leaf, host, st.id)
        hit = self._host_keys.get(key)
        if hit is None:
            hit = ("match", leaf_matches_host(self.certificates[leaf], host, st)) if leaf in self.certificates else ("host", host)
            if hit == ("match", False):
                hit = ("host", host)   # the reason names the host
            self._host_keys[key] = hit
        return hit

    def validate(self, served: Sequence[str], store: Sequence[str], *, stack: Stack | str, host: str | None,
                 as_of: datetime, explain: bool = True) -> PathVerdict:
        """:func:`validate_chain` on certificates given by SHA-256 (``store`` ordered), memoised."""
        st = get_stack(stack)
        served = tuple(served)
        store = tuple(store)
        key = (served, store, st.id, self.host_key(served[0], host, st) if served else None, as_of, explain)
        hit = self._cache.get(key)
        if hit is None:
            self.calls += 1
            self.calls_by_stack[st.id] += 1
            hit = validate_chain([self.certificates[s] for s in served], [self.certificates[s] for s in store],
                                 stack=st, host=host, as_of=as_of, explain=explain)
            self._cache[key] = hit
        return hit

    def valid(self, served: Sequence[str], store: Sequence[str], *, stack: Stack | str, host: str | None,
              as_of: datetime) -> bool:
        """Whether ``served`` validates against ``store`` on ``stack`` (no reason needed), memoised."""
        return self.validate(served, store, stack=stack, host=host, as_of=as_of, explain=False).valid


def anchor_label(sha256: str, catalog: Catalog, certificates: Mapping[str, x509.Certificate]) -> str:
    """The one name of an anchor across every report page.

    The catalogue name of the certificate; ``"NAME (same key, other issuer)"``
    for another certificate of a catalogue key (e.g. a cross-signed twin); else
    its CN; "" for no anchor.
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
