"""The tests need nothing beside the checkout: what a fresh clone lacks, they must not read."""
from __future__ import annotations

import uuid
from pathlib import Path

import outside_reads
import pytest

from outside_reads import OutsideReads

CHECKOUT = Path("/src/work/checkout")


@pytest.fixture
def reads() -> OutsideReads:
    return OutsideReads(CHECKOUT, inside=["/src/work/crds", "/py"], system=["/usr", "/tmp", "/src"])


def opened(reads: OutsideReads, *paths: object, event: str = "open") -> dict[str, set[str]]:
    reads.current = "tests/test_x.py::test_y"
    for path in paths:
        reads(event, (path, "r", 0))
    return reads.found


def test_the_checkout_the_crds_and_python_are_allowed(reads):
    assert opened(reads, CHECKOUT / "tests" / "a.py", "/src/work/crds/x.yaml", "/py/lib/os.py", "/usr/share/z",
                  b"/src/work/checkout/README.md", 3) == {}


def test_a_read_beside_the_checkout_is_found_with_its_test(reads):
    found = opened(reads, CHECKOUT / ".." / "shared" / "crds" / "a.yaml", "/src/work/checkout-old/x")
    assert found == {"/src/work/shared/crds/a.yaml": {"tests/test_x.py::test_y"},
                     "/src/work/checkout-old/x": {"tests/test_x.py::test_y"}}
    assert "/src/work/shared/crds/a.yaml  (by tests/test_x.py::test_y)" in reads.report()


def test_a_system_root_that_holds_the_checkout_does_not_excuse_its_neighbours(reads):
    # /src is allowed, but it holds the checkout: only what lies outside /src/work is excused.
    assert set(opened(reads, "/src/work/shared/a", "/src/other/b")) == {"/src/work/shared/a"}


def test_relative_paths_are_taken_from_the_working_folder(reads, monkeypatch):
    monkeypatch.chdir("/")
    assert set(opened(reads, "home/u/.kube/config")) == {"/home/u/.kube/config"}


def test_listing_a_folder_above_the_checkout_is_allowed_but_not_one_beside_it(reads):
    assert set(opened(reads, "/src/work", "/src", "/src/work/shared", event="os.scandir")) == {"/src/work/shared"}


def test_a_search_for_a_git_repository_may_probe_the_folders_above(reads):
    assert set(opened(reads, "/HEAD", "/src/commondir", "/src/work/.git", "/src/work/shared/HEAD",
                      "/src/work/notes")) == {"/src/work/shared/HEAD", "/src/work/notes"}


def test_sqlite_files_count_but_memory_databases_do_not(reads):
    assert set(opened(reads, ":memory:", "", "file:/home/u/state.db?mode=ro", "/home/u/.local/state/a.db",
                      event="sqlite3.connect")) == {"/home/u/state.db", "/home/u/.local/state/a.db"}


def test_a_checkout_right_in_a_system_root_leaves_its_neighbours_to_the_system():
    # A clone in /tmp itself: what is beside it is the system's temporary files (it cannot be told apart).
    reads = OutsideReads(Path("/tmp/clone"), inside=[], system=["/tmp"])
    assert opened(reads, "/tmp/osrcp-1.json", "/tmp/pytest-of-u/HEAD") == {}


def test_an_allowed_folder_may_be_searched_upwards(reads):
    reads.allow("/home/u/runs/pytest-3", above=True)
    assert set(opened(reads, "/home/u/runs/pytest-3/t/f", "/home/u/runs/HEAD", "/home/u/runs/notes")) == {
        "/home/u/runs/notes"}


def test_the_installed_hook_records_a_read_with_the_test_that_made_it(request):
    outside = f"/absent-{uuid.uuid4().hex}"  # outside the allowed folders wherever the checkout is
    with pytest.raises(FileNotFoundError):
        open(outside)  # noqa: SIM115 - the attempt is what is recorded
    try:
        assert outside_reads.ACTIVE.found[outside] == {request.node.nodeid}
    finally:
        outside_reads.ACTIVE.found.pop(outside, None)  # this test's own read is not a finding


def test_no_test_opens_a_path_outside_the_checkout():
    """Runs last (conftest orders it): fails listing every path opened outside the checkout, and by which test."""
    assert outside_reads.ACTIVE is not None
    if outside_reads.ACTIVE.found:
        pytest.fail(outside_reads.ACTIVE.report(), pytrace=False)
