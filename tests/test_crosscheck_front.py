"""The front of iotaudit.crosscheck: finding an adapter, saying why a library is missing, running a batch."""

from __future__ import annotations

import pytest

from iotaudit import crosscheck
from iotaudit.crosscheck import LibraryUnavailableError, _bearssl, _gnutls, _openssl
from tests.reallib import aws_like_pki, named_cases, require_library


@pytest.mark.parametrize(("stack", "module"), [
    ("openssl-3", _openssl), ("openssl-3-partial-chain", _openssl), ("openssl-1.0.1", _openssl),
    ("openssl-1.0.2", _openssl), ("gnutls-3.7", _gnutls), ("bearssl", _bearssl),
])
def test_each_stack_finds_its_adapter(stack: str, module: object) -> None:
    assert crosscheck.adapter_for(stack) is module


def test_a_stack_without_a_real_library_is_modelled_only() -> None:
    assert crosscheck.adapter_for("android") is None
    assert "modelled only" in (crosscheck.unavailable("android") or "")
    with pytest.raises(LibraryUnavailableError, match="'android'") as raised:
        crosscheck.verify_many("android", [])
    assert raised.value.stack_id == "android"


def test_an_adapter_module_not_in_this_checkout_is_tolerated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(crosscheck._ADAPTERS, "nolib", "_no_such_adapter")
    monkeypatch.setattr(crosscheck, "_LOADED", {})
    assert crosscheck.adapter_for("no-such-stack") is None
    assert crosscheck._LOADED["_no_such_adapter"] is None


def test_verified_stacks_name_the_library_versions() -> None:
    require_library("openssl-3")
    require_library("gnutls-3.7")
    require_library("bearssl")
    found = crosscheck.verified_stacks()
    assert found["openssl-3"] == _openssl.library_version()
    assert found["openssl-1.0.1"].startswith("OpenSSL 3.")
    assert found["gnutls-3.7"].startswith("GnuTLS 3.")
    assert found["bearssl"].startswith("BearSSL ")
    assert "android" not in found


@pytest.mark.slow
def test_the_front_runs_a_batch_through_the_adapter() -> None:
    cases = list(named_cases(aws_like_pki()).values())
    for stack in ("openssl-3", "gnutls-3.7", "bearssl"):
        require_library(stack)
        module = crosscheck.adapter_for(stack)
        assert module is not None
        assert crosscheck.verify_many(stack, cases) == module.verify_many(stack, cases)


def test_require_library_fails_in_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="android"):
        require_library("android")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="android"):
        require_library("android")


def test_unavailable_is_asked_per_stack_not_per_adapter(tmp_path, monkeypatch) -> None:
    # One adapter answers for two wolfSSL builds: without the default build, wolfssl-5 must read as
    # unavailable (listed by --cross-check) while Debian's alt-chains build stays usable. The front
    # used to ask the adapter without the stack id, so wolfssl-5 looked available and then failed.
    from iotaudit import crosscheck
    from iotaudit.crosscheck import _wolfssl

    require_library("wolfssl-5-alt-chains")
    monkeypatch.setattr(_wolfssl, "DEFAULT_DIRECTORY", tmp_path / "no-default-build")
    assert "default wolfSSL build is missing" in (crosscheck.unavailable("wolfssl-5") or "")
    assert crosscheck.unavailable("wolfssl-5-alt-chains") is None
    found = crosscheck.verified_stacks()
    assert "wolfssl-5" not in found and "wolfssl-5-alt-chains" in found
