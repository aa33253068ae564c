import sys
from pathlib import Path

import pytest

# Test helpers (factories, crd_schema) are plain modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

import crd_schema  # noqa: E402
from watching import remote  # noqa: E402,F401 - the bare-remote fixture, for every test module
from chatting import chat_app, gateway, upstream  # noqa: E402,F401 - chat fixtures (LiteLLM proxy, fake model)


def pytest_configure(config: pytest.Config) -> None:
    problem = crd_schema.problem()
    if problem:
        raise pytest.UsageError(problem)


def pytest_report_header() -> str:
    return f"agent-sandbox CRDs: {crd_schema.CRD_DIR or 'not found; tests marked crds are skipped'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not crd_schema.available():
        skip = pytest.mark.skip(reason=crd_schema.MISSING)
        for item in items:
            if item.get_closest_marker("crds"):
                item.add_marker(skip)
