"""The front door: every name in iotaudit.__all__ resolves, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import iotaudit


@pytest.mark.parametrize("name", iotaudit.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(iotaudit, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        iotaudit.nope  # noqa: B018


def test_import_does_not_pull_in_the_report_stack() -> None:
    code = "import sys, iotaudit; print(sorted(m for m in ('papermill', 'nbconvert', 'matplotlib', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
