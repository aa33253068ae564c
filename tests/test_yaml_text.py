"""The plan's YAML writer writes what PyYAML writes, byte for byte, and writes the rendered objects itself."""
from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import diffs
from reconciler.config import Settings
from reconciler.engine import read_revision, render_revision
from reconciler.yaml_text import YamlText

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pipeline import generate  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Strings PyYAML quotes, folds or writes in a style of its own, beside ordinary ones.
AWKWARD = ["", " ", "1", "0.5", "1e3", "yes", "No", "null", "~", "-", "- x", "a: b", "a #b", "#x", "key:",
           ":x", "'q'", '"q"', "*ref", "&anchor", "!tag", "%x", "@x", "`x", "{a}", "[a]", "a,b", "2026-01-01",
           "0x1F", "0o17", ".inf", ".nan", "<<", "=", "---", "...", "tab\there", "über", "日本", "e\u0301",
           "\x85", "\u2028", "\r", "\ufeff", "trailing ", " leading", "x" * 90, "word " * 20,
           "a\nb", "a\nb\n", "a\n\nb\n", "a\n\n", "\n", "\na", " a\nb", "a \nb", "a\nb ", "a\n b", "a\tb\nc",
           "über\nzwei", "line\n" * 30, "agent-7", "ghcr.io/acme/harness:1.0", "250m", "512Mi", "true", "off"]
ascii_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
scalars = st.one_of(st.sampled_from(AWKWARD), ascii_text, st.text(max_size=40), st.integers(), st.booleans(), st.none(),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(alphabet="ab \n:#-'\"", max_size=30))
keys = st.one_of(ascii_text, ascii_text, st.sampled_from(AWKWARD), st.text(max_size=20),
                 st.text(alphabet="k", min_size=118, max_size=132))
records = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(keys, inner, max_size=4)),
                       max_leaves=30)


@settings(max_examples=600, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, records, max_size=6))
def test_any_record_is_written_as_pyyaml_writes_it(record):
    assert diffs.to_yaml(record) == diffs._pyyaml_all([record])


# What rendered objects hold: short ASCII keys, one-line strings of every kind, literal blocks, numbers.
blocks = st.lists(st.text(alphabet="abc :#{}\"'-", max_size=12), min_size=2, max_size=5).map("\n".join)
plainer = st.recursive(
    st.one_of(ascii_text, st.sampled_from([a for a in AWKWARD if a.isascii()]), blocks, st.integers(),
              st.floats(), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ascii_text, inner, max_size=4)),
    max_leaves=30)


@settings(max_examples=600, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(ascii_text, plainer, max_size=6))
def test_records_of_ascii_keys_are_written_as_pyyaml_writes_them(record):
    assert diffs.to_yaml(record) == diffs._pyyaml_all([record])


@pytest.mark.parametrize("record", [
    {"a": {"b": [{"c": "x\ny\n", "d": ["p", "q", [1, 2.5, None, True]], "e": {}}, [], "z"]}},
    {"prompt": "one\n\ntwo", "list": ["- x", "a: b", ["first\nsecond\n"]]},
    {"deep": {"deeper": {"deepest": "word " * 12}}},  # a long string that PyYAML folds
    {"k" * 129: 1},  # no simple key
    {1: "not a string key"},
    {"zero": 0.0, "negative zero": -0.0},  # equal as numbers, written apart
    {"a": {"b": "x\u2028y"}},  # a quoted line break, followed by its place's indentation
])
def test_nested_and_awkward_records_are_written_as_pyyaml_writes_them(record):
    assert diffs.to_yaml(record) == diffs._pyyaml_all([record])


def _rendered(root: Path, tmp_path: Path) -> list[dict]:
    settings_ = Settings(path=str(root), work_tree=True, database=str(tmp_path / "state.db"), environ={})
    desired, _ = render_revision(read_revision(settings_), settings_, salt="s",
                                 clock=lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
    return [d.record for d in desired]


def test_the_rendered_objects_take_the_fast_path_and_read_the_same(tmp_path):
    generated = tmp_path / "generated"
    generated.mkdir()
    generate(generated, 30)
    records = _rendered(EXAMPLES, tmp_path) + _rendered(generated, tmp_path)
    assert {r["kind"] for r in records} >= {"ConfigMap", "SandboxTemplate", "Sandbox"}
    def left_to_pyyaml(left: list) -> str:
        raise AssertionError(f"left to PyYAML: {[r['metadata'] for r in left]}")

    # The same writer as the plan's, with no way back to PyYAML: every rendered object takes the fast path.
    fast_only = YamlText(left_to_pyyaml, diffs._one_line_form)
    for record in records:
        assert fast_only.dump(record) == diffs._pyyaml_all([record])
    assert fast_only.dump_all(records) == diffs.to_yaml_documents(records) == diffs._pyyaml_all(records)


@settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(keys, records, max_size=3), max_size=4))
def test_documents_are_written_as_pyyaml_writes_them(documents):
    assert diffs.to_yaml_documents(documents) == diffs._pyyaml_all(documents)
