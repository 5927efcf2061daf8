"""Offline import: PEM bundles and ``openssl s_client -showcerts`` transcripts as a run.

Where iotaudit cannot reach an endpoint (an air-gapped site, a device vendor's
capture, a chain pasted into a ticket), the chain someone else captured
becomes the same rows a live collection makes: one observation per file, with
probe ``import`` and status ``ok``, the certificates in the order they appear
in the file.  A transcript's ``New, TLSv1.3, Cipher is ...`` (or the
``Protocol :`` / ``Cipher :`` lines of its SSL-Session block) and ``ALPN
protocol:`` line fill in the negotiated version, cipher and ALPN.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from .catalog import Catalog, aws_catalog
from .certs import cert_der, load_der_x509_certificate, load_pem_x509_certificates
from . import columns as c
from .collection import ProbeResult, format_summary, run_from_results, summarize, terminal_width
from .columns import Probe, ProbeStatus
from .discover import Target
from .errors import PemError, TargetError
from .options import ExitStatus
from .store import Run, write_run

_NEW_LINE = re.compile(r"^\s*New, (?P<version>(?:TLSv|SSLv|DTLSv)[\d.]+), Cipher is (?P<cipher>\S+)", re.MULTILINE)
_PROTOCOL = re.compile(r"^\s*Protocol\s*:\s*(?P<version>\S+)\s*$", re.MULTILINE)
_CIPHER = re.compile(r"^\s*Cipher\s*:\s*(?P<cipher>\S+)\s*$", re.MULTILINE)
_ALPN = re.compile(r"^\s*ALPN protocol:\s*(?P<alpn>\S+)\s*$", re.MULTILINE)
_CHAIN_HEADER = "Certificate chain"
# OpenSSL before 1.1.0 printed the leaf a second time under "Server certificate"
# even with -showcerts; that repeat is not part of what was served.
_SERVER_CERT = re.compile(r"^Server certificate\s*$", re.MULTILINE)
# The "Certificate chain" listing of s_client (apps/s_client.c, print_stuff): one entry per certificate
# the server sent, with or without -showcerts: " 0 s:<subject>" then "   i:<issuer>" (OpenSSL 3 adds
# "a:" and "v:" lines).  Only -showcerts puts each certificate's PEM under its entry.
_LISTED = re.compile(r"^[ \t]*(?P<depth>\d+)[ \t]+s:(?P<subject>.*?)[ \t]*\r?\n[ \t]*i:(?P<issuer>.*?)[ \t]*\r?$",
                     re.MULTILINE)
_SECTION_END = re.compile(r"^---[ \t]*\r?$", re.MULTILINE)
_CERT_BLOCK = re.compile(r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----")
_PKCS7_BLOCK = re.compile(rb"-----BEGIN PKCS7-----")
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:(?:RSA|EC|DSA|ENCRYPTED|OPENSSH) )?PRIVATE KEY-----")

# OpenSSL short names (crypto/objects/objects.txt) -> cryptography's attribute names, so that a name
# printed by s_client and a certificate's x509.Name compare equal.
_SHORT_NAMES = {
    "cn": "commonname", "c": "countryname", "l": "localityname", "st": "stateorprovincename",
    "o": "organizationname", "ou": "organizationalunitname", "dc": "domaincomponent", "uid": "userid",
    "street": "streetaddress", "gn": "givenname", "sn": "surname", "emailaddress": "emailaddress",
    "serialnumber": "serialnumber", "title": "title",
}

NameKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ListedCertificate:
    """One entry of an ``openssl s_client`` "Certificate chain" listing.

    Attributes:
        position: 0-based served position (the ``depth`` s_client prints).
        subject: The subject as printed (OpenSSL 3 ``CN = x, O = y`` or OpenSSL 1.0 ``/O=y/CN=x``).
        issuer: The issuer as printed.
    """

    position: int
    subject: str
    issuer: str

    def __post_init__(self) -> None:
        if self.position < 0:
            raise ValueError(f"listed certificate position must be >= 0, got {self.position}")

    @property
    def key(self) -> tuple[NameKey, NameKey]:
        """(subject, issuer) as comparable attribute lists (see :func:`printed_name_key`)."""
        return printed_name_key(self.subject), printed_name_key(self.issuer)


@dataclass(frozen=True, slots=True)
class ImportedChain:
    """What one file says: the certificates in served order and, for transcripts, the handshake facts.

    Attributes:
        source: The file.
        chain: DER of each served certificate, in served order; ``None`` where a transcript's chain
            listing names a certificate whose bytes the file does not carry (s_client without ``-showcerts``).
        listed: The transcript's chain listing; empty for a bundle.
        tls_version: ``TLSv1.2``... from a transcript; "" for a plain bundle.
        cipher: OpenSSL suite name from a transcript; "" for a plain bundle.
        alpn: ALPN protocol a transcript reports; "".
        transcript: The file looks like ``openssl s_client`` output.
        notes: Facts about the file worth a line in the observation (DER, PKCS#7 order).
        warnings: Things the person sharing the file must know (a private key inside it).
    """

    source: str
    chain: tuple[bytes | None, ...]
    listed: tuple[ListedCertificate, ...] = ()
    tls_version: str = ""
    cipher: str = ""
    alpn: str = ""
    transcript: bool = False
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("chain", "listed", "notes", "warnings"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not any(der is not None for der in self.chain) and not self.listed:
            raise PemError(self.source, None, "no certificate in the imported chain")
        if self.listed and len(self.listed) != len(self.chain):
            raise ValueError("an imported chain with a listing has one position per listed certificate")

    @property
    def missing(self) -> tuple[int, ...]:
        """Served positions whose certificate bytes the file does not carry."""
        return tuple(i for i, der in enumerate(self.chain) if der is None)


def _split_printed(text: str, separator: str) -> list[str]:
    """Split an OpenSSL-printed name on ``separator`` outside quotes and backslash escapes."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i: i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if not quoted and text.startswith(separator, i):
            parts.append("".join(current))
            current = []
            i += len(separator)
            continue
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def printed_name_key(text: str) -> NameKey:
    """An OpenSSL-printed distinguished name as a sorted tuple of (attribute, value).

    Reads the OpenSSL 3 / 1.1.1 one-line form (``C = US, O = "A, Inc.", CN = x``; RFC 2253-style
    escapes, values with specials quoted: crypto/x509/v3_utl.c, ``XN_FLAG_ONELINE``) and the
    OpenSSL 1.0 slash form (``/C=US/O=A/CN=x``).  Attribute names compare case-insensitively, short
    (``CN``) or long (``commonName``).
    """
    text = text.strip()
    if text.startswith("/"):
        fields = [f for f in re.split(r"(?<!\\)/", text[1:]) if f]
        fields = [sub for f in fields for sub in re.split(r"(?<!\\)\+", f)]
    else:
        fields = [sub for f in _split_printed(text, ",") for sub in _split_printed(f, " + ")]
    out = []
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep:
            continue
        attr = name.strip().lower()
        out.append((_SHORT_NAMES.get(attr, attr), _unescape(value)))
    return tuple(sorted(out))


def name_key(name: x509.Name) -> NameKey:
    """A certificate name in the form :func:`printed_name_key` gives, for comparing the two."""
    out = []
    for attribute in name:
        label = (attribute.oid._name or attribute.oid.dotted_string).lower()  # e.g. "commonName"
        value = attribute.value if isinstance(attribute.value, str) else attribute.value.hex()
        out.append((label, value.strip()))
    return tuple(sorted(out))


def _private_key_warnings(raw: bytes, source: str | Path) -> tuple[str, ...]:
    hits = len(_PRIVATE_KEY.findall(raw))
    if not hits:
        return ()
    return (f"{source} holds {hits} private key block(s): the key was not imported, but do not share this "
            f"file (rotate the key if it has been shared)",)


def _order_by_issuance(certs: list[x509.Certificate]) -> tuple[list[x509.Certificate], bool]:
    """Leaf first, then each certificate's issuer, for a PKCS#7 SET (RFC 5652 section 5.1: unordered).

    Returns:
        The ordered certificates and whether one unambiguous issuance order was found (else the stored order).
    """
    issuers_named = {cert.issuer for cert in certs if cert.issuer != cert.subject}
    leaves = [cert for cert in certs if cert.subject not in issuers_named]
    if len(leaves) != 1:
        return certs, False
    ordered, rest = [leaves[0]], [cert for cert in certs if cert is not leaves[0]]
    while rest:
        nxt = [cert for cert in rest if cert.subject == ordered[-1].issuer and ordered[-1].issuer != ordered[-1].subject]
        if len(nxt) != 1:
            return certs, False
        ordered.append(nxt[0])
        rest.remove(nxt[0])
    return ordered, True


def _pkcs7(certs: list[x509.Certificate], source: str | Path, form: str) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    ordered, found = _order_by_issuance(certs)
    note = (f"{form} PKCS#7 bundle: certificates put in issuance order, leaf first (PKCS#7 stores an unordered set)"
            if found else f"{form} PKCS#7 bundle: certificates in stored order (no single issuance order)")
    return tuple(cert_der(c) for c in ordered), (note,)


def parse_chain_text(text: str, source: str | Path = "<input>") -> ImportedChain:
    """Parse a PEM bundle (certificates or PKCS#7) or an ``openssl s_client`` transcript.

    A transcript's "Certificate chain" listing is the served chain: every certificate listed keeps its
    position, and one whose PEM the transcript does not carry (``s_client`` without ``-showcerts`` prints
    only the leaf's) is ``None`` in ``chain`` (see :func:`complete_chain`).

    Args:
        text: The file's text.
        source: The file name, for error messages.

    Returns:
        The certificates in served (file) order, plus version, cipher and ALPN when a transcript gives them.

    Raises:
        PemError: naming ``source`` and the 1-based PEM block that is malformed, or
            ``source`` alone when there is no certificate at all.
    """
    raw = text.encode("utf-8", "replace")
    warnings = _private_key_warnings(raw, source)
    transcript = _CHAIN_HEADER in text or bool(_NEW_LINE.search(text)) or "SSL-Session:" in text
    notes: tuple[str, ...] = ()
    listed: tuple[ListedCertificate, ...] = ()
    chain: tuple[bytes | None, ...]
    if not _CERT_BLOCK.search(text) and _PKCS7_BLOCK.search(raw):
        try:
            certs = pkcs7.load_pem_pkcs7_certificates(raw)
        except ValueError as err:
            raise PemError(source, None, f"not a valid PKCS#7 certificate bundle ({err})") from err
        if not certs:
            raise PemError(source, None, "PKCS#7 bundle holds no certificate")
        chain, notes = _pkcs7(certs, source, "PEM")
    elif transcript and _CHAIN_HEADER in text:
        listed, chain = _transcript_chain(text, source)
    else:
        body = text
        if transcript:
            marker = _SERVER_CERT.search(text)
            first = text.find("-----BEGIN ")
            if marker and first != -1 and marker.start() > first:
                body = text[: marker.start()]
        chain = tuple(cert_der(c) for c in load_pem_x509_certificates(body, source))
    version = cipher = alpn = ""
    new = _NEW_LINE.search(text)
    if new:
        version, cipher = new.group("version"), new.group("cipher")
    if not version and (m := _PROTOCOL.search(text)):
        version = m.group("version")
    if not cipher and (m := _CIPHER.search(text)):
        cipher = m.group("cipher")
    if cipher in ("(NONE)", "0000"):
        cipher = ""
    if m := _ALPN.search(text):
        alpn = m.group("alpn")
    return ImportedChain(source=str(source), chain=chain, listed=listed, tls_version=version, cipher=cipher,
                         alpn=alpn, transcript=transcript, notes=notes, warnings=warnings)


def _transcript_chain(text: str, source: str | Path) -> tuple[tuple[ListedCertificate, ...], tuple[bytes | None, ...]]:
    """The listing of a transcript and, per listed position, the DER the transcript carries (or None)."""
    start = text.index(_CHAIN_HEADER)
    end_match = _SECTION_END.search(text, start)
    end = end_match.start() if end_match else len(text)
    entries = list(_LISTED.finditer(text, start, end))
    # Every certificate block of the file, parsed once (errors name the block as load_pem_x509_certificates numbers it).
    certs = load_pem_x509_certificates(text, source) if _CERT_BLOCK.search(text) else []
    offsets = [m.start() for m in _CERT_BLOCK.finditer(text)]
    if not entries:  # a "Certificate chain" header with no listing we can read: the PEMs, as written
        if not certs:
            raise PemError(source, None, "no PEM CERTIFICATE block found")
        return (), tuple(cert_der(c) for c in certs[: max(1, sum(o < end for o in offsets))])
    listed = tuple(ListedCertificate(int(m.group("depth")), m.group("subject"), m.group("issuer")) for m in entries)
    if [entry.position for entry in listed] != list(range(len(listed))):
        raise PemError(source, None, f"chain listing is not numbered 0..{len(listed) - 1} "
                                     f"(got {', '.join(str(e.position) for e in listed)})")
    chain: list[bytes | None] = [None] * len(listed)
    bounds = [m.start() for m in entries] + [end]
    for cert, offset in zip(certs, offsets, strict=False):
        if start <= offset < end:
            slot = max(i for i in range(len(entries)) if bounds[i] <= offset) if offset >= bounds[0] else 0
            if chain[slot] is None:
                chain[slot] = cert_der(cert)
        elif offset >= end and chain[0] is None:
            # "Server certificate": the leaf, printed after the listing with or without -showcerts.
            chain[0] = cert_der(cert)
    return listed, tuple(chain)


def read_chain_file(path: str | Path) -> ImportedChain:
    """:func:`parse_chain_text` on a file; a binary file is read as DER (one certificate, or PKCS#7).

    Raises:
        PemError: naming the file when it cannot be read, or the file and block when it is malformed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PemError(path, None, f"cannot read file ({err.strerror or err})") from err
    if raw[:1] == b"\x30" and b"-----BEGIN " not in raw:  # a DER SEQUENCE (X.690 section 8.9)
        return _read_der(raw, path)
    return parse_chain_text(raw.decode("utf-8", "replace"), path)


def _read_der(raw: bytes, path: Path) -> ImportedChain:
    """One DER certificate (``.cer``/``.der``) or a DER PKCS#7 bundle (``.p7b``, as Windows and openssl export)."""
    try:
        cert = load_der_x509_certificate(raw)
    except ValueError as cert_err:
        try:
            certs = pkcs7.load_der_pkcs7_certificates(raw)
        except ValueError as err:
            raise PemError(path, None, f"binary file is neither a DER certificate ({cert_err}) "
                                       f"nor a DER PKCS#7 bundle ({err})") from err
        if not certs:
            raise PemError(path, None, "PKCS#7 bundle holds no certificate")
        chain, notes = _pkcs7(certs, path, "DER")
        return ImportedChain(source=str(path), chain=chain, notes=notes)
    return ImportedChain(source=str(path), chain=(cert_der(cert),), notes=("DER certificate",))


def complete_chain(imported: ImportedChain, catalog: Catalog) -> tuple[tuple[bytes, ...], ProbeStatus, str]:
    """Fill the certificates a transcript lists but does not carry, from the catalogue, when that is sure.

    A listed certificate whose bytes are absent is taken from ``catalog`` only when exactly one catalogue
    certificate has its printed subject AND issuer (a cross-signed copy of a root differs by issuer); the
    detail then says it was resolved by name.  Otherwise the observation is ``chain-incomplete``: the
    analysis does not judge it (a chain shortened by the capture is not a "missing intermediate").

    Returns:
        (the DER chain carried or resolved, in served order; the status; the detail for the ``error`` column).
    """
    if not imported.missing:
        return tuple(der for der in imported.chain if der is not None), ProbeStatus.OK, ""
    index: dict[tuple[NameKey, NameKey], dict[bytes, str]] = {}
    for entry in catalog.entries:
        key = (name_key(entry.certificate.subject), name_key(entry.certificate.issuer))
        index.setdefault(key, {})[cert_der(entry.certificate)] = entry.name
    chain = list(imported.chain)
    resolved, unresolved = [], []
    for position in imported.missing:
        entry = imported.listed[position]
        matches = index.get(entry.key, {})
        if len(matches) == 1:
            (der, name), = matches.items()
            chain[position] = der
            resolved.append(f"{position} as {name}")
        else:
            unresolved.append(f"{position} (s:{entry.subject.strip()}; {len(matches)} catalogue certificates "
                              "match its subject and issuer)")
    listed = (f"the chain listing names {len(chain)} certificate(s), the file carries "
              f"{len(chain) - len(imported.missing)}")
    parts = [listed]
    if resolved:
        parts.append(f"resolved by name (subject and issuer) from the {catalog.kind} catalogue: "
                     f"position {', '.join(resolved)}")
    if unresolved:
        parts.append(f"not resolved: position {'; '.join(unresolved)}; chain not judged "
                     "(capture with openssl s_client -showcerts)")
        present = tuple(der for der in chain if der is not None)
        return present, ProbeStatus.CHAIN_INCOMPLETE, "; ".join(parts)
    return tuple(der for der in chain if der is not None), ProbeStatus.OK, "; ".join(parts)


def import_chains(
    files: Iterable[str | Path],
    *,
    host: str,
    port: int = 443,
    catalog: Catalog | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Run:
    """Import chains captured elsewhere as a run: one ``import`` observation per file.

    The status is ``ok`` when the file carries (or the catalogue surely resolves, see
    :func:`complete_chain`) every certificate served, else ``chain-incomplete``.

    Args:
        files: PEM bundles (certificates or PKCS#7), DER certificates or PKCS#7 ``.p7b`` files, or
            ``openssl s_client`` transcripts (with or without ``-showcerts``).
        host: The endpoint name the chains were served for (region and endpoint type are inferred from AWS names).
        port: Its port.
        catalog: Labels the certificates; default the real AWS catalogue.
        on_warning: Called with each warning for the person holding the file (a private key inside it);
            the observation's ``error`` column records it either way.

    Returns:
        A run with ``created_at`` = the time of the import and ``parameters`` naming the files.

    Raises:
        PemError: naming the file and block of malformed input (the first bad file stops the import).
        TargetError: for a bad host or port, or no files.
    """
    paths = [Path(f) for f in files]
    if not paths:
        raise TargetError(host, "no files to import")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise TargetError(f"{host}:{port}", f"port {port!r} is not a number") from None
    created_at = datetime.now(timezone.utc)
    catalog = catalog if catalog is not None else aws_catalog()
    results = []
    for path in paths:
        imported = read_chain_file(path)
        for warning in imported.warnings:
            if on_warning is not None:
                on_warning(warning)
        chain, status, detail = complete_chain(imported, catalog)
        notes = [*imported.notes, detail] if detail else list(imported.notes)
        if not imported.transcript:
            notes.insert(0, "imported bundle: handshake details unknown")
        if imported.warnings:
            notes.append("the file also held a private key (not imported)")
        target = Target(host=host, port=port, label=path.name)
        results.append(ProbeResult(
            target=target, probe=Probe.IMPORT, status=status, started_at=created_at, error="; ".join(notes),
            tls_version=imported.tls_version, cipher=imported.cipher, alpn=imported.alpn, chain=chain,
        ))
    parameters = {"import": [str(p.resolve()) for p in paths], "host": host, "port": port}
    return run_from_results(results, catalog=catalog, created_at=created_at, parameters=parameters)


def import_command(args: argparse.Namespace) -> int:
    """``iotaudit import`` (arguments defined in :mod:`iotaudit.cli`); returns the exit status."""
    catalog = Catalog.from_directory(args.lab_catalog, kind="lab") if args.lab_catalog else None
    run = import_chains(args.files, host=args.host, port=args.port, catalog=catalog,
                        on_warning=lambda text: print(f"iotaudit import: warning: {text}", file=sys.stderr))
    written = write_run(run, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(format_summary(summarize(written), width=terminal_width()))
    incomplete = written.observations[written.observations[c.STATUS].astype(str) == ProbeStatus.CHAIN_INCOMPLETE.value]
    for label, error in zip(incomplete[c.LABEL], incomplete[c.ERROR], strict=True):
        print(f"iotaudit import: warning: {label}: chain-incomplete ({error})", file=sys.stderr)
    print(written.path)
    return ExitStatus.OK
