"""Benchmark: capture every chain of a >= 50-endpoint loopback lab with iotaudit, and with a serial openssl loop.

Run: ``.venv/bin/python benchmarks/collect.py [--extra-endpoints 50] [--repeat 3] [--aws-probes 1500] [--latency-ms 100]``

Part 1 (loopback): probes per second, wall time and peak memory of
``iotaudit.collect`` (in iotaudit/collection.py), then the wall time of capturing the same chains with a
serial loop of ``openssl s_client`` processes (the way people script this
today) and the ratio.

Part 2 (AWS size, issue 11): a lab of ``--aws-probes / 3`` endpoints behind
``--latency-ms`` of simulated round trip (``iotaudit lab serve --latency-ms``,
applied server-side), collected at ``--aws-concurrency``: wall time and peak
memory, against the serial ``openssl s_client`` loop timed on ``--sample``
probes and extrapolated, in the same run.  Aim: 1,500 probes at 100 ms under 15 s.

Part 3 (a scheduled collect): ``iotaudit collect`` of a 20-endpoint target list
as a whole process (``python -m iotaudit collect --targets FILE --quiet``,
which imports neither pandas nor papermill) behind the same latency, beside
``openssl s_client``'s serial loop over the same 60 probes.  Aim: well under a second.

The lab serves from a child process so client and servers do not share a
core.  Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
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
    parser.add_argument("--aws-probes", type=int, default=1500, help="probes of part 2 (0: skip parts 2 and 3)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulated round trip of parts 2 and 3")
    parser.add_argument("--aws-concurrency", type=int, default=512, help="probes in flight in part 2")
    parser.add_argument("--sample", type=int, default=24, help="openssl probes timed for part 2's extrapolation")
    args = parser.parse_args(argv)
    loopback(args)
    if args.aws_probes > 0:
        aws_size(args)
    return 0


def loopback(args: argparse.Namespace) -> int:
    """Part 1: the loopback lab, no latency."""

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


def aws_size(args: argparse.Namespace) -> None:
    """Parts 2 and 3: an AWS-sized collection and a scheduled 20-endpoint collect, behind simulated latency."""
    import math

    endpoints = math.ceil(args.aws_probes / len(DEFAULT_PROBES))
    with tempfile.TemporaryDirectory(prefix="iotaudit-bench-aws-") as tmp:
        tmp_path = Path(tmp)
        with Lab(tmp_path / "probe-lab", hostile=False) as small:
            base = len(small.targets)
        with Lab(tmp_path / "lab", extra_endpoints=max(0, endpoints - base), hostile=False, process=True,
                 latency_ms=args.latency_ms) as lab:
            targets = lab.targets[:endpoints]
            probes = len(targets) * len(DEFAULT_PROBES)
            print(f"\nAWS size: {len(targets)} endpoints x {len(DEFAULT_PROBES)} probes = {probes} probes, "
                  f"{args.latency_ms:.0f} ms simulated round trip (lab serve --latency-ms), "
                  f"concurrency {args.aws_concurrency}")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            tracemalloc.start()
            t0 = time.perf_counter()
            run = collect(targets, timeout=10.0, concurrency=args.aws_concurrency, progress=False, catalog=lab.catalog)
            wall = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            obs = run.observations
            chains = int(obs[c.STATUS].isin(c.CHAIN_STATUSES).sum())
            print(f"iotaudit collect: {chains}/{probes} chains in {wall:.2f} s ({probes / wall:.0f} probes/s; aim < 15 s: "
                  f"{'ok' if wall < 15 else 'MISSED'}); peak Python allocations {peak / 2**20:.1f} MiB, "
                  f"process max RSS {maxrss_mb:.0f} MiB (before: {rss_before:.0f} MiB)")
            print(f"statuses: {obs[c.STATUS].astype(str).value_counts().to_dict()}; median handshake "
                  f"{obs[c.HANDSHAKE_MS].median():.0f} ms")
            openssl = shutil.which("openssl")
            if openssl is None:
                print("openssl not installed: no baseline")
                return
            sample = [(t, p) for t in targets[: max(1, args.sample // len(_OPENSSL_ARGS))] for p in _OPENSSL_ARGS]
            t0 = time.perf_counter()
            got = sum(1 for t, p in sample if openssl_chain(openssl, t, p))
            per_probe = (time.perf_counter() - t0) / len(sample)
            print(f"serial openssl s_client loop: {got}/{len(sample)} chains, {per_probe * 1000:.0f} ms per probe "
                  f"-> {per_probe * probes:.0f} s for {probes} probes (extrapolated); "
                  f"ratio: iotaudit {per_probe * probes / wall:.0f}x faster")

            # Part 3: a scheduled collect of 20 endpoints, as the whole process cron would start: once with
            # ats-dual-like endpoints, once with the lab's first 20 (mTLS ones among them: a TLS 1.3 probe that
            # is asked for a client certificate waits for the server's verdict, collect._TLS13_VERDICT_WAIT_S).
            bench = [t for t in targets if t.label == "bench"][:20]
            for name, listed in (("20 ats-dual-like endpoints", bench), ("the lab's first 20 endpoints (mTLS among them)", targets[:20])):
                scheduled(openssl, listed, name, tmp_path)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import iotaudit.collection, iotaudit.cli"], check=True)
            print(f"start-up of the collect process (python + imports): {time.perf_counter() - t0:.2f} s")


def scheduled(openssl: str, listed: list, name: str, tmp_path: Path) -> None:
    """One ``python -m iotaudit collect --targets FILE --quiet`` process over ``listed``, beside the openssl loop."""
    targets_file = tmp_path / "targets.txt"
    targets_file.write_text("".join(
        f"{t.host}:{t.port}@{t.address}" + (f" alpn={','.join(t.alpn)}" if t.alpn else "") + "\n"
        for t in listed), encoding="utf-8")
    walls, rss = [], []
    timer = shutil.which("time") or "/usr/bin/time"  # GNU time -f %M: the max RSS of the collect process itself
    for _ in range(3):
        out = tmp_path / f"scheduled-{len(list(tmp_path.glob('scheduled-*')))}"
        t0 = time.perf_counter()
        done = subprocess.run([timer, "-f", "maxrss_kb=%M", sys.executable, "-m", "iotaudit", "collect",
                               "--targets", str(targets_file), "--concurrency", str(len(listed) * len(DEFAULT_PROBES)),
                               "--out", str(out), "--quiet"], capture_output=True, text=True, check=True,
                              cwd=str(Path(__file__).resolve().parent.parent))
        walls.append(time.perf_counter() - t0)
        rss.append(int(done.stderr.rsplit("maxrss_kb=", 1)[1].split()[0]) / 1024)
    t0 = time.perf_counter()
    for t in listed:
        for p in _OPENSSL_ARGS:
            openssl_chain(openssl, t, p)
    serial = time.perf_counter() - t0
    wall = statistics.median(walls)
    print(f"scheduled collect of {name} ({len(listed) * len(DEFAULT_PROBES)} probes, --concurrency "
          f"{len(listed) * len(DEFAULT_PROBES)}) as a process: "
          f"{wall:.2f} s (median of {len(walls)}: {', '.join(f'{w:.2f}' for w in walls)}), max RSS "
          f"{max(rss):.0f} MiB; serial openssl s_client loop: {serial:.2f} s; ratio {serial / wall:.1f}x "
          f"(aim: well under a second: {'ok' if wall < 1 else 'MISSED'})")


if __name__ == "__main__":
    sys.exit(main())
