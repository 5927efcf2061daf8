"""Builders shared by the analysis tests: a tiny PKI, runs and inventories written to ``tmp_path``."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from iotaudit import columns as c
from iotaudit.catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from iotaudit.certs import cert_pem, cert_sha256, certificates_frame
from iotaudit.inventory import load_inventory
from iotaudit.store import Run, load_run, make_manifest, write_run

UTC = timezone.utc
AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


def at(year: int, month: int = 1, day: int = 1) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


# --- a tiny PKI ---------------------------------------------------------------------------------


@functools.cache
def rsa_key(index: int) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: a few, cached per session (2048 bits: the verifier's minimum)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(index: int) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: object


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "iotaudit test")])


def issue(cn: str, key, *, issuer: Issued | None = None, ca: bool = True, start: datetime = at(2020),
          end: datetime = at(2040), san: Sequence[str] = (), serial: int = 0) -> Issued:
    """A certificate for ``key``: self-signed when ``issuer`` is None."""
    subject = name(cn)
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in san]), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def leaf(host: str, key, issuer: Issued, *, start: datetime = at(2024), end: datetime = at(2026)) -> Issued:
    return issue(host, key, issuer=issuer, ca=False, start=start, end=end, san=[host])


def make_catalog(entries: Mapping[str, tuple[Issued, CatalogRole, CatalogStatus]], kind: str = "lab") -> Catalog:
    return Catalog([CatalogEntry(n, n, role, status, certificate=i.cert, source=f"{n}.pem")
                    for n, (i, role, status) in entries.items()], kind=kind)


def make_run(tmp_path: Path, chains: Sequence[tuple[str, str, Sequence[Issued]]], catalog: Catalog,
             *, region: str = "us-east-1", created_at: datetime = AS_OF, extra: Sequence[Issued] = ()) -> Run:
    """A run directory holding ``chains`` (host, probe, served certificates), written and loaded back."""
    observations, positions, certs = [], [], []
    for obs_id, (host, probe, served) in enumerate(chains, start=1):
        fps = [cert_sha256(i.cert) for i in served]
        observations.append({
            c.OBSERVATION_ID: obs_id, c.HOST: host, c.PORT: 8883, c.ADDRESS: "127.0.0.1", c.REGION: region,
            c.ENDPOINT_TYPE: "iot:Data-ATS", c.LABEL: "", c.ALPN_OFFERED: "", c.PROBE: probe, c.STATUS: "ok",
            c.ERROR: "", c.TLS_VERSION: "TLSv1.2", c.CIPHER: "", c.ALPN: "", c.CHAIN_SHA256: fps,
            c.CHAIN_LENGTH: len(fps), c.HANDSHAKE_MS: 1.0, c.STARTED_AT: created_at,
        })
        positions += [{c.OBSERVATION_ID: obs_id, c.POSITION: p, c.SHA256: fp} for p, fp in enumerate(fps)]
        certs += [i.cert for i in served]
    certs += [i.cert for i in extra]
    run = Run(
        observations=c.typed_frame(observations, c.OBSERVATION_DTYPES),
        chains=c.typed_frame(positions, c.CHAIN_DTYPES),
        certificates=catalog.label_frame(certificates_frame(certs)),
        catalog=catalog.to_frame(),
        manifest=make_manifest(catalog_kind=catalog.kind, parameters={}, created_at=created_at),
    )
    path = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    return load_run(write_run(run, path).path)


INVENTORY_HEADER = "device_id,group,profile,region,endpoints,trust_store,key_types,path_builder,pins,pin_scope,pin_expiry\n"


def make_inventory(tmp_path: Path, profiles: Sequence[Mapping[str, object]], stores: Mapping[str, Sequence[Issued]] = ()):
    """An inventory CSV with ``devices`` rows per profile; ``stores`` are written as PEM bundles."""
    for file, certs in dict(stores).items():
        (tmp_path / file).write_text("".join(cert_pem(i.cert) for i in certs), encoding="ascii")
    lines = [INVENTORY_HEADER]
    n = 0
    for p in profiles:
        for _ in range(int(p.get("devices", 1))):
            n += 1
            lines.append(",".join([
                f"dev-{n:05d}", str(p.get("group", "g1")), str(p["profile"]), str(p.get("region", "us-east-1")),
                str(p.get("endpoints", "*")), str(p["trust_store"]), str(p.get("key_types", "rsa;ecdsa")),
                str(p.get("path_builder", "modern")), str(p.get("pins", "")), str(p.get("pin_scope", "any")),
                str(p.get("pin_expiry", "")),
            ]) + "\n")
    path = tmp_path / f"inventory-{len(list(tmp_path.glob('inventory-*')))}.csv"
    path.write_text("".join(lines), encoding="utf-8")
    return load_inventory(path)
