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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .catalog import Catalog, aws_catalog
from .certs import cert_der, load_pem_x509_certificates
from .collection import ProbeResult, format_summary, run_from_results, summarize
from .columns import Probe, ProbeStatus
from .discover import Target
from .errors import PemError, TargetError
from .store import Run, write_run

_NEW_LINE = re.compile(r"^\s*New, (?P<version>(?:TLSv|SSLv|DTLSv)[\d.]+), Cipher is (?P<cipher>\S+)", re.MULTILINE)
_PROTOCOL = re.compile(r"^\s*Protocol\s*:\s*(?P<version>\S+)\s*$", re.MULTILINE)
_CIPHER = re.compile(r"^\s*Cipher\s*:\s*(?P<cipher>\S+)\s*$", re.MULTILINE)
_ALPN = re.compile(r"^\s*ALPN protocol:\s*(?P<alpn>\S+)\s*$", re.MULTILINE)
_CHAIN_HEADER = "Certificate chain"
# OpenSSL before 1.1.0 printed the leaf a second time under "Server certificate"
# even with -showcerts; that repeat is not part of what was served.
_SERVER_CERT = re.compile(r"^Server certificate\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ImportedChain:
    """What one file says: the certificates in file order and, for transcripts, the handshake facts.

    Attributes:
        source: The file.
        chain: DER of each certificate, in the order they appear.
        tls_version: ``TLSv1.2``... from a transcript; "" for a plain bundle.
        cipher: OpenSSL suite name from a transcript; "" for a plain bundle.
        alpn: ALPN protocol a transcript reports; "".
        transcript: The file looks like ``openssl s_client`` output.
    """

    source: str
    chain: tuple[bytes, ...]
    tls_version: str = ""
    cipher: str = ""
    alpn: str = ""
    transcript: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain", tuple(self.chain))
        if not self.chain:
            raise PemError(self.source, None, "no certificate in the imported chain")


def parse_chain_text(text: str, source: str | Path = "<input>") -> ImportedChain:
    """Parse a PEM bundle or an ``openssl s_client -showcerts`` transcript.

    Args:
        text: The file's text.
        source: The file name, for error messages.

    Returns:
        The certificates in served (file) order, plus version, cipher and ALPN when a transcript gives them.

    Raises:
        PemError: naming ``source`` and the 1-based PEM block that is malformed, or
            ``source`` alone when there is no certificate at all.
    """
    transcript = _CHAIN_HEADER in text or bool(_NEW_LINE.search(text)) or "SSL-Session:" in text
    body = text
    if transcript:
        marker = _SERVER_CERT.search(text)
        first = text.find("-----BEGIN ")
        if marker and first != -1 and marker.start() > first:
            body = text[: marker.start()]
    certs = load_pem_x509_certificates(body, source)
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
    return ImportedChain(source=str(source), chain=tuple(cert_der(c) for c in certs), tls_version=version,
                         cipher=cipher, alpn=alpn, transcript=transcript)


def read_chain_file(path: str | Path) -> ImportedChain:
    """:func:`parse_chain_text` on a file.

    Raises:
        PemError: naming the file when it cannot be read, or the file and block when it is malformed.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PemError(path, None, f"cannot read file ({err.strerror or err})") from err
    return parse_chain_text(raw.decode("utf-8", "replace"), path)


def import_chains(
    files: Iterable[str | Path],
    *,
    host: str,
    port: int = 443,
    catalog: Catalog | None = None,
) -> Run:
    """Import chains captured elsewhere as a run: one ``import`` observation per file, status ``ok``.

    Args:
        files: PEM bundles or ``openssl s_client -showcerts`` transcripts.
        host: The endpoint name the chains were served for (region and endpoint type are inferred from AWS names).
        port: Its port.
        catalog: Labels the certificates; default the real AWS catalogue.

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
    results = []
    for path in paths:
        imported = read_chain_file(path)
        target = Target(host=host, port=port, label=path.name)
        results.append(ProbeResult(
            target=target, probe=Probe.IMPORT, status=ProbeStatus.OK, started_at=created_at,
            error="" if imported.transcript else "imported PEM bundle: handshake details unknown",
            tls_version=imported.tls_version, cipher=imported.cipher, alpn=imported.alpn, chain=imported.chain,
        ))
    catalog = catalog if catalog is not None else aws_catalog()
    parameters = {"import": [str(p.resolve()) for p in paths], "host": host, "port": port}
    return run_from_results(results, catalog=catalog, created_at=created_at, parameters=parameters)


IMPORT_EPILOG = """\
examples:
  # a chain saved from a browser or a ticket
  iotaudit import chain.pem --host a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com --port 8883 --out runs/imported
  # a transcript captured where iotaudit cannot run
  openssl s_client -connect a1b2-ats.iot.us-east-1.amazonaws.com:8883 -showcerts </dev/null > capture.txt
  iotaudit import capture.txt --host a1b2-ats.iot.us-east-1.amazonaws.com --port 8883 --out runs/site-a
  # chains from the loopback lab, labelled with the lab catalogue
  iotaudit import lab-chain.pem --host lab-ats-dual-ats.iot.us-east-1.amazonaws.com --lab-catalog lab/catalog --out runs/x
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import`` command to the ``iotaudit`` command line."""
    p = subparsers.add_parser(
        "import", help="turn PEM bundles or `openssl s_client -showcerts` transcripts into a run",
        description="Import chains captured elsewhere: each FILE becomes one observation (probe 'import', "
                    "status 'ok') with its certificates in file order.",
        epilog=IMPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="PEM bundle or s_client transcript")
    p.add_argument("--host", required=True, help="the endpoint name the chain was served for")
    p.add_argument("--port", type=int, default=443, help="its port (default 443)")
    p.add_argument("--lab-catalog", metavar="DIR", help="label with this catalogue directory (e.g. the lab's) "
                                                        "instead of the real AWS one")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace RUN if it exists")
    p.add_argument("--quiet", action="store_true", help="print only the run path")
    p.set_defaults(func=_cmd_import)


def _cmd_import(args: argparse.Namespace) -> int:
    catalog = Catalog.from_directory(args.lab_catalog, kind="lab") if args.lab_catalog else None
    run = import_chains(args.files, host=args.host, port=args.port, catalog=catalog)
    written = write_run(run, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(format_summary(summarize(written)))
    print(written.path)
    return 0
