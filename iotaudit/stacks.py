"""The TLS stacks a device may run, as frozen values made of named path-building behaviours.

A device's verdict on a served chain depends on its TLS library as much as on
its trust store: which certificates the library looks for an issuer among and
in what order, what it accepts as a trust anchor, whether it checks an
anchor's dates, which algorithms it refuses.  Each stack id of the
``tls_stack`` inventory column is one :class:`Stack`; :mod:`iotaudit.paths`
builds and validates paths by these behaviours and nothing else.

Every behaviour cites where it comes from (``Stack.sources``); ``Stack.evidence``
says whether the model was checked against the real library in the test
suite (``tests/test_differential.py``) or only modelled from its source.

This is the bottom layer: it imports nothing else from iotaudit except
:mod:`iotaudit.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from .errors import IotauditError


class SearchOrder(StrEnum):
    """Where a stack looks for the issuer of the certificate on top of the path so far."""

    # The trust store first at every step, the served certificates only when the store has no issuer
    # (OpenSSL >= 1.1.0 X509_V_FLAG_TRUSTED_FIRST, mbed TLS >= 2.9 x509_crt_find_parent).
    TRUSTED_FIRST = "trusted-first"
    # Served certificates only, up to the top; then only the top's issuer is looked up in the store
    # (ESP-IDF's certificate bundle: esp_crt_bundle.c verify callback on the top certificate).
    CHAIN_TOP = "chain-top"
    # Served certificates first, as far as they go, then the store; no second try (OpenSSL <= 1.0.1m).
    UNTRUSTED_FIRST = "untrusted-first"
    # As untrusted-first, then retry from lower served certificates when the top has no trusted issuer
    # (OpenSSL 1.0.1n-1.0.2 "alternative chains", crypto/x509/x509_vfy.c).
    UNTRUSTED_FIRST_ALT_CHAINS = "untrusted-first-alt-chains"
    # The served list processed from its last certificate to its first, each accepted certificate
    # becoming a signer for the ones before it (wolfSSL ProcessPeerCerts, src/internal.c).
    LAST_TO_FIRST = "last-to-first"
    # Sort the served chain by issuer, cut it at the first certificate the trust list holds (by name and
    # key), then the remaining top's issuer must be in the trust list (GnuTLS lib/x509/verify-high.c, verify.c).
    SORTED_TRIM = "sorted-trim"
    # The served chain in the order sent, each certificate signed by the next (BearSSL x509_minimal).
    CHAIN_ORDER = "chain-order"
    # A path builder that searches every certificate it knows, store and served, with backtracking
    # (Android's Conscrypt / TrustManagerImpl with its own path builder).
    BUILDER = "builder"


class ServedIssuers(StrEnum):
    """Which served certificates may act as the issuer of a served certificate."""

    ANY_SERVED = "any-served"          # any served certificate, wherever it sits in the list
    LATER_IN_LIST = "later-in-list"    # only one that comes after the certificate it signs
    NEXT_IN_LIST = "next-in-list"      # only the very next one (BearSSL)


class AnchorForm(StrEnum):
    """What a stored certificate must be to end a path as its trust anchor."""

    SELF_SIGNED = "self-signed"        # a self-signed certificate (OpenSSL without PARTIAL_CHAIN)
    ANY_STORED = "any-stored-cert"     # any stored certificate, self-signed or not
    NAME_AND_KEY = "name-and-key"      # only the subject name and public key count (no certificate, no dates)


class AnchorExpiry(StrEnum):
    """When a stack checks a trust anchor's validity period."""

    AT_VERIFY = "at-verify"            # at every verification, like any certificate in the path
    AT_LOAD = "at-load"                # when the store is loaded: an anchor outside its dates is not loaded
    IGNORED = "ignored"                # never


@dataclass(frozen=True, slots=True)
class Stack:
    """One TLS stack (library, version, build and application options) and how it validates a chain.

    Attributes:
        id: The ``tls_stack`` inventory value, e.g. ``"mbedtls-2.28"``.
        title: What it stands for, in words.
        ships_in: Which firmware / products ship it.
        search: :class:`SearchOrder`.
        served_issuers: :class:`ServedIssuers`.
        anchor_form: :class:`AnchorForm`.
        anchor_expiry: :class:`AnchorExpiry`.
        use_all_presented: Every served certificate must chain to the store (wolfSSL without
            ``WOLFSSL_ALT_CERT_CHAINS``); otherwise unused served certificates are ignored.
        refuses_sha1: A SHA-1 signature on a certificate of the path (other than the anchor's own
            self-signature) fails validation.
        min_rsa_bits: Smallest RSA key accepted in the path (0: no limit).
        cn_fallback: A leaf without a subjectAltName DNS name is matched against the host by its CN.
        max_depth: Most certificates a validated path may hold, leaf and anchor included.
        evidence: ``"verified against <library version>"`` or ``"modelled from <source>"``.
        sources: The library files, options and upstream issues the behaviours come from.
        library: The library's name as reasons say it ("mbed TLS").
        prefers_valid_twin: Among same-name issuer candidates the first time-valid one is taken before
            the first one (mbed TLS x509_crt_find_parent_in, OpenSSL X509_STORE_CTX_get1_issuer); used by the
            OpenSSL and mbed TLS builders (GnuTLS's own rule is in its builder).
        served_dates_need_signer: A served certificate's dates are checked only once its signer is known
            (wolfSSL ParseCertRelative returns ASN_NO_SIGNER_E before it looks at dates); used by the
            last-to-first (wolfSSL) builder.
        not_after_inclusive: A certificate is still valid at its notAfter second (RFC 5280 4.1.2.5);
            OpenSSL's X509_cmp_time counts that second as past (measured, tests/README-reallibs.md).
        ip_san: A host that is an IP address is matched against the leaf's iPAddress subjectAltNames
            (RFC 6125 / RFC 9525 section 6.2); otherwise it is compared as a name.
        san_blocks_cn: Any subjectAltName extension turns the CN fallback off, not only one holding a DNS
            name (mbed TLS, GnuTLS, BearSSL and wolfSSL's distro build; OpenSSL falls back to the CN
            when the subjectAltName holds only an IP address).
    """

    id: str
    title: str
    ships_in: str
    search: SearchOrder
    served_issuers: ServedIssuers
    anchor_form: AnchorForm
    anchor_expiry: AnchorExpiry
    use_all_presented: bool
    refuses_sha1: bool
    min_rsa_bits: int
    cn_fallback: bool
    max_depth: int
    evidence: str
    sources: tuple[str, ...]
    library: str = ""
    prefers_valid_twin: bool = True
    served_dates_need_signer: bool = False
    not_after_inclusive: bool = True
    ip_san: bool = False
    san_blocks_cn: bool = False

    def __post_init__(self) -> None:
        if not self.id or self.id != self.id.strip().lower():
            raise ValueError(f"stack id must be a lowercase non-empty string, got {self.id!r}")
        for name, kind in (("search", SearchOrder), ("served_issuers", ServedIssuers),
                           ("anchor_form", AnchorForm), ("anchor_expiry", AnchorExpiry)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.max_depth < 1:
            raise ValueError(f"stack {self.id}: max_depth must be at least 1, got {self.max_depth}")
        if self.min_rsa_bits < 0:
            raise ValueError(f"stack {self.id}: min_rsa_bits must be >= 0, got {self.min_rsa_bits}")
        if not (self.evidence.startswith("verified against ") or self.evidence.startswith("modelled from ")):
            raise ValueError(f"stack {self.id}: evidence must start with 'verified against ' or 'modelled from '")
        if not self.sources:
            raise ValueError(f"stack {self.id}: every stack cites its sources")
        if not self.library:
            object.__setattr__(self, "library", self.title)

    def __str__(self) -> str:
        return self.id


class UnknownStackError(IotauditError, ValueError):
    """Raised when a ``tls_stack`` / ``path_builder`` value names no known stack.

    Attributes:
        value: The offending value.
    """

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        super().__init__(reason)


# Sources, cited once each (read at the tags named; see README "TLS stacks").
_OSSL_VFY = "openssl/openssl crypto/x509/x509_vfy.c build_chain, check_trust, check_auth_level (openssl-3.0)"
_OSSL_TF = "X509_V_FLAG_TRUSTED_FIRST default since OpenSSL 1.1.0 (CHANGES.md); X509_V_FLAG_PARTIAL_CHAIN (X509_VERIFY_PARAM_set_flags(3))"
_OSSL_SEC = "SSL_CTX_set_security_level(3): level 1 = 80 bits, SHA-1 signatures 63 bits (crypto/x509/x509_set.c x509_sig_info_init)"
_OSSL_HOST = "crypto/x509/v3_utl.c do_x509_check: subject CN used only without DNS subjectAltName"
_OSSL_ALT = "OpenSSL 1.0.2 crypto/x509/x509_vfy.c X509_verify_cert alternative chains; -no_alt_chains; OpenSSL blog 2021-09-13"
_MBED_VFY = "Mbed-TLS/mbedtls library/x509_crt.c x509_crt_find_parent, x509_crt_find_parent_in, x509_crt_verify_chain (mbedtls-2.28)"
_MBED_PROFILE = "library/x509_crt.c mbedtls_x509_crt_profile_default: SHA-2 only, RSA >= 2048"
_MBED_NAME = "library/x509_crt.c x509_crt_verify_name: SAN if present, else CN; x509_check_wildcard"
_MBED_DEPTH = "include/mbedtls/x509.h MBEDTLS_X509_MAX_INTERMEDIATE_CA 8"
_ESP_BUNDLE = ("espressif/esp-idf components/mbedtls/esp_crt_bundle/esp_crt_bundle.c esp_crt_verify_callback "
               "(master 102122904ad)")
_ESP_CROSS = ("espressif/esp-idf components/mbedtls/esp_crt_bundle/esp_crt_bundle.c esp_crt_ca_cb_callback with "
              "CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY (master 102122904ad)")
_WOLF_PEER = "wolfSSL/wolfssl src/internal.c ProcessPeerCerts (v5.5.4): CA certificates last to first, then the peer"
_WOLF_ALT = "WOLFSSL_ALT_CERT_CHAINS (configure --enable-altcertchains; wolfSSL/wolfssl#4443)"
_WOLF_DATES = ("wolfcrypt/src/asn.c ParseCertRelative; a CA outside its dates is not loaded "
               "(WOLFSSL_LOAD_FLAG_DATE_ERR_OKAY unset; measured on libwolfssl 5.5.4, tests/test_differential.py)")
_WOLF_DEPTH = "wolfssl/internal.h MAX_CHAIN_DEPTH 9"
_GNUTLS_HIGH = ("gnutls lib/x509/verify-high.c gnutls_x509_trust_list_verify_crt2, shorten_clist, trust-list buckets "
                "(DEFAULT_SIZE 127), lib/x509/common.c _gnutls_sort_clist (3.7.9); duplicate removal as upstream "
                "e369e67a6, which Debian's 3.7.9-2+deb12u3 backports (CVE-2024-28835)")
_GNUTLS_VFY = "gnutls lib/x509/verify.c _gnutls_verify_crt_status: cut at first trusted same name+key, check_ca_sanity"
_GNUTLS_SIG = "gnutls lib/x509/verify.c is_level_acceptable / GNUTLS_PROFILE: SHA-1 signatures untrusted by default (3.7)"
_GNUTLS_DEPTH = "gnutls lib/gnutls_int.h DEFAULT_MAX_VERIFY_DEPTH 16"
_BEAR = "BearSSL src/x509/x509_minimal.t0 (chain in order, br_x509_trust_anchor = DN + key)"
_ANDROID = ("Let's Encrypt 2020-12-21 'Extending Android Device Compatibility': anchor expiry not enforced; "
            "google/conscrypt#1130; Android TrustManagerImpl / conscrypt TrustedCertificateIndex")

_OSSL_EVIDENCE = "verified against OpenSSL 3.0 (Debian 12 libssl3, security level 1, tests/test_differential.py)"
_OSSL_OLD_EVIDENCE = ("verified against OpenSSL 3.0 with 1.0.x's search flags (path building; 1.0.x has no security "
                      "levels, so SHA-1 and RSA-1024 acceptance is modelled from OpenSSL 1.0.2 crypto/x509/x509_vfy.c)")
_OPENSSL_DEPTH = 102   # verify depth 100 intermediates + leaf + anchor (openssl-verification-options(1) -verify_depth)
_MBED_DEPTH_N = 10     # MBEDTLS_X509_MAX_INTERMEDIATE_CA 8 + leaf + trusted CA (MBEDTLS_X509_MAX_VERIFY_CHAIN_SIZE)

_ALL: tuple[Stack, ...] = (
    Stack(
        id="openssl-3", title="OpenSSL 3 TLS client, library defaults", library="OpenSSL 3",
        ships_in="Linux gateways (Debian/Ubuntu/Yocto) using libssl directly, Python ssl, curl with OpenSSL",
        search=SearchOrder.TRUSTED_FIRST, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.SELF_SIGNED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=1024, cn_fallback=True,
        ip_san=True,
        max_depth=_OPENSSL_DEPTH, not_after_inclusive=False, evidence=_OSSL_EVIDENCE,
        sources=(_OSSL_VFY, _OSSL_TF, _OSSL_SEC, _OSSL_HOST),
    ),
    Stack(
        id="openssl-3-partial-chain", title="OpenSSL 3 with X509_V_FLAG_PARTIAL_CHAIN", library="OpenSSL 3 with PARTIAL_CHAIN",
        ships_in="s2n-tls and the AWS CRT SDKs (aws-iot-device-sdk-cpp-v2, -python-v2), Greengrass nucleus lite",
        search=SearchOrder.TRUSTED_FIRST, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=1024, cn_fallback=True,
        ip_san=True,
        max_depth=_OPENSSL_DEPTH, not_after_inclusive=False, evidence=_OSSL_EVIDENCE,
        sources=(_OSSL_VFY, _OSSL_TF, _OSSL_SEC, _OSSL_HOST,
                 "aws/s2n-tls tls/s2n_x509_validator.c sets X509_V_FLAG_PARTIAL_CHAIN"),
    ),
    Stack(
        id="openssl-1.0.1", title="OpenSSL 1.0.1 (untrusted first, no alternative chains)", library="OpenSSL 1.0.1",
        ships_in="old Linux gateways and routers (OpenSSL <= 1.0.1m), OpenSSL 1.x with -no_alt_chains",
        search=SearchOrder.UNTRUSTED_FIRST, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.SELF_SIGNED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=False, min_rsa_bits=0, cn_fallback=True,
        ip_san=True,
        max_depth=_OPENSSL_DEPTH, not_after_inclusive=False, evidence=_OSSL_OLD_EVIDENCE,
        sources=(_OSSL_VFY, "X509_V_FLAG_TRUSTED_FIRST cleared, X509_V_FLAG_NO_ALT_CHAINS set", _OSSL_HOST),
    ),
    Stack(
        id="openssl-1.0.2", title="OpenSSL 1.0.2 (untrusted first, alternative chains)", library="OpenSSL 1.0.2",
        ships_in="Linux gateways on OpenSSL 1.0.1n-1.0.2 (RHEL/CentOS 7, old Yocto, Amazon Linux 1)",
        search=SearchOrder.UNTRUSTED_FIRST_ALT_CHAINS, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.SELF_SIGNED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=False, min_rsa_bits=0, cn_fallback=True,
        ip_san=True,
        max_depth=_OPENSSL_DEPTH, not_after_inclusive=False, evidence=_OSSL_OLD_EVIDENCE,
        sources=(_OSSL_VFY, _OSSL_ALT, "X509_V_FLAG_TRUSTED_FIRST cleared", _OSSL_HOST),
    ),
    Stack(
        id="mbedtls-2.28", title="mbed TLS 2.28 LTS with a CA list", library="mbed TLS",
        ships_in="FreeRTOS / Amazon FreeRTOS coreMQTT demos, Zephyr, ESP-IDF 4.x without the bundle, Debian libmbedtls",
        search=SearchOrder.TRUSTED_FIRST, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=2048, cn_fallback=True,
        san_blocks_cn=True,
        max_depth=_MBED_DEPTH_N,
        evidence=("verified against mbed TLS 2.28 (Debian 12 libmbedtls 2.28.3, under libfaketime, "
                  "tests/test_differential.py)"),
        sources=(_MBED_VFY, _MBED_PROFILE, _MBED_NAME, _MBED_DEPTH),
    ),
    Stack(
        id="mbedtls-3.6", title="mbed TLS 3.6 LTS with a CA list", library="mbed TLS",
        ships_in="ESP-IDF 5.x without the bundle, Zephyr 3.x, current FreeRTOS LTS, Arduino-ESP32 3.x",
        search=SearchOrder.TRUSTED_FIRST, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=2048, cn_fallback=True,
        ip_san=True, san_blocks_cn=True,
        max_depth=_MBED_DEPTH_N,
        evidence=("modelled from mbedtls-3.6 library/x509_crt.c (the chain building and default profile of 2.28, "
                  "which is verified; no 3.6 library is packaged here)"),
        sources=(_MBED_VFY.replace("2.28", "3.6"), _MBED_PROFILE, _MBED_NAME, _MBED_DEPTH,
                 "library/x509_crt.c x509_crt_check_san_ip (3.x): iPAddress subjectAltNames"),
    ),
    Stack(
        id="esp-idf-bundle", title="ESP-IDF mbed TLS with the certificate bundle (default)", library="ESP-IDF's certificate bundle",
        ships_in="ESP32 firmware using esp_crt_bundle_attach (esp-aws-iot, esp_http_client, Arduino-ESP32)",
        search=SearchOrder.CHAIN_TOP, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.NAME_AND_KEY, anchor_expiry=AnchorExpiry.IGNORED,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=2048, cn_fallback=True,
        san_blocks_cn=True,
        max_depth=_MBED_DEPTH_N,
        evidence=(f"modelled from {_ESP_BUNDLE}; its callback re-implemented over real mbed TLS 2.28.3 agrees "
                  "(tests/test_differential.py)"),
        sources=(_ESP_BUNDLE, _MBED_VFY, _MBED_PROFILE, _MBED_NAME),
    ),
    Stack(
        id="esp-idf-bundle-cross-signed", title="ESP-IDF certificate bundle with CROSS_SIGNED_VERIFY",
        library="ESP-IDF's certificate bundle (cross-signed verify)",
        ships_in="ESP32 firmware built with CONFIG_MBEDTLS_CERTIFICATE_BUNDLE_CROSS_SIGNED_VERIFY=y",
        search=SearchOrder.TRUSTED_FIRST, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.NAME_AND_KEY, anchor_expiry=AnchorExpiry.IGNORED,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=2048, cn_fallback=True,
        san_blocks_cn=True,
        max_depth=_MBED_DEPTH_N,
        evidence=(f"modelled from {_ESP_CROSS}; its CA callback emulated over real mbed TLS 2.28.3 (synthetic "
                  "name-and-key roots) agrees (tests/test_differential.py)"),
        sources=(_ESP_CROSS, _MBED_VFY, _MBED_PROFILE, _MBED_NAME),
    ),
    Stack(
        id="wolfssl-5", title="wolfSSL 5 default build (every presented certificate must chain)", library="wolfSSL",
        ships_in="wolfMQTT / wolfSSL default builds on MCUs, Renesas and NXP SDK ports",
        search=SearchOrder.LAST_TO_FIRST, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.AT_LOAD,
        use_all_presented=True, refuses_sha1=False, min_rsa_bits=1024, cn_fallback=True,
        max_depth=10, evidence=("verified against wolfSSL 5.5 (default build of Debian's 5.5.4 source, real TLS 1.2 "
                  "handshakes under libfaketime, tests/test_differential.py)"),
        sources=(_WOLF_PEER, _WOLF_DATES, _WOLF_DEPTH, "wolfSSL/wolfMQTT#184"),
        prefers_valid_twin=False, served_dates_need_signer=True,
    ),
    Stack(
        id="wolfssl-5-alt-chains", title="wolfSSL 5 with WOLFSSL_ALT_CERT_CHAINS", library="wolfSSL with alternative chains",
        ships_in="Debian/Ubuntu libwolfssl, OpenWrt (since the DST Root CA X3 expiry)",
        search=SearchOrder.LAST_TO_FIRST, served_issuers=ServedIssuers.LATER_IN_LIST,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.AT_LOAD,
        use_all_presented=False, refuses_sha1=False, min_rsa_bits=1024, cn_fallback=True,
        ip_san=True, san_blocks_cn=True,
        max_depth=10,
        evidence=("verified against wolfSSL 5.5 (Debian 12 libwolfssl 5.5.4, --enable-distro, real TLS 1.2 "
                  "handshakes under libfaketime, tests/test_differential.py)"),
        sources=(_WOLF_PEER, _WOLF_ALT, _WOLF_DATES, _WOLF_DEPTH),
        prefers_valid_twin=False, served_dates_need_signer=True,
    ),
    Stack(
        id="gnutls-3.7", title="GnuTLS 3.7 with a trust list", library="GnuTLS",
        ships_in="Debian 11/12 gateways using libgnutls (wget, glib-networking, libcurl-gnutls)",
        search=SearchOrder.SORTED_TRIM, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.NAME_AND_KEY, anchor_expiry=AnchorExpiry.AT_VERIFY,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=0, cn_fallback=True,
        ip_san=True, san_blocks_cn=True,
        max_depth=16, evidence="verified against GnuTLS 3.7 (Debian 12 3.7.9-2+deb12u*, tests/test_differential.py)",
        sources=(_GNUTLS_HIGH, _GNUTLS_VFY, _GNUTLS_SIG, _GNUTLS_DEPTH),
        prefers_valid_twin=False,
    ),
    Stack(
        id="bearssl", title="BearSSL x509_minimal", library="BearSSL",
        ships_in="ESP8266 Arduino core (BearSSL::WiFiClientSecure), ArduinoBearSSL, Arduino MKR/Nano boards",
        search=SearchOrder.CHAIN_ORDER, served_issuers=ServedIssuers.NEXT_IN_LIST,
        anchor_form=AnchorForm.NAME_AND_KEY, anchor_expiry=AnchorExpiry.IGNORED,
        use_all_presented=False, refuses_sha1=False, min_rsa_bits=1024, cn_fallback=True,
        san_blocks_cn=True,
        max_depth=32, evidence="verified against BearSSL 0.6 (Debian 12 libbearssl0, tests/test_differential.py)",
        sources=(_BEAR, "rustls/webpki-roots#70 (a name-and-key anchor has no validity)"),
        prefers_valid_twin=False,
    ),
    Stack(
        id="android", title="Android (Conscrypt TrustManagerImpl)", library="Android",
        ships_in="Android-based IoT devices and companion apps (AWS IoT SDK for Android)",
        search=SearchOrder.BUILDER, served_issuers=ServedIssuers.ANY_SERVED,
        anchor_form=AnchorForm.ANY_STORED, anchor_expiry=AnchorExpiry.IGNORED,
        use_all_presented=False, refuses_sha1=True, min_rsa_bits=1024, cn_fallback=False,
        ip_san=True,
        max_depth=16, evidence=f"modelled from {_ANDROID}",
        sources=(_ANDROID, "no CN fallback since Android 9: r.android.com/581382, google/conscrypt#1145, square/okhttp#3764",
                 "conscrypt ChainStrengthAnalyzer: SHA-1 signatures and RSA < 1024 refused below the anchor"),
        prefers_valid_twin=False,
    ),
)

STACKS: Mapping[str, Stack] = MappingProxyType({s.id: s for s in _ALL})
STACK_IDS: tuple[str, ...] = tuple(STACKS)
DEFAULT_STACK_ID = "openssl-3-partial-chain"
# The old ``path_builder`` inventory values (README "TLS stacks": the mapping table).
PATH_BUILDER_STACKS: Mapping[str, str] = MappingProxyType({
    "modern": "openssl-3-partial-chain",
    "legacy-chain-top": "openssl-1.0.1",
})


def get_stack(stack: Stack | str) -> Stack:
    """The :class:`Stack` for a stack id (a :class:`Stack` is returned as is).

    Raises:
        UnknownStackError: (a ValueError) naming the known ids when ``stack`` names none.
    """
    if isinstance(stack, Stack):
        return stack
    found = STACKS.get(str(stack).strip().lower()) if isinstance(stack, str) else None
    if found is None:
        raise UnknownStackError(stack, f"unknown TLS stack {stack!r}; known stacks: {', '.join(STACK_IDS)}")
    return found



def stacks_markdown() -> str:
    """The README's stack tables (what each id stands for, its behaviours, their sources), from :data:`STACKS`.

    README.md embeds this text between ``<!-- stacks:begin -->`` and ``<!-- stacks:end -->``;
    tests/test_stacks.py checks the two agree, so the documentation cannot drift from the model.
    """
    lines = ["| `tls_stack` | Stands for | Ships in | Evidence |", "|---|---|---|---|"]
    lines += [f"| `{s.id}` | {s.title} | {s.ships_in} | {s.evidence} |" for s in STACKS.values()]
    lines += ["", "| `tls_stack` | Search | Served issuers | Anchor | Anchor expiry | Every served cert must chain "
              "| Refuses | Leaf's CN names the host | IP host | Depth limit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in STACKS.values():
        refuses = [*(["SHA-1"] if s.refuses_sha1 else []), *([f"RSA < {s.min_rsa_bits}"] if s.min_rsa_bits else [])]
        cn = ("never" if not s.cn_fallback else "without any subjectAltName" if s.san_blocks_cn
              else "without a DNS subjectAltName")
        lines.append(f"| `{s.id}` | {s.search} | {s.served_issuers} | {s.anchor_form} | {s.anchor_expiry} | "
                     f"{'yes' if s.use_all_presented else 'no'} | {', '.join(refuses) or 'nothing'} | "
                     f"{cn} | {'iPAddress SAN' if s.ip_san else 'compared as a name'} | {s.max_depth} |")
    lines += ["", "Sources, per stack:", ""]
    lines += [f"- `{s.id}`: " + "; ".join(s.sources) + "." for s in STACKS.values()]
    lines += ["", "| old `path_builder` | `tls_stack` |", "|---|---|"]
    lines += [f"| `{old}` | `{new}` |" for old, new in PATH_BUILDER_STACKS.items()]
    return "\n".join(lines) + "\n"
