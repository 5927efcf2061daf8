"""Benchmark: capture every chain of a >= 50-endpoint loopback lab with iotaudit, and with a serial openssl loop.

Run: ``.venv/bin/python benchmarks/collect.py [--extra-endpoints 50] [--repeat 3]``

Prints probes per second, wall time and peak memory of ``iotaudit.collect`` (in iotaudit/collection.py),
then the wall time of capturing the same chains with a serial loop of
``openssl s_client`` processes (the way people script this today) and the
ratio.  The lab serves from a child process so client and servers do not
share a core.  Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iotaudit import columns as c  # noqa: E402
from iotaudit.collection import DEFAULT_PROBES, collect  # noqa: E402
from iotaudit.lab import Lab  # noqa: E402
from iotaudit.offline import parse_chain_text  # noqa: E402

_OPENSSL_ARGS = {
    "rsa-tls12": ["-tls1_2", "-cipher", "ECDHE+aRSA:!eNULL:@SECLEVEL=0"],
    "ecdsa-tls12": ["-tls1_2", "-cipher", "ECDHE+aECDSA:!eNULL:@SECLEVEL=0"],
    "tls13": ["-tls1_3"],
}


def openssl_chain(openssl: str, target, probe: str) -> list[str]:
    """The chain one ``openssl s_client -showcerts`` run receives (hashes in served order)."""
    cmd = [openssl, "s_client", "-connect", f"{target.address}:{target.port}", "-servername", target.host,
           "-showcerts", *_OPENSSL_ARGS[probe]]
    if target.alpn:
        cmd += ["-alpn", ",".join(target.alpn)]
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
    if "BEGIN CERTIFICATE" not in done.stdout:
        return []
    return [hashlib.sha256(der).hexdigest() for der in parse_chain_text(done.stdout, "s_client").chain]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra-endpoints", type=int, default=50, help="bench endpoints on top of the lab's own")
    parser.add_argument("--repeat", type=int, default=3, help="timed iotaudit collections (after one warm-up)")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="iotaudit-bench-") as tmp, \
            Lab(Path(tmp) / "lab", extra_endpoints=args.extra_endpoints, hostile=False, process=True) as lab:
        targets = lab.targets
        probes = len(targets) * len(DEFAULT_PROBES)
        print(f"lab: {len(targets)} endpoints on 127.0.0.1 (server in a child process), "
              f"{probes} probes per collection")
        collect(targets, timeout=5.0, concurrency=args.concurrency, progress=False, catalog=lab.catalog)  # warm-up
        walls = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            run = collect(targets, timeout=5.0, concurrency=args.concurrency, progress=False, catalog=lab.catalog)
            walls.append(time.perf_counter() - t0)
        tracemalloc.start()  # a separate, untimed collection: tracing slows allocation down
        collect(targets, timeout=5.0, concurrency=args.concurrency, progress=False, catalog=lab.catalog)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        obs = run.observations
        chains = int(obs[c.STATUS].isin(c.CHAIN_STATUSES).sum())
        wall = statistics.median(walls)
        print(f"iotaudit collect: {chains}/{probes} chains, wall {wall:.3f} s (median of {len(walls)}; "
              f"all: {', '.join(f'{w:.3f}' for w in walls)}), {probes / wall:.0f} probes/s, "
              f"concurrency {args.concurrency}")
        print(f"iotaudit memory: peak Python allocations {peak / 2**20:.1f} MiB (tracemalloc), "
              f"process max RSS {maxrss_mb:.0f} MiB")
        statuses = obs[c.STATUS].astype(str).value_counts().to_dict()
        print(f"statuses: {statuses}")

        openssl = shutil.which("openssl")
        if openssl is None:
            print("openssl not installed: no baseline")
            return 0
        ours = {(r[c.HOST], r[c.PORT], r[c.PROBE]): list(r[c.CHAIN_SHA256]) for r in obs.to_dict("records")}
        t0 = time.perf_counter()
        theirs = {(t.host, t.port, p): openssl_chain(openssl, t, p) for t in targets for p in _OPENSSL_ARGS}
        baseline = time.perf_counter() - t0
        agree = sum(1 for k, v in theirs.items() if v and v == ours.get(k))
        got = sum(1 for v in theirs.values() if v)
        print(f"serial openssl s_client loop: {got}/{probes} chains, wall {baseline:.3f} s, "
              f"{probes / baseline:.0f} probes/s; chains identical to iotaudit's: {agree}/{got}")
        print(f"ratio: iotaudit is {baseline / wall:.1f}x faster than the openssl loop "
              f"(aim: < 1 s and >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
