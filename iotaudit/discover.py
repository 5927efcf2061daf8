"""Discover: which endpoints to probe.

Targets come from an account endpoint prefix x regions x endpoint types x
ports, from ``aws iot describe-endpoint`` through boto3 (optional extra), from
a plain ``HOST:PORT[@ADDRESS]`` list or targets file, or from the loopback
lab's ports file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .columns import EndpointType
from .errors import TargetError

ALPN_MQTT = "x-amzn-mqtt-ca"  # AWS IoT: MQTT over 443 with client certificate, chosen by ALPN


@dataclass(frozen=True, slots=True)
class Target:
    """One endpoint to probe.

    Attributes:
        host: The endpoint name: sent as SNI and the name a device validates.
        port: TCP port (8883 MQTT, 443 HTTPS or MQTT with ALPN, 8443 HTTPS).
        address: Where to connect, if not ``host`` (like curl's ``--resolve``): an IP or another name.
        alpn: Protocols to offer with ALPN, in preference order; empty for none.
        region: AWS region the endpoint belongs to, "" if unknown.
        endpoint_type: AWS IoT endpoint type, or ``other``.
        label: Free text carried into the results (e.g. the lab case name).
    """

    host: str
    port: int
    address: str = ""
    alpn: tuple[str, ...] = ()
    region: str = ""
    endpoint_type: EndpointType = EndpointType.OTHER
    label: str = ""

    def __post_init__(self) -> None:
        if not self.host or any(ch.isspace() for ch in self.host):
            raise TargetError(self.host, "host must be a non-empty name without spaces")
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise TargetError(f"{self.host}:{self.port}", "port must be an integer in 1..65535")
        object.__setattr__(self, "endpoint_type", EndpointType(self.endpoint_type))
        object.__setattr__(self, "alpn", tuple(self.alpn))
        if not self.address:
            object.__setattr__(self, "address", self.host)

    @property
    def spec(self) -> str:
        """``HOST:PORT[@ADDRESS]`` form of this target."""
        host = f"[{self.host}]" if _is_ipv6(self.host) else self.host
        text = f"{host}:{self.port}"
        if self.address != self.host:
            text += f"@{self.address}"
        return text


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def _split_host_port(text: str, spec: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise TargetError(spec, "IPv6 literal must be written [ADDR]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise TargetError(spec, "expected HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise TargetError(spec, f"port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise TargetError(spec, f"port {port} is outside 1..65535")
    if not host:
        raise TargetError(spec, "empty host")
    return host, port


def parse_target(spec: str, **fields: object) -> Target:
    """Parse ``HOST:PORT[@ADDRESS]`` (``[v6]:PORT`` and ``@[v6]`` accepted) into a :class:`Target`.

    ``HOST:PORT@ADDRESS`` connects to ADDRESS and sends SNI HOST, like curl's
    ``--resolve``.  Extra keyword fields (``alpn``, ``region``, ...) are passed to :class:`Target`.

    Raises:
        TargetError: naming the spec and what is wrong with it.
    """
    text = spec.strip()
    if not text:
        raise TargetError(spec, "empty target")
    name_part, at, address = text.partition("@")
    host, port = _split_host_port(name_part, spec)
    if at:
        address = address.strip()
        if address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if not address:
            raise TargetError(spec, "empty address after '@'")
    return Target(host=host, port=port, address=address or host, **fields)  # type: ignore[arg-type]
