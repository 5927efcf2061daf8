"""Discover: which endpoints to probe.

Targets come from an account endpoint prefix x regions x endpoint types x
ports, from ``aws iot describe-endpoint`` through boto3 (optional extra), from
a plain ``HOST:PORT[@ADDRESS]`` list or targets file, or from the loopback
lab's ports file.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        if isinstance(self.alpn, str):
            raise TargetError(self.host, "alpn must be a sequence of protocol names, not a string")
        object.__setattr__(self, "alpn", tuple(self.alpn))
        # An AWS IoT name says its region and endpoint type; fill them in when not given.
        if not self.region:
            object.__setattr__(self, "region", infer_region(self.host))
        if self.endpoint_type is EndpointType.OTHER:
            object.__setattr__(self, "endpoint_type", infer_endpoint_type(self.host))
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


# --- AWS IoT endpoint names ---------------------------------------------------
# Host name forms returned by ``aws iot describe-endpoint`` (AWS IoT developer
# guide, "Connecting devices to AWS IoT" and the DescribeEndpoint API
# reference: ``identifier.iot.<region>.amazonaws.com``).  The ATS data endpoint
# carries an ``-ats`` suffix on the account prefix; the credentials provider
# and jobs endpoints have account prefixes of their own.
_HOST_FORMS: dict[EndpointType, str] = {
    EndpointType.DATA_ATS: "{prefix}-ats.iot.{region}.amazonaws.com",
    EndpointType.DATA: "{prefix}.iot.{region}.amazonaws.com",
    EndpointType.CREDENTIAL_PROVIDER: "{prefix}.credentials.iot.{region}.amazonaws.com",
    EndpointType.JOBS: "{prefix}.jobs.iot.{region}.amazonaws.com",
}

# Ports per endpoint type (AWS IoT developer guide, "Protocols, port mappings,
# and authentication"): MQTT on 8883, MQTT on 443 chosen by ALPN
# x-amzn-mqtt-ca, HTTPS on 443 and 8443.  The credentials provider and jobs
# endpoints are HTTPS only.  "PORT/ALPN" offers ALPN protocol ALPN on PORT.
DATA_PORTS: tuple[str, ...] = ("8883", f"443/{ALPN_MQTT}", "443", "8443")
HTTPS_PORTS: tuple[str, ...] = ("443",)
DEFAULT_PORTS: dict[EndpointType, tuple[str, ...]] = {
    EndpointType.DATA_ATS: DATA_PORTS,
    EndpointType.DATA: DATA_PORTS,
    EndpointType.CREDENTIAL_PROVIDER: HTTPS_PORTS,
    EndpointType.JOBS: HTTPS_PORTS,
}

_AWS_HOST = re.compile(
    r"^(?P<prefix>[^.]+)\.(?:(?P<service>credentials|jobs)\.)?iot(?:-fips)?\."
    r"(?P<region>[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)\.amazonaws\.com(?:\.cn)?\.?$",
    re.IGNORECASE,
)


def infer_region(host: str) -> str:
    """AWS region named in an AWS IoT host name, or "" when ``host`` is not one.

    >>> infer_region("a1b2c3-ats.iot.eu-west-1.amazonaws.com")
    'eu-west-1'
    """
    match = _AWS_HOST.match(host)
    return match.group("region").lower() if match else ""


def infer_endpoint_type(host: str) -> EndpointType:
    """Endpoint type implied by an AWS IoT host name (see the name forms above), else ``other``."""
    match = _AWS_HOST.match(host)
    if not match:
        return EndpointType.OTHER
    service = (match.group("service") or "").lower()
    if service == "credentials":
        return EndpointType.CREDENTIAL_PROVIDER
    if service == "jobs":
        return EndpointType.JOBS
    if match.group("prefix").lower().endswith("-ats"):
        return EndpointType.DATA_ATS
    return EndpointType.DATA


def endpoint_host(endpoint_type: EndpointType | str, prefix: str, region: str) -> str:
    """The AWS IoT host name of one endpoint type for an account prefix in a region.

    Args:
        endpoint_type: ``iot:Data-ATS``, ``iot:Data``, ``iot:CredentialProvider`` or ``iot:Jobs``.
        prefix: The account-specific identifier (``a1b2c3d4e5f6g7``); for data
            endpoints a trailing ``-ats`` is accepted and ignored.
        region: AWS region, e.g. ``us-east-1``.

    Raises:
        TargetError: for an unknown endpoint type or an empty prefix or region.
    """
    etype = EndpointType(endpoint_type)
    if etype not in _HOST_FORMS:
        raise TargetError(str(endpoint_type), f"no AWS IoT host name form; known: {', '.join(t.value for t in _HOST_FORMS)}")
    prefix = prefix.strip().lower()
    if etype in (EndpointType.DATA_ATS, EndpointType.DATA) and prefix.endswith("-ats"):
        prefix = prefix[: -len("-ats")]
    if not prefix or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", prefix):
        raise TargetError(prefix or "<empty prefix>", "an account prefix is letters, digits and '-' (e.g. a1b2c3d4e5f6g7)")
    if not region or not re.fullmatch(r"[a-z0-9-]+", region.strip()):
        raise TargetError(region or "<empty region>", "a region looks like us-east-1")
    return _HOST_FORMS[etype].format(prefix=prefix, region=region.strip().lower())


def parse_port_spec(spec: str | int) -> tuple[int, tuple[str, ...]]:
    """Parse ``PORT`` or ``PORT/ALPN[,ALPN...]`` (e.g. ``443/x-amzn-mqtt-ca``) into (port, alpn protocols).

    Raises:
        TargetError: naming the spec when the port is not a number in 1..65535.
    """
    text = str(spec).strip()
    port_text, _, alpn_text = text.partition("/")
    try:
        port = int(port_text)
    except ValueError:
        raise TargetError(text, f"port {port_text!r} is not a number (expected PORT or PORT/ALPN)") from None
    if not 0 < port < 65536:
        raise TargetError(text, f"port {port} is outside 1..65535")
    alpn = tuple(p for p in (a.strip() for a in alpn_text.split(",")) if p)
    return port, alpn


def _endpoint_targets(host: str, etype: EndpointType, region: str, ports: Sequence[str | int] | None) -> list[Target]:
    specs = DEFAULT_PORTS.get(etype, HTTPS_PORTS) if ports is None else ports
    out = []
    for spec in specs:
        port, alpn = parse_port_spec(spec)
        out.append(Target(host=host, port=port, alpn=alpn, region=region, endpoint_type=etype))
    return out


def targets_from_prefix(
    prefix: str,
    regions: Iterable[str],
    endpoint_types: Iterable[EndpointType | str] = (EndpointType.DATA_ATS,),
    ports: Sequence[str | int] | None = None,
    *,
    prefixes: Mapping[EndpointType | str, str] | None = None,
) -> list[Target]:
    """Targets for an account prefix x regions x endpoint types x ports.

    Args:
        prefix: Account identifier of the data endpoints (``a1b2c3d4e5f6g7`` or ``a1b2c3d4e5f6g7-ats``).
        regions: AWS regions.
        endpoint_types: Endpoint types to include (default: ``iot:Data-ATS`` only).
        ports: ``PORT`` or ``PORT/ALPN`` specs applied to every type; default per type:
            :data:`DATA_PORTS` for data endpoints, :data:`HTTPS_PORTS` otherwise.
        prefixes: Identifiers of endpoint types that have their own
            (``iot:CredentialProvider``, ``iot:Jobs``); default ``prefix``.

    Returns:
        One target per region x type x port, in that nesting order, without duplicates.

    Raises:
        TargetError: for an empty region list, a bad prefix, region or port spec.
    """
    region_list = [r.strip() for r in regions if r and r.strip()]
    if not region_list:
        raise TargetError(prefix, "no regions given (e.g. --regions us-east-1,eu-west-1)")
    own = {EndpointType(k): v for k, v in (prefixes or {}).items()}
    out: list[Target] = []
    for region in region_list:
        for etype in (EndpointType(t) for t in endpoint_types):
            host = endpoint_host(etype, own.get(etype, prefix), region)
            out.extend(_endpoint_targets(host, etype, region, ports))
    return _unique(out)


def describe_endpoints(
    regions: Iterable[str],
    endpoint_types: Iterable[EndpointType | str] = (EndpointType.DATA_ATS,),
    ports: Sequence[str | int] | None = None,
    *,
    client_factory: Callable[[str], Any] | None = None,
) -> list[Target]:
    """Targets from ``aws iot describe-endpoint`` per region and endpoint type (needs boto3).

    Args:
        regions: AWS regions to ask.
        endpoint_types: ``--endpoint-type`` values to ask for.
        ports: As for :func:`targets_from_prefix`.
        client_factory: ``region -> boto3 IoT client``; default ``boto3.client("iot", region_name=region)``
            with the usual credential chain.  Tests pass clients wrapped in ``botocore.stub.Stubber``.

    Returns:
        One target per region x type x port.

    Raises:
        TargetError: when boto3 is missing, or naming the region and type whose call failed.
    """
    if client_factory is None:
        try:
            import boto3  # optional extra: pip install 'iotaudit[aws]'
        except ModuleNotFoundError as err:
            raise TargetError("describe-endpoint", "needs boto3: pip install 'iotaudit[aws]'") from err

        def client_factory(region: str) -> Any:
            return boto3.client("iot", region_name=region)

    try:
        from botocore.exceptions import BotoCoreError, ClientError
        aws_errors: tuple[type[BaseException], ...] = (BotoCoreError, ClientError)
    except ModuleNotFoundError:  # pragma: no cover - a custom factory without botocore
        aws_errors = ()
    out: list[Target] = []
    for region in (r.strip() for r in regions if r and r.strip()):
        client = client_factory(region)
        for etype in (EndpointType(t) for t in endpoint_types):
            try:
                answer = client.describe_endpoint(endpointType=etype.value)
                host = str(answer["endpointAddress"]).strip()
            except (*aws_errors, KeyError, TypeError) as err:
                raise TargetError(f"describe-endpoint {etype.value} in {region}", f"AWS call failed ({err})") from err
            out.extend(_endpoint_targets(host, etype, region, ports))
    return _unique(out)


def _unique(targets: Iterable[Target]) -> list[Target]:
    return list(dict.fromkeys(targets))


_FILE_KEYS = ("alpn", "region", "type", "label")


def parse_targets_text(text: str, source: str = "<targets>") -> list[Target]:
    """Targets from a targets file's text; see :func:`read_targets_file` for the format.

    Raises:
        TargetError: naming ``source``, the line number and the rule broken.
    """
    out: list[Target] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, line {number}"
        spec, *tokens = line.split()
        fields: dict[str, Any] = {}
        for token in tokens:
            key, eq, value = token.partition("=")
            key = key.lower()
            if not eq or key not in _FILE_KEYS:
                raise TargetError(where, f"unknown token {token!r}; expected KEY=VALUE with KEY in {', '.join(_FILE_KEYS)}")
            if key in fields or (key == "type" and "endpoint_type" in fields):
                raise TargetError(where, f"{key}= given twice")
            if key == "alpn":
                fields["alpn"] = tuple(p for p in value.split(",") if p)
            elif key == "type":
                try:
                    fields["endpoint_type"] = EndpointType(value)
                except ValueError:
                    known = ", ".join(t.value for t in EndpointType)
                    raise TargetError(where, f"unknown endpoint type {value!r}; known: {known}") from None
            else:
                fields[key] = value
        try:
            out.append(parse_target(spec, **fields))
        except TargetError as err:
            raise TargetError(where, f"{err.reason} (in {spec!r})") from err
    return out


def read_targets_file(path: str | Path) -> list[Target]:
    """Targets from a file of lines ``HOST:PORT[@ADDRESS] [alpn=P,...] [region=R] [type=T] [label=L]``.

    ``#`` starts a comment; blank lines are ignored.  Region and endpoint type
    are inferred from AWS IoT host names when not given.  Example::

        # ATS endpoint, MQTT and MQTT-over-443
        a1b2c3-ats.iot.us-east-1.amazonaws.com:8883
        a1b2c3-ats.iot.us-east-1.amazonaws.com:443 alpn=x-amzn-mqtt-ca
        staging.example.com:8443@10.0.0.7 label=staging

    Raises:
        TargetError: naming the file and line, when the file cannot be read or a line is malformed.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TargetError(str(path), f"cannot read targets file ({err})") from err
    return parse_targets_text(text, str(path))


@dataclass(frozen=True, slots=True)
class LabPorts:
    """What the loopback lab's ports file (``lab.json``, format ``iotaudit-lab/1``) says.

    Attributes:
        path: The ports file.
        targets: One target per lab endpoint.
        catalog_dir: The lab's catalogue directory (lab roots under the AWS entry names).
        client_certificate: PEM file of a client certificate the lab's mTLS endpoints accept, or None.
        client_key: Its private key, or None.
        served: ``(host, port) -> {"rsa": [sha256, ...], "ec": [...]}``: what the lab serves, in order.
    """

    path: Path
    targets: tuple[Target, ...]
    catalog_dir: Path | None = None
    client_certificate: Path | None = None
    client_key: Path | None = None
    served: Mapping[tuple[str, int], Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))


LAB_FORMAT = "iotaudit-lab/1"


def read_lab_ports(path: str | Path) -> LabPorts:
    """Read the lab's ports file (see ``docs/ARCHITECTURE.md``, "Lab ports file").

    Relative paths in the file are taken relative to the file's directory.

    Raises:
        TargetError: naming the file (and the entry) when it is unreadable or malformed.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TargetError(str(path), f"cannot read lab ports file ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != LAB_FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise TargetError(str(path), f"not a lab ports file: format {got!r}, expected {LAB_FORMAT!r}")

    def where(value: Any) -> Path | None:
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else path.parent / p

    targets, served = [], {}
    entries = doc.get("targets")
    if not isinstance(entries, list):
        raise TargetError(str(path), "'targets' must be a list")
    for index, entry in enumerate(entries):
        try:
            target = Target(
                host=entry["host"], port=int(entry["port"]), address=entry.get("address", ""),
                alpn=tuple(entry.get("alpn") or ()), region=entry.get("region", ""),
                endpoint_type=entry.get("endpoint_type", EndpointType.OTHER), label=entry.get("label", ""),
            )
            served[(target.host, target.port)] = {k: tuple(v) for k, v in (entry.get("served") or {}).items()}
        except (KeyError, TypeError, ValueError) as err:
            reason = err.reason if isinstance(err, TargetError) else f"{type(err).__name__}: {err}"
            raise TargetError(f"{path}, targets[{index}]", f"bad lab entry ({reason})") from err
        targets.append(target)
    return LabPorts(
        path=path, targets=tuple(targets), catalog_dir=where(doc.get("catalog_dir")),
        client_certificate=where(doc.get("client_certificate")), client_key=where(doc.get("client_key")),
        served=served,
    )


def targets_from_lab(path: str | Path) -> list[Target]:
    """Targets of every endpoint in the lab's ports file; see :func:`read_lab_ports`."""
    return list(read_lab_ports(path).targets)
