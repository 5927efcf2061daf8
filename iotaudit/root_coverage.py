"""Root coverage: which served chains each firmware profile can validate on its own TLS stack, to which anchor, and why not.

Every verdict comes from the one path engine (:class:`iotaudit.paths.PathEngine`),
which applies the profile's TLS stack (:mod:`iotaudit.stacks`): its search
order, which served certificates may act as issuers, what may be an anchor,
whether anchor dates count, algorithm and depth limits.  This module keeps no
validation code, cache or certificate labeller of its own: anchors are named
by :func:`iotaudit.paths.anchor_label`, the same way on every report page.

Frames (column lists in :mod:`iotaudit.columns`):

* ``coverage``: profile x observation it may meet: valid, anchor, path, reason,
  verdict (covered / at-risk / broken / not-applicable), risks, ``tls_stack``;
* ``roots_to_add``: per profile x scenario (today, no-cross-sign, reserved-roots),
  the fewest catalogue roots or cross-signs whose addition makes every chain validate;
* ``fleet``: devices per group x endpoint x key type x verdict;
* ``profiles``: one row per profile, its worst verdict;
* ``stack_alternatives``: the same store on every other stack ("same store,
  other stacks"): where a stack upgrade or a build flag (alternative chains,
  cross-signed verify, partial chain) changes the verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import columns as c
from .catalog import Catalog, CatalogRole, CatalogStatus
from .certs import spki_sha256
from .columns import (
    ANCHOR_NAME,
    ANCHOR_SHA256,
    AT_RISK,
    BROKEN,
    CHAINS,
    CHANGED,
    COVERAGE_DTYPES,
    COVERED,
    DEVICES,
    FAILING,
    FLEET_DTYPES,
    GROUP,
    GROUPS,
    OTHER_STACK,
    OTHER_VERDICT,
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
    STACK_ALTERNATIVES_DTYPES,
    TLS_STACK,
    UNFIXABLE,
    UNFIXABLE_REASONS,
    VALID,
    VERDICT,
    RootsScenario,
    Verdict,
    as_utc,
)
from .hypothetical import HypotheticalPki, without_cross_signs
from .paths import PathEngine, PathVerdict, anchor_label
from .profiles import Profile, chain_observations, meets
from .stacks import STACK_IDS, Stack, get_stack

if TYPE_CHECKING:
    from .inventory import Inventory
    from .store import Run

__all__ = [
    "DEFAULT_AT_RISK_DAYS", "VERDICT_OF_RANK", "VERDICT_ORDER", "CoverageResult", "Scenario", "analyse_coverage",
    "coverage", "fleet_view", "stack_alternatives",
]

VERDICT_ORDER = {Verdict.COVERED.value: 0, Verdict.NOT_APPLICABLE.value: 0, Verdict.AT_RISK.value: 1, Verdict.BROKEN.value: 2}
# Back from a worst rank to the verdict it stands for (a rank of 0 reads as covered).
VERDICT_OF_RANK = {rank: verdict for verdict, rank in VERDICT_ORDER.items() if verdict != Verdict.NOT_APPLICABLE.value}
DEFAULT_AT_RISK_DAYS = 90

# The roots-to-add question; named Scenario here (iotaudit.pinning has its own).
Scenario = RootsScenario

_MEETS_NONE = ("the profile meets no chain of this run "
               "(no observation in its region and endpoints with a key type it offers)")


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one observation gives one (store, stack): the verdict, its risks, and the anchor's one name.

    Attributes:
        verdict: The engine's verdict at ``as_of``.
        risks: ``RISK_*`` flags (an ``at-risk`` verdict has at least one).
        anchor_name: :func:`iotaudit.paths.anchor_label` of the anchor ("" if invalid).
    """

    verdict: PathVerdict
    risks: tuple[str, ...] = ()
    anchor_name: str = ""

    @property
    def kind(self) -> Verdict:
        """The coverage verdict: broken, at-risk (some risk) or covered."""
        if not self.verdict.valid:
            return Verdict.BROKEN
        return Verdict.AT_RISK if self.risks else Verdict.COVERED


class ChainJudge:
    """One run's served chains judged for any (store, stack), through the one :class:`~iotaudit.paths.PathEngine`.

    Shared by coverage, stack alternatives and the audit's cross-check so that
    one question is asked of the engine once, however many profiles ask it.

    Args:
        run: The run (its certificates and catalogue).
        as_of: When the verdicts hold (tz-aware).
        at_risk_days: A chain that stops validating within this many days is ``at-risk``.
        engine: The path engine to ask (a new one on the run's certificates when None).
    """

    def __init__(self, run: Run, *, as_of: datetime, at_risk_days: int = DEFAULT_AT_RISK_DAYS,
                 engine: PathEngine | None = None) -> None:
        self.as_of = as_utc(as_of)
        self.later = self.as_of + timedelta(days=at_risk_days)
        self.catalog: Catalog = run.catalog_object()
        self.engine = engine if engine is not None else PathEngine(run.certificate_objects())
        self.engine.add(run.certificate_objects().values())
        self.engine.add(e.certificate for e in self.catalog.entries)
        self.observations = chain_observations(run)
        self.chains = [tuple(str(s) for s in ch) for ch in self.observations[c.CHAIN_SHA256]]
        self.rows = self.observations[[c.OBSERVATION_ID, c.HOST, c.PORT, c.REGION, c.PROBE, c.KEY_TYPE]].astype(
            {c.HOST: str, c.REGION: str, c.PROBE: str, c.KEY_TYPE: str}).to_dict("records")
        self._legacy_keys = {e.spki_sha256 for e in self.catalog.entries if e.status is CatalogStatus.LEGACY}
        self._bare: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._spki: dict[str, str] = {}
        self._labels: dict[str, str] = {}
        self._met: dict[tuple[Any, ...], list[int]] = {}
        self._outcomes: dict[tuple[int, tuple[str, ...], str], Outcome] = {}

    def store_of(self, profile: Profile) -> tuple[str, ...]:
        """The profile's store as SHA-256s, in store order (registered with the engine)."""
        return self.engine.add(profile.store)

    def met(self, profile: Profile) -> list[int]:
        """Indices (into :attr:`observations`) of the chains the profile may meet."""
        key = (profile.region, frozenset(profile.key_types), profile.endpoints)
        if key not in self._met:
            self._met[key] = [int(i) for i in np.flatnonzero(meets(profile, self.observations))]
        return self._met[key]

    def without_cross_signs(self, chain: tuple[str, ...]) -> tuple[str, ...]:
        """``chain`` as served without the Starfield cross-signs (:func:`iotaudit.hypothetical.without_cross_signs`)."""
        if chain not in self._bare:
            certs = [self.engine.certificates[s] for s in chain]
            self._bare[chain] = self.engine.add(without_cross_signs(certs, self.catalog))
        return self._bare[chain]

    def label(self, sha256: str) -> str:
        """The one name of a certificate (:func:`iotaudit.paths.anchor_label`)."""
        if sha256 not in self._labels:
            self._labels[sha256] = anchor_label(sha256, self.catalog, self.engine.certificates)
        return self._labels[sha256]

    def outcome(self, index: int, store: tuple[str, ...], stack: Stack) -> Outcome:
        """The verdict, risks and anchor name of observation ``index`` for ``store`` on ``stack`` (memoised)."""
        key = (index, store, stack.id)
        hit = self._outcomes.get(key)
        if hit is not None:
            return hit
        chain, host = self.chains[index], str(self.rows[index][c.HOST])
        verdict = self.engine.validate(chain, store, stack=stack, host=host, as_of=self.as_of)
        risks: list[str] = []
        if verdict.valid:
            if not self.engine.valid(chain, store, stack=stack, host=host, as_of=self.later):
                risks.append(RISK_EXPIRES_SOON)
            anchor = verdict.anchor_sha256
            if anchor not in self._spki:
                self._spki[anchor] = spki_sha256(self.engine.certificates[anchor])
            if self._spki[anchor] in self._legacy_keys:
                risks.append(RISK_LEGACY_ANCHOR)
            bare = self.without_cross_signs(chain)
            if bare != chain and not self.engine.valid(bare, store, stack=stack, host=host, as_of=self.as_of):
                risks.append(RISK_NEEDS_CROSS_SIGN)
        hit = Outcome(verdict, tuple(risks), self.label(verdict.anchor_sha256))
        self._outcomes[key] = hit
        return hit


def _candidate_order(catalog: Catalog) -> list[str]:
    """Catalogue roots and cross-signs to consider adding, most recommendable first."""
    status_rank = {CatalogStatus.IN_USE: 0, CatalogStatus.RESERVED: 1, CatalogStatus.CROSS_SIGNER: 2,
                   CatalogStatus.LEGACY: 3, CatalogStatus.ISSUING_CA: 4}
    entries = [e for e in catalog.entries if e.role in (CatalogRole.ROOT, CatalogRole.CROSS_SIGNED)]
    entries.sort(key=lambda e: (e.role is not CatalogRole.ROOT, status_rank.get(e.status, 9)))
    return [e.name for e in entries]


def _min_cover(fixers: list[set[str]], order: list[str], exact_limit: int = 4) -> list[str]:
    """Smallest set of names hitting every set in ``fixers``: exact up to ``exact_limit`` names, then greedy."""
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


def _worst(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=lambda v: VERDICT_ORDER[v]) if len(verdicts) else Verdict.NOT_APPLICABLE.value


def analyse_coverage(
    run: Run, inventory: Inventory, *, as_of: datetime, profiles: Sequence[Profile] | None = None,
    at_risk_days: int = DEFAULT_AT_RISK_DAYS, engine: PathEngine | None = None,
    hypothetical: HypotheticalPki | None = None, judge: ChainJudge | None = None,
) -> CoverageResult:
    """Root coverage of every profile on every chain it may meet, roots to add, and the fleet view.

    Args:
        run: The collected run (its catalogue names the anchors).
        inventory: The device inventory (its device table gives the fleet view's groups).
        as_of: When to validate (tz-aware).
        profiles: ``inventory.build_profiles(run.catalog_object())``, if already built.
        at_risk_days: A chain that stops validating within this many days is ``at-risk``.
        engine: The path engine to share with the other analyses (a new one when None).
        hypothetical: The shadow PKI for the reserved-roots scenario (built when None).
        judge: A :class:`ChainJudge` to share (built from ``run``, ``engine`` when None).

    Returns:
        A :class:`CoverageResult`.

    Raises:
        InventoryError: when the inventory's trust stores do not resolve against the run's catalogue.
    """
    as_of = as_utc(as_of)
    judge = judge if judge is not None else ChainJudge(run, as_of=as_of, at_risk_days=at_risk_days, engine=engine)
    engine = judge.engine
    catalog = judge.catalog
    if profiles is None:
        profiles = inventory.build_profiles(catalog)
    rows: list[dict[str, Any]] = []
    for profile in profiles:
        store = judge.store_of(profile)
        idx = judge.met(profile)
        if not idx:
            rows.append({PROFILE: profile.key, DEVICES: profile.devices, TLS_STACK: profile.stack.id,
                         c.OBSERVATION_ID: -1, c.HOST: "", c.PORT: 0, c.REGION: profile.region, c.PROBE: "",
                         c.KEY_TYPE: "", VALID: False, ANCHOR_SHA256: "", ANCHOR_NAME: "", PATH_SHA256: [],
                         REASON: _MEETS_NONE, VERDICT: Verdict.NOT_APPLICABLE.value, RISKS: []})
            continue
        for i in idx:
            o = judge.rows[i]
            out = judge.outcome(i, store, profile.stack)
            rows.append({
                PROFILE: profile.key, DEVICES: profile.devices, TLS_STACK: profile.stack.id,
                c.OBSERVATION_ID: int(o[c.OBSERVATION_ID]), c.HOST: str(o[c.HOST]), c.PORT: int(o[c.PORT]),
                c.REGION: str(o[c.REGION]), c.PROBE: str(o[c.PROBE]), c.KEY_TYPE: str(o[c.KEY_TYPE]),
                VALID: out.verdict.valid, ANCHOR_SHA256: out.verdict.anchor_sha256, ANCHOR_NAME: out.anchor_name,
                PATH_SHA256: list(out.verdict.path_sha256), REASON: out.verdict.reason, VERDICT: out.kind.value,
                RISKS: list(out.risks),
            })
    cov = c.typed_frame(rows, COVERAGE_DTYPES) if rows else c.typed_frame([], COVERAGE_DTYPES)
    cov[PROFILE] = pd.Categorical(cov[PROFILE].astype(str), categories=[p.key for p in profiles])

    # Roots to add, per profile x scenario.
    order = _candidate_order(catalog)
    if hypothetical is None:
        hypothetical = HypotheticalPki(catalog, as_of)
    engine.add(hypothetical.shadow.values())
    future_by_kind = {kind: [engine.add(chain) for chain in shapes.values()]
                      for kind, shapes in hypothetical.chains.items()}
    candidates_real = {name: engine.add([catalog.entry(name).certificate])[0] for name in order}
    candidates_shadow = {name: engine.add([hypothetical.shadow[name]])[0] for name in order if name in hypothetical.shadow}
    answers: dict[tuple[Any, ...], tuple[int, list[set[str]], list[str]]] = {}

    def roots_question(base: tuple[str, ...], chains: list[tuple[tuple[str, ...], str | None]],
                       candidates: dict[str, str], stack: Stack) -> tuple[int, list[set[str]], list[str]]:
        """(failing chains, per failing chain the candidates that fix it, reasons no candidate fixes)."""
        failing, fixers, reasons = 0, [], []
        for chain, host in chains:
            verdict = engine.validate(chain, base, stack=stack, host=host, as_of=as_of)
            if verdict.valid:
                continue
            failing += 1
            # The store with the candidate added last (a firmware update appends a root), asked as a whole:
            # on GnuTLS the order of the store matters, on chain-top stacks only the top's issuer does.
            # Only a candidate named like an issuer (or a copy) of a served certificate can end a path
            # (RFC 5280 6.1: each certificate's issuer is the next one's subject), on every stack.
            names = {n for sha in chain for n in (engine.certificates[sha].issuer, engine.certificates[sha].subject)}
            fix = {name for name, sha in candidates.items()
                   if sha not in base and engine.certificates[sha].subject in names
                   and engine.valid(chain, (*base, sha), stack=stack, host=host, as_of=as_of)}
            fixers.append(fix)
            if not fix:
                reasons.append(verdict.reason)
        return failing, fixers, reasons

    add_rows: list[dict[str, Any]] = []
    by_scenario: dict[tuple[str, str], dict[str, Any]] = {}
    for profile in profiles:
        store = judge.store_of(profile)
        today = [(judge.chains[i], str(judge.rows[i][c.HOST])) for i in judge.met(profile)]
        shadow_store = engine.add(hypothetical.map_store(profile.store))
        future = [(chain, None) for kind in profile.key_types for chain in future_by_kind.get(kind, [])]
        questions = {
            Scenario.TODAY: (store, today, candidates_real),
            Scenario.NO_CROSS_SIGN: (store, [(judge.without_cross_signs(ch), h) for ch, h in today], candidates_real),
            Scenario.RESERVED_ROOTS: (shadow_store, future, candidates_shadow),
        }
        for scenario, (base, chains, candidates) in questions.items():
            distinct = list(dict.fromkeys(chains))
            answer_key = (base, tuple((chain, engine.host_key(chain[0], host, profile.stack) if chain else None)
                                      for chain, host in distinct), id(candidates), profile.stack.id)
            if answer_key not in answers:
                answers[answer_key] = roots_question(base, distinct, candidates, profile.stack)
            failing, fixers, reasons = answers[answer_key]
            row = {
                PROFILE: profile.key, DEVICES: profile.devices, SCENARIO: scenario.value, CHAINS: len(distinct),
                FAILING: failing, READY: failing == 0, ROOTS_TO_ADD: _min_cover(fixers, order),
                UNFIXABLE: sum(1 for f in fixers if not f), UNFIXABLE_REASONS: sorted(set(reasons)),
            }
            add_rows.append(row)
            by_scenario[(profile.key, scenario.value)] = row
    roots = c.typed_frame(add_rows, ROOTS_TO_ADD_DTYPES) if add_rows else c.typed_frame([], ROOTS_TO_ADD_DTYPES)

    fleet = fleet_view(cov, inventory)
    rows_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        rows_of.setdefault(row[PROFILE], []).append(row)
    summary_rows = []
    for profile in profiles:
        mine = rows_of.get(profile.key, [])
        verdicts = [str(r[VERDICT]) for r in mine]
        summary_rows.append({
            PROFILE: profile.key, DEVICES: profile.devices, GROUPS: list(profile.groups), TLS_STACK: profile.stack.id,
            VERDICT: _worst(verdicts), CHAINS: sum(1 for r in mine if r[c.OBSERVATION_ID] >= 0),
            COVERED: verdicts.count(Verdict.COVERED.value), AT_RISK: verdicts.count(Verdict.AT_RISK.value),
            BROKEN: verdicts.count(Verdict.BROKEN.value),
            RISKS: sorted({r for row in mine for r in row[RISKS]}),
            REASONS: sorted({str(row[REASON]) for row in mine if row[REASON] and row[REASON] != _MEETS_NONE}),
            ROOTS_TO_ADD: by_scenario[(profile.key, Scenario.TODAY.value)][ROOTS_TO_ADD],
            READY_NO_CROSS_SIGN: by_scenario[(profile.key, Scenario.NO_CROSS_SIGN.value)][READY],
            READY_RESERVED_ROOTS: by_scenario[(profile.key, Scenario.RESERVED_ROOTS.value)][READY],
        })
    prof = c.typed_frame(summary_rows, PROFILE_VERDICT_DTYPES) if summary_rows else c.typed_frame([], PROFILE_VERDICT_DTYPES)
    return CoverageResult(coverage=cov, roots_to_add=roots, fleet=fleet, profiles=prof, validations=engine.calls)


def stack_alternatives(
    judge: ChainJudge, profiles: Sequence[Profile], *, stacks: Sequence[Stack | str] = STACK_IDS,
) -> pd.DataFrame:
    """Same store, other stacks: each profile's worst verdict with its own store on every other stack.

    Shows where a stack upgrade or a build flag (``WOLFSSL_ALT_CERT_CHAINS``,
    ``CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY``,
    ``X509_V_FLAG_PARTIAL_CHAIN``) changes the verdict: ``changed`` is true
    where ``other_verdict`` differs from the profile's own ``verdict``.

    Args:
        judge: The run's :class:`ChainJudge` (shared with coverage, so nothing is validated twice).
        profiles: The profiles.
        stacks: The stacks to compare with (default every known stack).

    Returns:
        Columns :data:`iotaudit.columns.STACK_ALTERNATIVES_DTYPES`, one row per profile x other stack;
        profiles that meet no chain have no rows.
    """
    others = [get_stack(s) for s in stacks]
    rows = []
    for profile in profiles:
        idx = judge.met(profile)
        if not idx:
            continue
        store = judge.store_of(profile)
        own = _worst([judge.outcome(i, store, profile.stack).kind.value for i in idx])
        for stack in others:
            if stack.id == profile.stack.id:
                continue
            outs = [judge.outcome(i, store, stack) for i in idx]
            other = _worst([o.kind.value for o in outs])
            rows.append({
                PROFILE: profile.key, TLS_STACK: profile.stack.id, OTHER_STACK: stack.id, VERDICT: own,
                OTHER_VERDICT: other, CHANGED: other != own, DEVICES: profile.devices, CHAINS: len(idx),
                VALID: sum(1 for o in outs if o.verdict.valid),
                REASONS: sorted({o.verdict.reason for o in outs if o.verdict.reason}),
            })
    frame = c.typed_frame(rows, STACK_ALTERNATIVES_DTYPES)
    frame[PROFILE] = pd.Categorical(frame[PROFILE].astype(str), categories=[p.key for p in profiles])
    return frame


def coverage(
    run: Run, inventory: Inventory, *, as_of: datetime, profiles: Sequence[Profile] | None = None,
    at_risk_days: int = DEFAULT_AT_RISK_DAYS,
) -> pd.DataFrame:
    """One row per profile x observation it may meet (:data:`COVERAGE_DTYPES`); see :func:`analyse_coverage`."""
    return analyse_coverage(run, inventory, as_of=as_of, profiles=profiles, at_risk_days=at_risk_days).coverage


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
