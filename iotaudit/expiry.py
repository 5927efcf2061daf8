"""Expiry timelines: served-certificate expiry, per-profile break dates, the firmware-side date, anchor expiry, the cliff.

Three kinds of date are kept apart, because they answer different questions
and alerting on the wrong one is the classic failure of expiry monitors
(Prometheus blackbox_exporter issues 340, 589 and 637 alert on cross-signs
no client validates through):

1. **Served-certificate expiry** (:func:`certificate_expiry`): when each
   certificate an endpoint serves, or a validated path goes through, expires.
2. **Break dates** (:func:`break_dates`, :func:`chain_break_dates`): when a
   firmware profile stops validating what it meets.  Found by asking the one
   path engine (:class:`iotaudit.paths.PathEngine`), with the profile's TLS
   stack, at every instant where the answer can change, never by taking the
   minimum ``not_after`` of the served chain: a trusted-first stack survives an
   expiring cross-sign through the self-signed root, a store's anchor may
   expire before anything the server sends, and whether an expired anchor
   matters at all is the stack's rule (:class:`iotaudit.stacks.AnchorExpiry`:
   mbed TLS and OpenSSL check it, the ESP-IDF bundle and Android do not).
3. **Anchor expiry** (:func:`anchor_expiry`): when each certificate inside
   each firmware trust store expires (the AWS document: "CA certificates have
   an expiration date after which they cannot be used to validate a server's
   certificate").

Two dates per profile:

**Firmware side — "update the firmware by"** (``firmware_break_date`` and its
cause; :func:`firmware_break`).  The first instant at which nothing AWS could
serve validates with this profile's store, stack and pins.  "What AWS could
serve" is every chain under the catalogue's roots (in use, reserved, legacy)
and cross-sign relations, built in a shadow PKI
(:meth:`iotaudit.hypothetical.HypotheticalPki.firmware_chains`) with every
*served* certificate renewed: AWS renews leaves, issuing CAs and cross-signs,
so neither AWS's leaf nor its intermediate ends this date (a profile trusting
Amazon Root CA 1 is not tied to the 2030 expiry of M01).  What ends it is
what the firmware holds: an anchor or a stored cross-sign expiring on a stack
that checks anchor dates, or a pin set that no longer matches anything AWS
could serve.  ``firmware_break_cause_kind`` says which (:class:`FirmwareCause`),
``firmware_break_cause_name`` names it as every page does
(:func:`iotaudit.paths.anchor_label`).

**As served — "if nothing changes"** (``break_date``, ``dark_date``,
``state``; :func:`chain_break`).  The chain exactly as served, leaf included,
is re-validated with the endpoint's host name.  Every such chain breaks at the
latest when its leaf expires (about a year out for AWS leaves): true if AWS
stopped renewing, and an upper bound on how long a capture stays valid.

* ``break_date``: the first instant after ``as_of`` at which some chain the
  profile validates at ``as_of`` (as served) has no valid path.  AWS, not the
  device, picks which chain a handshake gets (by the negotiated suite);
* ``dark_date``: the first instant at which *every* chain the profile meets
  has no valid path.

Both are exact to the second: validity is piecewise constant in time and can
change only where a certificate enters (``not_before``) or leaves
(``not_after`` + 1 s; RFC 5280 section 4.1.2.5: the validity period includes
``not_after``) its validity period, so the engine is asked at ``as_of`` and at
each of those instants in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pandas as pd
from cryptography import x509

from . import columns as c
from .catalog import Catalog, CatalogRole
from .certs import cert_sha1, cert_sha256, certificate_record, common_name, key_type, spki_sha256
from .columns import (
    ANCHOR_EXPIRY_COLUMNS,
    ANCHOR_NAME,
    ANCHOR_SHA256,
    BREAK_CAUSE_NAME,
    BREAK_CAUSE_SHA256,
    BREAK_DATE,
    BREAK_DATE_COLUMNS,
    BREAK_REASON,
    CERTIFICATE_EXPIRY_COLUMNS,
    CHAIN_BREAK_COLUMNS,
    CHAINS,
    CHAINS_VALID,
    CLIFF_COLUMNS,
    DARK_DATE,
    DATE,
    DAYS_LEFT,
    DEVICES,
    DEVICES_BREAKING,
    DEVICES_CONNECTED,
    DEVICES_CONNECTED_FIRMWARE,
    DEVICES_INTACT,
    DEVICES_LOSING,
    DEVICES_LOSING_FIRMWARE,
    EXPIRED,
    FIRMWARE_BREAK_CAUSE,
    FIRMWARE_BREAK_CAUSE_KIND,
    FIRMWARE_BREAK_CAUSE_NAME,
    FIRMWARE_BREAK_CAUSE_SHA256,
    FIRMWARE_BREAK_DATE,
    FIRST_BREAK_HOST,
    FIRST_BREAK_PROBE,
    GROUPS,
    HOSTS,
    IN_USE,
    LAST_PATH_SHA256,
    ON_VALID_PATH,
    PATH_SHA256,
    PROFILE,
    PROFILES,
    PROFILES_FIRMWARE,
    ROLE,
    SERVED,
    STATE,
    TLS_STACK,
    VALID_AT_AS_OF,
    BreakState,
    CertRole,
    FirmwareCause,
    as_list,
    as_utc,
)
from .hypothetical import FIRMWARE_HOST, HypotheticalPki
from .paths import PathEngine, anchor_label
from .pins import Pin
from .profiles import Profile, chain_observations, meets
from .stacks import DEFAULT_STACK_ID, AnchorExpiry, Stack, get_stack

__all__ = [
    "ANCHOR_EXPIRY_COLUMNS",
    "BREAK_DATE_COLUMNS",
    "CERTIFICATE_EXPIRY_COLUMNS",
    "CHAIN_BREAK_COLUMNS",
    "CLIFF_COLUMNS",
    "DEFAULT_HORIZON_YEARS",
    "BreakState",
    "CertRole",
    "ChainBreak",
    "FirmwareBreak",
    "FirmwareCause",
    "anchor_expiry",
    "break_dates",
    "certificate_expiry",
    "chain_break",
    "chain_break_dates",
    "cliff",
    "firmware_break",
    "horizon_end",
]

DEFAULT_HORIZON_YEARS = 15
ONE_SECOND = timedelta(seconds=1)


def horizon_end(as_of: datetime, horizon_years: int = DEFAULT_HORIZON_YEARS) -> datetime:
    """``as_of`` plus ``horizon_years`` calendar years (29 February -> 28 February)."""
    as_of = as_utc(as_of)
    if horizon_years < 0:
        raise ValueError(f"horizon_years must be >= 0, got {horizon_years}")
    return (pd.Timestamp(as_of) + pd.DateOffset(years=int(horizon_years))).to_pydatetime()


def _days_left(not_after: datetime, as_of: datetime) -> int:
    return int((not_after - as_of) // timedelta(days=1))


def _catalog(run: Any) -> Catalog | None:
    try:
        return run.catalog_object()
    except Exception:  # noqa: BLE001 - a run without a usable catalogue still has expiry dates
        return None


def _label(cert: x509.Certificate, catalog: Catalog | None) -> str:
    """The one name of a certificate (:func:`iotaudit.paths.anchor_label`); its CN without a catalogue."""
    if catalog is None:
        return common_name(cert.subject)
    return anchor_label(cert_sha256(cert), catalog, {cert_sha256(cert): cert})


# --- one chain -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """When one served chain stops validating against one store on one stack.

    Attributes:
        valid_at_as_of: The chain validates at ``as_of``.
        break_date: First instant after ``as_of`` (and not after the horizon end) with
            no valid path; None when invalid at ``as_of`` or valid through the horizon.
        path_sha256: Validated path at ``as_of`` (leaf first); () if invalid then.
        last_path_sha256: The last valid path before ``break_date`` (or at the horizon end).
        cause_sha256: Certificates of ``last_path_sha256`` whose validity ends at ``break_date``.
        reason: The engine's reason at ``break_date`` (or at ``as_of`` when invalid then).
        evaluated: How many times the engine was asked.
    """

    valid_at_as_of: bool
    break_date: datetime | None
    path_sha256: tuple[str, ...] = ()
    last_path_sha256: tuple[str, ...] = ()
    cause_sha256: tuple[str, ...] = ()
    reason: str = ""
    evaluated: int = 0

    def __post_init__(self) -> None:
        if self.break_date is not None and not self.valid_at_as_of:
            raise ValueError("a chain that is invalid at as_of has no break date")
        if self.valid_at_as_of and not self.path_sha256:
            raise ValueError("a chain valid at as_of has a path")
        if self.break_date is not None and self.break_date.tzinfo is None:
            raise ValueError("break_date must be timezone-aware")


def _gone(cert: x509.Certificate, stack: Stack) -> datetime:
    """The first instant ``stack`` counts ``cert`` as expired: ``not_after`` + 1 s (RFC 5280 4.1.2.5: the
    validity period includes ``not_after``), or ``not_after`` itself where the library counts that second
    as past (OpenSSL's X509_cmp_time; :attr:`iotaudit.stacks.Stack.not_after_inclusive`)."""
    return cert.not_valid_after_utc + (ONE_SECOND if stack.not_after_inclusive else timedelta(0))


def _candidates(certs: Iterable[x509.Certificate], start: datetime, stop: datetime, stack: Stack) -> list[datetime]:
    """Instants in (start, stop] where some certificate enters or leaves its validity period on ``stack``."""
    times = set()
    for cert in certs:
        for t in (cert.not_valid_before_utc, _gone(cert, stack)):
            if start < t <= stop:
                times.add(t)
    return sorted(times)


def chain_break(
    served: Sequence[x509.Certificate],
    store: Sequence[x509.Certificate],
    *,
    host: str | None,
    as_of: datetime,
    stack: Stack | str = DEFAULT_STACK_ID,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    engine: PathEngine | None = None,
) -> ChainBreak:
    """Find the first instant after ``as_of`` at which ``served`` has no valid path to ``store`` on ``stack``.

    The engine runs at ``as_of`` and then, in time order, at every
    ``not_before`` and ``not_after + 1 s`` of the served certificates and the
    store inside the horizon, stopping at the first failure.  Times after the
    leaf's ``not_after + 1 s`` are never needed: an expired leaf fails every path.

    Args:
        served: The chain as served (leaf first).
        store: The trust store, in store order.
        stack: The device's TLS stack (whose anchor-expiry rule decides whether an expiring anchor matters).
        host: Name validated against the leaf, or None.
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look.
        engine: The path engine to ask (memoised; a new one when None).

    Returns:
        A :class:`ChainBreak`.
    """
    as_of = as_utc(as_of)
    stack = get_stack(stack)
    engine = engine if engine is not None else PathEngine()
    chain, anchors = engine.add(served), engine.add(store)
    end = horizon_end(as_of, horizon_years)
    first = engine.validate(chain, anchors, stack=stack, host=host, as_of=as_of)
    if not first.valid:
        return ChainBreak(False, None, reason=first.reason, evaluated=1)
    stop = min(end, _gone(served[0], stack))
    by_fp = {cert_sha256(x): x for x in [*served, *store]}
    last = first
    evaluated = 1
    for t in _candidates(by_fp.values(), as_of, stop, stack):
        verdict = engine.validate(chain, anchors, stack=stack, host=host, as_of=t)
        evaluated += 1
        if not verdict.valid:
            cause = tuple(
                fp for fp in last.path_sha256
                if fp in by_fp and _gone(by_fp[fp], stack) == t
            ) or tuple(fp for fp, x in by_fp.items() if _gone(x, stack) == t)
            return ChainBreak(True, t, first.path_sha256, last.path_sha256, cause, verdict.reason, evaluated)
        last = verdict
    return ChainBreak(True, None, first.path_sha256, last.path_sha256, (), "", evaluated)


# --- the firmware side ----------------------------------------------------------------------


class _Identity(NamedTuple):
    """The digests a pin compares with (:class:`iotaudit.pins.Pin.matches`)."""

    sha256: str
    sha1: str
    spki_sha256: str


def _identity(cert: x509.Certificate) -> _Identity:
    return _Identity(cert_sha256(cert), cert_sha1(cert), spki_sha256(cert))


@dataclass(frozen=True, slots=True)
class FirmwareBreak:
    """The firmware-side date of one profile and what ends it (module docstring).

    Attributes:
        date: First instant at which nothing AWS could serve validates with the
            profile's store, stack and pins (``as_of`` when already so); None when
            not within the horizon.
        kind: What ends it (:class:`iotaudit.columns.FirmwareCause`).
        name: The anchor / cross-sign (as :func:`iotaudit.paths.anchor_label` names it) or the pins.
        sha256: The store certificate(s) whose expiry ends it, ";"-joined ("" for pins or none).
        cause: Plain words: what ends it, naming the stack's rule.
        evaluated: How many times the engine was asked.
    """

    date: datetime | None
    kind: FirmwareCause
    name: str = ""
    sha256: str = ""
    cause: str = ""
    evaluated: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FirmwareCause(self.kind))
        if (self.date is None) != (self.kind is FirmwareCause.NONE):
            raise ValueError("a FirmwareBreak has a date exactly when something ends it")
        if self.date is not None and self.date.tzinfo is None:
            raise ValueError("FirmwareBreak.date must be timezone-aware")


class _PinTargets:
    """When each pin of a profile can still match something AWS could serve.

    A pin on a catalogue root or cross-signed key (SPKI) matches a renewed copy
    for ever; a whole-certificate pin matches a served certificate only until
    that certificate expires (AWS then serves a renewed one, other DER) but the
    device's own stored copy always; a pin on an issuing CA or a leaf (SPKI or
    DER) matches only until that certificate expires (AWS re-keys on renewal).
    """

    def __init__(self, pins: Sequence[Pin], catalog: Catalog, served: Iterable[x509.Certificate]) -> None:
        self.pins = tuple(pins)
        self.catalog = catalog
        self._lower: list[tuple[Pin, x509.Certificate]] = []   # (pin, the intermediate or leaf it matches)
        seen = set()
        lower = [e.certificate for e in catalog.entries if e.role is CatalogRole.INTERMEDIATE]
        for cert in [*lower, *served]:
            fp = cert_sha256(cert)
            if fp in seen or catalog.by_sha256(fp) is not None and catalog.by_sha256(fp).role is not CatalogRole.INTERMEDIATE:
                continue
            seen.add(fp)
            ident = _identity(cert)
            for pin in self.pins:
                if pin.matches(ident):
                    self._lower.append((pin, cert))

    def instants(self, stack: Stack) -> list[datetime]:
        """Instants at which a pin may stop matching (when ``stack`` counts what it matches as expired)."""
        times = {_gone(cert, stack) for _, cert in self._lower}
        for e in self.catalog.entries:
            if e.role is not CatalogRole.INTERMEDIATE:
                times.add(_gone(e.certificate, stack))
        return sorted(times)

    def matches(self, names: Sequence[str], anchor: str, t: datetime, stack: Stack) -> bool:
        """Whether some pin matches a certificate of a renewed chain through catalogue ``names`` (anchor last) at ``t``."""
        if any(t < _gone(cert, stack) for _, cert in self._lower):
            return True
        for name in names:
            entry = self.catalog.entry(name)
            ident = _identity(entry.certificate)
            for pin in self.pins:
                if pin.key_bound and pin.matches(ident):
                    return True
                if not pin.key_bound and pin.matches(ident) and (name == anchor or t < _gone(entry.certificate, stack)):
                    return True
        return False


def _anchor_rule(stack: Stack) -> str:
    if stack.anchor_expiry is AnchorExpiry.IGNORED:
        return f"{stack.library} ignores anchor dates"
    if stack.anchor_expiry is AnchorExpiry.AT_LOAD:
        return f"{stack.library} refuses an expired anchor when it loads the store"
    return f"{stack.library} rejects an expired anchor"


def firmware_break(
    profile: Profile,
    hypothetical: HypotheticalPki,
    *,
    as_of: datetime,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    engine: PathEngine | None = None,
    served: Iterable[x509.Certificate] = (),
) -> FirmwareBreak:
    """The firmware-side date of ``profile``: when nothing AWS could serve validates any more (module docstring).

    Args:
        profile: The profile (store, stack, key types, pins).
        hypothetical: The shadow PKI of the run's catalogue (:class:`iotaudit.hypothetical.HypotheticalPki`),
            whose renewed validity must cover the horizon.
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look.
        engine: The path engine to ask (memoised; a new one when None).
        served: Certificates AWS serves today (the run's), for pins on issuing CAs and leaves.

    Returns:
        A :class:`FirmwareBreak`.
    """
    as_of = as_utc(as_of)
    engine = engine if engine is not None else PathEngine()
    catalog = hypothetical.catalog
    stack = profile.stack
    end = horizon_end(as_of, horizon_years)
    shadow_of: dict[str, str] = {}          # shadow SHA-256 -> the real store certificate's SHA-256
    shadow_store: list[x509.Certificate] = []
    for cert in profile.store:
        for shadow in hypothetical.map_store([cert]):
            shadow_of.setdefault(cert_sha256(shadow), cert_sha256(cert))
            shadow_store.append(shadow)
    store = engine.add(shadow_store)
    chains = [(label.split(" <- "), engine.add(chain))
              for kind in profile.key_types for label, chain in hypothetical.firmware_chains(kind)]
    pins = _PinTargets(profile.pins, catalog, served) if profile.pins else None
    evaluated = 0

    def alive(t: datetime, *, first: bool = False) -> tuple[list[str], list[str], str]:
        """(anchors of valid chains, anchors of valid chains the pins accept, first reason) at ``t``.

        With ``first``, stops at the first chain that validates and that the pins accept
        (enough to know the firmware still connects; the full lists are needed only to name a cause).
        """
        nonlocal evaluated
        anchors, pinned, reason = [], [], ""
        for names, chain in chains:
            verdict = engine.validate(chain, store, stack=stack, host=FIRMWARE_HOST, as_of=t, explain=not first)
            evaluated += 1
            if not verdict.valid:
                reason = reason or verdict.reason
                continue
            anchor_name = hypothetical.source.get(verdict.anchor_sha256, "")
            anchors.append(verdict.anchor_sha256)
            through = [n for n in names if n != anchor_name] + ([anchor_name] if anchor_name else [])
            if pins is None or not profile.pins_enforced(t) or pins.matches(through, anchor_name, t, stack):
                pinned.append(verdict.anchor_sha256)
                if first:
                    break
        return anchors, pinned, reason

    if not store:
        return FirmwareBreak(as_of, FirmwareCause.NO_CHAIN, cause=(
            "the trust store holds no catalogue root or cross-sign: nothing AWS could serve validates"))
    anchors, pinned, reason = alive(as_of, first=True)
    if not anchors:
        return FirmwareBreak(as_of, FirmwareCause.NO_CHAIN, cause=(
            f"nothing AWS could serve validates with this store on {stack.id}: {reason}"), evaluated=evaluated)
    if not pinned:
        return FirmwareBreak(as_of, FirmwareCause.PIN, name="; ".join(p.text for p in profile.pins),
                             cause="no pin of the set matches anything AWS could serve", evaluated=evaluated)
    times = set(_candidates(shadow_store, as_of, end, stack))
    if pins is not None:
        times |= {t for t in pins.instants(stack) if as_of < t <= end}
    previous = as_of
    for t in sorted(times):
        now, now_pinned, reason = alive(t, first=True)
        if now and now_pinned:
            previous = t
            continue
        anchors, pinned, _ = alive(previous)   # the full set before the break, to name what ended it
        now, now_pinned, reason = alive(t)
        if not now:
            gone = [a for a in dict.fromkeys(anchors)
                    if _gone(engine.certificates[a], stack) == t] or list(dict.fromkeys(anchors))
            real = [shadow_of.get(a, a) for a in gone]
            names = [anchor_label(r, catalog, {cert_sha256(x): x for x in profile.store}) for r in real]
            entries = [catalog.by_sha256(r) for r in real]
            kind = FirmwareCause.CROSS_SIGN if any(e is not None and e.role is CatalogRole.CROSS_SIGNED
                                                   for e in entries) else FirmwareCause.ANCHOR
            what = "cross-signed certificate" if kind is FirmwareCause.CROSS_SIGN else "anchor"
            return FirmwareBreak(t, kind, "; ".join(names), ";".join(real), (
                f"the {what} {' and '.join(names)} in the store expires on "
                f"{engine.certificates[gone[0]].not_valid_after_utc:%Y-%m-%d} "
                f"and {_anchor_rule(stack)}; nothing else AWS could serve validates ({reason})"), evaluated)
        if not now_pinned:
            return FirmwareBreak(t, FirmwareCause.PIN, "; ".join(p.text for p in profile.pins), "", (
                f"from {t:%Y-%m-%d} no pin of the set matches anything AWS could serve "
                "(what it pins expires and AWS serves a renewed certificate)"), evaluated)
    return FirmwareBreak(None, FirmwareCause.NONE, evaluated=evaluated)


# --- which chains each profile meets -------------------------------------------------------


def _met_pairs(run: Any, profiles: Sequence[Profile], coverage: pd.DataFrame | None) -> pd.DataFrame:
    """(profile, observation_id) pairs: from ``coverage`` when given, else from :func:`iotaudit.profiles.meets`."""
    if coverage is not None:
        return coverage[[PROFILE, c.OBSERVATION_ID]].astype({PROFILE: "string"})
    obs = chain_observations(run)
    pairs = []
    for profile in profiles:
        for obs_id in obs.loc[meets(profile, obs), c.OBSERVATION_ID]:
            pairs.append({PROFILE: profile.key, c.OBSERVATION_ID: int(obs_id)})
    return pd.DataFrame(pairs, columns=[PROFILE, c.OBSERVATION_ID])


# --- per profile x chain and per profile --------------------------------------------------------


def chain_break_dates(
    run: Any,
    profiles: Sequence[Profile],
    *,
    as_of: datetime,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    coverage: pd.DataFrame | None = None,
    engine: PathEngine | None = None,
) -> pd.DataFrame:
    """Break dates of every chain each profile may meet, as served ("if nothing changes").

    Each distinct (served chain, store, host, stack) is evaluated once, however
    many profiles and devices share it (the engine's memo).

    Args:
        run: The run.
        profiles: The profiles (:meth:`iotaudit.inventory.Inventory.build_profiles`).
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look.
        coverage: :func:`iotaudit.root_coverage.coverage` output, to reuse its
            profile x observation pairs; computed when None.
        engine: The path engine to share (a new one when None).

    Returns:
        One row per profile x observation, columns :data:`CHAIN_BREAK_COLUMNS`.
    """
    as_of = as_utc(as_of)
    engine = engine if engine is not None else PathEngine()
    pairs = _met_pairs(run, profiles, coverage)
    catalog = _catalog(run)
    certs = run.certificate_objects()
    by_key = {p.key: p for p in profiles}
    names: dict[str, str] = {}
    for cert in [*certs.values(), *(a for p in profiles for a in p.store)]:
        names.setdefault(cert_sha256(cert), _label(cert, catalog))
    memo: dict[tuple[Any, ...], ChainBreak] = {}
    observations = {
        int(o[c.OBSERVATION_ID]): (str(o[c.HOST]), int(o[c.PORT]), str(o[c.PROBE]), tuple(as_list(o[c.CHAIN_SHA256])))
        for o in run.observations[[c.OBSERVATION_ID, c.HOST, c.PORT, c.PROBE, c.CHAIN_SHA256]].to_dict("records")
    }
    rows = []
    for key, obs_id in zip(pairs[PROFILE].astype(str), pairs[c.OBSERVATION_ID], strict=True):
        obs_id = int(obs_id)
        if key not in by_key or obs_id not in observations:
            continue  # e.g. coverage's "not-applicable" row (observation_id -1)
        profile = by_key[key]
        host, port, probe, chain_fps = observations[obs_id]
        if not chain_fps:
            continue
        served = [certs[fp] for fp in chain_fps if fp in certs]
        memo_key = (chain_fps, profile.store_sha256, host, profile.stack.id)
        result = memo.get(memo_key)
        if result is None:
            result = memo[memo_key] = chain_break(served, profile.store, stack=profile.stack, host=host, as_of=as_of,
                                                  horizon_years=horizon_years, engine=engine)
        rows.append({
            PROFILE: key, DEVICES: profile.devices, TLS_STACK: profile.stack.id, c.OBSERVATION_ID: obs_id,
            c.HOST: host, c.PORT: port, c.PROBE: probe,
            c.KEY_TYPE: key_type(served[0]) if served else "", VALID_AT_AS_OF: result.valid_at_as_of,
            BREAK_DATE: result.break_date, PATH_SHA256: list(result.path_sha256),
            LAST_PATH_SHA256: list(result.last_path_sha256), BREAK_CAUSE_SHA256: ";".join(result.cause_sha256),
            BREAK_CAUSE_NAME: ";".join(names.get(fp, fp[:16]) for fp in result.cause_sha256),
            BREAK_REASON: result.reason,
        })
    return c.typed_frame(rows, CHAIN_BREAK_COLUMNS)


def _profile_breaks(
    valid: list[dict[str, Any]], invalid: list[dict[str, Any]],
) -> tuple[BreakState, dict[str, Any] | None, Any]:
    """(state, first chain to break, dark date) of one profile from its chains' break dates."""
    breaking = sorted((r for r in valid if not pd.isna(r[BREAK_DATE])),
                      key=lambda r: (r[BREAK_DATE], str(r[c.HOST]), str(r[c.PROBE])))
    if not valid:
        return BreakState.BROKEN, None, None
    state = BreakState.PARTLY_BROKEN if invalid else (BreakState.BREAKS if breaking else BreakState.OK)
    dark = max(r[BREAK_DATE] for r in breaking) if len(breaking) == len(valid) else None  # last path gone
    return state, (breaking[0] if breaking else None), dark


def break_dates(
    run: Any,
    profiles: Sequence[Profile],
    *,
    as_of: datetime,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    coverage: pd.DataFrame | None = None,
    chain_breaks: pd.DataFrame | None = None,
    hypothetical: HypotheticalPki | None = None,
    engine: PathEngine | None = None,
) -> pd.DataFrame:
    """Per profile: ``firmware_break_date`` and its cause, then ``state``, ``break_date``, ``dark_date`` as served.

    Args:
        run: The run.
        profiles: The profiles.
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look (default 15).
        coverage: Optional coverage frame whose profile x observation pairs to use.
        chain_breaks: Optional :func:`chain_break_dates` output to aggregate instead of recomputing.
        hypothetical: The shadow PKI of the run's catalogue (built when None; its renewed
            certificates must outlast the horizon).
        engine: The path engine to share (a new one when None).

    Returns:
        One row per profile, columns :data:`BREAK_DATE_COLUMNS`, sorted by firmware-side date, then break date.
    """
    as_of = as_utc(as_of)
    engine = engine if engine is not None else PathEngine()
    if chain_breaks is None:
        chain_breaks = chain_break_dates(run, profiles, as_of=as_of, horizon_years=horizon_years,
                                         coverage=coverage, engine=engine)
    end = horizon_end(as_of, horizon_years)
    if hypothetical is None:
        hypothetical = HypotheticalPki(run.catalog_object(), as_of, until=end + timedelta(days=2))
    served = list(run.certificate_objects().values())
    per_profile: dict[str, list[dict[str, Any]]] = {}
    for record in chain_breaks.to_dict("records"):
        per_profile.setdefault(str(record[PROFILE]), []).append(record)
    firmware_memo: dict[tuple[Any, ...], FirmwareBreak] = {}
    rows = []
    for profile in profiles:
        fw_key = (profile.store_sha256, profile.stack.id, profile.key_types, profile.pins, profile.pin_expiry)
        fw = firmware_memo.get(fw_key)
        if fw is None:
            fw = firmware_memo[fw_key] = firmware_break(profile, hypothetical, as_of=as_of, horizon_years=horizon_years,
                                                        engine=engine, served=served)
        base = {PROFILE: profile.key, DEVICES: profile.devices, GROUPS: list(profile.groups),
                TLS_STACK: profile.stack.id, FIRMWARE_BREAK_DATE: fw.date, FIRMWARE_BREAK_CAUSE_KIND: fw.kind.value,
                FIRMWARE_BREAK_CAUSE_NAME: fw.name, FIRMWARE_BREAK_CAUSE_SHA256: fw.sha256,
                FIRMWARE_BREAK_CAUSE: fw.cause}
        mine = per_profile.get(profile.key, [])
        if not mine:
            rows.append({**base, STATE: BreakState.NO_CHAINS.value, CHAINS: 0, CHAINS_VALID: 0})
            continue
        valid = [r for r in mine if r[VALID_AT_AS_OF]]
        invalid = [r for r in mine if not r[VALID_AT_AS_OF]]
        state, first, dark = _profile_breaks(valid, invalid)
        reason = str(first[BREAK_REASON]) if first else (str(invalid[0][BREAK_REASON]) if invalid else "")
        rows.append({
            **base, STATE: state.value, CHAINS: len(mine), CHAINS_VALID: len(valid),
            BREAK_DATE: first[BREAK_DATE] if first else None, DARK_DATE: dark,
            FIRST_BREAK_HOST: str(first[c.HOST]) if first else "",
            FIRST_BREAK_PROBE: str(first[c.PROBE]) if first else "",
            LAST_PATH_SHA256: list(first[LAST_PATH_SHA256]) if first else [],
            BREAK_CAUSE_SHA256: str(first[BREAK_CAUSE_SHA256]) if first else "",
            BREAK_CAUSE_NAME: str(first[BREAK_CAUSE_NAME]) if first else "",
            BREAK_REASON: reason,
        })
    frame = c.typed_frame(rows, BREAK_DATE_COLUMNS)
    for col in (FIRST_BREAK_HOST, FIRST_BREAK_PROBE, BREAK_CAUSE_SHA256, BREAK_CAUSE_NAME, BREAK_REASON,
                FIRMWARE_BREAK_CAUSE_NAME, FIRMWARE_BREAK_CAUSE_SHA256, FIRMWARE_BREAK_CAUSE):
        frame[col] = frame[col].fillna("")
    frame[LAST_PATH_SHA256] = [v if isinstance(v, list) else [] for v in frame[LAST_PATH_SHA256]]
    return frame.sort_values([FIRMWARE_BREAK_DATE, BREAK_DATE, PROFILE], na_position="last",
                             kind="stable").reset_index(drop=True)


# --- served certificates ------------------------------------------------------------------------


def _role(record: Mapping[str, Any], root_keys: set[str], catalog: Catalog | None) -> CertRole:
    if record[c.SELF_SIGNED]:
        return CertRole.ROOT
    if not record[c.IS_CA]:
        return CertRole.LEAF
    if record[c.SPKI_SHA256] in root_keys:
        return CertRole.CROSS_SIGNED_ROOT
    if catalog is not None:
        entry = catalog.by_sha256(str(record[c.SHA256]))
        if entry is not None and entry.role is CatalogRole.CROSS_SIGNED:
            return CertRole.CROSS_SIGNED_ROOT
    return CertRole.INTERMEDIATE


def certificate_expiry(
    run: Any,
    coverage: pd.DataFrame | None,
    *,
    as_of: datetime,
    profiles: Sequence[Profile] = (),
) -> pd.DataFrame:
    """Every certificate met: served by an endpoint of the run or on a validated path, with days left.

    Args:
        run: The run.
        coverage: :func:`iotaudit.root_coverage.coverage` output (``valid``, ``path_sha256``,
            ``devices``, ``profile``, ``observation_id``); None: only the run's served
            certificates, with ``on_valid_path`` False.
        as_of: When days are counted from (tz-aware).
        profiles: The profiles, so anchors from PEM bundles (not in the run or its
            catalogue) get rows too.

    Returns:
        One row per certificate, columns :data:`CERTIFICATE_EXPIRY_COLUMNS`, soonest expiry first.
    """
    as_of = as_utc(as_of)
    catalog = _catalog(run)
    records: dict[str, dict[str, Any]] = {
        str(r[c.SHA256]): r for r in run.certificates.to_dict("records")
    }
    extra: dict[str, x509.Certificate] = {}
    if catalog is not None:
        extra.update({e.sha256: e.certificate for e in catalog.entries})
    for profile in profiles:
        extra.update(zip(profile.store_sha256, profile.store, strict=True))
    hosts: dict[str, set[str]] = {}
    chain_obs = run.observations[run.observations[c.STATUS].astype(str).isin(c.CHAIN_STATUSES)]
    if coverage is not None and not coverage.empty:
        chain_obs = chain_obs[chain_obs[c.OBSERVATION_ID].isin(set(coverage[c.OBSERVATION_ID]))]
    for host, chain in zip(chain_obs[c.HOST], chain_obs[c.CHAIN_SHA256], strict=True):
        for fp in as_list(chain):
            hosts.setdefault(fp, set()).add(str(host))
    on_path: dict[str, dict[str, int]] = {}
    if coverage is not None and not coverage.empty:
        valid = coverage[coverage[c.VALID].astype(bool)]
        for profile, devices, path in zip(valid[PROFILE], valid[DEVICES], valid[PATH_SHA256], strict=True):
            for fp in as_list(path):
                on_path.setdefault(fp, {})[str(profile)] = int(devices)
    wanted = set(hosts) | set(on_path)
    root_keys = {str(r[c.SPKI_SHA256]) for r in records.values() if r[c.SELF_SIGNED]}
    if catalog is not None:
        root_keys |= {e.spki_sha256 for e in catalog.roots()}
    rows = []
    for fp in sorted(wanted):
        record = records.get(fp)
        if record is None and fp in extra:
            record = certificate_record(extra[fp])
            if catalog is not None:
                record[c.CATALOG_NAME] = _label(extra[fp], catalog)
        if record is None:
            continue
        not_after = pd.Timestamp(record[c.NOT_AFTER]).to_pydatetime()
        rows.append({
            c.SHA256: fp, c.SUBJECT_CN: record[c.SUBJECT_CN], c.ISSUER_CN: record[c.ISSUER_CN],
            ROLE: _role(record, root_keys, catalog).value, c.KEY_TYPE: str(record[c.KEY_TYPE]),
            c.NOT_BEFORE: record[c.NOT_BEFORE], c.NOT_AFTER: record[c.NOT_AFTER],
            DAYS_LEFT: _days_left(not_after, as_of), EXPIRED: not_after < as_of,
            c.CATALOG_NAME: str(record[c.CATALOG_NAME] or ""), HOSTS: sorted(hosts.get(fp, ())),
            SERVED: fp in hosts, ON_VALID_PATH: fp in on_path, DEVICES: sum(on_path.get(fp, {}).values()),
        })
    frame = c.typed_frame(rows, CERTIFICATE_EXPIRY_COLUMNS)
    return frame.sort_values([c.NOT_AFTER, c.SHA256], kind="stable").reset_index(drop=True)


# --- anchors ---------------------------------------------------------------------------------


def anchor_expiry(
    run: Any,
    profiles: Sequence[Profile],
    *,
    as_of: datetime,
    coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per profile x anchor in its store: when the anchor expires, and whether it is in use today.

    Args:
        run: The run (its catalogue names the anchors).
        profiles: The profiles.
        as_of: When days are counted from (tz-aware).
        coverage: Optional coverage frame; fills ``in_use`` (else <NA>).

    Returns:
        Columns :data:`ANCHOR_EXPIRY_COLUMNS`, by profile then expiry.
    """
    as_of = as_utc(as_of)
    catalog = _catalog(run)
    used: dict[str, set[str]] | None = None
    if coverage is not None:
        used = {}
        valid = coverage[coverage[c.VALID].astype(bool)] if not coverage.empty else coverage
        for profile, anchor in zip(valid.get(PROFILE, []), valid.get(ANCHOR_SHA256, []), strict=True):
            used.setdefault(str(profile), set()).add(str(anchor))
    rows = []
    for profile in profiles:
        seen = set()
        for fp, cert in zip(profile.store_sha256, profile.store, strict=True):
            if fp in seen:
                continue
            seen.add(fp)
            rows.append({
                PROFILE: profile.key, DEVICES: profile.devices, ANCHOR_SHA256: fp,
                ANCHOR_NAME: _label(cert, catalog), c.SUBJECT_CN: common_name(cert.subject), c.KEY_TYPE: key_type(cert),
                c.NOT_AFTER: cert.not_valid_after_utc, DAYS_LEFT: _days_left(cert.not_valid_after_utc, as_of),
                EXPIRED: cert.not_valid_after_utc < as_of,
                IN_USE: (fp in used.get(profile.key, set())) if used is not None else None,
            })
    frame = c.typed_frame(rows, ANCHOR_EXPIRY_COLUMNS)
    return frame.sort_values([PROFILE, c.NOT_AFTER], kind="stable").reset_index(drop=True)


# --- the cliff -------------------------------------------------------------------------------


def cliff(break_dates: pd.DataFrame, *, as_of: datetime, horizon_years: int = DEFAULT_HORIZON_YEARS) -> pd.DataFrame:
    """Devices losing their firmware's last chance, and every valid path as served, by date (step curves).

    Two curves share the rows, the firmware-side one first:

    * ``devices_losing_firmware`` / ``devices_connected_firmware``, by
      ``firmware_break_date``: devices whose firmware can no longer validate
      anything AWS could serve (update the firmware before; the date to act on);
    * ``devices_losing`` / ``devices_connected`` (and ``devices_breaking`` /
      ``devices_intact`` by ``break_date``), by ``dark_date``: "if nothing changes".

    The first row is ``as_of`` (devices already without any valid path, or
    already partly broken, or already firmware-side broken); then one row per
    distinct date inside the horizon (a row may change only one curve); the last
    row is the horizon end.  Profiles that meet no chain (``no-chains``) are left
    out of every count.

    Args:
        break_dates: :func:`break_dates` output.
        as_of: Start (tz-aware).
        horizon_years: Length of the curve (default 15).

    Returns:
        Columns :data:`CLIFF_COLUMNS`, one row per date, ascending.
    """
    as_of = as_utc(as_of)
    end = pd.Timestamp(horizon_end(as_of, horizon_years))
    start = pd.Timestamp(as_of)
    frame = break_dates[break_dates[STATE].astype(str) != BreakState.NO_CHAINS.value]
    total = int(frame[DEVICES].sum())
    dark_now = frame[frame[STATE].astype(str) == BreakState.BROKEN.value]
    partly_now = frame[frame[STATE].astype(str).isin({BreakState.BROKEN.value, BreakState.PARTLY_BROKEN.value})]
    events: dict[pd.Timestamp, dict[str, Any]] = {}

    def at(when: pd.Timestamp) -> dict[str, Any]:
        return events.setdefault(when, {DEVICES_LOSING: 0, DEVICES_BREAKING: 0, PROFILES: [],
                                        DEVICES_LOSING_FIRMWARE: 0, PROFILES_FIRMWARE: []})

    first = at(start)
    first[DEVICES_LOSING] = int(dark_now[DEVICES].sum())
    first[DEVICES_BREAKING] = int(partly_now[DEVICES].sum())
    first[PROFILES] = sorted(partly_now[PROFILE].astype(str))
    for row in frame.to_dict("records"):
        state = str(row[STATE])
        fw = row.get(FIRMWARE_BREAK_DATE)
        if fw is not None and not pd.isna(fw) and pd.Timestamp(fw) <= end:
            event = at(max(start, pd.Timestamp(fw)))
            event[DEVICES_LOSING_FIRMWARE] += int(row[DEVICES])
            event[PROFILES_FIRMWARE].append(str(row[PROFILE]))
        if state == BreakState.BROKEN.value:
            continue  # counted at as_of
        for column, counter, names in ((DARK_DATE, DEVICES_LOSING, PROFILES), (BREAK_DATE, DEVICES_BREAKING, PROFILES)):
            if column == BREAK_DATE and state == BreakState.PARTLY_BROKEN.value:
                continue  # already not intact at as_of
            when = row.get(column)
            if when is None or pd.isna(when) or not start < pd.Timestamp(when) <= end:
                continue
            event = at(pd.Timestamp(when))
            event[counter] += int(row[DEVICES])
            if str(row[PROFILE]) not in event[names]:
                event[names].append(str(row[PROFILE]))
    at(end)
    rows = []
    connected, intact, connected_firmware = total, total, total
    for when in sorted(events):
        event = events[when]
        connected -= event[DEVICES_LOSING]
        intact -= event[DEVICES_BREAKING]
        connected_firmware -= event[DEVICES_LOSING_FIRMWARE]
        rows.append({DATE: when, DEVICES_LOSING_FIRMWARE: event[DEVICES_LOSING_FIRMWARE],
                     DEVICES_CONNECTED_FIRMWARE: connected_firmware, PROFILES_FIRMWARE: sorted(event[PROFILES_FIRMWARE]),
                     DEVICES_LOSING: event[DEVICES_LOSING], DEVICES_CONNECTED: connected,
                     DEVICES_BREAKING: event[DEVICES_BREAKING], DEVICES_INTACT: intact,
                     PROFILES: sorted(event[PROFILES])})
    return c.typed_frame(rows, CLIFF_COLUMNS)
