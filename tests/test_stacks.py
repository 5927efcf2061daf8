"""The stack table: every id of the agreed list, each a checked value, old path_builder values mapped."""

from __future__ import annotations

from pathlib import Path

import pytest

from iotaudit.errors import IotauditError
from iotaudit.stacks import (
    DEFAULT_STACK_ID,
    PATH_BUILDER_STACKS,
    STACK_IDS,
    STACKS,
    AnchorExpiry,
    AnchorForm,
    SearchOrder,
    Stack,
    UnknownStackError,
    get_stack,
    stacks_markdown,
)

AGREED_IDS = (
    "openssl-3", "openssl-3-partial-chain", "openssl-1.0.1", "openssl-1.0.2", "mbedtls-2.28", "mbedtls-3.6",
    "esp-idf-bundle", "esp-idf-bundle-cross-signed", "wolfssl-5", "wolfssl-5-alt-chains", "gnutls-3.7",
    "bearssl", "android",
)


def test_every_agreed_stack_id_is_a_stack() -> None:
    assert set(AGREED_IDS) <= set(STACK_IDS)
    for stack_id in AGREED_IDS:
        stack = STACKS[stack_id]
        assert isinstance(stack, Stack) and stack.id == stack_id
        assert stack.sources and stack.title and stack.ships_in and stack.library
        assert stack.evidence.startswith(("verified against ", "modelled from "))


def test_default_and_path_builder_mapping() -> None:
    assert DEFAULT_STACK_ID in STACKS
    assert PATH_BUILDER_STACKS == {"modern": "openssl-3-partial-chain", "legacy-chain-top": "openssl-1.0.1"}
    assert all(v in STACKS for v in PATH_BUILDER_STACKS.values())


def test_get_stack_accepts_ids_and_stacks() -> None:
    assert get_stack("mbedtls-2.28") is STACKS["mbedtls-2.28"]
    assert get_stack(STACKS["bearssl"]) is STACKS["bearssl"]


def test_unknown_stack_names_the_known_ids() -> None:
    with pytest.raises(UnknownStackError) as err:
        get_stack("openssl-9")
    assert "openssl-9" in str(err.value) and "mbedtls-2.28" in str(err.value)
    assert isinstance(err.value, IotauditError) and isinstance(err.value, ValueError)


def test_stack_checks_itself() -> None:
    base = STACKS["openssl-3"]
    fields = {name: getattr(base, name) for name in Stack.__slots__}
    with pytest.raises(ValueError, match="max_depth"):
        Stack(**{**fields, "max_depth": 0})
    with pytest.raises(ValueError, match="evidence"):
        Stack(**{**fields, "evidence": "trust me"})
    with pytest.raises(ValueError):
        Stack(**{**fields, "search": "sideways"})


@pytest.mark.parametrize(("stack_id", "search", "anchor", "expiry"), [
    ("openssl-3", SearchOrder.TRUSTED_FIRST, AnchorForm.SELF_SIGNED, AnchorExpiry.AT_VERIFY),
    ("openssl-3-partial-chain", SearchOrder.TRUSTED_FIRST, AnchorForm.ANY_STORED, AnchorExpiry.AT_VERIFY),
    ("esp-idf-bundle", SearchOrder.CHAIN_TOP, AnchorForm.NAME_AND_KEY, AnchorExpiry.IGNORED),
    ("android", SearchOrder.BUILDER, AnchorForm.ANY_STORED, AnchorExpiry.IGNORED),
])
def test_documented_behaviours(stack_id: str, search: SearchOrder, anchor: AnchorForm, expiry: AnchorExpiry) -> None:
    stack = STACKS[stack_id]
    assert (stack.search, stack.anchor_form, stack.anchor_expiry) == (search, anchor, expiry)


def test_readme_documents_every_stack_as_the_model_says() -> None:
    """README.md's stack tables are stacks_markdown() verbatim: docs and model cannot drift apart."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    begin, end = "<!-- stacks:begin -->\n", "<!-- stacks:end -->"
    assert begin in readme and end in readme
    section = readme.split(begin, 1)[1].split(end, 1)[0]
    assert section == stacks_markdown()
    for stack_id in AGREED_IDS:
        assert f"| `{stack_id}` |" in section
