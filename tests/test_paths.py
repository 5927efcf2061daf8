"""The path engine on a small AWS-shaped PKI: verdicts, reasons, memoisation and the labeller."""

from __future__ import annotations

import pytest

from iotaudit.paths import PathEngine, PathVerdict, validate_chain
from tests.stackmatrix import HOST, WRONG_HOST, pki, when


def test_verdict_checks_itself() -> None:
    with pytest.raises(ValueError):
        PathVerdict(True)
    with pytest.raises(ValueError):
        PathVerdict(False, anchor_sha256="ab", reason="x")
    assert not PathVerdict(False, reason="why", rule="no-anchor").valid


def test_served_chain_validates_to_root_ca_1() -> None:
    p = pki()
    v = validate_chain(p.chain("as-served"), [p.cert("root1")], stack="openssl-3", host=HOST, as_of=when("inside"))
    assert v.valid, v.reason
    assert v.anchor_sha256 == p.sha("root1")


def test_wrong_host_is_refused_with_the_host_named() -> None:
    p = pki()
    v = validate_chain(p.chain("as-served"), [p.cert("root1")], stack="openssl-3", host=WRONG_HOST, as_of=when("inside"))
    assert not v.valid and WRONG_HOST in v.reason


def test_engine_memoises_per_stack() -> None:
    p = pki()
    engine = PathEngine()
    served = engine.add(p.chain("as-served"))
    store = engine.add([p.cert("root1")])
    for _ in range(3):
        assert engine.valid(served, store, stack="mbedtls-2.28", host=HOST, as_of=when("inside"))
    engine.valid(served, store, stack="openssl-3", host=HOST, as_of=when("inside"))
    assert engine.calls == 2
    assert engine.calls_by_stack == {"mbedtls-2.28": 1, "openssl-3": 1}
