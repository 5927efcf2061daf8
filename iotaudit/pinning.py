"""Pinning risks: parse certificate pins, match them today, and ask what breaks under each likely change.

A pin is a hash a device compares with the server's certificates before it
trusts a connection.  Two families behave very differently when AWS changes
what it serves:

* **SPKI pins** hash the SubjectPublicKeyInfo (``sha256/<base64>``, the
  OkHttp / Android network-security-config / TrustKit form, or
  ``spki-sha256:<hex>``).  They survive a certificate being re-issued for the
  same key, under the same or another issuer.
* **Whole-certificate pins** hash the DER (``cert-sha256:<hex>``,
  ``cert-sha1:<hex>``), issuer name and signature included.  The AWS IoT
  "Server Authentication" page warns against them: the ATS roots exist both
  self-signed and cross-signed by Starfield, with the same key but a
  different issuer, so the hash of "Amazon Root CA 1" depends on which copy a
  path goes through.

Which certificates a pin is compared with is the profile's ``pin_scope``
(:class:`PinScope`): ``any`` certificate of the validated path (OkHttp's
``CertificatePinner`` and Android's network-security-config check the
cleaned, validated chain; the default), ``served`` (the chain exactly as the
server sent it, as hand-rolled checks often do), ``leaf`` or ``root`` (the
anchor of the validated path).  A pin *set* is satisfied when at least one
of its pins matches (the OkHttp / RFC 7469 section 2.6 rule).

Scenarios (:class:`Scenario`) transform each chain a profile meets today
into the chain it would meet after one change, using the run's catalogue for
real relations (another intermediate of the same root, the other-issuer copy
of the same root key, the other key type's chain, the reserved roots) and a
*hypothetical* certificate with a new key where the catalogue has nothing.
The transformed path is not re-validated here: whether the new chain still
validates is root coverage's question (:mod:`iotaudit.root_coverage`); pinning
asks whether the pins still match it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from cryptography import x509

from . import columns as c
from .catalog import Catalog, CatalogRole, CatalogStatus
from .certs import (
    cert_sha1,
    cert_sha256,
    common_name,
    is_signed_by,
    key_type,
    spki_sha256,
    tolerate_serial_zero,
)
from .columns import (
    as_list,
    as_utc,
    BREAKS,
    CHAINS,
    CHAINS_BROKEN,
    DETAIL,
    DEVICES,
    ENFORCED,
    FLAGS,
    GROUPS,
    MATCHED_NAME,
    MATCHED_SHA256,
    MATCHES,
    PATH_SHA256,
    PIN,
    PINS,
    PIN_KIND,
    PIN_RISK_COLUMNS,
    PIN_SCOPE,
    PROFILE,
    RANK,
    RANKED_RISK_COLUMNS,
    REASON,
    RISK,
    SCENARIO,
    SCORE,
    SET_BREAKS,
    SEVERITY_COL,
    PinFlag,
    PinKind,
    PinScenario,
    PinScope,
)
from .errors import PinError
from .paths import PathEngine, anchor_label
from .pins import Pin, parse_pin, parse_pins
from .profiles import Profile
from .stacks import Stack

__all__ = [
    "PIN_RISK_COLUMNS",
    "RANKED_RISK_COLUMNS",
    "SEVERITY",
    "CertIdentity",
    "KnownCertificates",
    "Pin",
    "PinError",
    "PinFlag",
    "PinKind",
    "PinScope",
    "Scenario",
    "apply_scenario",
    "parse_pin",
    "parse_pins",
    "pin_matches_chain",
    "pin_risks",
    "pin_set_matches_chain",
    "ranked_risks",
    "scoped_certificates",
]


# The pin-risk question; named Scenario here (iotaudit.root_coverage has its own).
Scenario = PinScenario

# Severity of each risk in :func:`ranked_risks` (higher is worse); a risk's score is devices x severity.
# Scenario severities follow how often AWS makes the change: leaves rotate every year or so, issuing
# CAs rotate (Amazon RSA 2048 M01..M04 since 2022), the cross-sign path depends on the device and
# on what AWS serves, a key-type switch follows the negotiated suite, and the reserved roots are a
# future move AWS has announced but not made.
SEVERITY: dict[str, int] = {
    PinFlag.NO_MATCH_TODAY.value: 6,                 # enforced pins reject a chain served today
    Scenario.LEAF_REKEY.value: 5,
    Scenario.INTERMEDIATE_CHANGE.value: 4,
    Scenario.ISSUER_CHANGE.value: 3,
    Scenario.KEY_TYPE_SWITCH.value: 3,
    Scenario.RESERVED_ROOTS.value: 2,
    PinFlag.NO_BACKUP.value: 2,
    PinFlag.WHOLE_CERT_UNDER_TWO_ISSUERS.value: 2,
    PinFlag.MALFORMED.value: 2,
    PinFlag.PIN_SET_EXPIRED.value: 1,                # a security, not an availability, finding
}

_HYPOTHETICAL = "hypothetical"


# --- certificate identities ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertIdentity:
    """What pins and scenarios need to know about one certificate (real or hypothetical).

    Attributes:
        sha256: Lowercase hex SHA-256 of the DER (``hypothetical:...`` for a certificate that does not exist yet).
        sha1: Lowercase hex SHA-1 of the DER (same convention).
        spki_sha256: Lowercase hex SHA-256 of the SubjectPublicKeyInfo (``hypothetical-key:...`` for a new key).
        name: Catalogue name, else subject common name; what reports show.
        subject: RFC 4514 subject.
        issuer: RFC 4514 issuer.
        key_type: ``rsa``, ``ec``, ...
        self_signed: Subject equals issuer and the signature verifies with its own key.
        certificate: The parsed certificate, None for hypothetical ones.
    """

    sha256: str
    sha1: str
    spki_sha256: str
    name: str = ""
    subject: str = ""
    issuer: str = ""
    key_type: str = ""
    self_signed: bool = False
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.sha256 or not self.spki_sha256:
            raise ValueError("CertIdentity needs sha256 and spki_sha256")

    @property
    def hypothetical(self) -> bool:
        """True for a certificate invented by a scenario (no pin can match its DER)."""
        return self.sha256.startswith(_HYPOTHETICAL)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, name: str = "") -> CertIdentity:
        """Identity of a parsed certificate."""
        with tolerate_serial_zero():
            return cls(
                sha256=cert_sha256(cert), sha1=cert_sha1(cert), spki_sha256=spki_sha256(cert),
                name=name or common_name(cert.subject), subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(), key_type=key_type(cert),
                self_signed=is_signed_by(cert, cert), certificate=cert,
            )

    @classmethod
    def invented(cls, label: str, *, new_key: bool = True, like: CertIdentity | None = None,
                 issuer: str = "", key_type_: str = "") -> CertIdentity:
        """A hypothetical certificate: new DER always, a new key unless ``new_key`` is False (then ``like``'s key)."""
        if not new_key and like is None:
            raise ValueError("keeping the key needs the certificate to keep it from")
        spki = f"{_HYPOTHETICAL}-key:{label}" if new_key else like.spki_sha256  # type: ignore[union-attr]
        return cls(
            sha256=f"{_HYPOTHETICAL}:{label}", sha1=f"{_HYPOTHETICAL}:{label}", spki_sha256=spki,
            name=f"{_HYPOTHETICAL} {label}" if like is None else f"{like.name} ({_HYPOTHETICAL} {label})",
            subject=like.subject if like else "", issuer=issuer or (like.issuer if like else ""),
            key_type=key_type_ or (like.key_type if like else ""), self_signed=False,
        )




class KnownCertificates:
    """Every certificate a scenario may draw on: the run's, the catalogue's and the firmware anchors.

    Args:
        certificates: Parsed certificates (served, anchors, ...).
        catalog: The run's catalogue; its entries are added and name the certificates they match.
    """

    __slots__ = ("_by_sha256", "_by_spki", "_by_subject", "catalog")

    def __init__(self, certificates: Iterable[x509.Certificate] = (), catalog: Catalog | None = None) -> None:
        self.catalog = catalog
        self._by_sha256: dict[str, CertIdentity] = {}
        self._by_spki: dict[str, list[CertIdentity]] = {}
        self._by_subject: dict[str, list[CertIdentity]] = {}
        if catalog is not None:
            for entry in catalog.entries:
                self.add(entry.certificate)
        for cert in certificates:
            self.add(cert)

    @classmethod
    def from_run(cls, run: Any, profiles: Sequence[Profile] = ()) -> KnownCertificates:
        """Everything a run knows: its certificates table, its catalogue and the profiles' stores."""
        catalog = run.catalog_object()
        certs = list(run.certificate_objects().values())
        for profile in profiles:
            certs.extend(profile.store)
        return cls(certs, catalog)

    def add(self, cert: x509.Certificate) -> CertIdentity:
        """Add one certificate (idempotent) and return its identity."""
        fp = cert_sha256(cert)
        known = self._by_sha256.get(fp)
        if known is not None:
            return known
        ident = CertIdentity.from_certificate(cert, self._name(cert, fp))
        self._by_sha256[fp] = ident
        self._by_spki.setdefault(ident.spki_sha256, []).append(ident)
        self._by_subject.setdefault(ident.subject, []).append(ident)
        return ident

    def _name(self, cert: x509.Certificate, fp: str) -> str:
        """The one name of a certificate on every page (:func:`iotaudit.paths.anchor_label`)."""
        if self.catalog is not None:
            return anchor_label(fp, self.catalog, {fp: cert})
        return common_name(cert.subject)

    def get(self, sha256: str) -> CertIdentity | None:
        """The identity of a known certificate, by DER SHA-256."""
        return self._by_sha256.get(sha256)

    def require(self, sha256: str) -> CertIdentity:
        """Like :meth:`get`, but a certificate nobody knows becomes an opaque identity (pins can still miss it)."""
        ident = self._by_sha256.get(sha256)
        return ident if ident is not None else CertIdentity(sha256=sha256, sha1="", spki_sha256=f"unknown-key:{sha256}",
                                                            name=sha256[:16])

    def all(self) -> list[CertIdentity]:
        """Every known identity."""
        return list(self._by_sha256.values())

    def same_key(self, ident: CertIdentity) -> list[CertIdentity]:
        """Known certificates with ``ident``'s key, itself included."""
        return list(self._by_spki.get(ident.spki_sha256, ()))

    def twins(self, ident: CertIdentity) -> list[CertIdentity]:
        """Known certificates with the same key but another issuer (self-signed <-> cross-signed copies)."""
        return [t for t in self.same_key(ident) if t.sha256 != ident.sha256 and t.issuer != ident.issuer]

    def under_two_issuers(self, ident: CertIdentity) -> bool:
        """True when ``ident``'s key is known under at least two issuers."""
        return len({t.issuer for t in self.same_key(ident)} | {ident.issuer}) >= 2

    def issuers_of(self, ident: CertIdentity) -> list[CertIdentity]:
        """Known certificates that signed ``ident`` (subject match and a verifying signature)."""
        if ident.certificate is None:
            return []
        return [
            cand for cand in self._by_subject.get(ident.issuer, ())
            if cand.certificate is not None and cand.sha256 != ident.sha256
            and is_signed_by(ident.certificate, cand.certificate)
        ]

    def upward(self, ident: CertIdentity, prefer: frozenset[str] = frozenset(), limit: int = 6) -> list[CertIdentity]:
        """The known issuers above ``ident`` up to a self-signed root or a preferred anchor (``ident`` excluded)."""
        chain: list[CertIdentity] = []
        current = ident
        seen = {ident.sha256}
        while not current.self_signed and current.sha256 not in prefer and len(chain) < limit:
            issuers = [i for i in self.issuers_of(current) if i.sha256 not in seen]
            if not issuers:
                break
            issuers.sort(key=lambda i: (i.sha256 not in prefer, not i.self_signed, i.name))
            current = issuers[0]
            seen.add(current.sha256)
            chain.append(current)
        return chain

    def catalog_entries(self, role: CatalogRole, status: CatalogStatus | None = None) -> list[CertIdentity]:
        """Known identities of catalogue entries with ``role`` (and ``status``), in catalogue order."""
        if self.catalog is None:
            return []
        return [
            self._by_sha256[e.sha256] for e in self.catalog.entries
            if e.role is role and (status is None or e.status is status) and e.sha256 in self._by_sha256
        ]


# --- scopes and matching ----------------------------------------------------------------------

Chain = tuple[CertIdentity, ...]


def scoped_certificates(scope: PinScope | str, served: Sequence[CertIdentity], path: Sequence[CertIdentity]) -> Chain:
    """The certificates a pin is compared with under ``scope``.

    Args:
        scope: The profile's pin scope.
        served: The chain as the server sent it.
        path: The validated path, leaf first and anchor last (empty when the chain does not validate).

    Returns:
        ``any``: the whole path; ``served``: the served chain; ``leaf``: the path's
        first certificate (the served first one if there is no path); ``root``: the
        path's anchor (nothing when there is no path).
    """
    scope = PinScope(scope)
    if scope is PinScope.ANY:
        return tuple(path)
    if scope is PinScope.SERVED:
        return tuple(served)
    if scope is PinScope.LEAF:
        first = path[:1] or served[:1]
        return tuple(first)
    return tuple(path[-1:])


def pin_matches_chain(pin: Pin, scope: PinScope | str, served: Sequence[CertIdentity],
                      path: Sequence[CertIdentity]) -> list[CertIdentity]:
    """The certificates in scope that ``pin`` matches (empty list: no match)."""
    return [cert for cert in scoped_certificates(scope, served, path) if pin.matches(cert)]


def pin_set_matches_chain(pins: Sequence[Pin], scope: PinScope | str, served: Sequence[CertIdentity],
                          path: Sequence[CertIdentity]) -> bool:
    """True when at least one pin of the set matches a certificate in scope (RFC 7469 section 2.6)."""
    in_scope = scoped_certificates(scope, served, path)
    return any(pin.matches(cert) for pin in pins for cert in in_scope)


# --- scenarios -------------------------------------------------------------------------------


def apply_scenario(
    scenario: Scenario | str,
    served: Sequence[CertIdentity],
    path: Sequence[CertIdentity],
    known: KnownCertificates,
    *,
    anchors: frozenset[str] = frozenset(),
    counterpart: tuple[Sequence[CertIdentity], Sequence[CertIdentity]] | None = None,
) -> tuple[Chain, Chain]:
    """The (served chain, validated path) a device would meet after ``scenario``.

    Rules, each modelled on what AWS has done or announced:

    * ``leaf-rekey``: the leaf gets a new key and a new certificate; everything above is unchanged.
    * ``intermediate-change``: the leaf's issuing CA (path position 1, when it is
      not the anchor) is replaced by another catalogue intermediate of the same
      issuer and key type (catalogue order, e.g. Amazon RSA 2048 M01 -> M02), or
      by a hypothetical CA with a new key when the catalogue has none; the leaf is
      re-issued by it (new certificate, same key).
    * ``issuer-change``: the lowest certificate above the leaf whose key is known
      under another issuer is swapped for that copy (self-signed Amazon Root CA 1
      <-> the Starfield cross-signed one, the AWS seed's warning); the path then
      continues through the copy's issuers (the preferred ``anchors`` first) and the
      server sends the copy and its non-self-signed issuers.
    * ``key-type-switch``: the ``counterpart`` chain of the other key type (e.g.
      the run's ECDSA chain of the same endpoint); without one, a chain built from
      the catalogue: a new leaf, the first catalogue intermediate under the first
      in-use root of the other key type, that root.
    * ``reserved-roots``: a new leaf and a hypothetical intermediate under the
      catalogue's reserved root of the same key type (Amazon Root CA 2 for RSA,
      4 for EC), which becomes the anchor.

    Args:
        scenario: The change.
        served: Chain as served today.
        path: Validated path today (leaf first, anchor last); may be empty.
        known: Certificates to draw replacements from.
        anchors: SHA-256 of the profile's trust anchors (preferred ends of a rebuilt path).
        counterpart: For ``key-type-switch``: the other key type's (served, path).

    Returns:
        The transformed (served, path); unchanged when the scenario does not apply.
    """
    scenario = Scenario(scenario)
    served, path = tuple(served), tuple(path)
    base = path or served
    if not base:
        return served, path
    leaf = base[0]
    if scenario is Scenario.LEAF_REKEY:
        new_leaf = CertIdentity.invented(f"re-keyed {leaf.name}", like=leaf)
        return _substitute(served, {leaf.sha256: new_leaf}), _substitute(path, {leaf.sha256: new_leaf})
    if scenario is Scenario.INTERMEDIATE_CHANGE:
        return _intermediate_change(served, path, known)
    if scenario is Scenario.ISSUER_CHANGE:
        return _issuer_change(served, path, known, anchors)
    if scenario is Scenario.KEY_TYPE_SWITCH:
        if counterpart is not None:
            return tuple(counterpart[0]), tuple(counterpart[1])
        other = "ec" if leaf.key_type == "rsa" else "rsa"
        return _catalog_chain(known, other, CatalogStatus.IN_USE, f"{other} chain")
    return _catalog_chain(known, leaf.key_type or "rsa", CatalogStatus.RESERVED, "reserved-root chain",
                          hypothetical_intermediate=True)


def _substitute(chain: Chain, mapping: Mapping[str, CertIdentity]) -> Chain:
    return tuple(mapping.get(cert.sha256, cert) for cert in chain)


def _intermediate_change(served: Chain, path: Chain, known: KnownCertificates) -> tuple[Chain, Chain]:
    base = path or served
    if len(base) < 2 or (path and len(path) < 3):
        return served, path  # no intermediate below the anchor to change
    leaf, current = base[0], base[1]
    siblings = [
        cand for cand in known.catalog_entries(CatalogRole.INTERMEDIATE)
        if cand.issuer == current.issuer and cand.key_type == current.key_type
        and cand.spki_sha256 != current.spki_sha256
    ]
    replacement = siblings[0] if siblings else CertIdentity.invented(f"issuing CA replacing {current.name}",
                                                                     like=current, issuer=current.issuer)
    new_leaf = CertIdentity.invented(f"{leaf.name} issued by {replacement.name}", new_key=False, like=leaf,
                                     issuer=replacement.subject)
    mapping = {leaf.sha256: new_leaf, current.sha256: replacement}
    return _substitute(served, mapping), _substitute(path, mapping)


def _issuer_change(served: Chain, path: Chain, known: KnownCertificates, anchors: frozenset[str]) -> tuple[Chain, Chain]:
    """Swap the lowest certificate above the leaf that has a same-key twin, in the path and in the served chain.

    The path and the served chain are changed independently, because they
    often hold different copies today: AWS serves the Starfield cross-signed
    Amazon Root CA 1 while a modern device anchors the path at its own
    self-signed copy.  After the change the served copy has flipped (the
    cross-sign is no longer sent, or is sent where it was not) and so has the
    anchored one.  Servers send a cross-signed copy with its non-self-signed
    issuers and never a self-signed root (RFC 8446 section 4.4.2: the root
    "MAY be omitted"; AWS omits it).
    """
    new_path = path
    path_twin: CertIdentity | None = None
    for index in range(1, len(path)):
        twin = _pick_twin(path[index], known, anchors)
        if twin is not None:
            new_path = path[:index] + (twin,) + tuple(known.upward(twin, prefer=anchors))
            path_twin = twin
            break
    for index in range(1, len(served)):
        cert = served[index]
        twin = _pick_twin(cert, known, anchors)
        if twin is None:
            continue
        above = _served_issuers(cert, served, known)
        sent = [] if twin.self_signed else [twin, *(a for a in known.upward(twin, prefer=anchors) if not a.self_signed)]
        rest = tuple(s for s in served[index + 1:] if s.sha256 not in above)
        return served[:index] + tuple(sent) + rest, new_path
    if path_twin is not None and not path_twin.self_signed:
        served_fps = {s.sha256 for s in served}
        sent = [path_twin, *(a for a in known.upward(path_twin, prefer=anchors) if not a.self_signed)]
        return served + tuple(x for x in sent if x.sha256 not in served_fps), new_path
    return served, new_path


def _pick_twin(cert: CertIdentity, known: KnownCertificates, anchors: frozenset[str]) -> CertIdentity | None:
    """The other-issuer copy of ``cert``'s key: opposite self-signedness first, then a trusted one."""
    twins = known.twins(cert)
    if not twins:
        return None
    twins.sort(key=lambda t: (t.self_signed == cert.self_signed, t.sha256 not in anchors, t.name))
    return twins[0]


def _served_issuers(cert: CertIdentity, served: Chain, known: KnownCertificates) -> set[str]:
    """SHA-256 of the served certificates that certify ``cert``, transitively (sent only because of it)."""
    by_fp = {s.sha256: s for s in served}
    out: set[str] = set()
    frontier = [cert]
    while frontier:
        current = frontier.pop()
        for issuer in known.issuers_of(current):
            if issuer.sha256 in by_fp and issuer.sha256 not in out and issuer.sha256 != cert.sha256:
                out.add(issuer.sha256)
                frontier.append(by_fp[issuer.sha256])
    return out


def _catalog_chain(known: KnownCertificates, key: str, status: CatalogStatus, label: str,
                   *, hypothetical_intermediate: bool = False) -> tuple[Chain, Chain]:
    roots = [r for r in known.catalog_entries(CatalogRole.ROOT, status) if r.key_type == key]
    if not roots:
        roots = known.catalog_entries(CatalogRole.ROOT, status)
    root = roots[0] if roots else CertIdentity.invented(f"root of the {label}", key_type_=key)
    intermediates = [] if hypothetical_intermediate else [
        i for i in known.catalog_entries(CatalogRole.INTERMEDIATE) if i.issuer == root.subject and root.subject
    ]
    intermediate = intermediates[0] if intermediates else CertIdentity.invented(
        f"issuing CA under {root.name}", issuer=root.subject, key_type_=key)
    leaf = CertIdentity.invented(f"leaf of the {label}", issuer=intermediate.subject, key_type_=key)
    return (leaf, intermediate), (leaf, intermediate, root)


# --- the fleet-wide frames ---------------------------------------------------------------------






def _no_backup(pins: Sequence[Pin], known: KnownCertificates) -> bool:
    keys = set()
    for pin in pins:
        if pin.kind is PinKind.SPKI_SHA256:
            keys.add(pin.digest)
            continue
        hits = [i for i in known.all() if pin.matches(i)]
        keys.add(hits[0].spki_sha256 if hits else f"{pin.kind.value}:{pin.digest}")
    return len(keys) < 2


def pin_risks(run: Any, profiles: Sequence[Profile], coverage: pd.DataFrame, *, as_of: datetime,
              engine: PathEngine | None = None) -> pd.DataFrame:
    """Per profile x pin x scenario: does the pin match today, and does it (or its set) break after the change.

    Only chains the profile validates at ``as_of`` (``valid`` coverage rows)
    count: a chain that does not validate fails before any pin is checked.
    ``matches`` is true when the pin matches a certificate in the profile's
    scope on at least one of those chains; ``breaks`` when, on a chain it
    matched today, it matches nothing after the scenario; ``set_breaks`` when
    some chain that the set matched today is matched by no pin of the set after
    the scenario (the device would refuse AWS).  Breaks are reported even for an
    expired pin set (``enforced`` False) so the owner sees what re-enabling it
    would do; :func:`ranked_risks` does not count them as outages.

    Scenario chains are computed once per distinct (chain, store) and shared by
    every profile that has them; a chain the profile does not meet today (the
    other key type's) is validated by the one path engine, on the profile's stack.

    Args:
        run: The run (:class:`iotaudit.store.Run`).
        profiles: The profiles (:meth:`iotaudit.inventory.Inventory.build_profiles`).
        coverage: :func:`iotaudit.root_coverage.coverage` output for the same run, profiles and ``as_of``.
        as_of: The time the verdicts hold for (tz-aware).
        engine: The path engine to share (a new one when None).

    Returns:
        A frame with the columns of :data:`PIN_RISK_COLUMNS`; profiles without pins have no rows.
    """
    as_of = as_utc(as_of)
    pinned = [p for p in profiles if p.pins]
    if not pinned:
        return c.typed_frame([], PIN_RISK_COLUMNS)
    known = KnownCertificates.from_run(run, profiles)
    index = _Index(run, coverage, known, engine if engine is not None else PathEngine())
    scenario_memo: dict[tuple[Any, ...], tuple[Chain, Chain]] = {}
    rows: list[dict[str, Any]] = []
    for profile in pinned:
        key = profile.key
        devices = profile.devices
        groups = list(profile.groups)
        scope = profile.pin_scope
        expired = profile.pin_expiry is not None and profile.pin_expiry < as_of
        parsed: list[tuple[str, Pin | None, str]] = [(pin.text, pin, "") for pin in profile.pins]
        pins = list(profile.pins)
        anchor_fps = frozenset(profile.store_sha256)
        store_key = index.engine.add(profile.store)
        chains = index.valid_chains(key)
        set_flags: list[str] = []
        if len(pins) < 2 or _no_backup(pins, known):
            set_flags.append(PinFlag.NO_BACKUP.value)
        if expired:
            set_flags.append(PinFlag.PIN_SET_EXPIRED.value)
        if not chains:
            set_flags.append(PinFlag.NO_VALID_CHAIN.value)
        elif not expired and any(not pin_set_matches_chain(pins, scope, s, p) for _, s, p in chains):
            set_flags.append(PinFlag.NO_MATCH_TODAY.value)
        after: dict[Scenario, list[tuple[Chain, Chain]]] = {}
        for scenario in Scenario:
            results = []
            for obs, served, path in chains:
                counterpart = None
                if scenario is Scenario.KEY_TYPE_SWITCH:
                    counterpart = index.counterpart(key, obs, store_key, profile.stack, as_of)
                memo_key = (scenario, tuple(x.sha256 for x in served), tuple(x.sha256 for x in path), store_key,
                            None if counterpart is None else tuple(x.sha256 for part in counterpart for x in part))
                if memo_key not in scenario_memo:
                    scenario_memo[memo_key] = apply_scenario(scenario, served, path, known, anchors=anchor_fps,
                                                             counterpart=counterpart)
                results.append(scenario_memo[memo_key])
            after[scenario] = results
        set_today = [pin_set_matches_chain(pins, scope, s, p) for _, s, p in chains]
        for text, pin, reason in parsed:
            flags = list(set_flags)
            if pin is None:
                flags.append(PinFlag.MALFORMED.value)
            else:
                targets = [i for i in known.all() if pin.matches(i)]
                if not targets:
                    flags.append(PinFlag.UNKNOWN_PIN.value)
                if not pin.key_bound and any(known.under_two_issuers(t) for t in targets):
                    flags.append(PinFlag.WHOLE_CERT_UNDER_TWO_ISSUERS.value)
            today = [pin_matches_chain(pin, scope, s, p) if pin else [] for _, s, p in chains]
            matched = {cert.sha256: cert.name for hits in today for cert in hits}
            for scenario in Scenario:
                new = after[scenario]
                breaks = pin is not None and any(
                    hits and not pin_matches_chain(pin, scope, ns, np) for hits, (ns, np) in zip(today, new, strict=True)
                )
                broken_chains = sum(
                    1 for was, (ns, np) in zip(set_today, new, strict=True)
                    if was and not pin_set_matches_chain(pins, scope, ns, np)
                )
                rows.append({
                    PROFILE: key, DEVICES: devices, GROUPS: groups, PIN: text,
                    PIN_KIND: pin.kind.value if pin else "", PIN_SCOPE: scope.value, SCENARIO: scenario.value,
                    ENFORCED: not expired, MATCHES: bool(matched), MATCHED_SHA256: sorted(matched),
                    MATCHED_NAME: [matched[k] for k in sorted(matched)], BREAKS: bool(breaks),
                    SET_BREAKS: broken_chains > 0, CHAINS: len(chains), CHAINS_BROKEN: broken_chains,
                    FLAGS: flags, REASON: reason,
                })
    return c.typed_frame(rows, PIN_RISK_COLUMNS)


class _Index:
    """The run's observations and the coverage frame as dictionaries, built once per :func:`pin_risks` call."""

    def __init__(self, run: Any, coverage: pd.DataFrame | None, known: KnownCertificates, engine: PathEngine) -> None:
        self.run = run
        self.known = known
        self.engine = engine
        obs = run.observations
        ok = obs[c.STATUS].astype(str).isin(c.CHAIN_STATUSES)
        self.chain: dict[int, Chain] = {}
        self.host: dict[int, str] = {}
        self.endpoint: dict[int, tuple[str, int]] = {}
        self.by_endpoint: dict[tuple[str, int], list[int]] = {}
        for obs_id, host, port, chain, has_chain in zip(obs[c.OBSERVATION_ID], obs[c.HOST], obs[c.PORT],
                                                        obs[c.CHAIN_SHA256], ok, strict=True):
            obs_id = int(obs_id)
            self.chain[obs_id] = tuple(known.require(fp) for fp in as_list(chain))
            self.host[obs_id] = str(host)
            self.endpoint[obs_id] = (str(host), int(port))
            if has_chain and self.chain[obs_id]:
                self.by_endpoint.setdefault((str(host), int(port)), []).append(obs_id)
        self.valid: dict[str, list[tuple[int, Chain, Chain]]] = {}
        self.path: dict[tuple[str, int], Chain] = {}
        if coverage is not None and not coverage.empty:
            for profile, obs_id, valid, path in zip(coverage[PROFILE].astype(str), coverage[c.OBSERVATION_ID],
                                                    coverage[c.VALID].astype(bool), coverage[PATH_SHA256],
                                                    strict=True):
                obs_id = int(obs_id)
                if obs_id not in self.chain:
                    continue  # e.g. the "not-applicable" row (observation_id -1)
                chain_path = tuple(known.require(fp) for fp in as_list(path)) if valid else ()
                self.path[(profile, obs_id)] = chain_path
                if valid:
                    self.valid.setdefault(profile, []).append((obs_id, self.chain[obs_id], chain_path))
        self._counterparts: dict[tuple[Any, ...], tuple[Chain, Chain] | None] = {}

    def valid_chains(self, profile: str) -> list[tuple[int, Chain, Chain]]:
        """(observation_id, served, validated path) of every chain the profile validates today."""
        return self.valid.get(profile, [])

    def counterpart(self, profile: str, obs_id: int, store: tuple[str, ...], stack: Stack,
                    as_of: datetime) -> tuple[Chain, Chain] | None:
        """The other key type's chain from the same endpoint, with this store's path through it (memoised)."""
        memo_key = (obs_id, store, stack.id)
        if memo_key in self._counterparts:
            return self._counterparts[memo_key]
        result = None
        served_now = self.chain.get(obs_id, ())
        if served_now:
            for other in self.by_endpoint.get(self.endpoint[obs_id], []):
                served = self.chain[other]
                if served[0].key_type == served_now[0].key_type:
                    continue
                if (profile, other) in self.path:
                    result = (served, self.path[(profile, other)])
                else:
                    result = (served, self._validate_path(served, store, self.host[other], stack, as_of))
                break
        self._counterparts[memo_key] = result
        return result

    def _validate_path(self, served: Chain, store: tuple[str, ...], host: str, stack: Stack, as_of: datetime) -> Chain:
        """The path the profile's stack validates for a chain it does not meet today (e.g. the other key type)."""
        certs = [s.certificate for s in served]
        if not certs or any(cert is None for cert in certs) or not store:
            return ()
        verdict = self.engine.validate(self.engine.add(certs), store, stack=stack, host=host, as_of=as_of)
        if not verdict.valid:
            return ()
        return tuple(self.known.require(fp) for fp in verdict.path_sha256)


_RISK_TEXT = {
    Scenario.LEAF_REKEY.value: "no pin survives AWS re-keying the leaf certificate",
    Scenario.INTERMEDIATE_CHANGE.value: "no pin survives AWS changing the issuing CA",
    Scenario.ISSUER_CHANGE.value: "no pin survives the root key appearing under its other issuer (cross-sign)",
    Scenario.KEY_TYPE_SWITCH.value: "no pin matches the other key type's chain",
    Scenario.RESERVED_ROOTS.value: "no pin matches a chain to the reserved Amazon Root CA 2/4",
    PinFlag.NO_MATCH_TODAY.value: "the pin set rejects a chain AWS serves today",
    PinFlag.NO_BACKUP.value: "the pin set has no backup key",
    PinFlag.WHOLE_CERT_UNDER_TWO_ISSUERS.value: "a whole-certificate pin on a key that exists under two issuers",
    PinFlag.MALFORMED.value: "a pin cannot be parsed",
    PinFlag.PIN_SET_EXPIRED.value: "the pin set expired: pinning is silently off",
}


def ranked_risks(pin_risks: pd.DataFrame) -> pd.DataFrame:
    """One row per profile x risk, ranked by devices x :data:`SEVERITY`, ready for a report.

    Risks: each scenario under which an *enforced* pin set breaks (``set_breaks``),
    and each set- or pin-level flag in :data:`SEVERITY`.  Ties are broken by
    severity, then profile name.

    Args:
        pin_risks: :func:`pin_risks` output.

    Returns:
        A frame with the columns of :data:`RANKED_RISK_COLUMNS`, rank 1 first.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}

    def note(row: Mapping[str, Any], risk: str, pins: Iterable[str]) -> None:
        entry = found.setdefault((str(row[PROFILE]), risk), {
            PROFILE: str(row[PROFILE]), DEVICES: int(row[DEVICES]), GROUPS: list(as_list(row.get(GROUPS))),
            RISK: risk, SEVERITY_COL: SEVERITY[risk], PINS: [],
        })
        for pin in pins:
            if pin not in entry[PINS]:
                entry[PINS].append(pin)

    for row in pin_risks.to_dict("records"):
        flags = as_list(row[FLAGS])
        if row[SET_BREAKS] and row[ENFORCED]:
            note(row, str(row[SCENARIO]), [row[PIN]])
        for flag in flags:
            if flag in SEVERITY:
                note(row, flag, [row[PIN]])  # pin-level flags name their pin, set-level ones every pin of the set
    rows = []
    for entry in found.values():
        entry[SCORE] = entry[DEVICES] * entry[SEVERITY_COL]
        pins = ", ".join(entry[PINS])
        entry[DETAIL] = f"{entry[PROFILE]} ({entry[DEVICES]} devices): {_RISK_TEXT[entry[RISK]]}" + (
            f" [{pins}]" if pins else "")
        rows.append(entry)
    rows.sort(key=lambda r: (-r[SCORE], -r[SEVERITY_COL], r[PROFILE], r[RISK]))
    for rank, entry in enumerate(rows, start=1):
        entry[RANK] = rank
    return c.typed_frame(rows, RANKED_RISK_COLUMNS)
