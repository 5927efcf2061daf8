"""The catalogue of AWS IoT server-authentication CAs, and labelling by fingerprint and key.

A catalogue is a directory with ``catalog.json`` (name, display name, role,
status and file of each entry) and the PEM files it names.  The project ships
the real public one (``data/aws-ca``, see its ``PROVENANCE.md``); the loopback
lab writes one of the same shape for its lab certificates, with the same
entry names, so one device inventory works against both.

Certificates are identified by SHA-256 of the DER and by SPKI SHA-256, never
by name: a cross-signed copy of Amazon Root CA 1 has the same subject and key
as the self-signed root but another issuer, and is labelled "same key as
AmazonRootCA1".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from . import columns as c
from .certs import cert_sha256, certificate_record, load_pem_file, load_pem_x509_certificates, spki_sha256
from .errors import CatalogError, PemError

if TYPE_CHECKING:
    import pandas as pd  # the frame methods import it when called: ``iotaudit collect`` runs without pandas


class CatalogRole(str, Enum):
    """Where a catalogue certificate sits in AWS IoT's hierarchy."""

    ROOT = "root"                  # self-signed trust anchor
    CROSS_SIGNED = "cross-signed"  # a root's key certified by another root (Starfield cross-sign)
    INTERMEDIATE = "intermediate"  # issuing CA under a root

    def __str__(self) -> str:
        return self.value


class CatalogStatus(str, Enum):
    """Status of a catalogue certificate, as the AWS "Server Authentication" document gives it."""

    IN_USE = "in-use"                                    # Amazon Root CA 1 (RSA) and 3 (ECC) today
    RESERVED = "reserved-for-future-use"                 # Amazon Root CA 2 and 4
    LEGACY = "legacy"                                    # VeriSign / Symantec iot:Data endpoints
    CROSS_SIGNER = "cross-signer"                        # Starfield roots that cross-sign the Amazon roots
    ISSUING_CA = "issuing-ca"                            # Amazon intermediates

    def __str__(self) -> str:
        return self.value


class CatalogMatch(str, Enum):
    """How a certificate matched a catalogue entry (``catalog_match`` column)."""

    CERTIFICATE = "certificate"  # identical DER
    KEY = "key"                  # same SubjectPublicKeyInfo, different certificate (e.g. other issuer)
    NONE = ""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One certificate of the catalogue."""

    name: str
    display_name: str
    role: CatalogRole
    status: CatalogStatus
    certificate: x509.Certificate = field(repr=False, compare=False)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.name or any(ch in self.name for ch in " ;,"):
            raise CatalogError(self.name, "entry names are non-empty and hold no space, ';' or ','")
        object.__setattr__(self, "role", CatalogRole(self.role))
        object.__setattr__(self, "status", CatalogStatus(self.status))

    @property
    def sha256(self) -> str:
        """Lowercase hex SHA-256 of the DER."""
        return cert_sha256(self.certificate)

    @property
    def spki_sha256(self) -> str:
        """Lowercase hex SHA-256 of the SubjectPublicKeyInfo."""
        return spki_sha256(self.certificate)


class Catalog:
    """An immutable set of named CA certificates with lookups by name, fingerprint and key.

    Args:
        entries: The entries; names must be unique.
        kind: ``"aws"`` for the real public catalogue, ``"lab"`` for the loopback lab's.
    """

    __slots__ = ("_by_name", "_by_sha256", "_by_spki", "entries", "kind")

    def __init__(self, entries: Sequence[CatalogEntry], kind: str = "aws") -> None:
        self.entries: tuple[CatalogEntry, ...] = tuple(entries)
        self.kind = kind
        self._by_name: dict[str, CatalogEntry] = {}
        self._by_sha256: dict[str, CatalogEntry] = {}
        self._by_spki: dict[str, list[CatalogEntry]] = {}
        for entry in self.entries:
            if entry.name.lower() in self._by_name:
                raise CatalogError(entry.name, "duplicate entry name")
            self._by_name[entry.name.lower()] = entry
            self._by_sha256.setdefault(entry.sha256, entry)
            self._by_spki.setdefault(entry.spki_sha256, []).append(entry)
        # Prefer the self-signed root as the name of a key, then cross-signed copies.
        order = {CatalogRole.ROOT: 0, CatalogRole.CROSS_SIGNED: 1, CatalogRole.INTERMEDIATE: 2}
        for same_key in self._by_spki.values():
            same_key.sort(key=lambda e: order[e.role])

    @property
    def names(self) -> list[str]:
        """Entry names in catalogue order."""
        return [e.name for e in self.entries]

    def entry(self, name: str) -> CatalogEntry:
        """The entry called ``name`` (case-insensitive).

        Raises:
            CatalogError: when no entry has that name; the message lists the known names.
        """
        try:
            return self._by_name[name.strip().lower()]
        except KeyError:
            raise CatalogError(name, f"unknown catalogue name; known: {', '.join(self.names)}") from None

    def certificates(self, names: Iterable[str]) -> list[x509.Certificate]:
        """The certificates of the named entries, in the given order."""
        return [self.entry(n).certificate for n in names]

    def roots(self, status: CatalogStatus | None = None) -> list[CatalogEntry]:
        """Self-signed root entries, optionally only those with ``status``."""
        return [e for e in self.entries if e.role is CatalogRole.ROOT and (status is None or e.status is status)]

    def by_sha256(self, sha256: str) -> CatalogEntry | None:
        """The entry whose certificate has this DER SHA-256, if any."""
        return self._by_sha256.get(sha256)

    def by_spki(self, spki_sha256_hex: str) -> list[CatalogEntry]:
        """Entries whose certificate has this key (roots first)."""
        return list(self._by_spki.get(spki_sha256_hex, ()))

    def identify(self, sha256: str, spki_sha256_hex: str) -> tuple[CatalogEntry | None, CatalogMatch]:
        """Label a certificate: exact catalogue certificate, else same key as an entry, else unknown."""
        exact = self._by_sha256.get(sha256)
        if exact is not None:
            return exact, CatalogMatch.CERTIFICATE
        same_key = self._by_spki.get(spki_sha256_hex)
        if same_key:
            return same_key[0], CatalogMatch.KEY
        return None, CatalogMatch.NONE

    def label_frame(self, certificates: pd.DataFrame) -> pd.DataFrame:
        """Fill ``catalog_name``, ``catalog_match`` and ``catalog_status`` of a certificates frame.

        Returns:
            A copy of ``certificates`` with the three catalogue columns set.
        """
        import pandas as pd

        out = certificates.copy()
        names, matches, statuses = [], [], []
        for fp, spki in zip(out[c.SHA256], out[c.SPKI_SHA256], strict=True):
            entry, match = self.identify(fp, spki)
            names.append(entry.name if entry else "")
            matches.append(match.value)
            statuses.append(entry.status.value if entry else "")
        out[c.CATALOG_NAME] = pd.array(names, dtype="string")
        out[c.CATALOG_MATCH] = pd.Categorical(matches)
        out[c.CATALOG_STATUS] = pd.Categorical(statuses)
        return out

    def label_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """One certificates row (:func:`iotaudit.certs.certificate_record`) with its catalogue columns set."""
        entry, match = self.identify(record[c.SHA256], record[c.SPKI_SHA256])
        return {**record, c.CATALOG_NAME: entry.name if entry else "", c.CATALOG_MATCH: match.value,
                c.CATALOG_STATUS: entry.status.value if entry else ""}

    def to_frame(self) -> pd.DataFrame:
        """One row per entry with the columns of :data:`iotaudit.columns.CATALOG_DTYPES`."""
        frame = c.typed_frame(self.records(), c.CATALOG_DTYPES)
        frame.attrs["catalog_kind"] = self.kind
        return frame

    def records(self) -> list[dict[str, Any]]:
        """:meth:`to_frame`'s rows as dicts (no pandas)."""
        rows = []
        for e in self.entries:
            rec = certificate_record(e.certificate)
            rows.append({
                c.NAME: e.name, c.DISPLAY_NAME: e.display_name, c.ROLE: e.role.value,
                c.CATALOG_STATUS: e.status.value, c.KEY_TYPE: rec[c.KEY_TYPE], c.SHA256: rec[c.SHA256],
                c.SPKI_SHA256: rec[c.SPKI_SHA256], c.SPKI_PIN: rec[c.SPKI_PIN], c.SUBJECT: rec[c.SUBJECT],
                c.ISSUER: rec[c.ISSUER], c.NOT_AFTER: rec[c.NOT_AFTER], c.SOURCE: e.source, c.PEM: rec[c.PEM],
            })
        return rows

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, kind: str = "aws") -> Catalog:
        """Rebuild a catalogue from :meth:`to_frame` output (e.g. a run's ``catalog.parquet``)."""
        entries = [
            CatalogEntry(
                name=row[c.NAME], display_name=row[c.DISPLAY_NAME], role=CatalogRole(row[c.ROLE]),
                status=CatalogStatus(row[c.CATALOG_STATUS]),
                certificate=load_pem_x509_certificates(row[c.PEM], f"catalogue entry {row[c.NAME]}")[0],
                source=row[c.SOURCE],
            )
            for row in frame.to_dict("records")
        ]
        return cls(entries, kind=kind)

    @classmethod
    def from_directory(cls, path: str | Path, *, kind: str | None = None) -> Catalog:
        """Load a catalogue directory (``catalog.json`` plus the PEM files it names).

        Args:
            path: The directory.
            kind: The catalogue's kind (``"aws"``, ``"lab"``); default the ``catalog`` field of
                ``catalog.json`` (``"aws"`` when absent).  ``--lab-catalog`` and ``collect --lab``
                pass ``"lab"`` whatever the directory says.

        Raises:
            CatalogError: when ``catalog.json`` is missing or malformed.
            PemError: when a named PEM file is unreadable or malformed.
        """
        path = Path(path)
        manifest_path = path / "catalog.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            raw_entries = manifest["entries"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CatalogError(str(manifest_path), f"not a readable catalogue manifest ({err})") from err
        entries = []
        for raw in raw_entries:
            try:
                cert = load_pem_file(path / raw["file"])[0]
                entries.append(CatalogEntry(
                    name=raw["name"], display_name=raw.get("display_name", raw["name"]),
                    role=CatalogRole(raw["role"]), status=CatalogStatus(raw["status"]),
                    certificate=cert, source=raw["file"],
                ))
            except (CatalogError, PemError):
                raise  # already name the entry or the file and block
            except (KeyError, ValueError) as err:
                raise CatalogError(str(raw.get("name", raw)), f"bad entry in {manifest_path} ({err})") from err
        return cls(entries, kind=kind if kind is not None else str(manifest.get("catalog", "aws")))

    def write_directory(self, path: str | Path, description: str = "") -> Path:
        """Write this catalogue as a directory :meth:`from_directory` reads back.

        Returns:
            The directory path.
        """
        from .certs import cert_pem

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        raw_entries = []
        for e in self.entries:
            file = e.source or f"{e.name}.pem"
            (path / file).parent.mkdir(parents=True, exist_ok=True)
            (path / file).write_text(cert_pem(e.certificate), encoding="ascii")
            raw_entries.append({"name": e.name, "display_name": e.display_name, "role": e.role.value,
                                "status": e.status.value, "file": file})
        doc = {"catalog": self.kind, "description": description, "entries": raw_entries}
        (path / "catalog.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return path


def catalog_directory() -> Path:
    """Directory of the shipped real AWS catalogue (inside the wheel, or ``data/aws-ca`` in a checkout)."""
    packaged = Path(__file__).parent / "_data" / "aws-ca"
    if (packaged / "catalog.json").exists():
        return packaged
    return Path(__file__).resolve().parent.parent / "data" / "aws-ca"


@cache
def aws_catalog() -> Catalog:
    """The real public AWS IoT server-authentication catalogue shipped with iotaudit."""
    return Catalog.from_directory(catalog_directory())
