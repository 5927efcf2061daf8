"""Builders for the firmware scan tests: fixtures made in ``tmp_path`` from the real public roots.

Certificates come from ``data/aws-ca`` (the real AWS IoT CA certificates) and,
where a test needs a leaf or a lab chain, from iotaudit's lab PKI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509

from iotaudit import columns as c
from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_der, cert_pem


def require(tool: str, package: str) -> str:
    """The path of ``tool``; skips naming the Debian package locally, fails in CI (CI=true)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} not found: install the Debian package {package}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def aws(name: str) -> x509.Certificate:
    """A real catalogue certificate (data/aws-ca) by entry name."""
    return aws_catalog().entry(name).certificate


def pem_text(*certs: x509.Certificate) -> str:
    return "".join(cert_pem(cert) for cert in certs)


def c_string_define(macro: str, cert: x509.Certificate, *, header_pad: str = "", eol: str = "\\n") -> str:
    """``#define MACRO "line\\n" "line\\n" ...`` the FreeRTOS ``democonfigROOT_CA_PEM`` way."""
    lines = cert_pem(cert).strip().splitlines()
    lines[0] += header_pad
    body = " \\\n".join(f'    "{line}{eol}"' for line in lines)
    return f"#define {macro} \\\n{body}\n"


def c_byte_array(name: str, data: bytes) -> str:
    """``const unsigned char name[] = {0x30, 0x82, ...};`` (xxd -i style, 12 per line)."""
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    return f"const unsigned char {name}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"


def der_inc(data: bytes) -> str:
    """A Zephyr ``generate_inc_file_for_target()`` list: comma-separated hex bytes."""
    return ",\n".join(", ".join(f"0x{b:02x}" for b in data[i:i + 8]) for i in range(0, len(data), 8)) + ",\n"


def embed_with_ld(tmp_path: Path, files: dict[str, bytes], out: str = "embedded.o") -> Path:
    """An ELF relocatable with ``_binary_<name>_start/_end`` per file, made by ``ld -r -b binary``."""
    ld = require("ld", "binutils")
    work = tmp_path / "ld-work"
    work.mkdir(exist_ok=True)
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    target = tmp_path / out
    subprocess.run([ld, "-r", "-b", "binary", "-o", str(target), *files], cwd=work, check=True)
    return target


def insert(blob: bytearray, offset: int, data: bytes) -> int:
    blob[offset:offset + len(data)] = data
    return offset


def rows(result, **where) -> list[dict]:
    """Finding rows of a ScanResult matching column == value for every keyword (column constants' values)."""
    frame = result.findings
    mask = None
    for column, value in where.items():
        hit = frame[column].astype(object) == value
        mask = hit if mask is None else mask & hit
    return frame[mask].to_dict("records") if mask is not None else frame.to_dict("records")


def certificates(result) -> list[dict]:
    return rows(result, **{c.FINDING: c.FindingKind.CERTIFICATE.value})


def anchors(result) -> list[dict]:
    return rows(result, **{c.FINDING: c.FindingKind.ANCHOR.value})


def der_of(name: str) -> bytes:
    return cert_der(aws(name))


def names(records: Sequence[dict]) -> list[str]:
    return [r[c.CATALOG_NAME] for r in records]
