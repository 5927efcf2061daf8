"""Pins: Android network security config, TrustKit, OkHttp ``CertificatePinner``.

All three pin the SHA-256 of the SubjectPublicKeyInfo, base64-encoded
(RFC 7469 section 2.4 ``pin-sha256``), which is iotaudit's ``sha256/<base64>``
pin form, so a pin compares directly with a catalogue key.

* Android (developer.android.com, "Network security configuration"):
  ``<pin-set expiration="yyyy-MM-dd"><pin digest="SHA-256">base64</pin>``
  inside ``<domain-config>``; after the expiration date pins are not
  enforced.  ``<trust-anchors><certificates src="system|user|@raw/name"/>``
  names the store.
* TrustKit (``datatheorem/TrustKit`` README): ``TSKConfiguration`` ->
  ``TSKPinnedDomains`` -> domain -> ``TSKPublicKeyHashes`` (list),
  ``TSKExpirationDate`` (``yyyy-MM-dd``), ``TSKEnforcePinning``; in Info.plist or a
  plist/JSON given to ``initSharedInstanceWithConfiguration``.
* OkHttp: ``CertificatePinner.Builder().add("host", "sha256/...")``.
"""

from __future__ import annotations

import base64
import binascii
import json
import plistlib
import re
import xml.etree.ElementTree as ElementTree
from datetime import datetime, timezone
from typing import Any

from ..columns import FindingKind, ScanFormat
from ._model import Finding, error

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OKHTTP_PIN = re.compile(r"\"(?P<pin>sha256/[A-Za-z0-9+/]{43}=)\"")
_OKHTTP_HOST = re.compile(r"\.add\(\s*\"(?P<host>[^\"]+)\"\s*,\s*$")


def _pin(digest_b64: str) -> str:
    """``sha256/<base64>`` of a base64 SHA-256 digest; raises ValueError when it is not 32 bytes of base64."""
    digest = base64.b64decode(digest_b64.strip(), validate=True)
    if len(digest) != 32:
        raise ValueError(f"decodes to {len(digest)} bytes, a SHA-256 digest has 32")
    return "sha256/" + base64.b64encode(digest).decode("ascii")


def _date(text: str) -> datetime:
    if not _DATE.match(text.strip()):
        raise ValueError(f"{text!r} is not a yyyy-MM-dd date")
    return datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=timezone.utc)


def looks_like_nsc(text: str) -> bool:
    """An Android network security config (any file name: it is referenced from the manifest)."""
    return "<network-security-config" in text


def read_network_security_config(text: str, *, file: str) -> list[Finding]:
    """Pins, their expiry and the trust anchors of an Android ``network_security_config.xml``."""
    fmt = ScanFormat.ANDROID_NSC
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        return [error(file, None, fmt, f"not well-formed XML ({err})", line=err.position[0])]
    out: list[Finding] = [Finding(file, None, fmt, FindingKind.STACK, family="android", tls_stack="android",
                                  evidence="Android network security config: the platform (Conscrypt) verifies")]
    for config in root.iter("domain-config"):
        domains = ";".join((d.text or "").strip() for d in config.findall("domain"))
        for pin_set in config.findall("pin-set"):
            expiry = None
            raw_expiry = pin_set.get("expiration", "")
            if raw_expiry:
                try:
                    expiry = _date(raw_expiry)
                except ValueError as err:
                    out.append(error(file, None, fmt, f"pin-set expiration: {err}"))
            for pin in pin_set.findall("pin"):
                digest = pin.get("digest", "")
                if digest.upper() != "SHA-256":
                    out.append(error(file, None, fmt, f"pin digest {digest!r}: Android supports SHA-256 only"))
                    continue
                try:
                    value = _pin(pin.text or "")
                except (binascii.Error, ValueError) as err:
                    out.append(error(file, None, fmt, f"pin {pin.text!r}: not a base64 SHA-256 digest ({err})"))
                    continue
                out.append(Finding(file, None, fmt, FindingKind.PIN, pin=value, pin_expiry=expiry, embedded_as=domains,
                                   evidence=f"pin-set for {domains or 'no domain'}"
                                            + (f", expires {raw_expiry}" if raw_expiry else ", no expiration")))
    for anchors in root.iter("trust-anchors"):
        for certificates in anchors.findall("certificates"):
            source = certificates.get("src", "")
            if source.startswith("@raw/"):
                out.append(Finding(file, None, fmt, FindingKind.CONFIG, setting="trust-anchors",
                                   value=f"res/raw/{source[5:]}",
                                   evidence=f"trust-anchors certificates src={source}"))
            else:
                out.append(Finding(file, None, fmt, FindingKind.CONFIG, setting="trust-anchors system", value=source,
                                   evidence=f"trust-anchors certificates src={source}: the device's {source} store, "
                                            "not part of the firmware image"))
    return out


def _trustkit_domains(doc: Any) -> dict[str, Any]:
    """The ``TSKPinnedDomains`` dictionary inside a TrustKit configuration document, or {}."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("TSKPinnedDomains"), dict):
                return node["TSKPinnedDomains"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return {}


def looks_like_trustkit(data: bytes) -> bool:
    """A plist or JSON file that mentions TrustKit's pinned domains."""
    return b"TSKPinnedDomains" in data


def read_trustkit(data: bytes, *, file: str) -> list[Finding]:
    """TrustKit pins (``TSKPublicKeyHashes``) and their ``TSKExpirationDate``, from a plist or JSON file."""
    fmt = ScanFormat.TRUSTKIT
    try:
        doc = json.loads(data) if data.lstrip()[:1] in (b"{", b"[") else plistlib.loads(data)
    except (ValueError, plistlib.InvalidFileException) as err:
        return [error(file, None, fmt, f"TrustKit configuration is neither JSON nor a plist ({err})")]
    out: list[Finding] = []
    for domain, config in _trustkit_domains(doc).items():
        if not isinstance(config, dict):
            continue
        expiry = None
        raw_expiry = config.get("TSKExpirationDate", "")
        if isinstance(raw_expiry, datetime):
            expiry = raw_expiry if raw_expiry.tzinfo else raw_expiry.replace(tzinfo=timezone.utc)
        elif raw_expiry:
            try:
                expiry = _date(str(raw_expiry))
            except ValueError as err:
                out.append(error(file, None, fmt, f"{domain}: TSKExpirationDate {err}"))
        enforced = config.get("TSKEnforcePinning", True)
        for digest in config.get("TSKPublicKeyHashes", []) or []:
            try:
                value = _pin(str(digest))
            except (binascii.Error, ValueError) as err:
                out.append(error(file, None, fmt, f"{domain}: TSKPublicKeyHashes entry {digest!r} is not a base64 "
                                 f"SHA-256 digest ({err})"))
                continue
            out.append(Finding(file, None, fmt, FindingKind.PIN, pin=value, pin_expiry=expiry, embedded_as=str(domain),
                               evidence=f"TrustKit pin for {domain}"
                                        + ("" if enforced else " (TSKEnforcePinning is false: reported, not enforced)"),
                               detail="" if enforced else "not enforced"))
    return out


def read_okhttp_pins(text: str, *, file: str) -> list[Finding]:
    """``sha256/...`` pins of OkHttp's ``CertificatePinner`` in a Java/Kotlin source file."""
    if "CertificatePinner" not in text:
        return []
    out = []
    for match in _OKHTTP_PIN.finditer(text):
        host = _OKHTTP_HOST.search(text, max(0, match.start() - 200), match.start())
        out.append(Finding(file, match.start(), ScanFormat.OKHTTP, FindingKind.PIN,
                           line=text.count("\n", 0, match.start()) + 1, pin=match["pin"],
                           embedded_as=host["host"] if host else "",
                           evidence=f"OkHttp CertificatePinner pin{' for ' + host['host'] if host else ''}"))
    return out
