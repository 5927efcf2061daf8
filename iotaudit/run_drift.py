"""Drift: what changed between two runs of the same endpoints.

AWS rotates leaves, moves endpoints to new intermediates (e.g. Amazon RSA
2048 M01 -> M04) and may one day serve chains to Amazon Root CA 2 or 4 (the
"reserved for future use" roots of the AWS IoT Core "Server Authentication"
document).  Comparing two collections shows such a change the day it
happens, before a device fails on it.

An endpoint is identified by ``host``, ``port`` and the ALPN protocols
offered (port 443 answers differently with ``x-amzn-mqtt-ca``).  Lab runs
use random ports, so compare two collections of the *same* lab session, or
two collections of real endpoints.

Every change is one row of :func:`drift`; nothing raises for a single odd
endpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as c
from .errors import WriteError
from .store import Run, load_run

# --- drift columns (candidates for iotaudit/columns.py) ------------------------
CHANGE = "change"          # a DriftChange value
CERTIFICATE = "certificate"  # human label: catalogue name, else subject CN
CERT_ROLE = "role"         # a CertificateRole value, "" when the row is not about one certificate
OLD = "old"                # the value before ("" when not applicable)
NEW = "new"                # the value after
DETAIL = "detail"          # one sentence a reader understands without the other columns

DRIFT_DTYPES: dict[str, Any] = {
    CHANGE: "category",
    c.HOST: "string",
    c.PORT: "Int32",
    c.ALPN_OFFERED: "string",
    c.KEY_TYPE: "string",
    c.PROBE: "string",
    c.SHA256: "string",
    CERTIFICATE: "string",
    CERT_ROLE: "string",
    OLD: "string",
    NEW: "string",
    DETAIL: "string",
}


class DriftChange(str, Enum):
    """Kinds of change between two runs, most alarming first (the order of :func:`drift`'s rows)."""

    STOPPED_ANSWERING = "stopped-answering"      # a probe that captured a chain no longer does
    TOP_CHANGED = "top-changed"                  # the served chain now ends at another top / points at another anchor
    NEW_ISSUER = "new-issuer"                    # an issuer name never seen in the old run
    NEW_INTERMEDIATE = "new-intermediate"        # a CA certificate never seen in the old run
    CERTIFICATE_ADDED = "certificate-added"      # endpoint x key type serves a certificate it did not serve
    CERTIFICATE_REMOVED = "certificate-removed"  # endpoint x key type no longer serves a certificate
    ENDPOINT_REMOVED = "endpoint-removed"        # endpoint not probed in the new run
    ENDPOINT_ADDED = "endpoint-added"            # endpoint not probed in the old run
    STARTED_ANSWERING = "started-answering"      # a probe captures a chain it did not capture before
    STATUS_CHANGED = "status-changed"            # any other change of probe status
    NOT_COMPARED = "not-compared"                # a probe failed on our side (local-error) or an import was incomplete:
                                                 # no fact about the endpoint, so its chains are not compared

    def __str__(self) -> str:
        return self.value


class CertificateRole(str, Enum):
    """Role of a certificate in a served chain, as a report names it."""

    LEAF = "leaf"
    INTERMEDIATE = "intermediate"
    CROSS_SIGNED_ROOT = "cross-signed root"  # a root's key certified by another root (Starfield cross-sign)
    ROOT = "root"

    def __str__(self) -> str:
        return self.value


_ORDER = {change.value: rank for rank, change in enumerate(DriftChange)}
Endpoint = tuple[str, int, str]  # host, port, alpn_offered


@dataclass(frozen=True, slots=True)
class _RunView:
    """What drift needs from one run, indexed."""

    status: dict[tuple[Endpoint, str], str]             # (endpoint, probe) -> status
    served: dict[tuple[Endpoint, str], list[list[str]]]  # (endpoint, key type) -> chains (sha256 lists)
    certificates: dict[str, dict[str, Any]]             # sha256 -> certificate row
    catalog_roles: dict[str, str]                       # catalogue name -> role

    def __post_init__(self) -> None:
        for (endpoint, _probe) in self.status:
            if len(endpoint) != 3:
                raise ValueError(f"endpoint key {endpoint!r} is not (host, port, alpn_offered)")

    @property
    def endpoints(self) -> set[Endpoint]:
        return {endpoint for endpoint, _ in self.status}

    def role(self, sha256: str) -> str:
        """Leaf, intermediate, cross-signed root or root, from the certificate and catalogue rows."""
        row = self.certificates.get(sha256)
        if row is None:
            return ""
        if not row[c.IS_CA]:
            return CertificateRole.LEAF.value
        if row[c.SELF_SIGNED]:
            return CertificateRole.ROOT.value
        name = row[c.CATALOG_NAME] or ""
        if name and self.catalog_roles.get(name) in ("root", "cross-signed"):
            # Same key as a catalogue root but not self-signed: the Starfield cross-sign.
            return CertificateRole.CROSS_SIGNED_ROOT.value
        return CertificateRole.INTERMEDIATE.value

    def label(self, sha256: str) -> str:
        """Catalogue name (with "same key as" when only the key matched), else subject CN, else a short hash."""
        row = self.certificates.get(sha256)
        if row is None:
            return sha256[:16]
        name = row[c.CATALOG_NAME] or ""
        if name:
            return name if row[c.CATALOG_MATCH] == "certificate" else f"{name} (same key, other certificate)"
        return str(row[c.SUBJECT_CN] or row[c.SUBJECT] or sha256[:16])

    def issuer(self, sha256: str) -> str:
        row = self.certificates.get(sha256)
        return "" if row is None else str(row[c.ISSUER])

    def top(self, chain: list[str]) -> str:
        """What the served chain points at: its last certificate and that certificate's issuer."""
        if not chain:
            return ""
        last = chain[-1]
        row = self.certificates.get(last)
        issuer_cn = "" if row is None else str(row[c.ISSUER_CN])
        return f"{self.label(last)} <- issued by {issuer_cn}" if issuer_cn else self.label(last)


def _leaf_key_type(chain: list[str], certificates: Mapping[str, Mapping[str, Any]]) -> str:
    """Key type of the chain's leaf: the first non-CA certificate served, else the first one."""
    rows = [certificates.get(fp) for fp in chain]
    for row in rows:
        if row is not None and not row[c.IS_CA]:
            return str(row[c.KEY_TYPE])
    return str(rows[0][c.KEY_TYPE]) if rows and rows[0] is not None else c.KeyType.OTHER.value


def _view(run: Run) -> _RunView:
    certificates = {row[c.SHA256]: row for row in run.certificates.to_dict("records")}
    catalog_roles = {str(n): str(r) for n, r in zip(run.catalog[c.NAME], run.catalog[c.ROLE], strict=True)}
    status: dict[tuple[Endpoint, str], str] = {}
    served: dict[tuple[Endpoint, str], list[list[str]]] = {}
    obs = run.observations
    for host, port, alpn, probe, st, chain in zip(
        obs[c.HOST], obs[c.PORT], obs[c.ALPN_OFFERED].fillna(""), obs[c.PROBE], obs[c.STATUS], obs[c.CHAIN_SHA256],
        strict=True,
    ):
        endpoint: Endpoint = (str(host), int(port), str(alpn))
        st = str(st)
        # Keep the most informative status when a probe was repeated: a chain beats no chain.
        if (endpoint, str(probe)) not in status or st in c.CHAIN_STATUSES:
            status[(endpoint, str(probe))] = st
        chain = [str(fp) for fp in (chain if chain is not None else [])]
        if st in c.CHAIN_STATUSES and chain:
            served.setdefault((endpoint, _leaf_key_type(chain, certificates)), []).append(chain)
    return _RunView(status, served, certificates, catalog_roles)


def certificate_roles(run: Run) -> dict[str, str]:
    """Role of every certificate of ``run`` (sha256 -> ``leaf``, ``intermediate``, ``cross-signed root``, ``root``)."""
    view = _view(run)
    return {fp: view.role(fp) for fp in view.certificates}


def _row(change: DriftChange, endpoint: Endpoint | None = None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {CHANGE: change.value}
    if endpoint is not None:
        row[c.HOST], row[c.PORT], row[c.ALPN_OFFERED] = endpoint
    row.update(fields)
    return row


def _where(endpoint: Endpoint) -> str:
    host, port, alpn = endpoint
    return f"{host}:{port}" + (f" (ALPN {alpn})" if alpn else "")


def drift(old_run: Run, new_run: Run) -> pd.DataFrame:
    """Compare two runs: one row per change, most alarming first.

    Changes found (see :class:`DriftChange`): endpoints that stopped (or
    started) answering with a chain or changed status; endpoints probed in
    only one run; per endpoint x key type of the leaf, certificates added and
    removed and a changed chain top (the last served certificate and its
    issuer, i.e. the anchor the chain points devices at); run-wide, CA
    certificates and issuer names that the old run never saw.

    Args:
        old_run: The earlier run (the baseline).
        new_run: The later run.

    Returns:
        A frame with the columns of :data:`DRIFT_DTYPES`; empty when nothing changed.
    """
    old, new = _view(old_run), _view(new_run)
    rows: list[dict[str, Any]] = []

    for endpoint in sorted(old.endpoints - new.endpoints):
        rows.append(_row(DriftChange.ENDPOINT_REMOVED, endpoint,
                         detail=f"{_where(endpoint)} was probed in the old run, not in the new one"))
    for endpoint in sorted(new.endpoints - old.endpoints):
        rows.append(_row(DriftChange.ENDPOINT_ADDED, endpoint,
                         detail=f"{_where(endpoint)} is new in this run"))

    # A local-error probe (our file descriptors, memory) or an incomplete import says nothing about the
    # endpoint: comparing it would report thousands of false changes after one bad night (issue 9 item 4).
    not_compared: set[Endpoint] = set()
    for key in sorted(set(old.status) & set(new.status)):
        endpoint, probe = key
        before, after = old.status[key], new.status[key]
        if before in c.UNKNOWN_STATUSES or after in c.UNKNOWN_STATUSES:
            not_compared.add(endpoint)
            which = "old" if before in c.UNKNOWN_STATUSES else "new"
            rows.append(_row(DriftChange.NOT_COMPARED, endpoint, probe=probe, old=before, new=after,
                             detail=f"{_where(endpoint)} probe {probe} not compared: {before} -> {after} (the {which} "
                                    "run has no fact about it; its chains are not compared either)"))
            continue
        if before == after:
            continue
        had, has = before in c.CHAIN_STATUSES, after in c.CHAIN_STATUSES
        if had and not has:
            change, verb = DriftChange.STOPPED_ANSWERING, "no longer serves a chain"
        elif has and not had:
            change, verb = DriftChange.STARTED_ANSWERING, "now serves a chain"
        else:
            change, verb = DriftChange.STATUS_CHANGED, "changed status"
        rows.append(_row(change, endpoint, probe=probe, old=before, new=after,
                         detail=f"{_where(endpoint)} probe {probe} {verb}: {before} -> {after}"))

    common_endpoints = old.endpoints & new.endpoints
    for key in sorted(set(old.served) | set(new.served)):
        endpoint, key_type = key
        if endpoint not in common_endpoints or endpoint in not_compared:
            continue  # already reported as endpoint-added / endpoint-removed / not-compared
        old_chains, new_chains = old.served.get(key, []), new.served.get(key, [])
        old_set = {fp for chain in old_chains for fp in chain}
        new_set = {fp for chain in new_chains for fp in chain}
        for fp in sorted(new_set - old_set):
            rows.append(_row(DriftChange.CERTIFICATE_ADDED, endpoint, key_type=key_type, sha256=fp,
                             certificate=new.label(fp), role=new.role(fp),
                             detail=f"{_where(endpoint)} ({key_type}) now serves {new.role(fp) or 'certificate'} "
                                    f"{new.label(fp)}"))
        for fp in sorted(old_set - new_set):
            rows.append(_row(DriftChange.CERTIFICATE_REMOVED, endpoint, key_type=key_type, sha256=fp,
                             certificate=old.label(fp), role=old.role(fp),
                             detail=f"{_where(endpoint)} ({key_type}) no longer serves {old.role(fp) or 'certificate'} "
                                    f"{old.label(fp)}"))
        old_tops = sorted({old.top(chain) for chain in old_chains})
        new_tops = sorted({new.top(chain) for chain in new_chains})
        if old_chains and new_chains and old_tops != new_tops:
            rows.append(_row(DriftChange.TOP_CHANGED, endpoint, key_type=key_type,
                             old="; ".join(old_tops), new="; ".join(new_tops),
                             detail=f"{_where(endpoint)} ({key_type}) chain top changed: "
                                    f"{'; '.join(old_tops)} -> {'; '.join(new_tops)}"))

    rows.extend(_run_wide(old, new))
    frame = c.typed_frame(rows, DRIFT_DTYPES) if rows else c.typed_frame([], DRIFT_DTYPES)
    if frame.empty:
        frame[CHANGE] = pd.Categorical([], categories=[x.value for x in DriftChange])
        return frame
    frame[CHANGE] = pd.Categorical(frame[CHANGE].astype(str), categories=[x.value for x in DriftChange])
    order = frame[CHANGE].astype(str).map(_ORDER)
    frame = frame.assign(_order=order).sort_values(
        ["_order", c.HOST, c.PORT, c.KEY_TYPE, c.PROBE], na_position="first", kind="stable"
    ).drop(columns="_order")
    return frame.reset_index(drop=True)


def _run_wide(old: _RunView, new: _RunView) -> Iterable[dict[str, Any]]:
    """New CA certificates and new issuer names anywhere in the new run's chains."""
    def served_by(view: _RunView) -> dict[str, set[Endpoint]]:
        where: dict[str, set[Endpoint]] = {}
        for (endpoint, _kt), chains in view.served.items():
            for chain in chains:
                for fp in chain:
                    where.setdefault(fp, set()).add(endpoint)
        return where

    old_where, new_where = served_by(old), served_by(new)
    old_issuers = {old.issuer(fp) for fp in old_where}
    seen_issuers: set[str] = set()
    for fp in sorted(set(new_where) - set(old_where)):
        hosts = ", ".join(_where(e) for e in sorted(new_where[fp]))
        role = new.role(fp)
        if role in (CertificateRole.INTERMEDIATE.value, CertificateRole.CROSS_SIGNED_ROOT.value,
                    CertificateRole.ROOT.value):
            yield _row(DriftChange.NEW_INTERMEDIATE, sha256=fp, certificate=new.label(fp), role=role,
                       new=new.label(fp), detail=f"new CA certificate {new.label(fp)} ({role}) served by {hosts}")
        issuer = new.issuer(fp)
        if issuer and issuer not in old_issuers and issuer not in seen_issuers:
            seen_issuers.add(issuer)
            yield _row(DriftChange.NEW_ISSUER, sha256=fp, certificate=new.label(fp), role=role, new=issuer,
                       detail=f"new issuer {issuer} (of {new.label(fp)}) served by {hosts}")


def drift_summary(frame: pd.DataFrame) -> dict[str, int]:
    """Number of rows per :class:`DriftChange` value (every kind present, zero when absent)."""
    counts = frame[CHANGE].astype(str).value_counts() if not frame.empty else pd.Series(dtype="int64")
    return {change.value: int(counts.get(change.value, 0)) for change in DriftChange}


# --- command line ----------------------------------------------------------------

def drift_command(args: argparse.Namespace) -> int:
    """``iotaudit drift`` (arguments defined in :mod:`iotaudit.cli`); returns the exit status."""
    frame = drift(load_run(args.old_run), load_run(args.new_run))
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if args.out.suffix == ".parquet":
                frame.to_parquet(args.out, index=False)
            else:
                frame.to_csv(args.out, index=False)
        except (FileExistsError, NotADirectoryError) as err:  # a file where a parent directory should be
            raise WriteError(args.out, f"{err.filename or args.out.parent} is not a directory") from err
        except OSError as err:
            raise WriteError(args.out, os.strerror(err.errno) if err.errno else str(err)) from err
    if frame.empty:
        print(f"no drift between {args.old_run} and {args.new_run}")
        return 0
    counts = {k: v for k, v in drift_summary(frame).items() if v}
    print(f"{len(frame)} change(s) between {args.old_run} and {args.new_run}: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()))
    for text in frame[DETAIL]:
        print(f"  {text}")
    sys.stdout.flush()
    return 1 if args.fail_on_change else 0
