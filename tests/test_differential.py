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
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography import x509

from iotaudit import crosscheck
from iotaudit.catalog import Catalog
from iotaudit.certs import cert_der
from iotaudit.paths import validate_chain
from iotaudit.stacks import STACKS, Stack
from tests.reallib import aws_like_pki, named_cases, require_library
from tests.stackmatrix import CHAINS, DATES, STORES, MatrixCase, matrix, pki

# Stacks a real library answers for here (the adapters of iotaudit/crosscheck).
REAL_STACKS = ("openssl-3", "openssl-3-partial-chain", "openssl-1.0.1", "openssl-1.0.2", "gnutls-3.7", "bearssl",
               "mbedtls-2.28", "esp-idf-bundle", "esp-idf-bundle-cross-signed", "wolfssl-5-alt-chains", "wolfssl-5")


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


# --- AWS's own certificates (data/aws-ca, the shipped catalogue) ---------------------------------------------

AWS_CA = Path(__file__).resolve().parent.parent / "data" / "aws-ca"
# Served shapes with an AWS intermediate in the leaf's place (no AWS leaf is shipped), no host name checked.
AWS_CHAINS: dict[str, tuple[str, ...]] = {
    "m01-as-served": ("AmazonRSA2048M01", "G2-RootCA1", "SFSRootCAG2-Class2"),
    "m01-no-top-cross": ("AmazonRSA2048M01", "G2-RootCA1"),
    "m01-alone": ("AmazonRSA2048M01",),
    "m01-root-served": ("AmazonRSA2048M01", "AmazonRootCA1"),
    "ecdsa-m02-as-served": ("AmazonECDSA256M02", "G2-RootCA3", "SFSRootCAG2-Class2"),
    "ecdsa-m02-reversed": ("AmazonECDSA256M02", "SFSRootCAG2-Class2", "G2-RootCA3"),
}
AWS_STORES: dict[str, tuple[str, ...]] = {
    "root1": ("AmazonRootCA1",), "root3": ("AmazonRootCA3",), "sfs-g2": ("SFSRootCAG2",),
    "starfield-class-2": ("StarfieldClass2CA",), "cross-signed-root1": ("G2-RootCA1",),
    "all-amazon": ("AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4"),
    "all": ("AmazonRootCA1", "AmazonRootCA2", "AmazonRootCA3", "AmazonRootCA4", "SFSRootCAG2", "StarfieldClass2CA"),
}
AWS_DATES = {
    "2026": datetime(2026, 6, 1, tzinfo=timezone.utc),
    "m01-not-after": datetime(2030, 8, 23, 22, 21, 28, tzinfo=timezone.utc),   # AmazonRSA2048M01's last second
}


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", REAL_STACKS)
def test_model_matches_real_library_on_aws_certificates(stack_id: str) -> None:
    """The same agreement on the real Amazon Trust Services and Starfield certificates of the catalogue."""
    require_library(stack_id)
    certs = {e.name: e.certificate for e in Catalog.from_directory(AWS_CA).entries}
    cases = [(c, s, d) for c in AWS_CHAINS for s in AWS_STORES for d in AWS_DATES]
    answers = crosscheck.verify_many(stack_id, [
        crosscheck.Case(served=tuple(cert_der(certs[n]) for n in AWS_CHAINS[c]),
                        store=tuple(cert_der(certs[n]) for n in AWS_STORES[s]), host=None, as_of=AWS_DATES[d])
        for c, s, d in cases])
    stack = model_for_library(stack_id)
    mismatches = []
    for (c, s, d), lib in zip(cases, answers, strict=True):
        model = validate_chain([certs[n] for n in AWS_CHAINS[c]], [certs[n] for n in AWS_STORES[s]], stack=stack,
                               host=None, as_of=AWS_DATES[d])
        if model.valid != lib.valid:
            mismatches.append(f"chain={c} store={s} date={d}: model {model.valid} ({model.reason}), "
                              f"{lib.library} {lib.valid} ({lib.error})")
    assert not mismatches, f"{stack_id}: {len(mismatches)} of {len(cases)} differ:\n" + "\n".join(mismatches)
    assert any(lib.valid for lib in answers) and not all(lib.valid for lib in answers)


# --- the adapters' own named cases (tests/reallib.py, a PKI built independently of tests/stackmatrix.py) -----


@pytest.mark.slow
@pytest.mark.parametrize("stack_id", REAL_STACKS)
def test_model_matches_real_library_on_the_adapters_named_cases(stack_id: str) -> None:
    """Also IP-address hosts and subjectAltNames, a leaf alone in the store, second-exact boundaries."""
    require_library(stack_id)
    cases = named_cases(aws_like_pki())
    answers = crosscheck.verify_many(stack_id, list(cases.values()))
    stack = model_for_library(stack_id)
    mismatches = []
    for (name, case), lib in zip(cases.items(), answers, strict=True):
        model = validate_chain([x509.load_der_x509_certificate(d) for d in case.served],
                               [x509.load_der_x509_certificate(d) for d in case.store],
                               stack=stack, host=case.host, as_of=case.as_of)
        if model.valid != lib.valid:
            mismatches.append(f"{name}: model {model.valid} ({model.reason}), {lib.library} {lib.valid} ({lib.error})")
    assert not mismatches, f"{stack_id}: {len(mismatches)} of {len(cases)} differ:\n" + "\n".join(mismatches)
