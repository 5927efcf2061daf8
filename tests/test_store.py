"""Run directories: round trip with documented dtypes, atomic writes, clear errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from iotaudit import columns as c
from iotaudit.catalog import aws_catalog
from iotaudit.certs import cert_sha256, certificates_frame
from iotaudit.errors import RunError
from iotaudit.store import Run, load_run, make_manifest, write_atomically, write_run

WHEN = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def _tiny_run() -> Run:
    cat = aws_catalog()
    chain = [cat.entry("AmazonRSA2048M01").certificate, cat.entry("G2-RootCA1").certificate]
    certs = cat.label_frame(certificates_frame(chain))
    obs = c.typed_frame([{
        c.OBSERVATION_ID: 0, c.HOST: "x.iot.us-east-1.amazonaws.com", c.PORT: 8883, c.ADDRESS: "127.0.0.1",
        c.REGION: "us-east-1", c.ENDPOINT_TYPE: "iot:Data-ATS", c.LABEL: "", c.ALPN_OFFERED: "",
        c.PROBE: "import", c.STATUS: "ok", c.ERROR: "", c.TLS_VERSION: "", c.CIPHER: "", c.ALPN: "",
        c.CHAIN_SHA256: list(certs[c.SHA256]), c.CHAIN_LENGTH: 2, c.HANDSHAKE_MS: 0.0, c.STARTED_AT: WHEN,
    }], c.OBSERVATION_DTYPES)
    chains = c.typed_frame([{c.OBSERVATION_ID: 0, c.POSITION: i, c.SHA256: s} for i, s in enumerate(certs[c.SHA256])],
                           c.CHAIN_DTYPES)
    return Run(obs, chains, certs, cat.to_frame(), make_manifest(catalog_kind="aws", parameters={"k": 1}, created_at=WHEN))


def test_round_trip_keeps_values_and_dtypes(tmp_path: Path) -> None:
    run = write_run(_tiny_run(), tmp_path / "r")
    back = load_run(tmp_path / "r")
    assert back.path == run.path == tmp_path / "r"
    assert back.created_at == WHEN
    assert back.observations[c.CHAIN_SHA256].iloc[0] == list(run.certificates[c.SHA256])
    for name, dtypes in (("observations", c.OBSERVATION_DTYPES), ("certificates", c.CERTIFICATE_DTYPES)):
        frame = getattr(back, name)
        assert {k: str(v) for k, v in frame.dtypes.items()} == {k: str(pd.Series(dtype=v).dtype) for k, v in dtypes.items()}
    assert back.catalog_object().names == aws_catalog().names
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["tables"]["certificates"] == 2


def test_existing_directory_is_not_overwritten_by_default(tmp_path: Path) -> None:
    write_run(_tiny_run(), tmp_path / "r")
    with pytest.raises(RunError, match="already exists"):
        write_run(_tiny_run(), tmp_path / "r")
    write_run(_tiny_run(), tmp_path / "r", overwrite=True)
    assert load_run(tmp_path / "r").observations.shape[0] == 1


def test_crash_while_writing_leaves_nothing_that_looks_like_a_run(tmp_path: Path) -> None:
    def fill(tmp: Path) -> None:
        (tmp / "manifest.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "r", fill)
    assert list(tmp_path.iterdir()) == []


def test_crash_while_overwriting_keeps_the_old_run(tmp_path: Path) -> None:
    write_run(_tiny_run(), tmp_path / "r")

    def fill(tmp: Path) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "r", fill, overwrite=True)
    assert load_run(tmp_path / "r").observations.shape[0] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_missing_directory_is_a_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory"):
        load_run(tmp_path / "nope")


def test_directory_without_manifest_is_not_a_run(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    with pytest.raises(RunError, match="not a complete iotaudit run"):
        load_run(tmp_path / "half")


def test_missing_table_is_a_run_error(tmp_path: Path) -> None:
    write_run(_tiny_run(), tmp_path / "r")
    (tmp_path / "r" / "chains.parquet").unlink()
    with pytest.raises(RunError, match="cannot read chains.parquet"):
        load_run(tmp_path / "r")


def test_certificate_objects_parse_every_certificate_once(tmp_path: Path) -> None:
    run = load_run(write_run(_tiny_run(), tmp_path / "r").path)
    objects = run.certificate_objects()
    assert set(objects) == set(run.certificates[c.SHA256])
    assert all(cert_sha256(cert) == sha for sha, cert in objects.items())


def test_certificate_without_pem_is_a_run_error_naming_it(tmp_path: Path) -> None:
    run = _tiny_run()
    damaged = run.certificates.copy()
    damaged.loc[0, c.PEM] = pd.NA
    broken = Run(run.observations, run.chains, damaged, run.catalog, run.manifest)
    with pytest.raises(RunError, match=rf"certificate {damaged.loc[0, c.SHA256]} has no PEM"):
        broken.certificate_objects()
