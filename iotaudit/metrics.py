"""Prometheus textfile export: expiry dates and verdicts as gauges node_exporter can pick up.

Names follow the vocabulary of existing certificate exporters so dashboards
and alert rules carry over: enix/x509-certificate-exporter publishes
``x509_cert_not_after`` / ``x509_cert_not_before`` as absolute Unix-second
gauges and ``x509_cert_expired`` as 0/1, one series per certificate, labelled
``subject_CN``, ``issuer_CN``, ``serial_number`` (its docs/metrics.md; the FAQ
explains why absolute times beat "seconds left": constant samples compress,
and ``(x509_cert_not_after - time()) / 86400`` is exact at query time).

iotaudit adds what no certificate exporter can know, because it needs the
device inventory (the "three dates" of blackbox_exporter issues 340/589/637):

* ``iotaudit_profile_break_timestamp_seconds{profile}``: when a firmware
  profile loses its last valid path (``+Inf``: not within the horizon);
* ``iotaudit_profile_firmware_break_timestamp_seconds{profile}``: when nothing
  AWS could serve validates with the firmware's store, stack and pins any more:
  when the firmware must be updated by;
* ``iotaudit_anchor_not_after_seconds{profile,anchor}``: anchors inside each
  firmware's trust store;
* ``iotaudit_devices{verdict}``: devices per fleet verdict;
* ``iotaudit_probe_chain_captured{host,port,probe}``: 1 when the probe got a
  chain (alert when an endpoint stops answering);
* ``iotaudit_run_timestamp_seconds`` / ``iotaudit_as_of_timestamp_seconds``.

The file is written to a temporary sibling and renamed into place, so the
node_exporter textfile collector never reads half a file (its docs ask for
exactly this).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from . import columns as c
from .run_drift import certificate_roles
from .store import Run

# Verdict order, worst first: a profile takes the worst verdict of the chains it may meet.
VERDICTS = c.VERDICTS_WORST_FIRST


def escape_label_value(value: object) -> str:
    r"""Escape a label value per the Prometheus text exposition format (``\\``, ``\"``, ``\n``)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _seconds(value: Any) -> float:
    """Unix seconds of a timestamp; NaT/None -> +Inf ("not within the horizon")."""
    if value is None or value is pd.NaT or (not isinstance(value, datetime) and pd.isna(value)):
        return math.inf
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class _Family:
    """One metric family: HELP, TYPE and its samples, labels escaped."""

    __slots__ = ("help", "name", "samples")

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self.samples: dict[tuple[tuple[str, str], ...], float] = {}

    def add(self, value: float, **labels: object) -> None:
        key = tuple((k, str(v)) for k, v in labels.items())
        self.samples[key] = value  # one series per label set: the last value wins

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} gauge"]
        for key, value in self.samples.items():
            labels = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in key)
            lines.append(f"{self.name}{{{labels}}} {_format_value(value)}" if labels
                         else f"{self.name} {_format_value(value)}")
        return "\n".join(lines) + "\n"


def _certificate_hosts(run: Run) -> dict[str, str]:
    """sha256 -> "host:port" list of endpoints that served it (sorted, comma-joined)."""
    obs = run.observations[[c.OBSERVATION_ID, c.HOST, c.PORT]]
    merged = run.chains.merge(obs, on=c.OBSERVATION_ID, how="left")
    hosts: dict[str, set[str]] = {}
    for fp, host, port in zip(merged[c.SHA256], merged[c.HOST], merged[c.PORT], strict=True):
        hosts.setdefault(str(fp), set()).add(f"{host}:{port}")
    return {fp: ",".join(sorted(v)) for fp, v in hosts.items()}


def profile_verdicts(coverage: pd.DataFrame) -> pd.DataFrame:
    """Worst verdict per profile over the chains it may meet, with its device count.

    Args:
        coverage: The audit's coverage frame (``profile``, ``devices``, ``verdict``).

    Returns:
        Columns ``profile``, ``devices``, ``verdict`` (one of :data:`VERDICTS`), one row per profile.
    """
    if coverage.empty:
        return pd.DataFrame({"profile": pd.Series(dtype="string"), "devices": pd.Series(dtype="int64"),
                             "verdict": pd.Series(dtype="string")})
    rank = {v: i for i, v in enumerate(VERDICTS)}
    frame = coverage[["profile", "devices", "verdict"]].copy()
    frame["verdict"] = frame["verdict"].astype(str)
    frame["_rank"] = frame["verdict"].map(rank).fillna(len(VERDICTS)).astype(int)
    worst = frame.sort_values("_rank", kind="stable").groupby("profile", sort=True, observed=True).first()
    worst = worst.reset_index()[["profile", "devices", "verdict"]]
    worst["devices"] = worst["devices"].astype("int64")
    return worst


def render_metrics(
    run: Run,
    *,
    as_of: datetime,
    coverage: pd.DataFrame | None = None,
    expiry: pd.DataFrame | None = None,
    anchors_expiry: pd.DataFrame | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> str:
    """The textfile content: certificate gauges from the run, profile gauges from the audit frames.

    Args:
        run: The collection; every certificate it met becomes one ``x509_cert_*`` series.
        as_of: The evaluation time (``x509_cert_expired`` is computed at it).
        coverage: The audit's coverage frame, for ``iotaudit_devices{verdict}``.
        expiry: The audit's per-profile break dates (``profile``, ``devices``, ``break_date``).
        anchors_expiry: The audit's anchors per profile (``profile``, ``anchor_name``, ``anchor_sha256``, ``not_after``).
        extra_labels: Labels added to every series (e.g. ``{"fleet": "prod"}``).

    Returns:
        Prometheus text exposition format (version 0.0.4), ending with a newline.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    extra = dict(extra_labels or {})
    now = as_of.timestamp()
    roles = certificate_roles(run)
    hosts = _certificate_hosts(run)

    not_after = _Family("x509_cert_not_after", "Certificate expiration date (not_after) in Unix seconds, one series per certificate served")
    not_before = _Family("x509_cert_not_before", "Certificate validity start (not_before) in Unix seconds")
    expired = _Family("x509_cert_expired", "1 if the certificate was expired at the audit's as_of time, else 0")
    for row in run.certificates.to_dict("records"):
        labels = {
            **extra,
            "subject_CN": row[c.SUBJECT_CN] or "",
            "issuer_CN": row[c.ISSUER_CN] or "",
            "serial_number": row[c.SERIAL] or "",
            "sha256": row[c.SHA256],
            "role": roles.get(row[c.SHA256], ""),
            "catalog_name": row[c.CATALOG_NAME] or "",
            "endpoints": hosts.get(row[c.SHA256], ""),
        }
        after, before = _seconds(row[c.NOT_AFTER]), _seconds(row[c.NOT_BEFORE])
        not_after.add(after, **labels)
        not_before.add(before, **labels)
        expired.add(1.0 if after <= now else 0.0, **labels)

    families = [not_after, not_before, expired]

    captured = _Family("iotaudit_probe_chain_captured", "1 when the probe captured a server chain, 0 when it did not (see status)")
    unknown = _Family("iotaudit_probes_unknown",
                      "Probes that say nothing about their endpoint (local-error on the collecting machine, "
                      "chain-incomplete imports): left out of iotaudit_probe_chain_captured")
    unknown_counts = {status: 0 for status in sorted(c.UNKNOWN_STATUSES)}
    for host, port, probe, status in zip(run.observations[c.HOST], run.observations[c.PORT],
                                         run.observations[c.PROBE], run.observations[c.STATUS], strict=True):
        if str(status) in c.UNKNOWN_STATUSES:  # not a fact about the endpoint: no 0 to alert on
            unknown_counts[str(status)] += 1
            continue
        captured.add(1.0 if str(status) in c.CHAIN_STATUSES else 0.0,
                     **extra, host=host, port=int(port), probe=probe, status=status)
    for status, count in unknown_counts.items():
        unknown.add(float(count), **extra, status=status)
    families.extend([captured, unknown])

    if expiry is not None and not expiry.empty:
        breaks = _Family("iotaudit_profile_break_timestamp_seconds",
                         "When the profile loses its last valid path to AWS IoT, Unix seconds (+Inf: not within the horizon)")
        dark = _Family("iotaudit_profile_dark_timestamp_seconds",
                       "When every chain the profile may meet has lost its paths, Unix seconds (+Inf: not within the horizon)")
        renewed = _Family("iotaudit_profile_firmware_break_timestamp_seconds",
                          "When nothing AWS could serve validates with the profile's store, stack and pins any more: "
                          "the date its firmware must be updated by, Unix seconds (+Inf: not within the horizon)")
        devices = _Family("iotaudit_profile_devices", "Devices running the profile")
        for row in expiry.to_dict("records"):
            breaks.add(_seconds(row.get("break_date")), **extra, profile=row["profile"])
            if "dark_date" in row:
                dark.add(_seconds(row.get("dark_date")), **extra, profile=row["profile"])
            if c.FIRMWARE_BREAK_DATE in row:
                renewed.add(_seconds(row.get(c.FIRMWARE_BREAK_DATE)), **extra, profile=row["profile"])
            devices.add(float(row.get("devices", 0) or 0), **extra, profile=row["profile"])
        families += [f for f in (breaks, dark, renewed, devices) if f.samples]

    if anchors_expiry is not None and not anchors_expiry.empty:
        anchors = _Family("iotaudit_anchor_not_after_seconds",
                          "Expiration of each trust anchor inside each profile's trust store, Unix seconds")
        for row in anchors_expiry.to_dict("records"):
            anchors.add(_seconds(row.get("not_after")), **extra, profile=row["profile"],
                        anchor=row.get("anchor_name") or "", sha256=row.get("anchor_sha256") or "")
        families.append(anchors)

    if coverage is not None:
        verdicts = profile_verdicts(coverage)
        fleet = _Family("iotaudit_devices", "Devices per fleet verdict (worst verdict over the chains each profile may meet)")
        totals = verdicts.groupby("verdict")["devices"].sum() if not verdicts.empty else pd.Series(dtype="int64")
        for verdict in VERDICTS:
            fleet.add(float(totals.get(verdict, 0)), **extra, verdict=verdict)
        families.append(fleet)

    run_time = _Family("iotaudit_run_timestamp_seconds", "When the collection was made, Unix seconds")
    run_time.add(_seconds(run.created_at), **extra)
    audit_time = _Family("iotaudit_as_of_timestamp_seconds", "The as_of time the verdicts were evaluated at, Unix seconds")
    audit_time.add(now, **extra)
    families += [run_time, audit_time]
    return "".join(f.render() for f in families)


def write_metrics(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: a temporary sibling, fsync, then rename.

    node_exporter's textfile collector reads ``*.prom`` files whenever it is
    scraped; a rename is atomic on POSIX, so it sees the old file or the new
    one, never half of one.  The temporary name does not end in ``.prom``.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Parse text exposition lines back into (name, labels, value); for tests and tooling.

    Handles the escapes :func:`escape_label_value` writes.  Comments are skipped.
    """
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, labels, rest = line, {}, ""
        if "{" in line:
            name, body = line.split("{", 1)
            labels, rest = _parse_labels(body)
        else:
            name, rest = line.split(" ", 1)
        samples.append((name, labels, float(rest.strip())))
    return samples


def _parse_labels(body: str) -> tuple[dict[str, str], str]:
    labels: dict[str, str] = {}
    i = 0
    while body[i] != "}":
        eq = body.index("=", i)
        key = body[i:eq].lstrip(",")
        i = eq + 2  # skip ="
        value = []
        while body[i] != '"':
            if body[i] == "\\":
                nxt = body[i + 1]
                value.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
                i += 2
            else:
                value.append(body[i])
                i += 1
        labels[key] = "".join(value)
        i += 1
        if body[i] == ",":
            i += 1
    return labels, body[i + 1:]


def families(text: str) -> Iterable[str]:
    """Metric family names declared by ``# TYPE`` lines, in order."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
