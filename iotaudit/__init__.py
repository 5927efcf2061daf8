"""iotaudit: can your AWS IoT fleet authenticate AWS IoT Core, today and on every date ahead?

The front door: everything a notebook, a script or a test needs is importable
from here; other names are private whatever their module.  Names load lazily
(PEP 562), so ``import iotaudit`` stays cheap for the CLI and the lab.

Pipeline, one module per step: discover -> collect / offline -> store ->
inventory -> profiles -> root_coverage, expiry, pinning (all asking paths, on each profile's stack)
-> auditing -> reports (plots, metrics, drift).  No module shares a name with a
function exported here (``import iotaudit.auditing`` leaves ``iotaudit.audit`` the function).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # certificates and the catalogue
    "load_pem_x509_certificates": "certs", "load_pem_file": "certs", "certificates_frame": "certs",
    "cert_sha256": "certs", "spki_sha256": "certs", "spki_pin": "certs",
    "Catalog": "catalog", "CatalogEntry": "catalog", "CatalogStatus": "catalog", "aws_catalog": "catalog",
    # 1 discover
    "Target": "discover", "parse_target": "discover", "targets_from_prefix": "discover",
    "describe_endpoints": "discover", "read_targets_file": "discover", "targets_from_lab": "discover",
    # 2 collect / import
    "probe": "collection", "ProbeResult": "collection", "collect": "collection", "summarize": "collection",
    "import_chains": "offline",
    # 3 store
    "Run": "store", "load_run": "store", "write_run": "store",
    # lab
    "Lab": "lab", "lab_catalog": "lab", "serve_in_background": "lab", "stop_lab": "lab",
    # 0 firmware scan (iotaudit.firmware, issue 8)
    "scan": "firmware", "ScanResult": "firmware", "write_scan": "firmware", "firmware_notes": "firmware",
    "write_esp_bundle": "firmware", "read_esp_bundle": "firmware", "read_findings": "firmware",
    "join_inventory": "fleetjoin", "ScanError": "errors",
    # 4 analyse
    "Inventory": "inventory", "load_inventory": "inventory", "load_profiles": "inventory", "Profile": "profiles",
    "Stack": "stacks", "STACKS": "stacks", "get_stack": "stacks",
    "PathBuilder": "columns", "PathVerdict": "paths", "PathEngine": "paths", "validate_chain": "paths",
    "anchor_label": "paths",
    "analyse_coverage": "root_coverage", "coverage": "root_coverage", "stack_alternatives": "root_coverage",
    "chain_break": "expiry", "break_dates": "expiry", "firmware_break": "expiry", "certificate_expiry": "expiry",
    "anchor_expiry": "expiry", "cliff": "expiry",
    "Pin": "pins", "parse_pin": "pins", "pin_risks": "pinning", "ranked_risks": "pinning",
    "AuditResult": "auditing", "audit": "auditing", "write_audit": "auditing", "load_audit": "auditing",
    "cross_check": "auditing",
    # 5 report
    "drift": "run_drift", "render_reports": "reports.orchestrator", "load_inputs": "reports.inputs", "write_metrics": "metrics", "render_metrics": "metrics",
    # enums and errors
    "Probe": "columns", "ProbeStatus": "columns", "KeyType": "columns", "EndpointType": "columns",
    "IotauditError": "errors", "PemError": "errors", "TargetError": "errors", "RunError": "errors",
    "CatalogError": "errors", "InventoryError": "errors", "LabError": "errors", "ReportError": "errors",
}
_RENAMED = {"stop_lab": "stop"}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'iotaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"iotaudit.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
