import os
import sys
import time
from pathlib import Path

import pytest

# Test helpers (factories, crd_schema) are plain modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

import crd_schema  # noqa: E402
import outside_reads  # noqa: E402

# Installed before any test module is imported, so reads at import time are seen too. Besides the CRDs,
# the folder of the real cluster's kubeconfig (RECONCILER_TEST_KUBECONFIG) is the tests' own setting.
_KUBECONFIG = os.environ.get("RECONCILER_TEST_KUBECONFIG")
READS = outside_reads.install(Path(__file__).resolve().parents[1],
                              [crd_schema.CRD_DIR, Path(_KUBECONFIG).resolve().parent if _KUBECONFIG else None])

from watching import remote  # noqa: E402,F401 - the bare-remote fixture, for every test module
from chatting import catalog_gateway, chat_app, gateway, upstream  # noqa: E402,F401 - LiteLLM proxies, fake model

AUDIT = "test_isolation.py::test_no_test_opens_a_path_outside_the_checkout"
ARTIFACTS = Path(__file__).parent / "artifacts"  # what tests keep for people to look at (not in Git)
STARTED = time.time()


def pytest_configure(config: pytest.Config) -> None:
    problem = crd_schema.problem()
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header() -> str:
    return f"agent-sandbox CRDs: {crd_schema.CRD_DIR or 'not found; tests marked crds are skipped'}"


def pytest_collectstart(collector: pytest.Collector) -> None:
    READS.current = f"collecting {collector.nodeid or 'the session'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not crd_schema.available():
        skip = pytest.mark.skip(reason=crd_schema.MISSING)
        for item in items:
            if item.get_closest_marker("crds"):
                item.add_marker(skip)
    # The audit judges every other test, so it runs last.
    items.sort(key=lambda item: item.nodeid.endswith(AUDIT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    READS.current = item.nodeid
    try:
        return (yield)
    finally:
        READS.current = f"after {item.nodeid}"


@pytest.fixture(scope="session", autouse=True)
def _pytest_temp_is_inside(tmp_path_factory: pytest.TempPathFactory) -> None:
    READS.allow(tmp_path_factory.getbasetemp(), above=True)  # wherever --basetemp puts it


def pytest_sessionfinish(session: pytest.Session) -> None:
    # What the audit did not see (it was not selected, -x stopped before it, or a teardown came after it)
    # still fails the run.
    if set(READS.found) - READS.reported and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The browser tests keep a screenshot of each page they visit (test_console_browser.py).
    shots = ARTIFACTS / "console"
    taken = [p for p in shots.glob("*.png") if p.stat().st_mtime >= STARTED] if shots.is_dir() else []
    if taken:
        terminalreporter.write_line(f"console screenshots ({len(taken)}): {shots}")
    unreported = set(READS.found) - READS.reported
    if unreported:
        terminalreporter.section("paths outside the checkout", red=True)
        terminalreporter.line(READS.report(unreported))
