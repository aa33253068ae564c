"""YAML bytes -> documents that remember where every field was written. Pure: no I/O.

Values are plain JSON-compatible data. Positions are not stored per field (that would cost
more than the parse for large repositories): a document keeps its file's text and finds the
line and column of a JSON pointer again only when a problem must be reported.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.errors import Problem

try:
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml: same results, slower
    _BaseLoader = yaml.SafeLoader

# Plain scalars' tags, by text: keys and common values repeat across thousands of spec files.
_TAGS: dict[tuple[str, bool, bool], str] = {}
_TAGS_LIMIT, _TAGS_LONGEST = 20_000, 64


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader with the same tags, found faster: libyaml composes in C but asks Python for every
    node's tag, and the safe loader's regular expressions per scalar were a third of reading a spec."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is not ScalarNode:
            return super().resolve(kind, value, implicit)
        if len(value) > _TAGS_LONGEST:
            return super().resolve(kind, value, implicit)
        key = (value, implicit[0], implicit[1])
        tag = _TAGS.get(key)
        if tag is None:
            if len(_TAGS) >= _TAGS_LIMIT:
                _TAGS.clear()
            tag = _TAGS[key] = super().resolve(kind, value, implicit)
        return tag

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, MERGE = (_TAG + t for t in ("str", "int", "float", "bool", "null", "merge"))
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALARS = {
    INT: _CONSTRUCTOR.construct_yaml_int,
    FLOAT: _CONSTRUCTOR.construct_yaml_float,
    BOOL: _CONSTRUCTOR.construct_yaml_bool,
    NULL: _CONSTRUCTOR.construct_yaml_null,
}
MAX_DEPTH = 64


@dataclass(frozen=True)
class LoadLimits:
    max_file_bytes: int = 1_048_576
    max_documents: int = 1_000  # per file
    max_nodes: int = 20_000  # per document, counting every node an alias expands to


@dataclass(frozen=True)
class Document:
    """One YAML document: its data and where it stands in its file."""

    file: str
    index: int  # 0-based, counting empty documents too
    line: int  # 1-based start of the document's content
    column: int
    data: Any
    _text: str = field(repr=False, compare=False, default="")

    def position(self, pointer: str) -> tuple[int, int]:
        """(line, column) of the deepest part of `pointer` present in the document.

        A mapping member is placed at its key, a list item at the item, so a missing
        field reports at its parent.
        """
        node = _document_node(self._text, self.index)
        if node is None:
            return self.line, self.column
        best = (node.start_mark.line + 1, node.start_mark.column + 1)
        for token in _tokens(pointer):
            found = _child(node, token)
            if found is None:
                break
            key_node, node = found
            mark = (key_node or node).start_mark
            best = (mark.line + 1, mark.column + 1)
        return best


def pointer_join(base: str, token: str | int) -> str:
    """RFC 6901: `~` is written `~0` and `/` is written `~1`."""
    return f"{base}/{str(token).replace('~', '~0').replace('/', '~1')}"


def pointer_from_path(path: Iterable[str | int]) -> str:
    pointer = ""
    for token in path:
        pointer = pointer_join(pointer, token)
    return pointer


def _tokens(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _child(node: Node, token: str) -> tuple[Node | None, Node] | None:
    if isinstance(node, MappingNode):
        found = None
        for key, value in _merged_pairs(node):
            if isinstance(key, ScalarNode) and key.value == token:
                found = (key, value)  # the last one wins, as in the data
        return found
    if isinstance(node, SequenceNode) and token.isdigit() and int(token) < len(node.value):
        return None, node.value[int(token)]
    return None


def _merged_pairs(node: MappingNode) -> list[tuple[Node, Node]]:
    merged: list[tuple[Node, Node]] = []
    own: list[tuple[Node, Node]] = []
    for key, value in node.value:
        if key.tag == MERGE:
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged.extend(_merged_pairs(source))
        else:
            own.append((key, value))
    return merged + own


@lru_cache(maxsize=8)
def _document_node(text: str, index: int) -> Node | None:
    try:
        for i, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if i == index:
                return node
    except yaml.YAMLError:
        return None
    return None


class _TooLarge(Exception):
    pass


class _TooDeep(Exception):
    pass


@dataclass
class _Builder:
    """Turns one composed document into plain data, collecting problems on the way."""

    file: str
    max_nodes: int
    problems: list[Problem] = field(default_factory=list)
    nodes: int = 0
    # Path of the value being built: problems are rare, so it is joined into a pointer only for them.
    path: list[str | int] = field(default_factory=list)

    def value(self, node: Node, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise _TooLarge
        if depth > MAX_DEPTH:
            raise _TooDeep
        if isinstance(node, ScalarNode):
            tag = node.tag
            if tag == STR:
                return node.value
            construct = _SCALARS.get(tag)
            # Timestamps, binary and custom tags keep their text: the data stays JSON-compatible.
            return construct(node) if construct else node.value
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.path.append(index)
                items.append(self.value(item, depth + 1))
                self.path.pop()
            return items
        return self.mapping(node, depth)

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged.update(self._merge_sources(value_node, depth))
                continue
            key = self._key(key_node)
            if key is None:
                continue
            self.path.append(key)
            line = key_node.start_mark.line + 1
            if key in seen:
                self._problem(key_node, f'duplicate key "{key}" (first at line {seen[key]})', "remove one of them")
            else:
                seen[key] = line
                result[key] = self.value(value_node, depth + 1)
            self.path.pop()
        if merged:
            return {**merged, **result}
        return result

    def _merge_sources(self, node: Node, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[str, Any] = {}
        # In a list of merged mappings, earlier ones win.
        for source in reversed(sources):
            if not isinstance(source, MappingNode):
                self._problem(source, "a merge key (<<) needs a mapping or a list of mappings",
                              "merge an anchored mapping, as in <<: *defaults")
                continue
            merged.update(self.mapping(source, depth + 1))
        return merged

    def _key(self, node: Node) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == STR:
            return node.value
        shown = node.value if isinstance(node, ScalarNode) else "a " + ("list" if isinstance(node, SequenceNode)
                                                                           else "mapping")
        self._problem(node, f"mapping keys must be strings, not {shown!s}",
                      f'quote the key: "{shown}"' if isinstance(node, ScalarNode) else "use a plain text key")
        return None

    def _problem(self, node: Node, message: str, hint: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.file, mark.line + 1, mark.column + 1, pointer_from_path(self.path),
                                     message, hint))


def load_file(file: str, data: bytes, limits: LoadLimits = LoadLimits()) -> tuple[list[Document], list[Problem]]:
    """Every non-empty document of a YAML file, and every problem found. Never raises for bad input."""
    def only(line: int, column: int, message: str, hint: str) -> tuple[list[Document], list[Problem]]:
        return [], [Problem(file, line, column, "", message, hint)]

    if len(data) > limits.max_file_bytes:
        return only(1, 1, f"file is {len(data)} bytes, over the limit of {limits.max_file_bytes} bytes",
                    "split it into smaller files, or raise --max-file-size")
    nul = data.find(b"\x00")
    if nul >= 0:
        line, column = _line_column(data, nul)
        return only(line, column, f"binary file (NUL byte at offset {nul})",
                    "remove it from the source or list it in .reconcilerignore")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _line_column(data, error.start)
        return only(line, column, f"not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
                    "save the file as UTF-8")
    text = text.removeprefix("\ufeff")
    documents: list[Document] = []
    problems: list[Problem] = []
    index = -1
    try:
        for index, node in enumerate(_compose(text)):
            if index >= limits.max_documents:
                mark = node.start_mark
                problems.append(Problem(file, mark.line + 1, mark.column + 1, "",
                                        f"more than {limits.max_documents} documents in one file",
                                        "split the file"))
                break
            if isinstance(node, ScalarNode) and node.tag == NULL:
                continue
            builder = _Builder(file, limits.max_nodes)
            mark = node.start_mark
            try:
                value = builder.value(node)
            except _TooLarge:
                problems.append(Problem(file, mark.line + 1, mark.column + 1, "",
                                        f"document expands to more than {limits.max_nodes} nodes (YAML aliases)",
                                        "remove the anchors and aliases that multiply content"))
                continue
            except (_TooDeep, RecursionError):
                problems.append(Problem(file, mark.line + 1, mark.column + 1, "",
                                        f"document is nested more than {MAX_DEPTH} levels deep",
                                        "flatten the structure"))
                continue
            problems.extend(builder.problems)
            documents.append(Document(file, index, mark.line + 1, mark.column + 1, value, text))
    except yaml.MarkedYAMLError as error:
        problems.append(_syntax_problem(file, text, error))
    except yaml.YAMLError as error:  # unmarked: rare reader errors
        problems.append(Problem(file, 1, 1, "", f"invalid YAML: {error}", "check the file's syntax"))
    if not documents and not problems:
        problems.append(Problem(file, 1, 1, "", "file contains no YAML document",
                                "add an Agent document, or delete the file or list it in .reconcilerignore"))
    return documents, problems


def _compose(text: str) -> Iterator[Node]:
    # A null node stands for an empty document so that document indexes match the file.
    for node in yaml.compose_all(text, Loader=_Loader):
        yield node if node is not None else ScalarNode(NULL, "", _mark(), _mark())


def _mark() -> yaml.Mark:
    return yaml.Mark("", 0, 0, 0, None, None)


def _syntax_problem(file: str, text: str, error: yaml.MarkedYAMLError) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = error.problem or "syntax error"
    message = f"invalid YAML: {problem}"
    if error.context and error.context_mark and mark is not None and error.context_mark.line != mark.line:
        message += f" ({error.context} at line {error.context_mark.line + 1})"
    if "'\\t'" in problem or _char_at(text, line, column) == "\t":
        hint = "indent with spaces, not tabs"
    elif "found duplicate anchor" in problem or "undefined alias" in problem:
        hint = "define each anchor once, before its aliases"
    else:
        hint = "check indentation, quotes and brackets near this place"
    return Problem(file, line, column, "", message, hint)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n", line)
    return lines[line - 1][column - 1:column] if len(lines) >= line else ""


def _line_column(data: bytes, offset: int) -> tuple[int, int]:
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", "replace")) + 1
