"""Shared fixtures: one loopback lab and one collected lab run per test session.

Owned by the integrator; module-specific fixtures live in the test module that uses them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator["object"]:
    """A running loopback lab (iotaudit.lab.Lab) with the default regions and the hostile cases."""
    from iotaudit.lab import Lab

    with Lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture(scope="session")
def lab_run(lab, tmp_path_factory: pytest.TempPathFactory):  # -> iotaudit.store.Run
    """The lab collected once with iotaudit.collect (iotaudit/collection.py) and written to (and loaded back from) a run directory."""
    from iotaudit.collection import collect
    from iotaudit.store import load_run, write_run

    run = collect(lab.targets, timeout=2.0, progress=False, catalog=lab.catalog)
    path: Path = tmp_path_factory.mktemp("runs") / "lab"
    write_run(run, path)
    return load_run(path)


# Fixtures that execute the report notebooks (papermill kernels): every test using one is slow.
SLOW_FIXTURES = frozenset({"rendered", "report_set"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that renders reports through a fixture (``make test-fast`` leaves them out)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under CI (``CI=true``) a skipped test is a failure: every real library, Chromium and binutils must be there.

    Locally a test skips and its reason names the package to install; in CI that same skip means
    ``.ci/run`` failed to install something, and a suite that silently skipped its proof would pass.
    """
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI") == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip: {reason}"
