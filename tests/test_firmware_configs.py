"""Build configuration and version strings that pick the stack; configs that name the CA file."""

from __future__ import annotations

import random
from pathlib import Path

from iotaudit import columns as c
from iotaudit.firmware import scan, write_esp_bundle
from tests.firmware_builders import aws, pem_text, rows

IDF_HEADER = "# Espressif IoT Development Framework (ESP-IDF) {version} Project Configuration\n#\n"


def _esp_project(tmp_path: Path, version: str, settings: str, layout: str = "legacy") -> Path:
    (tmp_path / "build").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sdkconfig").write_text(IDF_HEADER.format(version=version) + settings)
    write_esp_bundle([aws("AmazonRootCA1"), aws("AmazonRootCA3")], layout=layout,
                     path=tmp_path / "build" / "x509_crt_bundle")
    return tmp_path


def _profile(result) -> dict:
    [profile] = result.profiles.to_dict("records")
    return profile


def test_sdkconfig_with_the_bundle_picks_esp_idf_bundle_and_its_key_types(tmp_path: Path) -> None:
    settings = ("CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y\nCONFIG_MBEDTLS_CERTIFICATE_BUNDLE_DEFAULT_CMN=y\n"
                "CONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_RSA=y\nCONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA=y\n")
    profile = _profile(scan(_esp_project(tmp_path, "5.2.1", settings)))
    assert (profile[c.TLS_STACK], profile[c.KEY_TYPES]) == ("esp-idf-bundle", "rsa;ecdsa")
    assert "sdkconfig: CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y" in profile[c.STACK_EVIDENCE]


def test_cross_signed_verify_picks_the_cross_signed_bundle_model(tmp_path: Path) -> None:
    settings = ("CONFIG_MBEDTLS_CERTIFICATE_BUNDLE=y\nCONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY=y\n"
                "# CONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA is not set\nCONFIG_MBEDTLS_KEY_EXCHANGE_ECDHE_RSA=y\n")
    profile = _profile(scan(_esp_project(tmp_path, "6.0.1", settings, layout="current")))
    assert (profile[c.TLS_STACK], profile[c.KEY_TYPES]) == ("esp-idf-bundle-cross-signed", "rsa")


def test_a_bundle_without_version_or_option_leaves_the_stack_empty_with_a_note(tmp_path: Path) -> None:
    write_esp_bundle([aws("AmazonRootCA1")], layout="current", path=tmp_path / "x509_crt_bundle")
    profile = _profile(scan(tmp_path))
    assert profile[c.TLS_STACK] == ""
    assert "esp-idf-bundle or esp-idf-bundle-cross-signed" in profile[c.NOTES]


def test_the_esp_app_descriptor_gives_the_idf_version_in_an_image(tmp_path: Path) -> None:
    desc = (b"\x32\x54\xcd\xab" + bytes(4 + 8) + b"1.0.0".ljust(32, b"\0") + b"app".ljust(32, b"\0")
            + b"12:00:00".ljust(16, b"\0") + b"Jan  1 2025".ljust(16, b"\0") + b"v5.3.2-dirty".ljust(32, b"\0"))
    blob = bytearray(random.Random(5).randbytes(1 << 20))
    blob[0x20:0x20 + len(desc)] = desc
    bundle = write_esp_bundle([aws("AmazonRootCA1"), aws("AmazonRootCA3")], layout="legacy")
    blob[0x9000:0x9000 + len(bundle)] = bundle
    (tmp_path / "app.bin").write_bytes(bytes(blob))
    result = scan(tmp_path)
    [desc_row] = rows(result, **{c.SCAN_FORMAT: c.ScanFormat.ESP_APP_DESC.value})
    assert (desc_row[c.OFFSET], desc_row[c.IDF_VERSION]) == (0x20, "5.3.2")
    assert _profile(result)[c.TLS_STACK] == "esp-idf-bundle"


def test_wolfssl_options_with_alt_chains_pick_wolfssl_5_alt_chains(tmp_path: Path) -> None:
    (tmp_path / "wolfssl").mkdir()
    (tmp_path / "wolfssl" / "options.h").write_text(
        "/* wolfssl options.h */\n#undef  WOLFSSL_ALT_CERT_CHAINS\n#define WOLFSSL_ALT_CERT_CHAINS\n#define HAVE_ECC\n")
    (tmp_path / "ca.pem").write_text(pem_text(aws("AmazonRootCA1")))
    profile = _profile(scan(tmp_path))
    assert (profile[c.TLS_STACK], profile[c.KEY_TYPES]) == ("wolfssl-5-alt-chains", "rsa;ecdsa")


def test_wolfssl_user_settings_without_alt_chains_pick_wolfssl_5(tmp_path: Path) -> None:
    (tmp_path / "user_settings.h").write_text("#define WOLFSSL_USER_SETTINGS\n#define NO_RSA\n#define HAVE_ECC\n")
    profile = _profile(scan(tmp_path))
    assert (profile[c.TLS_STACK], profile[c.KEY_TYPES]) == ("wolfssl-5", "ecdsa")


def test_a_version_string_in_a_binary_picks_the_library_and_cites_it(tmp_path: Path) -> None:
    blob = bytearray(random.Random(6).randbytes(1 << 20))
    blob[5000:5014] = b"Mbed TLS 3.6.2"
    (tmp_path / "fw.bin").write_bytes(bytes(blob))
    result = scan(tmp_path)
    [evidence] = rows(result, **{c.FINDING: "stack"})
    assert (evidence[c.OFFSET], evidence[c.TLS_STACK]) == (5000, "mbedtls-3.6")
    assert _profile(result)[c.TLS_STACK] == "mbedtls-3.6" and "'Mbed TLS 3.6.2'" in _profile(result)[c.STACK_EVIDENCE]


def test_evidence_for_two_libraries_leaves_the_stack_empty_with_a_note(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\0" * 100 + b"mbed TLS 2.28.8\0" + b"\0" * 100 + b"OpenSSL 3.0.15 3 Sep 2024\0")
    profile = _profile(scan(tmp_path))
    assert profile[c.TLS_STACK] == "" and "more than one TLS library: mbedtls, openssl" in profile[c.NOTES]


def test_wolfssl_seen_only_in_a_binary_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "libwolfssl.so").write_bytes(b"\0\x01" * 50 + b"wolfSSL_CTX_new\0wolfSSL_connect\0")
    profile = _profile(scan(tmp_path))
    assert profile[c.TLS_STACK] == "" and "WOLFSSL_ALT_CERT_CHAINS" in profile[c.NOTES]


def test_a_header_version_macro_is_evidence(tmp_path: Path) -> None:
    (tmp_path / "build_info.h").write_text('#define MBEDTLS_VERSION_STRING         "2.28.8"\n')
    assert _profile(scan(tmp_path))[c.TLS_STACK] == "mbedtls-2.28"


def test_greengrass_v2_root_ca_path_decides_the_store(tmp_path: Path) -> None:
    (tmp_path / "greengrass" / "v2" / "config").mkdir(parents=True)
    (tmp_path / "greengrass" / "v2" / "config" / "config.yaml").write_text(
        "system:\n  certificateFilePath: \"/greengrass/v2/thingCert.crt\"\n"
        "  rootCaPath: \"/greengrass/v2/rootCA.pem\"\n  thingName: \"gw-1\"\n")
    (tmp_path / "greengrass" / "v2" / "rootCA.pem").write_text(pem_text(aws("AmazonRootCA1")))
    (tmp_path / "etc" / "ssl" / "certs").mkdir(parents=True)  # another client's store: not this one
    (tmp_path / "etc" / "ssl" / "certs" / "ca-certificates.crt").write_text(
        pem_text(aws("StarfieldClass2CA"), aws("VeriSignClass3G5")))
    result = scan(tmp_path)
    in_store = [r[c.CATALOG_NAME] for r in rows(result, **{c.IN_STORE: True})]
    assert in_store == ["AmazonRootCA1"] and _profile(result)[c.ANCHORS] == 1
    [config] = rows(result, **{c.SCAN_FORMAT: c.ScanFormat.CA_FILE_CONFIG.value})
    assert "rootCaPath = /greengrass/v2/rootCA.pem" in config[c.EVIDENCE]


def test_greengrass_v1_ca_path_and_a_missing_file_is_noted(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"coreThing": {"caPath": "root.ca.pem", "thingArn": "x"}}')
    (tmp_path / "other.pem").write_text(pem_text(aws("AmazonRootCA3")))
    profile = _profile(scan(tmp_path))
    assert "not in the scanned tree" in profile[c.NOTES]


def test_an_sdk_sample_ca_filepath_is_followed(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "pubsub.py").write_text(
        "mqtt_connection = mqtt_connection_builder.mtls_from_path(\n"
        "    endpoint=endpoint, ca_filepath='certs/AmazonRootCA3.pem', client_id='x')\n")
    (tmp_path / "certs" / "AmazonRootCA3.pem").write_text(pem_text(aws("AmazonRootCA3")))
    (tmp_path / "certs" / "unused.pem").write_text(pem_text(aws("AmazonRootCA1")))
    result = scan(tmp_path)
    assert [r[c.CATALOG_NAME] for r in rows(result, **{c.IN_STORE: True})] == ["AmazonRootCA3"]


def test_cmake_embed_lists_name_the_embedded_files(tmp_path: Path) -> None:
    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "CMakeLists.txt").write_text(
        'idf_component_register(SRCS "main.c"\n  INCLUDE_DIRS "."\n  EMBED_TXTFILES server_root_cert.pem local.pem)\n'
        'target_add_binary_data(${CMAKE_PROJECT_NAME}.elf "main/certs/root_cert_auth.crt" TEXT)\n')
    found = rows(scan(tmp_path), **{c.SCAN_FORMAT: c.ScanFormat.CA_FILE_CONFIG.value})
    assert sorted(r[c.EVIDENCE].split(" embeds ")[1].split(" ")[0] for r in found) == [
        "local.pem", "main/certs/root_cert_auth.crt", "server_root_cert.pem"]
