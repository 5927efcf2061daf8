"""The project's own files: environment.yml agrees with pyproject.toml, the CLI answers --help."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return {_name(r): r.replace(" ", "") for r in reqs}


def _conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = [d for d in env["dependencies"] if isinstance(d, str)]
    return {_name(r): r.replace(" ", "") for r in reqs if _name(r) not in {"python", "pip"}}


def test_environment_yml_names_the_same_packages_as_pyproject() -> None:
    assert set(_conda_requirements()) == set(_pyproject_requirements())


def test_environment_yml_pins_the_same_lower_bounds_as_pyproject() -> None:
    conda, pip = _conda_requirements(), _pyproject_requirements()
    mismatched = {name: (conda[name], pip[name]) for name in conda if conda[name] != pip.get(name)}
    assert mismatched == {}


def test_environment_yml_requires_the_same_python_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python{project['requires-python']}" in env["dependencies"]


def test_readme_quick_start_is_make_demo_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in quick.splitlines() if line.strip().startswith("make ")]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_cli_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "iotaudit", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("collect", "import", "show", "audit", "report", "drift", "lab"):
        assert re.search(rf"^\s+{command}\b", out, re.MULTILINE), f"{command} missing from --help"


def test_cli_without_command_prints_help_and_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "iotaudit"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: iotaudit" in proc.stdout


def test_every_column_of_every_table_is_documented() -> None:
    from iotaudit import columns as c

    documented = set(re.findall(r"^\| `([a-z0-9_]+)`", (ROOT / "docs" / "columns.md").read_text(), re.MULTILINE))
    tables = [c.OBSERVATION_DTYPES, c.CHAIN_DTYPES, c.CERTIFICATE_DTYPES, c.COVERAGE_DTYPES, c.ROOTS_TO_ADD_DTYPES,
              c.FLEET_DTYPES, c.PROFILE_VERDICT_DTYPES, c.CERTIFICATE_EXPIRY_COLUMNS, c.CHAIN_BREAK_COLUMNS,
              c.BREAK_DATE_COLUMNS, c.ANCHOR_EXPIRY_COLUMNS, c.CLIFF_COLUMNS, c.PIN_RISK_COLUMNS,
              c.RANKED_RISK_COLUMNS, c.STACK_ALTERNATIVES_DTYPES, c.CROSSCHECK_DTYPES,
              c.FIRMWARE_NOTES_DTYPES]
    columns = {name for table in tables for name in table}
    assert columns - documented == set()
