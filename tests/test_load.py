from __future__ import annotations

from reconciler.spec.load import LoadLimits, load_file, pointer_from_path, pointer_join

AGENT = b"""apiVersion: agent-reconciler/v1alpha1
kind: Agent
metadata:
  name: triage
  labels: {team: support, "a/b": x}
spec:
  model: gpt-4o-mini
  env:
    - name: LOG_LEVEL
      value: info
    - name: TOKEN
      valueFrom: {secretKeyRef: {name: github, key: token}}
"""


def test_positions_of_keys_items_and_flow_mappings():
    [doc], problems = load_file("a.yaml", AGENT)
    assert problems == []
    assert doc.position("") == (1, 1)
    assert doc.position("/spec/model") == (7, 3)
    assert doc.position("/spec/env/1") == (11, 7)
    assert doc.position("/spec/env/1/valueFrom/secretKeyRef/key") == (12, 48)
    assert doc.position("/metadata/labels/a~1b") == (5, 27)
    # A missing field reports at its deepest present parent.
    assert doc.position("/spec/resources/limits") == (6, 1)
    assert doc.position("/spec/env/7") == (8, 3)


def test_pointer_escaping():
    assert pointer_join("/a", "x/y~z") == "/a/x~1y~0z"
    assert pointer_from_path(["spec", "env", 0, "name"]) == "/spec/env/0/name"


def test_multi_document_files_keep_index_and_line():
    data = b"---\n" + AGENT + b"---\n---\n" + AGENT
    docs, problems = load_file("a.yaml", data)
    assert problems == []
    assert [(d.index, d.line) for d in docs] == [(0, 2), (2, 16)]
    assert docs[1].position("/spec/model") == (22, 3)


def test_merge_keys_and_aliases():
    data = b"base: &base {image: x, model: m}\nagent:\n  <<: *base\n  model: own\nlist: &l [1, 2]\ncopy: *l\n"
    [doc], problems = load_file("a.yaml", data)
    assert problems == []
    assert doc.data["agent"] == {"image": "x", "model": "own"}
    assert doc.data["copy"] == [1, 2]


def test_duplicate_keys_name_both_lines():
    docs, problems = load_file("a.yaml", b"spec:\n  model: a\n  image: b\n  model: c\n")
    assert [str(p) for p in problems] == [
        'a.yaml:4:3: /spec/model: duplicate key "model" (first at line 2) (remove one of them)']
    assert docs[0].data == {"spec": {"model": "a", "image": "b"}}


def test_non_string_keys():
    _, problems = load_file("a.yaml", b"labels:\n  1: one\n  true: yes\n")
    assert [(p.line, p.column, p.message) for p in problems] == [
        (2, 3, "mapping keys must be strings, not 1"), (3, 3, "mapping keys must be strings, not true")]


def test_tabs_get_their_own_hint():
    docs, problems = load_file("a.yaml", b"metadata:\n\tname: x\n")
    assert docs == []
    [problem] = problems
    assert (problem.line, problem.column, problem.hint) == (2, 1, "indent with spaces, not tabs")
    assert problem.message.startswith("invalid YAML: ")


def test_syntax_error_keeps_earlier_documents():
    docs, problems = load_file("a.yaml", AGENT + b"---\nkind: [Agent\n")
    assert len(docs) == 1
    [problem] = problems
    assert problem.line == 15 and problem.message.startswith("invalid YAML")
    assert "(while parsing a flow sequence at line 14)" in problem.message


def test_not_utf8_names_the_byte_and_place():
    _, problems = load_file("a.yaml", b"a: 1\nname: caf\xe9\n")
    assert [str(p) for p in problems] == [
        "a.yaml:2:10: /: not valid UTF-8 (byte 0xe9 at offset 14) (save the file as UTF-8)"]


def test_bom_is_accepted():
    [doc], problems = load_file("a.yaml", b"\xef\xbb\xbfa: 1\n")
    assert problems == [] and doc.data == {"a": 1}


def test_binary_file():
    _, problems = load_file("a.yaml", b"a: 1\n\x00\x01")
    assert [p.message for p in problems] == ["binary file (NUL byte at offset 5)"]


def test_size_limit_checked_before_parsing():
    _, problems = load_file("a.yaml", b"a: [" * 300, LoadLimits(max_file_bytes=1000))
    assert [p.message for p in problems] == ["file is 1200 bytes, over the limit of 1000 bytes"]


def test_too_many_documents_stops_at_the_first_extra_one():
    data = b"".join(b"---\na: %d\n" % i for i in range(10_000))
    docs, problems = load_file("a.yaml", data)
    assert len(docs) == 1000
    assert [(p.line, p.message) for p in problems] == [(2002, "more than 1000 documents in one file")]


def test_billion_laughs_is_refused_not_expanded():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    docs, problems = load_file("a.yaml", "\n".join(lines).encode())
    assert docs == []
    assert [p.message for p in problems] == ["document expands to more than 20000 nodes (YAML aliases)"]


def test_deep_nesting_is_refused():
    _, problems = load_file("a.yaml", b"a: " + b"[" * 200 + b"]" * 200)
    assert [p.message for p in problems] == ["document is nested more than 64 levels deep"]


def test_empty_and_comment_only_files():
    for data in (b"", b"   \n", b"# nothing\n# here\n", b"---\n---\n"):
        docs, problems = load_file("a.yaml", data)
        assert docs == [] and [p.message for p in problems] == ["file contains no YAML document"]


def test_trailing_separator_is_fine():
    docs, problems = load_file("a.yaml", AGENT + b"---\n")
    assert len(docs) == 1 and problems == []


def test_scalars_follow_yaml_1_1_and_timestamps_stay_text():
    [doc], problems = load_file("a.yaml", b"when: 2020-01-01\nok: yes\nn: 0x10\nf: 1.5\nz: ~\ns: '1'\ncustom: !x hi\n")
    assert problems == []
    assert doc.data == {"when": "2020-01-01", "ok": True, "n": 16, "f": 1.5, "z": None, "s": "1", "custom": "hi"}


def test_an_unquoted_on_key_is_a_boolean_in_yaml_1_1_and_refused():
    _, problems = load_file("a.yaml", b"on: push\n")
    assert [(p.message, p.hint) for p in problems] == [("mapping keys must be strings, not on", 'quote the key: "on"')]
