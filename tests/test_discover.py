"""Discovery: host name forms, prefix expansion, describe-endpoint (stubbed), targets files, lab ports file."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from iotaudit.columns import EndpointType
from iotaudit.discover import (
    ALPN_MQTT,
    Target,
    describe_endpoints,
    endpoint_host,
    infer_endpoint_type,
    infer_region,
    parse_port_spec,
    parse_target,
    read_lab_ports,
    read_targets_file,
    targets_from_lab,
    targets_from_prefix,
)
from iotaudit.errors import TargetError


def test_parse_target_with_address_keeps_name_for_sni() -> None:
    t = parse_target("a1b2-ats.iot.eu-west-1.amazonaws.com:8883@127.0.0.1")
    assert (t.host, t.port, t.address) == ("a1b2-ats.iot.eu-west-1.amazonaws.com", 8883, "127.0.0.1")
    assert t.spec == "a1b2-ats.iot.eu-west-1.amazonaws.com:8883@127.0.0.1"


def test_parse_target_ipv6_literal() -> None:
    t = parse_target("[::1]:443")
    assert (t.host, t.port, t.address) == ("::1", 443, "::1")
    assert t.spec == "[::1]:443"


def test_region_and_type_inferred_from_aws_names() -> None:
    assert infer_region("a1b2-ats.iot.ap-southeast-2.amazonaws.com") == "ap-southeast-2"
    assert infer_region("c2sakl5huz0afv.credentials.iot.us-gov-west-1.amazonaws.com") == "us-gov-west-1"
    assert infer_region("example.com") == ""
    assert infer_endpoint_type("a1b2-ats.iot.us-east-1.amazonaws.com") is EndpointType.DATA_ATS
    assert infer_endpoint_type("a1b2.iot.us-east-1.amazonaws.com") is EndpointType.DATA
    assert infer_endpoint_type("x.credentials.iot.us-east-1.amazonaws.com") is EndpointType.CREDENTIAL_PROVIDER
    assert infer_endpoint_type("x.jobs.iot.us-east-1.amazonaws.com") is EndpointType.JOBS
    assert infer_endpoint_type("mqtt.example.com") is EndpointType.OTHER
    t = Target("a1b2-ats.iot.cn-north-1.amazonaws.com.cn", 8883)
    assert (t.region, t.endpoint_type) == ("cn-north-1", EndpointType.DATA_ATS)


def test_explicit_region_is_not_overridden() -> None:
    t = Target("a1b2-ats.iot.us-east-1.amazonaws.com", 443, region="lab-region", endpoint_type="iot:Data")
    assert (t.region, t.endpoint_type) == ("lab-region", EndpointType.DATA)


def test_endpoint_host_forms() -> None:
    assert endpoint_host("iot:Data-ATS", "a1b2c3", "us-east-1") == "a1b2c3-ats.iot.us-east-1.amazonaws.com"
    assert endpoint_host("iot:Data-ATS", "a1b2c3-ats", "us-east-1") == "a1b2c3-ats.iot.us-east-1.amazonaws.com"
    assert endpoint_host("iot:Data", "a1b2c3-ats", "us-east-1") == "a1b2c3.iot.us-east-1.amazonaws.com"
    assert endpoint_host("iot:CredentialProvider", "c2s", "eu-west-1") == "c2s.credentials.iot.eu-west-1.amazonaws.com"
    assert endpoint_host("iot:Jobs", "j9", "eu-west-1") == "j9.jobs.iot.eu-west-1.amazonaws.com"


def test_endpoint_host_rejects_bad_prefix() -> None:
    with pytest.raises(TargetError, match="account prefix"):
        endpoint_host("iot:Data-ATS", "has space", "us-east-1")


def test_endpoint_host_rejects_type_without_host_form() -> None:
    with pytest.raises(TargetError, match="no AWS IoT host name form"):
        endpoint_host("other", "a1b2", "us-east-1")


def test_port_spec_with_alpn() -> None:
    assert parse_port_spec("443/x-amzn-mqtt-ca") == (443, (ALPN_MQTT,))
    assert parse_port_spec(8883) == (8883, ())


def test_port_spec_rejects_non_number() -> None:
    with pytest.raises(TargetError, match="'mqtt' is not a number"):
        parse_port_spec("mqtt")


def test_prefix_expands_regions_types_ports() -> None:
    targets = targets_from_prefix("a1b2", ["us-east-1", "eu-west-1"], ["iot:Data-ATS", "iot:Data"])
    assert len(targets) == 2 * 2 * 4
    first = targets[:4]
    assert [(t.port, t.alpn) for t in first] == [(8883, ()), (443, (ALPN_MQTT,)), (443, ()), (8443, ())]
    assert {t.host for t in first} == {"a1b2-ats.iot.us-east-1.amazonaws.com"}
    assert all(t.region == "us-east-1" and t.endpoint_type is EndpointType.DATA_ATS for t in first)
    assert targets[4].host == "a1b2.iot.us-east-1.amazonaws.com"
    assert targets[-1].region == "eu-west-1"


def test_prefix_own_prefixes_for_credentials_and_jobs() -> None:
    targets = targets_from_prefix("a1b2", ["us-east-1"], ["iot:CredentialProvider", "iot:Jobs"],
                                  prefixes={"iot:CredentialProvider": "c2s", EndpointType.JOBS: "j9"})
    assert [(t.host, t.port) for t in targets] == [
        ("c2s.credentials.iot.us-east-1.amazonaws.com", 443), ("j9.jobs.iot.us-east-1.amazonaws.com", 443)]


def test_prefix_custom_ports() -> None:
    targets = targets_from_prefix("a1b2", ["us-east-1"], ports=["8883"])
    assert [(t.port, t.alpn) for t in targets] == [(8883, ())]


def test_prefix_without_regions_is_an_error() -> None:
    with pytest.raises(TargetError, match="no regions"):
        targets_from_prefix("a1b2", [])


def _stubbed_factory(responses: dict[tuple[str, str], dict | str]):
    """region -> real boto3 IoT client whose describe_endpoint answers come from a Stubber."""
    stubbers = []

    def factory(region: str):
        client = boto3.client("iot", region_name=region, aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        stubber = Stubber(client)
        for (r, etype), answer in responses.items():
            if r != region:
                continue
            if isinstance(answer, str):
                stubber.add_client_error("describe_endpoint", service_error_code=answer,
                                         expected_params={"endpointType": etype})
            else:
                stubber.add_response("describe_endpoint", answer, {"endpointType": etype})
        stubber.activate()
        stubbers.append(stubber)
        return client

    return factory, stubbers


def test_describe_endpoint_per_region_and_type() -> None:
    factory, stubbers = _stubbed_factory({
        ("us-east-1", "iot:Data-ATS"): {"endpointAddress": "abc123-ats.iot.us-east-1.amazonaws.com"},
        ("us-east-1", "iot:Data"): {"endpointAddress": "abc123.iot.us-east-1.amazonaws.com"},
        ("eu-west-1", "iot:Data-ATS"): {"endpointAddress": "abc123-ats.iot.eu-west-1.amazonaws.com"},
        ("eu-west-1", "iot:Data"): {"endpointAddress": "abc123.iot.eu-west-1.amazonaws.com"},
    })
    targets = describe_endpoints(["us-east-1", "eu-west-1"], ["iot:Data-ATS", "iot:Data"], ports=["8883"],
                                 client_factory=factory)
    for stubber in stubbers:
        stubber.assert_no_pending_responses()
    assert [(t.host, t.port, t.region, t.endpoint_type.value) for t in targets] == [
        ("abc123-ats.iot.us-east-1.amazonaws.com", 8883, "us-east-1", "iot:Data-ATS"),
        ("abc123.iot.us-east-1.amazonaws.com", 8883, "us-east-1", "iot:Data"),
        ("abc123-ats.iot.eu-west-1.amazonaws.com", 8883, "eu-west-1", "iot:Data-ATS"),
        ("abc123.iot.eu-west-1.amazonaws.com", 8883, "eu-west-1", "iot:Data"),
    ]


def test_describe_endpoint_failure_names_region_and_type() -> None:
    factory, _ = _stubbed_factory({("ap-south-1", "iot:Data-ATS"): "UnauthorizedException"})
    with pytest.raises(TargetError, match=r"describe-endpoint iot:Data-ATS in ap-south-1.*UnauthorizedException"):
        describe_endpoints(["ap-south-1"], client_factory=factory)


def _write(tmp_path: Path, text: str, name: str = "targets.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_targets_file_tokens_and_comments(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
# production
a1b2-ats.iot.us-east-1.amazonaws.com:8883          # MQTT
a1b2-ats.iot.us-east-1.amazonaws.com:443 alpn=x-amzn-mqtt-ca

staging.example.com:8443@10.0.0.7 region=eu-west-1 type=iot:Data-ATS label=staging
""")
    targets = read_targets_file(path)
    assert [t.spec for t in targets] == [
        "a1b2-ats.iot.us-east-1.amazonaws.com:8883",
        "a1b2-ats.iot.us-east-1.amazonaws.com:443",
        "staging.example.com:8443@10.0.0.7",
    ]
    assert targets[1].alpn == (ALPN_MQTT,)
    assert targets[0].region == "us-east-1"
    assert (targets[2].region, targets[2].endpoint_type, targets[2].label) == (
        "eu-west-1", EndpointType.DATA_ATS, "staging")


def test_targets_file_bad_port_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "# ok\nhost.example:8883\nhost.example:mqtt\n")
    with pytest.raises(TargetError, match=r"targets\.txt, line 3.*'mqtt' is not a number"):
        read_targets_file(path)


def test_targets_file_missing_port_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "host.example\n")
    with pytest.raises(TargetError, match=r"targets\.txt, line 1.*expected HOST:PORT"):
        read_targets_file(path)


def test_targets_file_unknown_token_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "\n\nhost.example:443 sni=other\n")
    with pytest.raises(TargetError, match=r"targets\.txt, line 3.*unknown token 'sni=other'"):
        read_targets_file(path)


def test_targets_file_unknown_endpoint_type(tmp_path: Path) -> None:
    path = _write(tmp_path, "host.example:443 type=iot:Nope\n")
    with pytest.raises(TargetError, match=r"line 1': unknown endpoint type 'iot:Nope'"):
        read_targets_file(path)


def test_targets_file_port_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path, "host.example:70000\n")
    with pytest.raises(TargetError, match=r"line 1.*outside 1\.\.65535"):
        read_targets_file(path)


def test_targets_file_missing(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"nope\.txt.*cannot read targets file"):
        read_targets_file(tmp_path / "nope.txt")


def _lab_doc(tmp_path: Path) -> dict:
    return {
        "format": "iotaudit-lab/1", "pid": 1, "catalog_dir": "catalog",
        "client_certificate": str(tmp_path / "client" / "cert.pem"), "client_key": "client/key.pem",
        "targets": [
            {"host": "lab-ats-dual-ats.iot.us-east-1.amazonaws.com", "port": 40123, "address": "127.0.0.1",
             "alpn": [], "region": "us-east-1", "endpoint_type": "iot:Data-ATS", "label": "ats-dual",
             "served": {"rsa": ["aa", "bb"], "ec": ["cc"]}},
            {"host": "lab-ats-alpn-ats.iot.us-east-1.amazonaws.com", "port": 40124, "address": "127.0.0.1",
             "alpn": [ALPN_MQTT], "region": "us-east-1", "endpoint_type": "iot:Data-ATS", "label": "ats-alpn",
             "served": {}},
        ],
    }


def test_lab_ports_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(_lab_doc(tmp_path)), encoding="utf-8")
    lab = read_lab_ports(path)
    assert [t.label for t in lab.targets] == ["ats-dual", "ats-alpn"]
    assert lab.targets[0].address == "127.0.0.1" and lab.targets[1].alpn == (ALPN_MQTT,)
    assert lab.catalog_dir == tmp_path / "catalog"
    assert lab.client_certificate == tmp_path / "client" / "cert.pem"
    assert lab.client_key == tmp_path / "client" / "key.pem"
    assert lab.served[("lab-ats-dual-ats.iot.us-east-1.amazonaws.com", 40123)]["rsa"] == ("aa", "bb")
    assert targets_from_lab(path) == list(lab.targets)


def test_lab_ports_file_wrong_format(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    with pytest.raises(TargetError, match="not a lab ports file"):
        read_lab_ports(path)


def test_lab_ports_file_bad_entry_names_index(tmp_path: Path) -> None:
    doc = _lab_doc(tmp_path)
    del doc["targets"][1]["port"]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(TargetError, match=r"targets\[1\]"):
        read_lab_ports(path)


def test_running_lab_ports_file_matches_lab_targets(lab) -> None:
    assert targets_from_lab(lab.ports_file) == list(lab.targets)
