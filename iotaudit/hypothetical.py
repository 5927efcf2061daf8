"""Chains AWS could serve but does not today, built from the catalogue's roots and cross-sign relations.

Nobody outside AWS can sign under Amazon Root CA 2 or 4, nor renew a
Starfield cross-sign, so these chains live in a *shadow* PKI: every
catalogue root and cross-signed certificate gets a shadow with the same
subject, issuer, validity and key type but a fresh key (one per real key, so
"same key" relations hold), signed along the catalogue's real cross-sign
relations.  A device store is mapped into the same world entry by entry (by
fingerprint, else by key and issuer), and the one path engine
(:mod:`iotaudit.paths`) then decides with the device's own TLS stack.

Three questions use it:

* roots to add for the reserved roots (:mod:`iotaudit.root_coverage`):
  :attr:`HypotheticalPki.chains`, a leaf and intermediate under Amazon Root
  CA 2 / 4, served direct or with its (synthesised) Starfield cross-sign;
* the served chain without the Starfield cross-signs
  (:func:`without_cross_signs`);
* the firmware-side break date (:mod:`iotaudit.expiry`):
  :meth:`HypotheticalPki.firmware_chains`, every chain AWS could serve under
  the roots and cross-signs of the catalogue, with every *served* certificate
  renewed (valid over the whole horizon), so that only what the firmware holds
  (its anchors' dates, its stack's anchor-expiry rule, its pins) can end it.
  AWS renews leaves, issuing CAs and cross-signs (the AWS "Server
  Authentication" page: "CA certificates have an expiration date"; the
  Starfield cross-signs were re-issued before); a root the firmware anchors on
  cannot be renewed inside the firmware.

Imports point down only: catalog, certs, columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .catalog import Catalog, CatalogEntry, CatalogRole, CatalogStatus
from .certs import cert_sha256, is_signed_by, key_type, spki_sha256
from .columns import as_utc

__all__ = ["FIRMWARE_HOST", "HypotheticalPki", "without_cross_signs"]

# The name every hypothetical leaf carries (subjectAltName), so stacks that check names see a match.
FIRMWARE_HOST = "hypothetical.iot.amazonaws.com"

# Roots AWS IoT may issue server certificates under (the catalogue's statuses): in use, reserved,
# and the legacy iot:Data roots while legacy endpoints answer.  Cross-signers only cross-sign.
_ISSUING_ROOT_STATUSES = (CatalogStatus.IN_USE, CatalogStatus.RESERVED, CatalogStatus.LEGACY)


def _cross_signed_keys(catalog: Catalog) -> set[str]:
    """SPKI SHA-256 of every root key the catalogue also holds as a cross-signed certificate."""
    return {e.spki_sha256 for e in catalog.entries if e.role is CatalogRole.CROSS_SIGNED}


def without_cross_signs(served: Sequence[x509.Certificate], catalog: Catalog) -> list[x509.Certificate]:
    """The served chain as it would be if AWS stopped serving the Starfield cross-signs.

    Drops every served certificate (after the leaf) that is a catalogue
    cross-signed entry, or that is not self-signed but carries the key of a
    cross-signed catalogue root (e.g. "Amazon Root CA 1 issued by Starfield
    Services Root G2").
    """
    keys = _cross_signed_keys(catalog)
    out = []
    for i, cert in enumerate(served):
        entry = catalog.by_sha256(cert_sha256(cert))
        if i > 0 and entry is not None and entry.role is CatalogRole.CROSS_SIGNED:
            continue
        if i > 0 and spki_sha256(cert) in keys and not is_signed_by(cert, cert):
            continue
        out.append(cert)
    return out


def _new_key(cert: x509.Certificate) -> Any:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return ec.generate_private_key(public.curve)
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _make(subject: x509.Name, issuer: x509.Name, key: Any, issuer_key: Any, not_before: datetime,
          not_after: datetime, *, ca: bool, san: str | None = None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _cn(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text[:64])])  # RFC 5280 ub-common-name


class HypotheticalPki:
    """A stand-in ("shadow") of the catalogue's roots and cross-signs, with keys we hold.

    Where the catalogue lacks a cross-sign of a reserved root by Starfield
    Services Root G2 (the public catalogue has no G2-RootCA2/4), one is
    synthesised like the existing ones: the AWS document says all Amazon
    roots are cross-signed by Starfield.

    Args:
        catalog: The run's catalogue.
        as_of: Validity of the hypothetical leaves and intermediates is centred on it.
        until: End of the window over which renewed served certificates stay valid
            (default: 30 years after ``as_of``).

    Attributes:
        shadow: Catalogue name -> shadow certificate with the real validity (what a store maps to).
        renewed: Catalogue name -> the same certificate as AWS would serve it renewed
            (same subject, issuer and key, valid from ``as_of`` to ``until``).
        source: Shadow or renewed certificate SHA-256 -> the catalogue name it stands for.
        chains: Key type -> {"direct" | "as-today": chain to the reserved root of that key type}.
    """

    def __init__(self, catalog: Catalog, as_of: datetime, until: datetime | None = None) -> None:
        self.catalog = catalog
        as_of = as_utc(as_of)
        self.as_of = as_of
        self.until = as_utc(until) if until is not None else as_of + timedelta(days=30 * 366)
        entries = [e for e in catalog.entries if e.role in (CatalogRole.ROOT, CatalogRole.CROSS_SIGNED)]
        self._keys: dict[str, Any] = {}
        for e in entries:
            self._keys.setdefault(e.spki_sha256, _new_key(e.certificate))
        self._roots_by_subject = {e.certificate.subject: e for e in entries if e.role is CatalogRole.ROOT}
        self.shadow: dict[str, x509.Certificate] = {}
        self.renewed: dict[str, x509.Certificate] = {}
        self.source: dict[str, str] = {}
        self._issuer_entry: dict[str, CatalogEntry] = {}
        for e in entries:
            cert = e.certificate
            issuer_entry = e if e.role is CatalogRole.ROOT else self._roots_by_subject.get(cert.issuer)
            if issuer_entry is None:
                continue
            self._issuer_entry[e.name] = issuer_entry
            self._add(e.name, cert.subject, cert.issuer, e.spki_sha256, issuer_entry.spki_sha256,
                      cert.not_valid_before_utc, cert.not_valid_after_utc)
        # Starfield Services Root G2: the root that cross-signs the in-use Amazon roots.
        crosses = [e for e in entries if e.role is CatalogRole.CROSS_SIGNED]
        in_use_keys = {e.spki_sha256 for e in entries if e.role is CatalogRole.ROOT and e.status is CatalogStatus.IN_USE}
        amazon_crosses = [e for e in crosses if e.spki_sha256 in in_use_keys]
        cross_signer = self._roots_by_subject.get(amazon_crosses[0].certificate.issuer) if amazon_crosses else None
        signer_crosses = [e for e in crosses if cross_signer is not None and e.spki_sha256 == cross_signer.spki_sha256]
        # Root name -> names of its cross-signs (catalogue or synthesised), each with the name of its signer.
        self._crosses_of: dict[str, list[tuple[str, str]]] = {}
        for cross in crosses:
            root = next((r for r in entries if r.role is CatalogRole.ROOT and r.spki_sha256 == cross.spki_sha256), None)
            signer = self._roots_by_subject.get(cross.certificate.issuer)
            if root is not None and signer is not None and cross.name in self.shadow:
                self._crosses_of.setdefault(root.name, []).append((cross.name, signer.name))
        self.reserved: dict[str, str] = {}       # key type -> reserved root entry name
        self.reserved_cross: dict[str, str] = {}  # key type -> shadow name of its cross-sign by the cross-signer
        self.chains: dict[str, dict[str, list[x509.Certificate]]] = {}
        self._issued: dict[str, tuple[x509.Certificate, x509.Certificate]] = {}
        for root in catalog.roots(CatalogStatus.RESERVED):
            kind = key_type(root.certificate)
            if kind in self.reserved:
                continue
            self.reserved[kind] = root.name
            cross = next((e for e in crosses if e.spki_sha256 == root.spki_sha256
                          and cross_signer is not None and e.certificate.issuer == cross_signer.certificate.subject), None)
            if cross is not None and cross.name in self.shadow:
                cross_name = cross.name
            elif cross_signer is not None and amazon_crosses:
                cross_name = f"{root.name} (hypothetical cross-sign by {cross_signer.name})"
                template = amazon_crosses[0].certificate
                self._add(cross_name, root.certificate.subject, cross_signer.certificate.subject, root.spki_sha256,
                          cross_signer.spki_sha256, template.not_valid_before_utc, template.not_valid_after_utc)
                self._crosses_of.setdefault(root.name, []).append((cross_name, cross_signer.name))
            else:
                cross_name = ""
            self.reserved_cross[kind] = cross_name
            leaf, intermediate = self._issue_under(root)
            shapes = {"direct": [leaf, intermediate]}
            if cross_name:
                as_today = [leaf, intermediate, self.shadow[cross_name]]
                if signer_crosses and signer_crosses[0].name in self.shadow:
                    as_today.append(self.shadow[signer_crosses[0].name])
                shapes["as-today"] = as_today
            self.chains[kind] = shapes

    def _add(self, name: str, subject: x509.Name, issuer: x509.Name, spki: str, issuer_spki: str,
             not_before: datetime, not_after: datetime) -> None:
        key, issuer_key = self._keys[spki], self._keys[issuer_spki]
        self.shadow[name] = _make(subject, issuer, key, issuer_key, not_before, not_after, ca=True)
        self.renewed[name] = _make(subject, issuer, key, issuer_key, min(not_before, self.as_of - timedelta(days=1)),
                                   max(not_after, self.until), ca=True)
        self.source[cert_sha256(self.shadow[name])] = name
        self.source[cert_sha256(self.renewed[name])] = name

    def _issue_under(self, root: CatalogEntry) -> tuple[x509.Certificate, x509.Certificate]:
        """(leaf, intermediate) under ``root``'s shadow key, valid from ``as_of`` to ``until`` (renewed by AWS)."""
        if root.name not in self._issued:
            int_key = _new_key(root.certificate)
            start = self.as_of - timedelta(days=1)
            intermediate = _make(_cn(f"Hypothetical intermediate under {root.display_name}"), root.certificate.subject,
                                 int_key, self._keys[root.spki_sha256], start - timedelta(days=29), self.until, ca=True)
            leaf = _make(_cn(FIRMWARE_HOST), intermediate.subject, _new_key(root.certificate), int_key, start, self.until,
                         ca=False, san=FIRMWARE_HOST)
            self._issued[root.name] = (leaf, intermediate)
        return self._issued[root.name]

    def firmware_chains(self, kind: str) -> list[tuple[str, list[x509.Certificate]]]:
        """Every chain AWS could serve with a ``kind`` leaf, all served certificates renewed.

        One per issuing root of that key type (in use, reserved, legacy) and
        per cross-sign path above it in the catalogue (root alone, root's
        cross-sign, the cross-signer's own cross-sign...), as ``(label,
        [leaf, intermediate, cross-signs...])``.  The label names the root and
        the cross-signs the chain goes through.
        """
        out: list[tuple[str, list[x509.Certificate]]] = []
        for root in self.catalog.entries:
            if root.role is not CatalogRole.ROOT or root.status not in _ISSUING_ROOT_STATUSES:
                continue
            if key_type(root.certificate) != kind or root.name not in self.shadow:
                continue
            leaf, intermediate = self._issue_under(root)
            out.append((root.name, [leaf, intermediate]))
            self._cross_paths(root.name, [leaf, intermediate], [root.name], out, depth=0)
        return out

    def _cross_paths(self, name: str, chain: list[x509.Certificate], label: list[str],
                     out: list[tuple[str, list[x509.Certificate]]], depth: int) -> None:
        if depth >= 3:
            return
        for cross_name, signer_name in self._crosses_of.get(name, []):
            if cross_name in label:
                continue
            longer = [*chain, self.renewed[cross_name]]
            out.append((" <- ".join([*label, cross_name]), longer))
            self._cross_paths(signer_name, longer, [*label, cross_name], out, depth + 1)

    def map_store(self, store: Sequence[x509.Certificate]) -> list[x509.Certificate]:
        """The shadows of the catalogue roots and cross-signs in ``store``, in store order (others have none)."""
        out = []
        for cert in store:
            entry = self.catalog.by_sha256(cert_sha256(cert))
            if entry is None:
                same_key = self.catalog.by_spki(spki_sha256(cert))
                entry = next((e for e in same_key if e.certificate.issuer == cert.issuer), None)
            if entry is not None and entry.name in self.shadow:
                out.append(self.shadow[entry.name])
        return out
