"""Benchmark: the path engine's distinct validations per second, per stack, on the AWS-shaped lab matrix.

Usage::

    .venv/bin/python benchmarks/paths.py [--repeat 3]

Every (served chain, store, date) of tests/stackmatrix.py is validated once per
stack on a fresh :class:`iotaudit.paths.PathEngine` (memo misses only; the
signature cache warms up within the first stack, as it does in an audit).
Baseline, same run: ``cryptography.x509.verification`` (the verifier the
``modern`` builder used before issue 7) on the same questions, with partial
chains, which is what ``openssl-3-partial-chain`` replaces.  Prints
validations/s per stack and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402
from cryptography.x509.verification import (  # noqa: E402
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from iotaudit.paths import PathEngine  # noqa: E402
from iotaudit.stacks import STACK_IDS  # noqa: E402
from tests.stackmatrix import CHAINS, DATES, HOST, STORES, pki  # noqa: E402


def baseline(questions: list[tuple[list[x509.Certificate], list[x509.Certificate], object]]) -> float:
    """cryptography's verifier on every question; returns seconds."""
    ca = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    start = time.perf_counter()
    for served, store, when in questions:
        builder = PolicyBuilder().store(Store(store)).time(when).extension_policies(
            ca_policy=ca, ee_policy=ExtensionPolicy.permit_all())
        try:
            builder.build_client_verifier().verify(served[0], served[1:])
        except VerificationError:
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per stack; the best is reported")
    args = parser.parse_args()
    p = pki()
    certs = {p.sha(s): p.cert(s) for s in p.certs}
    questions = [(tuple(p.sha(x) for x in CHAINS[c]), tuple(p.sha(x) for x in STORES[s]), DATES[d])
                 for c in CHAINS for s in STORES for d in DATES]
    objects = [([certs[h] for h in served], [certs[h] for h in store], when) for served, store, when in questions]
    base = min(baseline(objects) for _ in range(args.repeat))
    base_rate = len(questions) / base
    print(f"{len(questions)} distinct questions per stack (chains x stores x dates of tests/stackmatrix.py)")
    print(f"{'stack':30s} {'validations/s':>14s} {'x baseline':>11s}")
    total = 0.0
    for stack in STACK_IDS:
        best = float("inf")
        for _ in range(args.repeat):
            engine = PathEngine(certs)
            start = time.perf_counter()
            for served, store, when in questions:
                engine.validate(served, store, stack=stack, host=HOST, as_of=when)
            best = min(best, time.perf_counter() - start)
            assert engine.calls_by_stack[stack] == len(questions)
        total += best
        print(f"{stack:30s} {len(questions) / best:14.0f} {len(questions) / best / base_rate:11.2f}")
    print(f"{'baseline (cryptography verifier)':30s} {base_rate:14.0f} {1.0:11.2f}")
    print(f"all stacks: {len(questions) * len(STACK_IDS) / total:.0f} validations/s")


if __name__ == "__main__":
    main()
