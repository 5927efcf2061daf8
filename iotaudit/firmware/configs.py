"""Build and runtime configuration that decides the stack or names the CA file.

* ESP-IDF ``sdkconfig`` (and ``build/config/sdkconfig.json``): the certificate
  bundle options of ``components/mbedtls/Kconfig`` --
  ``CONFIG_MBEDTLS_CERTIFICATE_BUNDLE`` (default y), the default list
  (``..._DEFAULT_FULL`` / ``_CMN`` / ``_NONE``), a custom bundle path, and
  ``CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY`` (added in v6.0,
  default y there; commit cabb5009 "adds support for cross signed root
  certificates"); the key exchanges mbedTLS offers; and the ESP-IDF version
  from the header line kconfgen writes
  (``# Espressif IoT Development Framework (ESP-IDF) 5.4.0 Project Configuration``).
* wolfSSL ``options.h`` / ``user_settings.h``: ``WOLFSSL_ALT_CERT_CHAINS``
  ("Only the peer certificate must validate to a trusted certificate. Without
  this, all certificates sent by a peer must be used in the trust chain",
  quoted in OpenWrt's commit enabling it, wolfSSL/wolfssl#4443), ``HAVE_ECC``, ``NO_RSA``.
* Files that name the CA file: AWS IoT Greengrass v2 ``config.yaml``
  (``system.rootCaPath``), v1 ``config.json`` (``caPath``), AWS IoT Device SDK
  samples (``ca_filepath``, ``CAFilePath``, ``caPath``, ``ROOT_CA_CERT_PATH``,
  ``--ca_file``), and CMake embed lists (``EMBED_TXTFILES``,
  ``target_add_binary_data``), which say which files the binary carries.
"""

from __future__ import annotations

import json
import re

from ..columns import FindingKind, ScanFormat
from ._model import Finding, error

_IDF_HEADER = re.compile(r"Espressif IoT Development Framework \(ESP-IDF\)\s+v?(\d+\.\d+(?:\.\d+)?)")
_SET = re.compile(r"^\s*CONFIG_(\w+)=(.*?)\s*$", re.M)
_NOT_SET = re.compile(r"^\s*#\s*CONFIG_(\w+) is not set\s*$", re.M)
BUNDLE = "MBEDTLS_CERTIFICATE_BUNDLE"
CROSS_SIGNED = "MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY"
_DEFAULT_LISTS = {
    "MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_FULL": "the full Mozilla root list of this ESP-IDF release",
    "MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_CMN": "the common Mozilla roots of this ESP-IDF release (cmn_crt_authorities.csv)",
    "MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_NONE": "no default roots (custom certificates only)",
}
_RSA_EXCHANGES = ("MBEDTLS_KEY_EXCHANGE_RSA", "MBEDTLS_KEY_EXCHANGE_ECDHE_RSA", "MBEDTLS_KEY_EXCHANGE_DHE_RSA")
_ECDSA_EXCHANGES = ("MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA", "MBEDTLS_KEY_EXCHANGE_ECDH_ECDSA")
CROSS_SIGNED_SINCE = (6, 0)


def is_sdkconfig(name: str) -> bool:
    """``sdkconfig``, ``sdkconfig.defaults``, ``sdkconfig.old`` ... and ``sdkconfig.json``."""
    return name == "sdkconfig" or name.startswith("sdkconfig.")


def idf_version_tuple(version: str) -> tuple[int, ...]:
    """``"5.2.1"`` -> ``(5, 2, 1)``; ``()`` when it is not a version."""
    try:
        return tuple(int(part) for part in version.lstrip("v").split("-")[0].split("."))
    except ValueError:
        return ()


def _values(text: str, file: str) -> tuple[dict[str, str], str, dict[str, int]]:
    """Settings (name without CONFIG_ -> value), ESP-IDF version, name -> line."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    if file.endswith(".json"):
        try:
            doc = json.loads(text)
        except ValueError:
            return {}, "", {}
        if isinstance(doc, dict):
            for key, value in doc.items():
                values[str(key)] = "y" if value is True else "n" if value is False else str(value)
        return values, "", lines
    for match in _SET.finditer(text):
        values[match[1]] = match[2].strip('"')
        lines[match[1]] = text.count("\n", 0, match.start()) + 1
    for match in _NOT_SET.finditer(text):
        values[match[1]] = "n"
        lines[match[1]] = text.count("\n", 0, match.start()) + 1
    header = _IDF_HEADER.search(text[:4096])
    return values, header[1] if header else "", lines


def read_sdkconfig(text: str, *, file: str) -> list[Finding]:
    """What an ESP-IDF ``sdkconfig`` says about the certificate store, the stack and the key types."""
    values, version, lines = _values(text, file)
    fmt = ScanFormat.SDKCONFIG
    out: list[Finding] = []
    if not values:
        return [error(file, None, fmt, "an sdkconfig file without any CONFIG_ setting")] if file.endswith(".json") else []
    if version:
        out.append(Finding(file, None, fmt, FindingKind.CONFIG, line=1, idf_version=version, setting="ESP-IDF version",
                           value=version, evidence=f"sdkconfig written by ESP-IDF {version}"))
    bundle = values.get(BUNDLE)
    if bundle is not None:
        enabled = bundle == "y"
        cross = values.get(CROSS_SIGNED)
        out.append(Finding(
            file, None, fmt, FindingKind.STACK, line=lines.get(BUNDLE), family="esp-idf-bundle" if enabled else "mbedtls",
            setting=f"CONFIG_{BUNDLE}", value=bundle, idf_version=version,
            evidence=(f"CONFIG_{BUNDLE}={bundle}: " + ("certificate bundle attached (esp_crt_bundle_attach)" if enabled
                      else "no certificate bundle: mbedTLS with the application's CA list")),
        ))
        if enabled:
            out.append(Finding(
                file, None, fmt, FindingKind.CONFIG, line=lines.get(CROSS_SIGNED), setting=f"CONFIG_{CROSS_SIGNED}",
                value=cross if cross is not None else "",
                evidence=(f"CONFIG_{CROSS_SIGNED}={cross}" if cross is not None else
                          f"CONFIG_{CROSS_SIGNED} not in the file (the option exists from ESP-IDF 6.0, default y)"),
            ))
            for name, meaning in _DEFAULT_LISTS.items():
                if values.get(name) == "y":
                    out.append(Finding(file, None, fmt, FindingKind.CONFIG, line=lines.get(name), setting=f"CONFIG_{name}",
                                       value="y", evidence=f"the bundle holds {meaning}"))
            if values.get("MBEDTLS_CUSTOM_CERTIFICATE_BUNDLE") == "y":
                path = values.get("MBEDTLS_CUSTOM_CERTIFICATE_BUNDLE_PATH", "")
                out.append(Finding(file, None, fmt, FindingKind.CONFIG,
                                   line=lines.get("MBEDTLS_CUSTOM_CERTIFICATE_BUNDLE_PATH"),
                                   setting="CONFIG_MBEDTLS_CUSTOM_CERTIFICATE_BUNDLE_PATH", value=path,
                                   evidence=f"custom certificates added to the bundle from {path!r}"))
    kinds = []
    if any(values.get(name) == "y" for name in _RSA_EXCHANGES):
        kinds.append("rsa")
    if any(values.get(name) == "y" for name in _ECDSA_EXCHANGES):
        kinds.append("ecdsa")
    if any(name in values for name in (*_RSA_EXCHANGES, *_ECDSA_EXCHANGES)):
        out.append(Finding(file, None, fmt, FindingKind.CONFIG, setting="key exchanges", value=";".join(kinds),
                           key_types=tuple(kinds),
                           evidence=f"mbedTLS key exchanges offer {', '.join(kinds) or 'neither rsa nor ecdsa'} certificates"))
    return out


# --- wolfSSL ------------------------------------------------------------------------------

_DEFINE = re.compile(r"^[ \t]*#[ \t]*(define|undef)[ \t]+(\w+)", re.M)
WOLFSSL_NAMES = ("options.h", "user_settings.h")


def looks_like_wolfssl_options(name: str, text: str) -> bool:
    """``options.h`` / ``user_settings.h`` that configure wolfSSL (both names are common elsewhere)."""
    return name in WOLFSSL_NAMES and ("WOLFSSL" in text or "wolfSSL" in text)


def read_wolfssl_options(text: str, *, file: str) -> list[Finding]:
    """What a wolfSSL ``options.h``/``user_settings.h`` says: alternative chains, ECC, RSA."""
    defined: dict[str, bool] = {}
    lines: dict[str, int] = {}
    for match in _DEFINE.finditer(text):
        defined[match[2]] = match[1] == "define"  # the last of #undef / #define wins, as for the preprocessor
        lines[match[2]] = text.count("\n", 0, match.start()) + 1
    alt = defined.get("WOLFSSL_ALT_CERT_CHAINS", False)
    kinds = tuple(k for k, on in (("rsa", not defined.get("NO_RSA", False)), ("ecdsa", defined.get("HAVE_ECC", False))) if on)
    return [
        Finding(file, None, ScanFormat.WOLFSSL_OPTIONS, FindingKind.STACK, line=lines.get("WOLFSSL_ALT_CERT_CHAINS"),
                family="wolfssl", tls_stack="wolfssl-5-alt-chains" if alt else "wolfssl-5",
                setting="WOLFSSL_ALT_CERT_CHAINS", value="defined" if alt else "not defined",
                evidence=f"{file.rsplit('/', 1)[-1]}: WOLFSSL_ALT_CERT_CHAINS "
                         f"{'defined (only the peer certificate must reach a trusted one)' if alt else 'not defined (every certificate sent must be used)'}"),
        Finding(file, None, ScanFormat.WOLFSSL_OPTIONS, FindingKind.CONFIG, setting="key types", value=";".join(kinds),
                key_types=kinds, evidence=f"wolfSSL built with {', '.join(kinds) or 'neither RSA nor ECC'}"),
    ]


# --- files that name the CA file -----------------------------------------------------------

_CERT_PATH = r"[^\"'\s]+\.(?:pem|crt|cer|der|ca)"
_GREENGRASS_V2 = re.compile(r"^\s*rootCaPath\s*:\s*[\"']?([^\"'\n#]+?)[\"']?\s*(?:#.*)?$", re.M)
_GREENGRASS_V1 = re.compile(r"\"caPath\"\s*:\s*\"([^\"]+)\"")
_SDK_SETTINGS = re.compile(
    r"(?P<key>ca_filepath|CAFilePath|caPath|ca_file|cafile|root_ca_path|rootCAPath|ROOT_CA_CERT_PATH|ROOT_CA_PATH)"
    rf"[\"']?\s*(?:=|:|,|\s)\s*[\"'](?P<path>{_CERT_PATH})[\"']"
)
_CLI_ARGS = re.compile(rf"--(?P<key>ca[_-]file|root[_-]ca|cafile|ca[_-]path)[ =](?P<path>{_CERT_PATH})")
_CMAKE_EMBED = re.compile(r"\b(?P<key>EMBED_TXTFILES|EMBED_FILES)\b(?P<files>[^)]*)", re.S)
_CMAKE_BINARY = re.compile(r"\btarget_add_binary_data\s*\(\s*\S+\s+\"?(?P<file>[^\"\s)]+)\"?", re.S)
SOURCE_SUFFIXES = (".py", ".js", ".ts", ".mjs", ".java", ".kt", ".c", ".h", ".cpp", ".hpp", ".cc", ".ino", ".sh",
                   ".json", ".yaml", ".yml", ".toml", ".ini", ".conf", ".cfg", ".properties")


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_ca_file_settings(text: str, *, file: str, name: str) -> list[Finding]:
    """Settings that name a CA file; ``value`` holds the path as written (the front resolves it in the tree)."""
    out: list[Finding] = []
    fmt = ScanFormat.CA_FILE_CONFIG
    if name in ("config.yaml", "config.yml", "effectiveConfig.yaml"):
        for match in _GREENGRASS_V2.finditer(text):
            out.append(Finding(file, None, fmt, FindingKind.CONFIG, line=_line(text, match.start()),
                               setting="system.rootCaPath", value=match[1].strip(),
                               evidence=f"AWS IoT Greengrass v2 {name}: system.rootCaPath = {match[1].strip()}"))
    if name == "config.json" and ("coreThing" in text or "\"crypto\"" in text):
        for match in _GREENGRASS_V1.finditer(text):
            out.append(Finding(file, None, fmt, FindingKind.CONFIG, line=_line(text, match.start()), setting="caPath",
                               value=match[1], evidence=f"AWS IoT Greengrass v1 config.json: caPath = {match[1]}"))
    if not out and name.endswith(SOURCE_SUFFIXES):
        for pattern in (_SDK_SETTINGS, _CLI_ARGS):
            for match in pattern.finditer(text):
                out.append(Finding(file, None, fmt, FindingKind.CONFIG, line=_line(text, match.start()),
                                   setting=match["key"], value=match["path"],
                                   evidence=f"{match['key']} = {match['path']} (AWS IoT Device SDK style CA file setting)"))
    return out


def read_cmake_embeds(text: str, *, file: str) -> list[Finding]:
    """The files a CMake project embeds into its binary (ESP-IDF ``EMBED_TXTFILES``, ``target_add_binary_data``)."""
    out: list[Finding] = []
    for match in _CMAKE_EMBED.finditer(text):
        for embedded in re.findall(r"[^\s\"]+", match["files"]):
            if embedded.isupper() or embedded.startswith("$"):
                break  # the next keyword of idf_component_register, or a variable
            out.append(Finding(file, None, ScanFormat.CA_FILE_CONFIG, FindingKind.CONFIG, line=_line(text, match.start()),
                               setting=match["key"], value=embedded,
                               evidence=f"{match['key']} embeds {embedded} (symbols _binary_..._start/_end)"))
    for match in _CMAKE_BINARY.finditer(text):
        out.append(Finding(file, None, ScanFormat.CA_FILE_CONFIG, FindingKind.CONFIG, line=_line(text, match.start()),
                           setting="target_add_binary_data", value=match["file"],
                           evidence=f"target_add_binary_data embeds {match['file']}"))
    return out
