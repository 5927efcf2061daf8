"""Firmware profiles as frozen values: trust store, TLS stack, key types, endpoints, pins.

An inventory (:mod:`iotaudit.inventory`) groups devices into distinct
profiles; every analysis (root coverage, expiry, pinning) is asked once per
:class:`Profile`, never per device, and never sees a dict.  This module also
answers "which served chains of a run does a profile meet" (:func:`meets`),
which the three analyses share.

Imports point down only: columns, errors, certs, pins, stacks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd
from cryptography import x509

from . import columns as c
from .certs import cert_sha256
from .columns import PinScope, as_list, as_utc
from .pins import Pin, parse_pin
from .stacks import Stack, get_stack

__all__ = ["ALL", "Profile", "chain_observations", "meets", "profiles_from_frame"]

ALL = "*"
_KEY_TYPES = (c.KeyType.RSA.value, c.KeyType.EC.value)


@dataclass(frozen=True, slots=True)
class Profile:
    """One distinct firmware profile: what every one of its devices trusts and how it validates.

    Attributes:
        key: Unique profile key (the profile name, ``~2``, ``~3`` ... for further variants).
        name: The profile name as the inventory writes it.
        stack: The device's TLS stack (:class:`iotaudit.stacks.Stack`), which decides path building.
        store: The trust store, in the order the firmware holds it (GnuTLS's verdict depends on it).
        key_types: Leaf key types its TLS stack offers (``rsa``, ``ec``).
        region: AWS region it connects to, or ``*``.
        endpoints: Host names / ``host:port`` / shell patterns it connects to; ``("*",)`` = every endpoint of its region.
        devices: Number of devices with this profile.
        groups: Fleet groups its devices are in.
        trust_store: The ``trust_store`` cell as written (catalogue names or a PEM path).
        pins: Parsed pins (empty: no pinning).
        pin_scope: Which certificates the pins are compared with.
        pin_expiry: When the app stops enforcing its pins (None: never).
        first_row: Row number of the profile's first device in the inventory file.
    """

    key: str
    name: str
    stack: Stack
    store: tuple[x509.Certificate, ...]
    key_types: tuple[str, ...]
    region: str = ALL
    endpoints: tuple[str, ...] = (ALL,)
    devices: int = 0
    groups: tuple[str, ...] = ()
    trust_store: str = ""
    pins: tuple[Pin, ...] = ()
    pin_scope: PinScope = PinScope.ANY
    pin_expiry: datetime | None = None
    first_row: int = 0
    store_sha256: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a Profile needs a key")
        if not isinstance(self.stack, Stack):
            object.__setattr__(self, "stack", get_stack(self.stack))
        object.__setattr__(self, "store", tuple(self.store))
        object.__setattr__(self, "key_types", tuple(self.key_types))
        object.__setattr__(self, "endpoints", tuple(self.endpoints) or (ALL,))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "pins", tuple(self.pins))
        object.__setattr__(self, "pin_scope", PinScope(self.pin_scope))
        bad = [k for k in self.key_types if k not in _KEY_TYPES]
        if bad:
            raise ValueError(f"profile {self.key!r}: unknown key type {bad[0]!r} (use {', '.join(_KEY_TYPES)})")
        if self.devices < 0:
            raise ValueError(f"profile {self.key!r}: devices cannot be negative")
        if ALL in self.endpoints and len(self.endpoints) > 1:
            raise ValueError(f"profile {self.key!r}: endpoints mixes * with host names")
        if self.pin_expiry is not None:
            object.__setattr__(self, "pin_expiry", as_utc(self.pin_expiry))
        object.__setattr__(self, "store_sha256", tuple(cert_sha256(cert) for cert in self.store))

    def pins_enforced(self, as_of: datetime) -> bool:
        """Whether the device enforces its pins at ``as_of`` (it has pins, and their expiry has not passed)."""
        return bool(self.pins) and (self.pin_expiry is None or as_utc(as_of) <= self.pin_expiry)


def _pin_expiry(value: Any) -> datetime | None:
    if value is None or value is pd.NaT:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def profiles_from_frame(
    profiles: pd.DataFrame, stores: Mapping[str, Sequence[x509.Certificate]],
) -> tuple[Profile, ...]:
    """:class:`Profile` values from an inventory's profiles frame (:data:`iotaudit.columns.PROFILE_DTYPES`).

    Args:
        profiles: ``Inventory.profiles``.
        stores: ``profile_key`` -> its resolved trust store (``Inventory.resolve``).

    Raises:
        KeyError: naming a profile whose store is missing from ``stores``.
        ValueError: when a row does not make a valid profile (unknown stack id, bad key type).
    """
    out = []
    for row in profiles.to_dict("records"):
        key = str(row[c.PROFILE_KEY])
        if key not in stores:
            raise KeyError(f"profile {key!r} has no resolved trust store")
        out.append(Profile(
            key=key, name=str(row[c.PROFILE]), stack=get_stack(str(row[c.TLS_STACK])), store=tuple(stores[key]),
            key_types=tuple(str(k) for k in as_list(row[c.KEY_TYPES])), region=str(row[c.REGION]),
            endpoints=tuple(str(e) for e in as_list(row[c.ENDPOINTS])), devices=int(row[c.DEVICES]),
            groups=tuple(str(g) for g in as_list(row[c.GROUPS])), trust_store=str(row[c.TRUST_STORE]),
            pins=tuple(parse_pin(str(p)) for p in as_list(row[c.PINS])),
            pin_scope=PinScope(str(row[c.PIN_SCOPE] or PinScope.ANY.value)),
            pin_expiry=_pin_expiry(row[c.PIN_EXPIRY]), first_row=int(row[c.FIRST_ROW]),
        ))
    return tuple(out)


# ---------------------------------------------------------------------------
# Profiles x observations: which served chains a profile meets
# ---------------------------------------------------------------------------

_AWS_HOST_REGION = re.compile(r"\.iot\.([a-z0-9-]+)\.amazonaws\.com\.?$", re.IGNORECASE)


def chain_observations(run: Any, *, statuses: Iterable[str] = c.CHAIN_STATUSES) -> pd.DataFrame:
    """The run's observations that carry a chain, with the leaf ``key_type`` and a region for each.

    Observations whose region is empty (plain ``host:port`` targets, imports)
    get the region named in an AWS IoT host name (``*.iot.<region>.amazonaws.com``).

    Returns:
        ``run.observations`` restricted to :data:`iotaudit.columns.CHAIN_STATUSES`,
        plus ``key_type`` (leaf key type; a category).
    """
    obs = run.observations
    obs = obs[obs[c.STATUS].astype(str).isin(frozenset(statuses))].copy()
    # A boolean array, not a list: an empty list would select no *columns* (a run with no chain at all).
    obs = obs[np.array([len(ch) > 0 for ch in obs[c.CHAIN_SHA256]], dtype=bool)]
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
    host = host.lower()
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern == ALL:
            return True
        name, _, want_port = pattern.rpartition(":") if re.search(r":\d+$", pattern) else (pattern, "", "")
        if want_port and int(want_port) != int(port):
            continue
        if fnmatchcase(host, name):
            return True
    return False


def meets(profile: Profile, observations: pd.DataFrame, *,
          statuses: Iterable[str] = c.CHAIN_STATUSES) -> np.ndarray:
    """Which observations a profile may meet.

    A profile meets an observation with a chain (status in
    :data:`iotaudit.columns.CHAIN_STATUSES`) in its region (``*`` = any),
    at one of its endpoints (``("*",)`` = every endpoint of the region; entries
    may be ``host``, ``host:port`` or shell patterns), whose leaf key type is
    one its TLS stack offers.

    Args:
        profile: The profile.
        observations: :func:`chain_observations` output (needs ``key_type``).

    Returns:
        Boolean mask over ``observations``.

    Raises:
        ValueError: when ``observations`` has no ``key_type`` column.
    """
    if c.KEY_TYPE not in observations.columns:
        raise ValueError("meets() needs observations with a key_type column (see chain_observations)")
    status_ok = observations[c.STATUS].astype(str).isin(frozenset(statuses)).to_numpy()
    region_ok = np.ones(len(observations), dtype=bool) if profile.region == ALL else (
        observations[c.REGION].astype(str).str.lower() == profile.region
    ).to_numpy()
    kind_ok = observations[c.KEY_TYPE].astype(str).isin(set(profile.key_types)).to_numpy()
    if profile.endpoints == (ALL,):
        endpoint_ok = np.ones(len(observations), dtype=bool)
    else:
        endpoint_ok = np.array([
            _endpoint_matches(profile.endpoints, str(h), int(p))
            for h, p in zip(observations[c.HOST], observations[c.PORT], strict=True)
        ], dtype=bool)
    return status_ok & region_ok & kind_ok & endpoint_ok
