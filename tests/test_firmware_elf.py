"""ELF files: files embedded with _binary_<name>_start/_end (ld -b binary, objcopy, ESP-IDF EMBED_TXTFILES)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from iotaudit import columns as c
from iotaudit.certs import cert_pem
from iotaudit.firmware import scan, write_esp_bundle
from iotaudit.firmware.elf import embedded_files
from tests.firmware_builders import anchors, aws, certificates, embed_with_ld, require, rows


def test_ld_binary_embeds_are_named_and_read_exactly(tmp_path: Path) -> None:
    pem = cert_pem(aws("AmazonRootCA1")).encode() + b"\x00"  # EMBED_TXTFILES appends a NUL
    bundle = write_esp_bundle([aws("AmazonRootCA3"), aws("StarfieldClass2CA")], layout="current")
    elf = embed_with_ld(tmp_path, {"server_root_cert.pem": pem, "x509_crt_bundle": bundle})
    with elf.open("rb") as stream:
        regions = {r.stem: r for r in embedded_files(stream)}
    assert set(regions) == {"server_root_cert_pem", "x509_crt_bundle"}
    data = elf.read_bytes()
    assert data[regions["x509_crt_bundle"].offset:][:len(bundle)] == bundle
    result = scan(elf)
    [cert] = certificates(result)
    assert (cert[c.EMBEDDED_AS], cert[c.CATALOG_NAME], cert[c.OFFSET]) == (
        "server_root_cert_pem", "AmazonRootCA1", regions["server_root_cert_pem"].offset)
    found = anchors(result)
    assert sorted(r[c.CATALOG_NAME] for r in found) == ["AmazonRootCA3", "StarfieldClass2CA"]
    assert {r[c.EMBEDDED_AS] for r in found} == {"x509_crt_bundle"}
    embedded = rows(result, **{c.SCAN_FORMAT: c.ScanFormat.ELF_EMBED.value})
    assert sorted(r[c.EVIDENCE].split(" (")[0] for r in embedded) == [
        "embedded file server_root_cert.pem", "embedded file x509_crt_bundle"]


def test_objcopy_embeds_are_read_too(tmp_path: Path) -> None:
    objcopy = require("objcopy", "binutils")
    (tmp_path / "root_cert_auth.crt").write_text(cert_pem(aws("AmazonRootCA3")))
    target = tmp_path / "certs.o"
    subprocess.run([objcopy, "-I", "binary", "-O", "elf64-little", "root_cert_auth.crt", str(target)],
                   cwd=tmp_path, check=True)
    (tmp_path / "root_cert_auth.crt").unlink()
    [cert] = certificates(scan(target))
    assert (cert[c.EMBEDDED_AS], cert[c.CATALOG_NAME]) == ("root_cert_auth_crt", "AmazonRootCA3")


def test_a_corrupt_elf_is_an_error_and_the_bytes_are_still_searched(tmp_path: Path) -> None:
    broken = b"\x7fELF" + b"\x02\x01\x01" + bytes(9) + b"\xff" * 40 + cert_pem(aws("AmazonRootCA1")).encode()
    (tmp_path / "app.elf").write_bytes(broken)
    result = scan(tmp_path)
    [problem] = rows(result, **{c.FINDING: "error"})
    assert problem[c.FILE] == "app.elf" and "not a readable ELF file" in problem[c.DETAIL]
    assert [r[c.CATALOG_NAME] for r in certificates(result)] == ["AmazonRootCA1"]
