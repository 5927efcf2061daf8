"""Benchmark: ``iotaudit scan`` over a generated 1 GiB flash image, against naive scans in the same run.

Run: ``.venv/bin/python benchmarks/scan.py [--size-mib 1024] [--small-mib 256]``

Writes an image of random bytes to /tmp with the real AWS roots hidden in it
every 64 MiB (as PEM, as DER, and as ESP-IDF bundles of both layouts),
then times, each in its own child process that reports its own peak RSS
(``VmHWM``):

* ``iotaudit.scan`` on the image (and checks it found every hidden item);
* the naive Python baseline: read the whole file and regex-search it for PEM
  blocks and DER certificate headers;
* ``grep -c BEGIN``, the shell one-liner people use.

It then scans a second, smaller image to show the peak RSS does not grow with
the image size.  The images are deleted at the end.  Figures only: nothing
here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotaudit.catalog import aws_catalog  # noqa: E402
from iotaudit.certs import cert_der, cert_pem  # noqa: E402
from iotaudit.firmware import write_esp_bundle  # noqa: E402

MIB = 1 << 20
STRIDE = 64 * MIB

# Peak RSS is read by each child from /proc/self/status (VmHWM): the rusage of a forked child also counts
# the parent's memory at fork time (Linux keeps the pre-exec high-water mark in ru_maxrss).
_HWM = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))"
_SCAN_CHILD = """
import json, sys, time
from iotaudit.firmware import scan
t = time.perf_counter()
result = scan(sys.argv[1], progress=False)
elapsed = time.perf_counter() - t
f = result.findings
print(json.dumps({"seconds": elapsed, "certificates": int((f["finding"] == "certificate").sum()),
                  "anchors": int((f["finding"] == "anchor").sum()), "errors": int((f["finding"] == "error").sum()),
                  "rss_kib": %s}))
""" % _HWM

_NAIVE_CHILD = r"""
import json, re, sys, time
t = time.perf_counter()
data = open(sys.argv[1], "rb").read()
pem = re.findall(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", data, re.S)
der = re.findall(rb"\x30\x82..\x30\x82..\xa0\x03\x02\x01\x02", data, re.S)
print(json.dumps({"seconds": time.perf_counter() - t, "certificates": len(pem) + len(der), "rss_kib": %s}))
""" % _HWM
# grep's own peak, measured by a small Python parent (whose ~10 MiB at fork time is a floor for the figure).
_GREP_CHILD = """
import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(["grep", "-c", "-a", "BEGIN", sys.argv[1]], stdout=subprocess.PIPE)
out = proc.stdout.read()
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"seconds": time.perf_counter() - t, "lines": out.decode().strip(), "rss_kib": usage.ru_maxrss}))
"""


def _items() -> list[tuple[str, bytes, int, int]]:
    """(kind, bytes, certificates, anchors) hidden in turn every STRIDE bytes."""
    cat = aws_catalog()
    roots = [cat.entry(n).certificate for n in ("AmazonRootCA1", "AmazonRootCA3", "StarfieldClass2CA")]
    return [
        ("pem", cert_pem(roots[0]).encode(), 1, 0),
        ("der", cert_der(roots[1]), 1, 0),
        ("bundle-legacy", write_esp_bundle(roots, layout="legacy"), 0, 3),
        ("bundle-current", write_esp_bundle(roots, layout="current"), 0, 3),
    ]


def make_image(path: Path, size: int, seed: int = 8) -> tuple[int, int]:
    """Write ``size`` random bytes with items every STRIDE; returns (certificates, anchors) hidden."""
    rng = np.random.default_rng(seed)
    items = _items()
    certs = anchors = 0
    with path.open("wb") as out:
        written = 0
        index = 0
        while written < size:
            block = bytearray(rng.bytes(min(STRIDE, size - written)))
            kind, data, n_certs, n_anchors = items[index % len(items)]
            at = 12_345 + index * 17
            if at + len(data) < len(block):
                block[at:at + len(data)] = data
                certs += n_certs
                anchors += n_anchors
            out.write(block)
            written += len(block)
            index += 1
    return certs, anchors


def run_child(argv: list[str]) -> tuple[dict, float, int]:
    """Run a child; returns (its JSON stdout, wall seconds, the peak RSS in KiB it reports)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    doc = json.loads(out)
    return doc, wall, int(doc["rss_kib"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the main image")
    parser.add_argument("--small-mib", type=int, default=256, help="size of the second image (memory check)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="iotaudit-scan-bench-", dir="/tmp"))
    try:
        big, small = tmp / "flash-big.img", tmp / "flash-small.img"
        t = time.perf_counter()
        hidden = make_image(big, args.size_mib * MIB)
        make_image(small, args.small_mib * MIB, seed=9)
        print(f"images: {args.size_mib} MiB and {args.small_mib} MiB in {tmp} ({time.perf_counter() - t:.1f} s to write); "
              f"hidden in the big one: {hidden[0]} certificates, {hidden[1]} bundle roots")
        py = sys.executable
        scanned, scan_wall, scan_rss = run_child([py, "-c", _SCAN_CHILD, str(big)])
        small_scan, _, small_rss = run_child([py, "-c", _SCAN_CHILD, str(small)])
        naive, _, naive_rss = run_child([py, "-c", _NAIVE_CHILD, str(big)])
        grep_doc, _, grep_rss = run_child([py, "-c", _GREP_CHILD, str(big)])
        size = args.size_mib
        found = (scanned["certificates"], scanned["anchors"])
        print(f"iotaudit scan     : {scanned['seconds']:.2f} s scan ({scan_wall:.2f} s with start-up), "
              f"{size / scanned['seconds']:.0f} MiB/s, peak RSS {scan_rss / 1024:.0f} MiB; found {found[0]} certificates, "
              f"{found[1]} bundle roots, {scanned['errors']} errors ({'all' if found == hidden else 'NOT all'} hidden found)")
        print(f"naive read+regex  : {naive['seconds']:.2f} s, {size / naive['seconds']:.0f} MiB/s, peak RSS "
              f"{naive_rss / 1024:.0f} MiB; found {naive['certificates']} certificates (no bundles, no identification)")
        print(f"grep -c BEGIN     : {grep_doc['seconds']:.2f} s, {size / grep_doc['seconds']:.0f} MiB/s, peak RSS "
              f"{grep_rss / 1024:.0f} MiB; prints {grep_doc['lines']} (a line count, no certificate)")
        print(f"ratios            : iotaudit is {naive['seconds'] / scanned['seconds']:.2f}x the naive Python speed with "
              f"{naive_rss / scan_rss:.1f}x less memory; {grep_doc['seconds'] / scanned['seconds']:.2f}x grep's speed")
        print(f"memory vs size    : peak RSS {small_rss / 1024:.0f} MiB at {args.small_mib} MiB, {scan_rss / 1024:.0f} MiB "
              f"at {size} MiB (x{size / args.small_mib:.0f} input: x{scan_rss / small_rss:.2f} memory); "
              f"small image: {small_scan['seconds']:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
