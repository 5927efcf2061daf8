"""The default wolfSSL build fetches Debian's source from the archives apt already uses (names none itself)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parent.parent / "iotaudit" / "crosscheck" / "_wolfssl_build.py"


def _module():
    spec = importlib.util.spec_from_file_location("wolfssl_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_lines_mirror_every_configured_deb_archive(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("# none\ndeb [arch=amd64] http://mirror.test/debian bookworm main contrib\n"
                                           "deb-src http://mirror.test/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.test/off\nSuites: x\nComponents: main\nEnabled: no\n")
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text("deb http://elsewhere.test/ x main\n")
    lines = _module().source_lines(tmp_path).splitlines()
    assert lines == [
        "deb-src [arch=amd64] http://mirror.test/debian bookworm main contrib",
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.test/debian bookworm main",
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://mirror.test/debian bookworm-updates main",
    ]


def test_no_configured_archive_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(RuntimeError, match="no deb archive is configured"):
        _module().source_lines(tmp_path)
