"""Which TLS stack a firmware runs: version strings, ESP-IDF's app descriptor, and the guess.

Evidence, strongest first: build configuration (``sdkconfig``, wolfSSL
``options.h``), the ESP-IDF bundle itself, then library version strings in
binaries and headers:

========== ===================================================== =====================================
library    string                                                source
========== ===================================================== =====================================
mbed TLS   ``mbed TLS 2.28.8`` / ``Mbed TLS 3.6.2``              ``MBEDTLS_VERSION_STRING_FULL``
           ``#define MBEDTLS_VERSION_STRING "3.6.2"``            ``mbedtls/build_info.h`` / ``version.h``
wolfSSL    ``#define LIBWOLFSSL_VERSION_STRING "5.5.4"``         ``wolfssl/version.h``; ``wolfSSL_`` symbols
OpenSSL    ``OpenSSL 3.0.15 3 Sep 2024``                         ``OPENSSL_VERSION_TEXT``
GnuTLS     ``#define GNUTLS_VERSION "3.7.9"``; ``gnutls_`` symbols ``gnutls/gnutls.h``
BearSSL    ``br_x509_minimal`` symbols, ``bearssl.h``
ESP-IDF    ``esp_app_desc_t.idf_ver`` after magic ``0xABCD5432``  ``components/esp_app_format/include/esp_app_desc.h``
========== ===================================================== =====================================

The guess names one stack id of ``iotaudit/stacks.py`` (issue 7) and cites
its evidence; evidence for two libraries, or for a family whose mode the
image does not tell (wolfSSL without its options file), leaves ``tls_stack``
empty with a note instead of guessing.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..columns import FindingKind, ScanFormat
from ..stacks import STACK_IDS  # the one list of stack ids; a guess names one of them
from ._model import Finding
from ._search import iter_hits
from .configs import CROSS_SIGNED, CROSS_SIGNED_SINCE, idf_version_tuple

# --- binaries ------------------------------------------------------------------------------
# Literal anchors searched with bytes.find, then a small regex at the hit.
_BINARY_MARKS: tuple[tuple[bytes, re.Pattern[bytes], str], ...] = (
    (b"bed TLS ", re.compile(rb"[mM]bed TLS (\d+\.\d+\.\d+)"), "mbedtls"),
    (b"OpenSSL ", re.compile(rb"OpenSSL (\d+\.\d+\.\d+[a-z]{0,2})(?![0-9.])"), "openssl"),
    (b"wolfSSL_", re.compile(rb"wolfSSL_[A-Za-z]"), "wolfssl"),
    (b"gnutls_x509", re.compile(rb"gnutls_x509"), "gnutls"),
    (b"br_x509_minimal", re.compile(rb"br_x509_minimal"), "bearssl"),
)
APP_DESC_MAGIC = struct.pack("<L", 0xABCD5432)  # ESP_APP_DESC_MAGIC_WORD
_APP_DESC_IDF_VER = 4 + 4 + 8 + 32 + 32 + 16 + 16  # magic, secure_version, reserv1[2], version, project_name, time, date
_IDF_VER = re.compile(rb"v?(\d+\.\d+(?:\.\d+)?)[\w.-]*\x00")


def family_stack(family: str, version: str) -> tuple[str, str]:
    """(stack id, note) for a library family at a version; id "" when the version does not decide it."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    if family == "mbedtls":
        if numbers[:2] == (2, 28):
            return "mbedtls-2.28", ""
        if numbers[:1] == (2,) and len(numbers) > 1 and numbers[1] >= 9:
            return "mbedtls-2.28", f"mbed TLS {version} modelled as 2.28 (same chain builder since 2.9, x509_crt_verify_chain)"
        if numbers[:2] == (3, 6):
            return "mbedtls-3.6", ""
        if numbers[:1] == (3,):
            return "mbedtls-3.6", f"mbed TLS {version} modelled as 3.6 (same chain builder)"
        return "", f"mbed TLS {version or '(no version)'}: no model for this version"
    if family == "openssl":
        letters = re.sub(r"^[\d.]+", "", version)
        if numbers[:1] == (3,):
            return "openssl-3", ("OpenSSL 3 defaults; an application that sets X509_V_FLAG_PARTIAL_CHAIN "
                                 "is openssl-3-partial-chain")
        if numbers[:2] == (1, 1):
            return "openssl-3", f"OpenSSL {version} modelled as openssl-3 (trusted-first by default since 1.1.0)"
        if numbers[:3] == (1, 0, 2) or (numbers[:3] == (1, 0, 1) and letters and letters >= "n"):
            return "openssl-1.0.2", "" if numbers[:3] == (1, 0, 2) else f"OpenSSL {version}: alternative chains since 1.0.1n"
        if numbers[:2] in ((1, 0), (0, 9)):
            return "openssl-1.0.1", "" if numbers[:3] == (1, 0, 1) else f"OpenSSL {version} modelled as openssl-1.0.1"
        return "", f"OpenSSL {version or '(no version)'}: no model for this version"
    if family == "gnutls":
        if numbers[:2] >= (3, 7) or (numbers[:2] == (3, 6) and len(numbers) > 2 and numbers[2] >= 14):
            return "gnutls-3.7", "" if numbers[:2] == (3, 7) else f"GnuTLS {version} modelled as gnutls-3.7"
        if not numbers:
            return "gnutls-3.7", "GnuTLS of unknown version modelled as gnutls-3.7"
        return "", f"GnuTLS {version}: older than 3.6.14, no model"
    if family == "bearssl":
        return "bearssl", ""
    if family == "wolfssl":
        return "", ("wolfSSL found, but not whether it was built with WOLFSSL_ALT_CERT_CHAINS "
                    "(no options.h / user_settings.h in the scanned tree)")
    if family == "android":
        return "android", ""
    return "", f"no model for {family}"


BINARY_NEEDLES = (*(mark for mark, _, _ in _BINARY_MARKS), APP_DESC_MAGIC)


def find_versions(buf: bytes, lo: int, hi: int, *, file: str, base: int, seen: set[tuple[str, str]],
                  embedded_as: str = "", hits: Mapping[bytes, Sequence[int]] | None = None) -> list[Finding]:
    """TLS library version strings and ESP-IDF app descriptors starting in ``buf[lo:hi]``.

    Args:
        seen: (family, version) pairs already reported for this file; updated.
        hits: Needle -> positions already found (:data:`BINARY_NEEDLES`, by a NeedleSearch).
    """
    out: list[Finding] = []
    for mark, pattern, family in _BINARY_MARKS:
        for pos in iter_hits(buf, mark, max(0, lo - 1), hi + len(mark), None if hits is None else hits[mark]):
            start = pos - 1 if family == "mbedtls" else pos
            match = pattern.match(buf, max(0, start))
            if match is not None:
                version = match.group(1).decode("ascii") if match.groups() else ""
                if (family, version) not in seen:
                    seen.add((family, version))
                    stack, note = family_stack(family, version)
                    out.append(Finding(file, base + match.start(), ScanFormat.VERSION_STRING, FindingKind.STACK,
                                       embedded_as=embedded_as, family=family, tls_stack=stack, value=version,
                                       evidence=f"{match.group(0).decode('ascii', 'replace')!r} in the binary",
                                       detail=note))
                if not match.groups() and (family, version) in seen:
                    break  # a symbol-name family: one finding per file is enough
    magic_hits = None if hits is None else hits[APP_DESC_MAGIC]
    for pos in iter_hits(buf, APP_DESC_MAGIC, lo, hi + len(APP_DESC_MAGIC), magic_hits):
        match = _IDF_VER.match(buf, pos + _APP_DESC_IDF_VER, pos + _APP_DESC_IDF_VER + 32)
        if match is not None and ("esp-idf", match.group(1).decode()) not in seen:
            version = match.group(1).decode("ascii")
            seen.add(("esp-idf", version))
            out.append(Finding(file, base + pos, ScanFormat.ESP_APP_DESC, FindingKind.CONFIG, embedded_as=embedded_as,
                               setting="esp_app_desc_t.idf_ver", value=version, idf_version=version,
                               evidence=f"ESP-IDF application descriptor: built with ESP-IDF {version}"))
    return out


# --- headers -------------------------------------------------------------------------------
_HEADER_VERSIONS = re.compile(
    r"#\s*define\s+(?P<name>MBEDTLS_VERSION_STRING|LIBWOLFSSL_VERSION_STRING|OPENSSL_VERSION_STR|GNUTLS_VERSION)"
    r"\s+\"(?P<version>[0-9][0-9A-Za-z.]*)\""
)
_HEADER_FAMILY = {"MBEDTLS_VERSION_STRING": "mbedtls", "LIBWOLFSSL_VERSION_STRING": "wolfssl",
                  "OPENSSL_VERSION_STR": "openssl", "GNUTLS_VERSION": "gnutls"}


def read_header_versions(text: str, *, file: str, name: str) -> list[Finding]:
    """Library version macros in a C header, and ``bearssl.h`` itself."""
    out = []
    for match in _HEADER_VERSIONS.finditer(text):
        family = _HEADER_FAMILY[match["name"]]
        stack, note = family_stack(family, match["version"])
        out.append(Finding(file, None, ScanFormat.VERSION_STRING, FindingKind.STACK,
                           line=text.count("\n", 0, match.start()) + 1, family=family, tls_stack=stack,
                           value=match["version"], evidence=f"#define {match['name']} \"{match['version']}\"", detail=note))
    if name == "bearssl.h" and "br_x509_minimal" in text:
        out.append(Finding(file, None, ScanFormat.VERSION_STRING, FindingKind.STACK, family="bearssl",
                           tls_stack="bearssl", evidence="bearssl.h"))
    return out


# --- the guess -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StackGuess:
    """The profile's ``tls_stack`` and why.

    Attributes:
        tls_stack: A stack id, or "" when the evidence is missing or ambiguous.
        evidence: The findings it rests on, in plain words ("file: what").
        note: Why it is empty, or what was assumed.
    """

    tls_stack: str
    evidence: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.tls_stack and self.tls_stack not in STACK_IDS:
            raise ValueError(f"unknown stack id {self.tls_stack!r}; known: {', '.join(STACK_IDS)}")
        if not self.tls_stack and not self.note:
            raise ValueError("an empty tls_stack needs a note saying why")


def _cite(findings: Sequence[Finding]) -> str:
    return "; ".join(dict.fromkeys(f"{f.file}: {f.evidence}" for f in findings))


def guess_stack(findings: Sequence[Finding], *, certificate_anchors: int) -> StackGuess:
    """Decide the profile's ``tls_stack`` from its findings.

    Args:
        findings: Every finding of the profile.
        certificate_anchors: How many whole-certificate anchors (not bundle entries) the store has:
            a firmware with an ESP bundle *and* its own CA certificates may use either.
    """
    stack_findings = [f for f in findings if f.kind is FindingKind.STACK]
    versions = [f for f in findings if f.idf_version]
    idf = max((idf_version_tuple(f.idf_version) for f in versions), default=())
    cross = [f for f in findings if f.setting == f"CONFIG_{CROSS_SIGNED}"]
    bundle_on = [f for f in stack_findings if f.family == "esp-idf-bundle" and f.value != "n"]
    if bundle_on:
        cited = [*bundle_on, *cross, *versions]
        layouts = {f.value for f in bundle_on if f.setting == "layout"}
        if any(f.value == "y" for f in cross):
            choice, why = "esp-idf-bundle-cross-signed", ""
        elif any(f.value == "n" for f in cross):
            choice, why = "esp-idf-bundle", ""
        elif idf and idf[:2] < CROSS_SIGNED_SINCE:
            choice, why = "esp-idf-bundle", ""
        elif "legacy" in layouts:
            choice, why = "esp-idf-bundle", ""
        elif idf:
            choice, why = "esp-idf-bundle-cross-signed", (f"CONFIG_{CROSS_SIGNED} not found: its default is y "
                                                          "from ESP-IDF 6.0")
        else:
            return StackGuess("", _cite(cited), "ESP-IDF certificate bundle found, but not the ESP-IDF version or "
                              f"CONFIG_{CROSS_SIGNED}: esp-idf-bundle or esp-idf-bundle-cross-signed")
        if certificate_anchors:
            return StackGuess("", _cite(cited), f"an ESP-IDF certificate bundle ({choice}) and {certificate_anchors} "
                              "CA certificate(s) of its own: which one the AWS IoT connection uses "
                              "(esp_crt_bundle_attach or a cacert) is in the application code")
        return StackGuess(choice, _cite(cited), why)
    families: dict[str, list[Finding]] = {}
    for finding in stack_findings:
        if finding.family:
            families.setdefault(finding.family, []).append(finding)
    if not families:
        return StackGuess("", "", "no TLS library evidence found (no sdkconfig, wolfSSL options, version string "
                              "or network security config)")
    if len(families) > 1:
        return StackGuess("", _cite(stack_findings), "evidence for more than one TLS library: "
                          + ", ".join(sorted(families)))
    family, found = next(iter(families.items()))
    ids = {f.tls_stack for f in found if f.tls_stack}
    if family == "wolfssl":
        configured = {f.tls_stack for f in found if f.format is ScanFormat.WOLFSSL_OPTIONS}
        if len(configured) == 1:
            return StackGuess(configured.pop(), _cite(found))
    if family == "mbedtls" and not ids and idf:
        # ESP-IDF with the bundle off: the mbedTLS it ships (v5.0+: 3.x; v4.4: 2.28).
        if idf[:2] >= (5, 0):
            return StackGuess("mbedtls-3.6", _cite([*found, *versions]), "ESP-IDF >= 5.0 ships mbed TLS 3.x")
        if idf[:2] == (4, 4):
            return StackGuess("mbedtls-2.28", _cite([*found, *versions]), "ESP-IDF 4.4 ships mbed TLS 2.28")
    if len(ids) == 1:
        notes = "; ".join(dict.fromkeys(f.detail for f in found if f.detail))
        return StackGuess(ids.pop(), _cite(found), notes)
    if len(ids) > 1:
        return StackGuess("", _cite(found), f"{family} evidence points to several stacks: {', '.join(sorted(ids))}")
    notes = "; ".join(dict.fromkeys(f.detail for f in found if f.detail)) or f"{family} found, but not its version"
    return StackGuess("", _cite(found), notes)
