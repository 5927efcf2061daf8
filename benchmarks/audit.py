"""Benchmark: audit inventories of 100k, 1M and 10M devices over a few hundred profiles against a lab run.

Usage::

    .venv/bin/python benchmarks/audit.py [--sizes 100000,1000000,10000000] [--profiles 300]

Starts the loopback lab once, collects it into a run, then for each size
generates a Parquet inventory (vectorised) and, in a fresh subprocess so the
RSS high-water mark is per size, loads and audits it.  Prints wall time and
peak RSS per size, and the baseline: validating every device's chains one
device at a time (timed on a sample, extrapolated), as a ratio.

Columns: ``load MB`` is the RSS once the inventory is loaded and ``peak MB``
the high-water mark of the whole load + audit, so their difference is what
the audit itself adds (it should grow with profiles, not devices);
``inv MB`` is the device table in memory; ``validations`` the distinct path
validations the audit ran.  Aims (issue 3): 1M devices in under 10 s and
2 GB, 10M in under 90 s; each row says whether its size meets them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotaudit.stacks import STACK_IDS  # noqa: E402  (the profiles are spread over every stack)

STORES = ["AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4", "SFSRootCAG2", "StarfieldClass2CA",
          "VeriSignClass3G5"]


def profile_table(n_profiles: int, seed: int = 1) -> pd.DataFrame:
    """``n_profiles`` distinct firmware profiles: trust stores x key types x builders x endpoints x pins."""
    from iotaudit.lab import lab_ca_certificates
    from iotaudit.certs import spki_pin

    rnd = np.random.default_rng(seed)
    cas = lab_ca_certificates()
    stores = [";".join(s) for k in (1, 2, 3) for s in combinations(STORES, k)]
    pins = ["", spki_pin(cas["AmazonRootCA1"]), f"{spki_pin(cas['AmazonRootCA1'])};{spki_pin(cas['AmazonRootCA3'])}",
            spki_pin(cas["AmazonRSA2048M01"])]
    rows = []
    for i in range(n_profiles):
        region = ["us-east-1", "eu-west-1"][i % 2]
        endpoints = "*" if i % 3 == 0 else f"lab-ats-dual-ats.iot.{region}.amazonaws.com;lab-ats-mtls-ats.iot.{region}.amazonaws.com"
        rows.append({
            "profile": f"fw-{i // 4}.{i % 4}", "region": region, "endpoints": endpoints,
            "trust_store": stores[int(rnd.integers(len(stores)))], "key_types": ["rsa", "ecdsa", "rsa;ecdsa"][i % 3],
            "tls_stack": STACK_IDS[i % len(STACK_IDS)], "pins": pins[i % len(pins)],
            "pin_scope": "any", "pin_expiry": "2024-01-01" if i % 11 == 0 else "",
        })
    return pd.DataFrame(rows)


def generate(path: Path, n_devices: int, profiles: pd.DataFrame, seed: int = 2) -> None:
    """Write a Parquet inventory of ``n_devices`` drawn over ``profiles`` (no Python loop over devices)."""
    rnd = np.random.default_rng(seed)
    pick = rnd.integers(0, len(profiles), size=n_devices)
    frame = pd.DataFrame({"device_id": pd.array(np.char.add("thing-", np.arange(n_devices).astype("U10")), dtype="string")})
    frame["group"] = pd.Categorical.from_codes(rnd.integers(0, 40, size=n_devices), [f"group-{g:02d}" for g in range(40)])
    for col in profiles.columns:
        values, codes = np.unique(profiles[col].to_numpy(dtype=str), return_inverse=True)
        frame[col] = pd.Categorical.from_codes(codes[pick], values)
    frame.to_parquet(path, index=False)


def run_one(run_dir: Path, inventory: Path, sample: int) -> dict:
    """Load + audit one inventory in this process; returns timings, peak RSS and the per-device baseline."""
    from iotaudit.auditing import audit, cross_check
    from iotaudit.inventory import load_inventory
    from iotaudit.paths import validate_chain
    from iotaudit.profiles import chain_observations, meets
    from iotaudit.root_coverage import ChainJudge
    from iotaudit.store import load_run

    run = load_run(run_dir)
    t0 = time.perf_counter()
    inv = load_inventory(inventory)
    t1 = time.perf_counter()
    load_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = audit(run, inv)
    t2 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Baseline: what a per-device loop costs (validate every chain a device meets, no sharing).
    obs = chain_observations(run)
    certs = run.certificate_objects()
    profiles = inv.build_profiles(run.catalog_object())
    prof = {p.key: p for p in profiles}
    keys = inv.devices["profile_key"].astype(str).sample(n=min(sample, len(inv.devices)), random_state=3)
    b0 = time.perf_counter()
    for key in keys:
        for i in np.flatnonzero(meets(prof[key], obs)):
            o = obs.iloc[i]
            validate_chain([certs[s] for s in o["chain_sha256"]], prof[key].store, host=str(o["host"]),
                           as_of=run.created_at, stack=prof[key].stack)
    per_device = (time.perf_counter() - b0) / len(keys)
    # --cross-check: the real libraries installed here, asked about every chain of every profile they back.
    c0 = time.perf_counter()
    checked, unavailable = cross_check(ChainJudge(run, as_of=run.created_at), profiles)
    cross_s = time.perf_counter() - c0
    asked = int(checked["profile"].nunique()) if len(checked) else 0
    return {"devices": len(inv.devices), "profiles": len(inv.profiles), "load_s": t1 - t0, "audit_s": t2 - t1,
            "total_s": t2 - t0, "peak_rss_mb": peak_mb, "load_rss_mb": load_mb,
            "inventory_mb": inv.devices.memory_usage(deep=True).sum() / 2**20, "sample": len(keys), "baseline_per_device_s": per_device,
            "baseline_total_s": per_device * len(inv.devices), "coverage_rows": len(result.coverage),
            "validations": result.summary["validations"], "validations_by_stack": result.summary["validations_by_stack"],
            "cross_s": cross_s, "cross_profiles": asked, "cross_cases": len(checked),
            "cross_unavailable": sorted(unavailable)}


def _aim(r: dict) -> str:
    """Whether one size meets issue 3's aims (1M: < 10 s and < 2 GB; 10M: < 90 s)."""
    if r["devices"] >= 10_000_000:
        return "ok" if r["total_s"] < 90 else "MISSED (< 90 s)"
    if r["devices"] >= 1_000_000:
        return "ok" if r["total_s"] < 10 and r["peak_rss_mb"] < 2048 else "MISSED (< 10 s, < 2 GB)"
    return "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--profiles", type=int, default=300)
    parser.add_argument("--sample", type=int, default=200, help="devices timed for the per-device baseline")
    parser.add_argument("--one", nargs=2, metavar=("RUN", "INVENTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), Path(args.one[1]), args.sample)))
        return 0

    from iotaudit.collection import collect
    from iotaudit.lab import Lab
    from iotaudit.store import write_run

    with tempfile.TemporaryDirectory(prefix="iotaudit-bench-") as tmp:
        tmp_path = Path(tmp)
        with Lab(tmp_path / "lab") as lab:
            run = collect(lab.targets, timeout=2.0, progress=False, catalog=lab.catalog)
        run_dir = tmp_path / "run"
        write_run(run, run_dir)
        profiles = profile_table(args.profiles)
        print(f"lab run: {len(run.observations)} observations; {len(profiles)} profiles")
        print(f"{'devices':>10} {'gen s':>6} {'load s':>7} {'audit s':>8} {'total s':>8} {'inv MB':>7} {'load MB':>8} "
              f"{'peak MB':>8} {'validations':>11} {'baseline s (extrap.)':>20} {'ratio':>7}  aim")
        for size in (int(s) for s in args.sizes.split(",")):
            inv_path = tmp_path / f"inv-{size}.parquet"
            g0 = time.perf_counter()
            generate(inv_path, size, profiles)
            gen_s = time.perf_counter() - g0
            done = subprocess.run([sys.executable, __file__, "--one", str(run_dir), str(inv_path),
                                   "--sample", str(args.sample)], capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{r['devices']:>10} {gen_s:>6.1f} {r['load_s']:>7.2f} {r['audit_s']:>8.2f} {r['total_s']:>8.2f} "
                  f"{r['inventory_mb']:>7.0f} {r['load_rss_mb']:>8.0f} {r['peak_rss_mb']:>8.0f} {r['validations']:>11} "
                  f"{r['baseline_total_s']:>20.0f} {r['baseline_total_s'] / r['total_s']:>7.0f}x  {_aim(r)}",
                  flush=True)
            inv_path.unlink()
        print("validations per stack (last size): " + ", ".join(f"{k} {v}" for k, v in r["validations_by_stack"].items()))
        per = r["cross_s"] / r["cross_profiles"] if r["cross_profiles"] else float("nan")
        print(f"--cross-check: {r['cross_s']:.2f} s for {r['cross_cases']} chains of {r['cross_profiles']} profiles "
              f"= {per * 1000:.0f} ms per profile (baseline: the audit itself, {r['audit_s'] * 1000 / r['profiles']:.0f} ms "
              f"per profile, ratio {per / (r['audit_s'] / r['profiles']):.1f}x); no library here for: "
              f"{', '.join(r['cross_unavailable']) or 'none'}")
        print(f"baseline: validating each device's chains on its own, {r['baseline_per_device_s'] * 1000:.1f} ms per "
              f"device ({r['sample']} sampled devices) times the device count; ratio = baseline / total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
