"""Bad input is data: unreadable files, symlink loops, special files, random bytes -- never a crash."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

import pytest

from iotaudit import columns as c
from iotaudit.errors import ScanError
from iotaudit.firmware import scan
from tests.firmware_builders import aws, certificates, pem_text, rows


def _skips(result) -> dict[str, str]:
    return {r[c.FILE]: r[c.DETAIL] for r in rows(result, **{c.FINDING: "skipped"})}


def test_random_bytes_of_every_size_give_nothing(tmp_path: Path) -> None:
    rng = random.Random(99)
    for size in (0, 1, 7, 4096, (8 << 20) + 3):  # empty, tiny, one window and a bit
        (tmp_path / f"r{size}.bin").write_bytes(rng.randbytes(size))
    assert scan(tmp_path).findings.empty


def test_an_unreadable_file_is_an_error_finding_and_the_rest_is_scanned(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.pem").write_text(pem_text(aws("AmazonRootCA1")))
    secret = tmp_path / "secret.pem"
    secret.write_text(pem_text(aws("AmazonRootCA3")))
    secret.chmod(0)
    if os.geteuid() == 0:  # root reads a mode-000 file: make the open fail the way it fails for a user
        real_open = Path.open

        def refusing_open(self: Path, *args, **kwargs):
            if self == secret:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refusing_open)
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: "error"})
    assert problem[c.FILE] == "secret.pem" and "cannot read file (Permission denied)" in problem[c.DETAIL]
    assert [r[c.CATALOG_NAME] for r in certificates(result)] == ["AmazonRootCA1"]


def test_symlink_loops_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "root.pem").write_text(pem_text(aws("AmazonRootCA1")))
    os.symlink("..", tmp_path / "certs" / "up")        # a directory loop
    os.symlink("b", tmp_path / "a")                     # a -> b -> a: ELOOP
    os.symlink("a", tmp_path / "b")
    os.symlink("missing.pem", tmp_path / "dangling")
    result = scan(tmp_path)
    skips = _skips(result)
    assert skips["certs/up"].startswith("symlink loop") and skips["a"] == "symlink loop" == skips["b"]
    assert skips["dangling"].startswith("broken symlink")
    assert len(certificates(result)) == 1  # the loop did not scan root.pem twice


def test_special_files_are_never_opened_and_are_counted(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # opening it for reading would block forever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        result = scan(tmp_path)
    skips = _skips(result)
    assert skips == {"pipe": "special file (FIFO): not opened", "sock": "special file (socket): not opened"}


def test_a_path_that_does_not_exist_raises(tmp_path: Path) -> None:
    with pytest.raises(ScanError, match="cannot scan: No such file or directory"):
        scan(tmp_path / "missing")


def test_a_special_file_given_as_the_path_raises(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ScanError, match="special file"):
        scan(tmp_path / "pipe")


def test_version_control_directories_are_skipped_and_counted(tmp_path: Path) -> None:
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "objects" / "x.pem").write_text(pem_text(aws("AmazonRootCA1")))
    result = scan(tmp_path)
    assert _skips(result) == {".git": "version-control directory"} and certificates(result) == []
