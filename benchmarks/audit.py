"""Benchmark: audit 1M and 10M-device inventories (CSV and Parquet) and 100M devices (partitioned Parquet).

Usage::

    .venv/bin/python benchmarks/audit.py [--sizes csv:1000000,parquet:1000000,csv:10000000,parquet:10000000,dataset:100000000]
                                         [--profiles 300] [--memory-limit 1GB]

Starts the loopback lab once, collects it into a run, then for each
``format:size`` generates an inventory with DuckDB SQL (no Python loop over
devices; :func:`inventory_sql` is the one place its columns are made) under
the system temp directory, and, in a fresh subprocess so the RSS high-water
mark is per size, loads it (DuckDB reads and groups it out of core), audits it
and writes the audit directory with ``devices.parquet``.  The file is deleted
after its row.  ``dataset`` is a directory of Parquet files partitioned by
group (``group=...`` directories, as Spark or Athena write them).

Columns: ``load s`` is reading + grouping, ``audit s`` the analyses,
``write s`` the audit directory including the per-device ``devices.parquet``
(a DuckDB COPY of the device table joined with the per-profile results);
``cpu s`` the process's CPU time (all threads; on a shared machine the
steadier figure), ``peak MB`` its RSS high-water mark, which should stay
flat as devices grow.  Four devices get a bad cell (:func:`injected_rows`: an empty
and a repeated ``device_id``, a bad ``region``, an unknown ``tls_stack``), loaded with
``skip_bad_rows`` as ``audit --skip-bad-rows`` does: ``bad rows`` says ``4/4`` when each
is named with its row, column and reason and every other device is kept, so the
figures include finding them.  ``doubled`` is a Parquet export appended to itself
(2N rows, every id twice): N + 4 bad rows, the cost of bad rows by the million.  The baseline validates each device's chains on its own
(timed on a sample of devices drawn by device count, extrapolated); ratio =
baseline / (load + audit).  Aims (issue 11): 10M devices under 30 s and
1.5 GB; 100M (partitioned Parquet) under 3 minutes and 3 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
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
GROUPS = 40
DEFAULT_SIZES = "csv:1000000,parquet:1000000,doubled:1000000,csv:10000000,parquet:10000000,dataset:100000000"


def profile_table(n_profiles: int, seed: int = 1) -> pd.DataFrame:
    """``n_profiles`` distinct firmware profiles: trust stores x key types x builders x endpoints x pins."""
    from iotaudit.certs import spki_pin
    from iotaudit.lab import lab_ca_certificates

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


def injected_rows(n_devices: int) -> dict[str, int]:
    """The 0-based devices given a bad cell, by rule: four rows the loader must name and leave out."""
    return {"empty device_id": n_devices // 3, "duplicate device_id": n_devices // 2,
            "bad region": (2 * n_devices) // 3, "unknown tls_stack": n_devices - 2}


def expected_problems(n_devices: int, fmt: str) -> list[tuple[int | None, str, str]]:
    """(row, column, start of the reason) the loader must report for :func:`injected_rows`.

    CSV rows are physical lines (header = line 1, no cell spans lines here); Parquet rows are record
    numbers; a partitioned dataset renumbers rows by partition, so only its columns and reasons are known.
    """
    bad = injected_rows(n_devices)
    row = (lambda i: i + 2) if fmt == "csv" else (lambda i: i + 1) if fmt == "parquet" else (lambda i: None)
    first = row(0)
    return sorted([(row(bad["empty device_id"]), "device_id", "device_id is empty"),
                   (row(bad["duplicate device_id"]), "device_id", "duplicate device_id 'thing-0' (first on row "
                    + (f"{first})" if first is not None else "")),
                   (row(bad["bad region"]), "region", "region 'us east 1' is not a region name"),
                   (row(bad["unknown tls_stack"]), "tls_stack", "tls_stack 'mbedtls-9' is not a known TLS stack")],
                  key=lambda p: (p[0] or 0, p[1], p[2]))


def inventory_sql(n_devices: int, n_profiles: int, *, group: int | None = None) -> str:
    """The device table as one DuckDB SELECT: device i gets a pseudo-random profile of ``__profiles``, group i mod 40.

    Every inventory column comes from the registered ``__profiles`` table (``p.*``), so a new profile
    column (``tls_stack``) is one entry in :func:`profile_table`; the rows of :func:`injected_rows` get
    their bad cell.  With ``group``, only that group's devices, without the ``group`` column (a
    partition's file: the column is in its directory name).
    """
    bad = injected_rows(n_devices)
    device_id = (f"CASE i WHEN {bad['empty device_id']} THEN '' WHEN {bad['duplicate device_id']} THEN 'thing-0' "
                 f"ELSE 'thing-' || i END")
    group_column = (f"'group-' || lpad(CAST(i % {GROUPS} AS VARCHAR), 2, '0') AS \"group\", " if group is None else "")
    rows = f"range({n_devices})" if group is None else f"range({group}, {n_devices}, {GROUPS})"
    return (f"SELECT {device_id} AS device_id, {group_column}p.* EXCLUDE (__idx) REPLACE ("
            f"CASE WHEN i = {bad['bad region']} THEN 'US East 1' ELSE p.region END AS region, "
            f"CASE WHEN i = {bad['unknown tls_stack']} THEN 'mbedtls-9' ELSE p.tls_stack END AS tls_stack) "
            f"FROM {rows} r(i) JOIN __profiles p ON p.__idx = hash(i) % {n_profiles}")


def generate(path: Path, fmt: str, n_devices: int, profiles: pd.DataFrame) -> Path:
    """Write ``n_devices`` devices as ``fmt``: csv, parquet, or ``dataset``, a directory partitioned by group.

    The dataset is laid out as Spark, Athena or DuckDB's ``PARTITION_BY`` write it (``group=group-07/``
    directories, the column in the name, not the files), one COPY per group: DuckDB's own partitioned
    write of 100M rows took five minutes here, one pass per group takes a fraction of it.
    """
    import duckdb

    spill = Path(tempfile.mkdtemp(prefix="duckdb-gen-", dir=path.parent))
    con = duckdb.connect(config={"memory_limit": "2GB", "temp_directory": str(spill), "preserve_insertion_order": False})
    con.register("__frame", profiles.assign(__idx=np.arange(len(profiles), dtype=np.uint64)))
    con.execute("CREATE TABLE __profiles AS SELECT * FROM __frame")
    target = str(path).replace("'", "''")
    if fmt == "csv":
        con.execute(f"COPY ({inventory_sql(n_devices, len(profiles))}) TO '{target}' (HEADER, DELIMITER ',')")
    elif fmt == "parquet":
        con.execute(f"COPY ({inventory_sql(n_devices, len(profiles))}) TO '{target}' (FORMAT parquet)")
    elif fmt == "doubled":  # one export appended to itself: every device twice, a bad row per device
        select = inventory_sql(n_devices, len(profiles))
        con.execute(f"COPY ({select} UNION ALL {select}) TO '{target}' (FORMAT parquet)")
    else:
        for group in range(GROUPS):
            part = path / f"group=group-{group:02d}"
            part.mkdir(parents=True)
            con.execute(f"COPY ({inventory_sql(n_devices, len(profiles), group=group)}) "
                        f"TO '{str(part / 'data_0.parquet').replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
    con.close()
    shutil.rmtree(spill, ignore_errors=True)
    return path


def peak_rss_mb() -> float:
    """This process's RSS high-water mark since exec (VmHWM), in MiB.

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a child would report its parent's
    RSS at fork (here the generator's) whenever that is larger than its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(run_dir: Path, inventory: Path, sample: int, memory_limit: str) -> dict:
    """Load + audit + write one inventory in this process; returns timings, peak RSS and the per-device baseline."""
    from iotaudit.auditing import audit, cross_check, write_audit
    from iotaudit.inventory import load_inventory
    from iotaudit.paths import validate_chain
    from iotaudit.profiles import chain_observations, meets
    from iotaudit.root_coverage import ChainJudge
    from iotaudit.store import load_run

    run = load_run(run_dir)
    t0 = time.perf_counter()
    # skip_bad_rows, as `iotaudit audit --skip-bad-rows`: the injected bad rows are named and left out.
    inv = load_inventory(inventory, memory_limit=memory_limit, temp_directory=inventory.parent, skip_bad_rows=True)
    t1 = time.perf_counter()
    load_mb = peak_rss_mb()
    result = audit(run, inv)
    t2 = time.perf_counter()
    out = write_audit(result, inventory.parent / "audit", inventory=inv)
    t3 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = peak_rss_mb()
    cpu_s = usage.ru_utime + usage.ru_stime  # every thread's (DuckDB's too): robust where the cores are shared
    devices_out = out / "devices.parquet"
    written = sum(p.stat().st_size for p in ([devices_out] if devices_out.is_file() else devices_out.rglob("*.parquet")))
    shutil.rmtree(out)
    # Baseline: what a per-device loop costs (validate every chain a device meets, no sharing), on devices
    # drawn from the profiles by device count.
    obs = chain_observations(run)
    certs = run.certificate_objects()
    profiles = inv.build_profiles(run.catalog_object())
    prof = {p.key: p for p in profiles}
    weights = inv.profiles["devices"].to_numpy(dtype=float)
    keys = np.random.default_rng(3).choice(inv.profiles["profile_key"].astype(str).to_numpy(), size=sample,
                                           p=weights / weights.sum())
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
    return {"devices": inv.device_count, "profiles": len(inv.profiles), "load_s": t1 - t0, "audit_s": t2 - t1,
            "write_s": t3 - t2, "total_s": t3 - t0, "cpu_s": cpu_s, "peak_rss_mb": peak_mb, "load_rss_mb": load_mb,
            "devices_parquet_mb": written / 2**20, "sample": len(keys), "baseline_per_device_s": per_device,
            "baseline_total_s": per_device * inv.device_count, "validations": result.summary["validations"],
            "validations_by_stack": result.summary["validations_by_stack"],
            "cross_s": cross_s, "cross_profiles": asked, "cross_cases": len(checked),
            "cross_unavailable": sorted(unavailable), "bad_rows": inv.bad_rows,
            "problems": [[row, col, why] for row, col, why in inv.problems]}


def _aim(n_devices: int, r: dict) -> str:
    """Whether one size meets issue 11's aims (10M: < 30 s and < 1.5 GB; 100M: < 180 s and < 3 GB)."""
    if n_devices >= 100_000_000:
        return "ok" if r["total_s"] < 180 and r["peak_rss_mb"] < 3072 else "MISSED (< 180 s, < 3 GB)"
    if n_devices >= 10_000_000:
        return "ok" if r["total_s"] < 30 and r["peak_rss_mb"] < 1536 else "MISSED (< 30 s, < 1.5 GB)"
    return "-"


def _bad_rows_check(fmt: str, n_devices: int, r: dict) -> str:
    """``4/4`` when the loader named every injected bad row (row, column, reason) and kept every other device."""
    if fmt == "doubled":  # the second copy repeats every id: n + 4 bad rows, the first copy's n - 4 good devices kept
        ok = r["bad_rows"] == n_devices + 4 and r["devices"] == n_devices - 4 and len(r["problems"]) >= r["bad_rows"]
        return f"{r['bad_rows']:,}" if ok else f"WRONG {r['bad_rows']:,} bad, {r['devices']:,} kept"
    want = expected_problems(n_devices, fmt)
    got = sorted((row, col, why) for row, col, why in r["problems"])
    found = sum(any(g[1] == w[1] and g[2].startswith(w[2]) and (w[0] is None or g[0] == w[0]) for g in got) for w in want)
    ok = found == len(want) == len(got) == r["bad_rows"] and r["devices"] == n_devices - len(want)
    return f"{found}/{len(want)}" if ok else f"WRONG {found}/{len(want)}: {got}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated FORMAT:DEVICES (csv, parquet, dataset)")
    parser.add_argument("--profiles", type=int, default=300)
    parser.add_argument("--sample", type=int, default=200, help="devices timed for the per-device baseline")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit of the inventory queries")
    parser.add_argument("--one", nargs=2, metavar=("RUN", "INVENTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), Path(args.one[1]), args.sample, args.memory_limit)))
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
        print(f"lab run: {len(run.observations)} observations; {len(profiles)} profiles; DuckDB memory_limit "
              f"{args.memory_limit}; data under {tmp_path}")
        print(f"{'format':>8} {'devices':>11} {'file MB':>8} {'gen s':>6} {'load s':>7} {'audit s':>8} {'write s':>8} "
              f"{'total s':>8} {'cpu s':>6} {'load MB':>8} {'peak MB':>8} {'devices.parquet MB':>18} {'baseline s':>11} {'ratio':>7} {'bad rows':>9}  aim")
        for spec in args.sizes.split(","):
            fmt, size = spec.split(":")
            n = int(size)
            work = tmp_path / f"{fmt}-{n}"
            work.mkdir()
            inv_path = work / {"csv": "inv.csv", "parquet": "inv.parquet", "doubled": "inv.parquet", "dataset": "inv"}[fmt]
            g0 = time.perf_counter()
            generate(inv_path, fmt, n, profiles)
            gen_s = time.perf_counter() - g0
            size_mb = (inv_path.stat().st_size if inv_path.is_file()
                       else sum(p.stat().st_size for p in inv_path.rglob("*.parquet"))) / 2**20
            done = subprocess.run([sys.executable, __file__, "--one", str(run_dir), str(inv_path), "--sample",
                                   str(args.sample), "--memory-limit", args.memory_limit],
                                  capture_output=True, text=True, check=False)
            shutil.rmtree(work, ignore_errors=True)
            if done.returncode != 0:
                print(f"{fmt:>8} {n:>11}: failed\n{done.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            work_s = r["load_s"] + r["audit_s"]
            print(f"{fmt:>8} {r['devices']:>11} {size_mb:>8.0f} {gen_s:>6.1f} {r['load_s']:>7.2f} {r['audit_s']:>8.2f} "
                  f"{r['write_s']:>8.2f} {r['total_s']:>8.2f} {r['cpu_s']:>6.1f} {r['load_rss_mb']:>8.0f} {r['peak_rss_mb']:>8.0f} "
                  f"{r['devices_parquet_mb']:>18.0f} {r['baseline_total_s']:>11.0f} {r['baseline_total_s'] / work_s:>6.0f}x "
                  f"{_bad_rows_check(fmt, n, r):>9}  {_aim(n, r)}", flush=True)
        print("validations per stack (last size): " + ", ".join(f"{k} {v}" for k, v in r["validations_by_stack"].items()))
        per = r["cross_s"] / r["cross_profiles"] if r["cross_profiles"] else float("nan")
        print(f"--cross-check: {r['cross_s']:.2f} s for {r['cross_cases']} chains of {r['cross_profiles']} profiles "
              f"= {per * 1000:.0f} ms per profile (baseline: the audit itself, {r['audit_s'] * 1000 / r['profiles']:.0f} ms "
              f"per profile, ratio {per / (r['audit_s'] / r['profiles']):.1f}x); no library here for: "
              f"{', '.join(r['cross_unavailable']) or 'none'}")
        print(f"baseline: validating each device's chains on its own, {r['baseline_per_device_s'] * 1000:.1f} ms per "
              f"device ({r['sample']} sampled devices) times the device count; ratio = baseline / (load + audit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
