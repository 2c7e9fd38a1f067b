"""A pytest plugin (`-p no_skips`, as CTest runs the suites): with NIMBUS_TEST_NO_SKIP=1,
which `./stack test` sets, a skipped test is a failed one. A green run must mean that
every test ran; by hand, skips stay skips."""
import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("NIMBUS_TEST_NO_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and skips are failures here (NIMBUS_TEST_NO_SKIP=1): {reason}"
