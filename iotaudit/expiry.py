"""Expiry timelines: served-certificate expiry, per-profile break dates, anchor expiry and the cliff.

Three dates are kept apart, because they answer different questions and
alerting on the wrong one is the classic failure of expiry monitors
(Prometheus blackbox_exporter issues 340, 589 and 637 alert on cross-signs
no client validates through):

1. **Served-certificate expiry** (:func:`certificate_expiry`): when each
   certificate an endpoint serves, or a validated path goes through, expires.
2. **Break dates** (:func:`break_dates`, :func:`chain_break_dates`): when a
   firmware profile stops validating a chain it meets.  Found by running the
   real path validator (:func:`iotaudit.coverage.validate_chain`) at every
   date where the answer can change, never by taking the minimum ``not_after``
   of the served chain: a modern path builder survives an expiring cross-sign
   through the self-signed root, and a store's anchor may expire before
   anything the server sends.
3. **Anchor expiry** (:func:`anchor_expiry`): when each certificate inside
   each firmware trust store expires (the AWS document: "CA certificates have
   an expiration date after which they cannot be used to validate a server's
   certificate").

Break dates are computed under two assumptions about the AWS side:

**As served — "if nothing changes"** (``break_date``, ``dark_date``,
``state``; :func:`chain_break`).  The chain exactly as served, leaf included,
is re-validated with the endpoint's host name.  Every such chain therefore
breaks at the latest when its leaf expires (about a year out for AWS leaves),
even though AWS renews leaves routinely: true if AWS stopped renewing, and an
upper bound on how long a capture stays valid, but not the date a fleet owner
must act by.

**Renewed — "if AWS keeps renewing leaf certificates under the same issuing
CA"; the date your firmware must be updated by** (``renewed_break_date``,
``renewed_dark_date``, ``renewed_state``; :func:`renewed_chain_break`).  The
served chain is re-validated *without its leaf*: the served certificate that
issued the leaf (found by signature, :func:`iotaudit.certs.is_signed_by`, so
an out-of-order chain works; position 1 first) is the end entity, validated
with no host name (client verifier; the end-entity extension policy accepts a
CA certificate), the other served certificates are the intermediates, with
the same anchors and path builder.  What can end the renewed chain is then
only the firmware side: the issuing CA, a cross-sign or an anchor the store
depends on expiring.  An AWS move to another issuing CA or root is a chain
change that the next collection run shows (see also the roots-to-add
scenarios and the pinning scenarios), not part of this date.  When the
leaf's issuer was not served (missing intermediate, a leaf served alone), or
when the chain validates as served but not from the issuer, the as-served
dates are used and ``renewed_basis`` (:class:`RenewedBasis`) says so.

Definitions used by the per-profile columns (one profile = many identical
devices); each holds for both assumptions, with the renewed chain dates in
place of the as-served ones for the ``renewed_*`` columns:

* a *chain* is one served chain (observation: endpoint x probe) the profile
  may meet (its region and endpoints, a key type its TLS stack offers);
* ``break_date``: the first instant after ``as_of`` at which some chain the
  profile validates at ``as_of`` (as served) has no valid path.  AWS, not the
  device, picks which chain a handshake gets (by the negotiated suite), so from
  that instant some connections fail: this is the date to act by;
* ``dark_date``: the first instant at which *every* chain the profile meets
  has no valid path: the device loses every valid path ("the date it stops
  connecting").  :func:`cliff` counts devices by this date.

Whether a chain validates *today* is always the as-served answer: a chain
that does not validate at ``as_of`` as served (expired leaf, wrong host,
no anchor) has no break date under either assumption.

Both are exact to the second: validity is piecewise constant in time and can
change only where a certificate of the validated chain or the store enters
(``not_before``) or leaves (``not_after`` + 1 s; RFC 5280 section 4.1.2.5:
the validity period includes ``not_after``) its validity period, so the
validator is run at ``as_of`` and at each of those instants in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from cryptography import x509

from . import columns as c
from .catalog import Catalog, CatalogRole
from .certs import cert_sha256, certificate_record, common_name, is_signed_by
from .columns import (
    as_list,
    as_utc,
    ANCHOR_EXPIRY_COLUMNS,
    ANCHOR_NAME,
    ANCHOR_SHA256,
    BREAK_CAUSE_NAME,
    BREAK_CAUSE_SHA256,
    BREAK_DATE,
    BREAK_DATE_COLUMNS,
    BREAK_REASON,
    CERTIFICATE_EXPIRY_COLUMNS,
    CHAINS,
    CHAINS_RENEWED_AS_SERVED,
    CHAINS_VALID,
    CHAIN_BREAK_COLUMNS,
    CLIFF_COLUMNS,
    DARK_DATE,
    DATE,
    DAYS_LEFT,
    DEVICES,
    DEVICES_BREAKING,
    DEVICES_CONNECTED,
    DEVICES_CONNECTED_RENEWED,
    DEVICES_INTACT,
    DEVICES_LOSING,
    DEVICES_LOSING_RENEWED,
    EXPIRED,
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
    PROFILES_RENEWED,
    RENEWED_BASIS,
    RENEWED_BREAK_CAUSE_NAME,
    RENEWED_BREAK_CAUSE_SHA256,
    RENEWED_BREAK_DATE,
    RENEWED_DARK_DATE,
    RENEWED_STATE,
    ROLE,
    SERVED,
    STATE,
    VALID_AT_AS_OF,
    BreakState,
    CertRole,
    RenewedBasis,
)

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
    "RenewedBasis",
    "RenewedBreak",
    "anchor_expiry",
    "break_dates",
    "certificate_expiry",
    "chain_break",
    "chain_break_dates",
    "cliff",
    "horizon_end",
    "leaf_issuer_chain",
    "renewed_chain_break",
]

DEFAULT_HORIZON_YEARS = 15
ONE_SECOND = timedelta(seconds=1)


# --- helpers ---------------------------------------------------------------------------------




def horizon_end(as_of: datetime, horizon_years: int = DEFAULT_HORIZON_YEARS) -> datetime:
    """``as_of`` plus ``horizon_years`` calendar years (29 February -> 28 February)."""
    as_of = as_utc(as_of)
    if horizon_years < 0:
        raise ValueError(f"horizon_years must be >= 0, got {horizon_years}")
    return (pd.Timestamp(as_of) + pd.DateOffset(years=int(horizon_years))).to_pydatetime()


def _days_left(not_after: datetime, as_of: datetime) -> int:
    return int((not_after - as_of) // timedelta(days=1))






def _label(cert: x509.Certificate, catalog: Catalog | None) -> str:
    """Catalogue name (``"<name> (same key, other issuer)"`` for a key match), else subject CN."""
    if catalog is not None:
        from .certs import spki_sha256

        entry, match = catalog.identify(cert_sha256(cert), spki_sha256(cert))
        if entry is not None:
            return entry.name if match.value == "certificate" else f"{entry.name} (same key, other issuer)"
    return common_name(cert.subject)


def _catalog(run: Any) -> Catalog | None:
    try:
        return run.catalog_object()
    except Exception:  # noqa: BLE001 - a run without a usable catalogue still has expiry dates
        return None


# --- one chain -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """When one served chain stops validating against one store.

    Attributes:
        valid_at_as_of: The chain validates at ``as_of``.
        break_date: First instant after ``as_of`` (and not after the horizon end) with
            no valid path; None when invalid at ``as_of`` or valid through the horizon.
        path_sha256: Validated path at ``as_of`` (leaf first); () if invalid then.
        last_path_sha256: The last valid path before ``break_date`` (or at the horizon end).
        cause_sha256: Certificates of ``last_path_sha256`` whose validity ends at ``break_date``.
        reason: The validator's reason at ``break_date`` (or at ``as_of`` when invalid then).
        evaluated: How many times the validator ran.
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


def _candidates(certs: Iterable[x509.Certificate], start: datetime, stop: datetime) -> list[datetime]:
    """Instants in (start, stop] where some certificate enters or leaves its validity period."""
    times = set()
    for cert in certs:
        for t in (cert.not_valid_before_utc, cert.not_valid_after_utc + ONE_SECOND):
            if start < t <= stop:
                times.add(t)
    return sorted(times)


def chain_break(
    served: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    host: str | None,
    as_of: datetime,
    path_builder: str = "modern",
    horizon_years: int = DEFAULT_HORIZON_YEARS,
) -> ChainBreak:
    """Find the first instant after ``as_of`` at which ``served`` has no valid path to ``anchors``.

    The validator (:func:`iotaudit.coverage.validate_chain`) runs at ``as_of``
    and then, in time order, at every ``not_before`` and ``not_after + 1 s`` of
    the served certificates and the anchors inside the horizon, stopping at the
    first failure.  Times after the leaf's ``not_after + 1 s`` are never needed:
    an expired leaf fails every path.

    Args:
        served: The chain as served (leaf first).
        anchors: The trust store.
        host: Name validated against the leaf, or None.
        as_of: Start of the timeline (tz-aware).
        path_builder: ``modern`` or ``legacy-chain-top``.
        horizon_years: How far ahead to look.

    Returns:
        A :class:`ChainBreak`.
    """
    from .coverage import validate_chain  # analysis core (iotaudit.coverage)

    as_of = as_utc(as_of)
    end = horizon_end(as_of, horizon_years)
    first = validate_chain(served, anchors, host=host, as_of=as_of, path_builder=path_builder)
    if not first.valid:
        return ChainBreak(False, None, reason=first.reason, evaluated=1)
    stop = min(end, served[0].not_valid_after_utc + ONE_SECOND)
    by_fp = {cert_sha256(x): x for x in [*served, *anchors]}
    last = first
    evaluated = 1
    for t in _candidates(by_fp.values(), as_of, stop):
        verdict = validate_chain(served, anchors, host=host, as_of=t, path_builder=path_builder)
        evaluated += 1
        if not verdict.valid:
            cause = tuple(
                fp for fp in last.path_sha256
                if fp in by_fp and by_fp[fp].not_valid_after_utc + ONE_SECOND == t
            ) or tuple(fp for fp, x in by_fp.items() if x.not_valid_after_utc + ONE_SECOND == t)
            return ChainBreak(True, t, first.path_sha256, last.path_sha256, cause, verdict.reason, evaluated)
        last = verdict
    return ChainBreak(True, None, first.path_sha256, last.path_sha256, (), "", evaluated)


def leaf_issuer_chain(served: Sequence[x509.Certificate]) -> list[x509.Certificate] | None:
    """The served chain without its leaf, the certificate that issued the leaf first.

    The issuer is found by signature (:func:`iotaudit.certs.is_signed_by`)
    among ``served[1:]``, position 1 first, so an out-of-order chain works;
    the other served certificates follow in served order.

    Args:
        served: The chain as served (leaf first).

    Returns:
        ``[issuer, *others]``, or None when the leaf's issuer was not served
        (missing intermediate, or a leaf served alone).
    """
    if len(served) < 2:
        return None
    leaf_fp = cert_sha256(served[0])
    rest = list(served[1:])
    for index, candidate in enumerate(rest):
        if cert_sha256(candidate) != leaf_fp and is_signed_by(served[0], candidate):
            return [candidate, *rest[:index], *rest[index + 1:]]
    return None


@dataclass(frozen=True, slots=True)
class RenewedBreak:
    """When one served chain stops validating if AWS keeps renewing its leaf under the same issuing CA.

    Attributes:
        basis: How the dates were found (:class:`RenewedBasis`): from the leaf's
            issuer, or the as-served dates because the issuer was not served or
            was rejected.
        chain_break: The :class:`ChainBreak` of the chain without its leaf (the
            leaf's issuer as end entity, no host name); the as-served one when
            ``basis`` is not ``leaf-issuer`` or the chain is invalid at ``as_of``
            as served.
        issuer_sha256: The leaf's issuer that was validated as end entity ("" when not served).
    """

    basis: RenewedBasis
    chain_break: ChainBreak
    issuer_sha256: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.basis, RenewedBasis):
            raise TypeError(f"basis must be a RenewedBasis, got {self.basis!r}")
        if self.basis is RenewedBasis.LEAF_ISSUER and not self.issuer_sha256:
            raise ValueError("a leaf-issuer renewed break names the issuer it validated")

    @property
    def break_date(self) -> datetime | None:
        """First instant with no valid path if AWS keeps renewing leaves (None: none within the horizon)."""
        return self.chain_break.break_date


def renewed_chain_break(
    served: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    as_of: datetime,
    path_builder: str = "modern",
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    as_served: ChainBreak | None = None,
    host: str | None = None,
) -> RenewedBreak:
    """The break of ``served`` "if AWS keeps renewing its leaf certificates" (module docstring).

    Runs :func:`chain_break` on :func:`leaf_issuer_chain` of ``served`` with
    ``host=None`` (the end entity is a CA certificate; the renewed leaves will
    carry the endpoint's name), the same ``anchors`` and ``path_builder``: at
    ``as_of`` and at every ``not_before`` / ``not_after + 1 s`` of those
    certificates and the anchors.

    Args:
        served: The chain as served (leaf first).
        anchors: The trust store.
        as_of: Start of the timeline (tz-aware).
        path_builder: ``modern`` or ``legacy-chain-top``.
        horizon_years: How far ahead to look.
        as_served: :func:`chain_break` of the chain as served, when already known.
        host: The endpoint's host name, used only to compute ``as_served`` when not given.

    Returns:
        A :class:`RenewedBreak`.  A chain that does not validate at ``as_of``
        as served keeps the as-served (invalid) result: today's answer is
        always the as-served one.
    """
    as_of = as_utc(as_of)
    if as_served is None:
        as_served = chain_break(served, anchors, host=host, as_of=as_of, path_builder=path_builder,
                                horizon_years=horizon_years)
    return _renewed_break(served, as_served, lambda leafless: chain_break(
        leafless, anchors, host=None, as_of=as_of, path_builder=path_builder, horizon_years=horizon_years))


def _renewed_break(
    served: Sequence[x509.Certificate], as_served: ChainBreak,
    leafless_break: Callable[[list[x509.Certificate]], ChainBreak],
) -> RenewedBreak:
    """:func:`renewed_chain_break` given the as-served break and how to break the leafless chain (with no host)."""
    leafless = leaf_issuer_chain(served)
    if leafless is None:
        return RenewedBreak(RenewedBasis.ISSUER_NOT_SERVED, as_served)
    issuer = cert_sha256(leafless[0])
    if not as_served.valid_at_as_of:
        return RenewedBreak(RenewedBasis.LEAF_ISSUER, as_served, issuer)
    renewed = leafless_break(leafless)
    if not renewed.valid_at_as_of:
        return RenewedBreak(RenewedBasis.ISSUER_REJECTED, as_served, issuer)
    return RenewedBreak(RenewedBasis.LEAF_ISSUER, renewed, issuer)


# --- which chains each profile meets -------------------------------------------------------


def _met_pairs(run: Any, inventory: Any, coverage: pd.DataFrame | None) -> pd.DataFrame:
    """(profile, observation_id) pairs: from ``coverage`` when given, else from :func:`iotaudit.coverage.meets`."""
    if coverage is not None:
        return coverage[[PROFILE, c.OBSERVATION_ID]].astype({PROFILE: "string"})
    from .coverage import chain_observations, meets

    obs = chain_observations(run)
    pairs = []
    for row in inventory.profiles.to_dict("records"):
        for obs_id in obs.loc[meets(row, obs), c.OBSERVATION_ID]:
            pairs.append({PROFILE: str(row[c.PROFILE_KEY]), c.OBSERVATION_ID: int(obs_id)})
    return pd.DataFrame(pairs, columns=[PROFILE, c.OBSERVATION_ID])


# --- per profile x chain and per profile --------------------------------------------------------


def chain_break_dates(
    run: Any,
    inventory: Any,
    anchors: Mapping[str, Sequence[x509.Certificate]],
    *,
    as_of: datetime,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Break dates of every chain each profile may meet, as served and renewed.

    ``break_date`` is :func:`chain_break` of the chain as served;
    ``renewed_break_date`` is :func:`renewed_chain_break` ("if AWS keeps
    renewing its leaf certificates"), with ``renewed_basis`` saying whether it
    comes from the leaf's issuer or falls back to the as-served date.

    Each distinct (served chain, store, host, path builder) is evaluated once,
    however many profiles and devices share it; the renewed break of each
    distinct (leafless chain, store, path builder) once, however many leaves
    and hosts share that issuing chain.

    Args:
        run: The run.
        inventory: The inventory (its ``profiles`` frame).
        anchors: ``Inventory.resolve`` output: profile_key -> trust anchors.
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look.
        coverage: :func:`iotaudit.coverage.coverage` output, to reuse its
            profile x observation pairs; computed when None.

    Returns:
        One row per profile x observation, columns :data:`CHAIN_BREAK_COLUMNS`.
    """
    as_of = as_utc(as_of)
    pairs = _met_pairs(run, inventory, coverage)
    catalog = _catalog(run)
    certs = run.certificate_objects()
    profiles = {str(p[c.PROFILE_KEY]): p for p in inventory.profiles.to_dict("records")}
    store_fps = {key: tuple(sorted(cert_sha256(a) for a in anchor_list)) for key, anchor_list in anchors.items()}
    names: dict[str, str] = {}
    for cert in [*certs.values(), *(a for lst in anchors.values() for a in lst)]:
        names.setdefault(cert_sha256(cert), _label(cert, catalog))
    memo: dict[tuple[Any, ...], tuple[ChainBreak, RenewedBreak]] = {}
    # The renewed break depends on neither the leaf nor the host: one per leafless chain x store x builder.
    leafless_memo: dict[tuple[Any, ...], ChainBreak] = {}
    observations = {
        int(o[c.OBSERVATION_ID]): (str(o[c.HOST]), int(o[c.PORT]), str(o[c.PROBE]), tuple(as_list(o[c.CHAIN_SHA256])))
        for o in run.observations[[c.OBSERVATION_ID, c.HOST, c.PORT, c.PROBE, c.CHAIN_SHA256]].to_dict("records")
    }
    rows = []
    for key, obs_id in zip(pairs[PROFILE].astype(str), pairs[c.OBSERVATION_ID], strict=True):
        obs_id = int(obs_id)
        if key not in profiles or obs_id not in observations:
            continue  # e.g. coverage's "not-applicable" row (observation_id -1)
        profile = profiles[key]
        host, port, probe, chain_fps = observations[obs_id]
        if not chain_fps:
            continue
        served = [certs[fp] for fp in chain_fps if fp in certs]
        builder = str(profile.get(c.PATH_BUILDER) or "modern")
        memo_key = (chain_fps, store_fps.get(key, ()), host, builder)
        known = memo.get(memo_key)
        if known is None:
            store = list(anchors.get(key, ()))
            result = chain_break(served, store, host=host, as_of=as_of, path_builder=builder,
                                 horizon_years=horizon_years)

            def leafless_break(leafless: list[x509.Certificate]) -> ChainBreak:
                leafless_key = (tuple(cert_sha256(x) for x in leafless), memo_key[1], builder)
                if leafless_key not in leafless_memo:
                    leafless_memo[leafless_key] = chain_break(leafless, store, host=None, as_of=as_of,
                                                              path_builder=builder, horizon_years=horizon_years)
                return leafless_memo[leafless_key]

            known = memo[memo_key] = (result, _renewed_break(served, result, leafless_break))
        result, renewed = known
        renewed_cause = renewed.chain_break.cause_sha256
        rows.append({
            PROFILE: key, DEVICES: int(profile.get(DEVICES, 0) or 0), c.OBSERVATION_ID: obs_id,
            c.HOST: host, c.PORT: port, c.PROBE: probe,
            c.KEY_TYPE: _leaf_key_type(served), VALID_AT_AS_OF: result.valid_at_as_of,
            BREAK_DATE: result.break_date, PATH_SHA256: list(result.path_sha256),
            LAST_PATH_SHA256: list(result.last_path_sha256), BREAK_CAUSE_SHA256: ";".join(result.cause_sha256),
            BREAK_CAUSE_NAME: ";".join(names.get(fp, fp[:16]) for fp in result.cause_sha256),
            BREAK_REASON: result.reason,
            RENEWED_BREAK_DATE: renewed.break_date, RENEWED_BREAK_CAUSE_SHA256: ";".join(renewed_cause),
            RENEWED_BREAK_CAUSE_NAME: ";".join(names.get(fp, fp[:16]) for fp in renewed_cause),
            RENEWED_BASIS: renewed.basis.value,
        })
    return c.typed_frame(rows, CHAIN_BREAK_COLUMNS)


def _leaf_key_type(served: Sequence[x509.Certificate]) -> str:
    from .certs import key_type

    return key_type(served[0]) if served else ""


_AS_SERVED_TWIN = {RENEWED_BREAK_DATE: BREAK_DATE, RENEWED_BREAK_CAUSE_NAME: BREAK_CAUSE_NAME}


def _renewed(record: Mapping[str, Any], column: str) -> Any:
    """A renewed column of a chain-break record; a frame written before it existed gives the as-served value."""
    return record[column] if column in record else record[_AS_SERVED_TWIN.get(column, column)]


def _profile_breaks(
    valid: list[dict[str, Any]], invalid: list[dict[str, Any]], column: str,
) -> tuple[BreakState, dict[str, Any] | None, Any]:
    """(state, first chain to break, dark date) of one profile from its chains' ``column`` break dates."""
    breaking = sorted((r for r in valid if not pd.isna(_renewed(r, column))),
                      key=lambda r: (_renewed(r, column), str(r[c.HOST]), str(r[c.PROBE])))
    if not valid:
        return BreakState.BROKEN, None, None
    state = BreakState.PARTLY_BROKEN if invalid else (BreakState.BREAKS if breaking else BreakState.OK)
    dark = max(_renewed(r, column) for r in breaking) if len(breaking) == len(valid) else None  # last path gone
    return state, (breaking[0] if breaking else None), dark


def break_dates(
    run: Any,
    inventory: Any,
    anchors: Mapping[str, Sequence[x509.Certificate]],
    *,
    as_of: datetime,
    horizon_years: int = DEFAULT_HORIZON_YEARS,
    coverage: pd.DataFrame | None = None,
    chain_breaks: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per profile: ``state``, ``break_date``, ``dark_date`` and their renewed twins (module docstring).

    The ``renewed_*`` columns are the same aggregation over the chains'
    ``renewed_break_date`` ("if AWS keeps renewing leaf certificates"):
    ``renewed_break_date`` is the date the firmware must be updated by.

    Args:
        run: The run.
        inventory: The inventory.
        anchors: ``Inventory.resolve`` output.
        as_of: Start of the timeline (tz-aware).
        horizon_years: How far ahead to look (default 15).
        coverage: Optional coverage frame whose profile x observation pairs to use.
        chain_breaks: Optional :func:`chain_break_dates` output to aggregate instead of recomputing.

    Returns:
        One row per profile of the inventory, columns :data:`BREAK_DATE_COLUMNS`, sorted by break date.
    """
    as_of = as_utc(as_of)
    if chain_breaks is None:
        chain_breaks = chain_break_dates(run, inventory, anchors, as_of=as_of, horizon_years=horizon_years,
                                         coverage=coverage)
    per_profile: dict[str, list[dict[str, Any]]] = {}
    for record in chain_breaks.to_dict("records"):
        per_profile.setdefault(str(record[PROFILE]), []).append(record)
    rows = []
    for profile in inventory.profiles.to_dict("records"):
        key = str(profile[c.PROFILE_KEY])
        base = {PROFILE: key, DEVICES: int(profile.get(DEVICES, 0) or 0),
                GROUPS: [str(g) for g in as_list(profile.get(GROUPS))]}
        mine = per_profile.get(key, [])
        if not mine:
            rows.append({**base, STATE: BreakState.NO_CHAINS.value, CHAINS: 0, CHAINS_VALID: 0,
                         RENEWED_STATE: BreakState.NO_CHAINS.value, CHAINS_RENEWED_AS_SERVED: 0})
            continue
        valid = [r for r in mine if r[VALID_AT_AS_OF]]
        invalid = [r for r in mine if not r[VALID_AT_AS_OF]]
        state, first, dark = _profile_breaks(valid, invalid, BREAK_DATE)
        renewed_state, renewed_first, renewed_dark = _profile_breaks(valid, invalid, RENEWED_BREAK_DATE)
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
            RENEWED_STATE: renewed_state.value,
            RENEWED_BREAK_DATE: _renewed(renewed_first, RENEWED_BREAK_DATE) if renewed_first else None,
            RENEWED_DARK_DATE: renewed_dark,
            RENEWED_BREAK_CAUSE_NAME: str(_renewed(renewed_first, RENEWED_BREAK_CAUSE_NAME)) if renewed_first else "",
            CHAINS_RENEWED_AS_SERVED: sum(
                1 for r in valid if str(r.get(RENEWED_BASIS, RenewedBasis.LEAF_ISSUER.value)) != RenewedBasis.LEAF_ISSUER.value
            ),
        })
    frame = c.typed_frame(rows, BREAK_DATE_COLUMNS)
    for col in (FIRST_BREAK_HOST, FIRST_BREAK_PROBE, BREAK_CAUSE_SHA256, BREAK_CAUSE_NAME, BREAK_REASON,
                RENEWED_BREAK_CAUSE_NAME):
        frame[col] = frame[col].fillna("")
    frame[LAST_PATH_SHA256] = [v if isinstance(v, list) else [] for v in frame[LAST_PATH_SHA256]]
    return frame.sort_values([BREAK_DATE, PROFILE], na_position="last", kind="stable").reset_index(drop=True)


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
    anchors: Mapping[str, Sequence[x509.Certificate]] | None = None,
) -> pd.DataFrame:
    """Every certificate met: served by an endpoint of the run or on a validated path, with days left.

    Args:
        run: The run.
        coverage: :func:`iotaudit.coverage.coverage` output (``valid``, ``path_sha256``,
            ``devices``, ``profile``, ``observation_id``); None: only the run's served
            certificates, with ``on_valid_path`` False.
        as_of: When days are counted from (tz-aware).
        anchors: ``Inventory.resolve`` output, so anchors from PEM bundles (not in the
            run or its catalogue) get rows too.

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
    for anchor_list in (anchors or {}).values():
        extra.update({cert_sha256(a): a for a in anchor_list})
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
    inventory: Any,
    anchors: Mapping[str, Sequence[x509.Certificate]],
    *,
    as_of: datetime,
    coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per profile x anchor in its store: when the anchor expires, and whether it is in use today.

    Args:
        run: The run (its catalogue names the anchors).
        inventory: The inventory (its ``profiles`` frame).
        anchors: ``Inventory.resolve`` output.
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
    for profile in inventory.profiles.to_dict("records"):
        key = str(profile[c.PROFILE_KEY])
        seen = set()
        for cert in anchors.get(key, ()):
            fp = cert_sha256(cert)
            if fp in seen:
                continue
            seen.add(fp)
            from .certs import key_type

            rows.append({
                PROFILE: key, DEVICES: int(profile.get(DEVICES, 0) or 0), ANCHOR_SHA256: fp,
                ANCHOR_NAME: _label(cert, catalog), c.SUBJECT_CN: common_name(cert.subject), c.KEY_TYPE: key_type(cert),
                c.NOT_AFTER: cert.not_valid_after_utc, DAYS_LEFT: _days_left(cert.not_valid_after_utc, as_of),
                EXPIRED: cert.not_valid_after_utc < as_of,
                IN_USE: (fp in used.get(key, set())) if used is not None else None,
            })
    frame = c.typed_frame(rows, ANCHOR_EXPIRY_COLUMNS)
    return frame.sort_values([PROFILE, c.NOT_AFTER], kind="stable").reset_index(drop=True)


# --- the cliff -------------------------------------------------------------------------------


def cliff(break_dates: pd.DataFrame, *, as_of: datetime, horizon_years: int = DEFAULT_HORIZON_YEARS) -> pd.DataFrame:
    """Devices losing every valid path, by date, over the horizon (step curves for a plot).

    Two curves share the rows: as served (``devices_losing`` /
    ``devices_connected``, by ``dark_date``: "if nothing changes") and renewed
    (``devices_losing_renewed`` / ``devices_connected_renewed``, by
    ``renewed_dark_date``: "if AWS keeps renewing leaf certificates").
    The first row is ``as_of`` (devices already without any valid path, or
    already partly broken); then one row per distinct ``dark_date``,
    ``break_date`` or ``renewed_dark_date`` inside the horizon (a row may
    change only one curve); the last row is the horizon end.  Profiles that
    meet no chain (``no-chains``) are left out of every count.

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
                                        DEVICES_LOSING_RENEWED: 0, PROFILES_RENEWED: []})

    first = at(start)
    first[DEVICES_LOSING] = first[DEVICES_LOSING_RENEWED] = int(dark_now[DEVICES].sum())
    first[DEVICES_BREAKING] = int(partly_now[DEVICES].sum())
    first[PROFILES] = sorted(partly_now[PROFILE].astype(str))
    first[PROFILES_RENEWED] = sorted(dark_now[PROFILE].astype(str))
    renewed_dark = RENEWED_DARK_DATE if RENEWED_DARK_DATE in frame.columns else DARK_DATE  # older frames
    for row in frame.to_dict("records"):
        state = str(row[STATE])
        if state == BreakState.BROKEN.value:
            continue  # counted at as_of
        for column, counter, names in ((DARK_DATE, DEVICES_LOSING, PROFILES), (BREAK_DATE, DEVICES_BREAKING, PROFILES),
                                       (renewed_dark, DEVICES_LOSING_RENEWED, PROFILES_RENEWED)):
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
    connected, intact, connected_renewed = total, total, total
    for when in sorted(events):
        event = events[when]
        connected -= event[DEVICES_LOSING]
        intact -= event[DEVICES_BREAKING]
        connected_renewed -= event[DEVICES_LOSING_RENEWED]
        rows.append({DATE: when, DEVICES_LOSING: event[DEVICES_LOSING], DEVICES_CONNECTED: connected,
                     DEVICES_BREAKING: event[DEVICES_BREAKING], DEVICES_INTACT: intact,
                     PROFILES: sorted(event[PROFILES]), DEVICES_LOSING_RENEWED: event[DEVICES_LOSING_RENEWED],
                     DEVICES_CONNECTED_RENEWED: connected_renewed, PROFILES_RENEWED: sorted(event[PROFILES_RENEWED])})
    return c.typed_frame(rows, CLIFF_COLUMNS)
