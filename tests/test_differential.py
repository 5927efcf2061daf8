"""Differential tests: each stack's model gives the real library's verdict on every case of the matrix.

The matrix (tests/stackmatrix.py) is an AWS-shaped lab PKI: an RSA "Root CA 1" and an EC "Root CA 3",
each also cross-signed by a "Starfield Services Root G2", itself served cross-signed by a "Starfield
Class 2"; served in every order that matters, against stores of each root alone, the cross-signed
root alone, an intermediate alone, an expired root beside a valid twin (both orders), all roots (both
orders); at dates inside validity, after the G2 cross-sign expires, after Starfield Class 2 expires
(leaf still valid), after the leaf expires and before it starts; with a SHA-1-signed intermediate, an
RSA-1024 intermediate, a leaf without subjectAltName and a wrong host name.

Locally a stack whose library is missing skips naming the package (tests/reallib.py); in CI it fails.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from iotaudit import crosscheck
from iotaudit.certs import cert_der
from iotaudit.paths import validate_chain
from iotaudit.stacks import STACKS, Stack
from tests.reallib import require_library
from tests.stackmatrix import CHAINS, DATES, STORES, MatrixCase, matrix, pki

# Stacks a real library answers for here (the adapters of iotaudit/crosscheck).
REAL_STACKS = ("openssl-3", "openssl-3-partial-chain", "openssl-1.0.1", "openssl-1.0.2", "gnutls-3.7", "bearssl",
               "mbedtls-2.28", "esp-idf-bundle", "wolfssl-5-alt-chains", "wolfssl-5")


def model_for_library(stack_id: str) -> Stack:
    """The model as the library is asked.

    The OpenSSL 1.0.x stacks are asked of OpenSSL 3 with 1.0.x's search flags (trusted-first cleared,
    alternative chains on or off) at security level 1, which refuses SHA-1 signatures; real 1.0.x has
    no security levels, so the shipped model accepts SHA-1 and only the search is proven here.
    """
    stack = STACKS[stack_id]
    if stack_id in ("openssl-1.0.1", "openssl-1.0.2"):
        return dataclasses.replace(stack, refuses_sha1=True, min_rsa_bits=1024)
    return stack


def _case(mc: MatrixCase) -> crosscheck.Case:
    p = pki()
    return crosscheck.Case(served=tuple(cert_der(c) for c in p.certs_of(CHAINS[mc.chain])),
                           store=tuple(cert_der(c) for c in p.certs_of(STORES[mc.store])),
                           host=mc.host, as_of=DATES[mc.date])


def test_matrix_covers_the_issue_list() -> None:
    cases = matrix()
    assert {"as-served", "intermediate-last", "duplicates", "extra-unrelated", "no-top-cross", "leaf-only",
            "sha1-intermediate", "rsa1024-intermediate", "leaf-without-san"} <= set(CHAINS)
    assert {"root1", "root3", "cross-signed-root1", "intermediate", "expired-then-valid-root1", "all"} <= set(STORES)
    assert len(cases) == len(CHAINS) * len(STORES) * (len(DATES) + 1)


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", REAL_STACKS)
def test_model_matches_real_library(stack_id: str) -> None:
    require_library(stack_id)
    cases = matrix()
    answers = crosscheck.verify_many(stack_id, [_case(mc) for mc in cases])
    stack = model_for_library(stack_id)
    p = pki()
    mismatches = []
    for mc, lib in zip(cases, answers, strict=True):
        model = validate_chain(p.certs_of(CHAINS[mc.chain]), p.certs_of(STORES[mc.store]), stack=stack,
                               host=mc.host, as_of=DATES[mc.date])
        if model.valid != lib.valid:
            mismatches.append(f"{mc.label}: model {'valid' if model.valid else 'invalid (' + model.reason + ')'}, "
                              f"{lib.library} {'valid' if lib.valid else 'invalid (' + lib.error + ')'}")
    assert not mismatches, f"{stack_id}: {len(mismatches)} of {len(cases)} cases differ:\n" + "\n".join(mismatches)


def test_the_matrix_tells_every_pair_of_proven_stacks_apart() -> None:
    """A model that swapped one proven stack for another would fail its differential test."""
    p = pki()
    cases = matrix()
    verdicts = {}
    for stack_id in REAL_STACKS:
        stack = model_for_library(stack_id)
        verdicts[stack_id] = [validate_chain(p.certs_of(CHAINS[mc.chain]), p.certs_of(STORES[mc.store]), stack=stack,
                                             host=mc.host, as_of=DATES[mc.date]).valid for mc in cases]
    same = [(a, b) for i, a in enumerate(REAL_STACKS) for b in REAL_STACKS[i + 1:] if verdicts[a] == verdicts[b]]
    assert not same


def test_verified_stacks_name_the_library_they_were_verified_against() -> None:
    """"verified against <library version>" only for a stack this test file proves, with that library's version."""
    for stack_id, stack in STACKS.items():
        if stack.evidence.startswith("verified against "):
            assert stack_id in REAL_STACKS, stack_id
    for stack_id in REAL_STACKS:
        reason = crosscheck.unavailable(stack_id)
        if reason is not None:
            continue
        version = crosscheck.adapter_for(stack_id).library_version()
        named = re.match(r"(\D+\d+\.\d+)", version)
        assert named is not None, version
        evidence = STACKS[stack_id].evidence
        assert named.group(1) in evidence or "modelled from" in evidence, (stack_id, version, evidence)
