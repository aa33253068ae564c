"""Spec files of one revision -> validated AgentSpecs, or every problem found. Pure."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.agent_config import CONFIG_MAP_LIMIT, config_data, config_size, spec_dict
from reconciler.errors import FileRefError, Problem
from reconciler.spec.agent_test import AgentTest, cross_check, is_agent_test, parse_agent_test
from reconciler.spec.load import Document, LoadLimits, load_file, pointer_from_path
from reconciler.spec.model import AgentSpec, Origin, agent_from_document
from reconciler.spec.rules import CREDENTIAL_HINT, check_agent, find_credential
from reconciler.spec.schema import schema_errors


class SpecInput(Protocol):
    """A spec file: `path` relative to the source root, `data` its bytes, `blob_id` (or None) their hash."""

    @property
    def path(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def blob_id(self) -> str | None: ...


@dataclass(frozen=True)
class SpecText:
    """A SpecInput held in memory."""

    path: str
    data: bytes
    blob_id: str | None = None


# A document of the source, validated: an Agent or an AgentTest.
Parsed = AgentSpec | AgentTest

@dataclass
class ParseCache:
    """Parsed files kept between runs (the watch loop), keyed by path and blob id.

    Only files that parsed cleanly and read no other file (no systemPromptFile) are kept: their
    result depends on nothing but their bytes and the settings in the key.
    """

    entries: dict[tuple[Any, ...], tuple[list[tuple[Parsed, Document]], int]] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def held(self) -> set[tuple[str, str | None]]:
        """(path, blob id) of every file whose parse is kept (under some settings): they need no reading."""
        return {(key[0], key[1]) for key in self.entries}

# read_file(path written in the spec, relative_to=spec path) -> bytes; raises FileRefError
FileReader = Callable[..., bytes]
# source-relative path -> path as shown to people
Display = Callable[[str], str]


@dataclass(frozen=True)
class ParsedRevision:
    agents: tuple[AgentSpec, ...]
    problems: tuple[Problem, ...]
    documents: int
    tests: tuple[AgentTest, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_revision(files: Sequence[SpecInput], *, read_file: FileReader, display: Display,
                   default_namespace: str, limits: LoadLimits = LoadLimits(),
                   cache: ParseCache | None = None) -> ParsedRevision:
    """Load, schema-check and rule-check every document; collect all problems, not just the first."""
    parsed: list[tuple[Parsed, Document]] = []
    problems: list[Problem] = []
    documents = 0
    kept: dict[tuple[Any, ...], tuple[list[tuple[Parsed, Document]], int]] = {}
    for spec in files:
        path, shown = spec.path, display(spec.path)
        key = (path, spec.blob_id, shown, default_namespace, limits)
        if cache is not None and spec.blob_id is not None and key in cache.entries:
            cache.hits += 1
            file_agents, count = kept[key] = cache.entries[key]
            parsed.extend(file_agents)
            documents += count
            continue
        docs, load_problems = load_file(shown, spec.data, limits)
        file_problems = list(load_problems)
        file_agents: list[tuple[Parsed, Document]] = []
        for doc in docs:
            agent: Parsed | None
            if is_agent_test(doc.data):
                agent, found = parse_agent_test(doc, path, default_namespace=default_namespace)
            else:
                agent, found = _parse_document(doc, path, read_file=read_file, default_namespace=default_namespace)
            file_problems.extend(found)
            if agent is not None:
                # Only its place is needed from here on (positions of cross-file problems), and the parse
                # cache keeps it for every file: the parsed data would be a second copy of the agent.
                file_agents.append((agent, dataclasses.replace(doc, data=None)))
        problems.extend(file_problems)
        parsed.extend(file_agents)
        documents += len(docs)
        if cache is not None:
            cache.misses += 1
            if spec.blob_id is not None and not file_problems and not any(
                    isinstance(a, AgentSpec) and a.system_prompt_file for a, _ in file_agents):
                kept[key] = (file_agents, len(docs))
    if cache is not None:
        cache.entries = kept  # only this revision's files: the cache never outgrows the source
    declared = [(a, doc) for a, doc in parsed if isinstance(a, AgentSpec)]
    tests = [(t, doc) for t, doc in parsed if isinstance(t, AgentTest)]
    problems.extend(_duplicates(declared))
    problems.extend(cross_check(tests, {a.key for a, _ in declared}))
    agents = sorted((agent for agent, _ in declared), key=lambda a: (a.namespace, a.name))
    ordered = sorted((test for test, _ in tests), key=lambda t: (t.namespace, t.name))
    return ParsedRevision(tuple(agents), tuple(sorted(set(problems))), documents, tuple(ordered))


def _parse_document(doc: Document, path: str, *, read_file: FileReader,
                    default_namespace: str) -> tuple[AgentSpec | None, list[Problem]]:
    def problem(pointer: str, message: str, hint: str) -> Problem:
        line, column = doc.position(pointer)
        return Problem(doc.file, line, column, pointer, message, hint)

    problems = [problem(pointer_from_path(p), m, h) for p, m, h in schema_errors(doc.data)]
    if problems:
        return None, problems
    problems = [problem(f.pointer, f.message, f.hint) for f in check_agent(doc.data)]
    spec = doc.data["spec"]
    prompt = spec.get("systemPrompt", "")
    if "systemPromptFile" in spec:
        prompt, found = _read_prompt(spec["systemPromptFile"], path, read_file)
        problems.extend(problem("/spec/systemPromptFile", m, h) for m, h in found)
    if problems:
        return None, problems
    origin = Origin(path=path, file=doc.file, line=doc.line, column=doc.column)
    agent = agent_from_document(doc.data, origin=origin, default_namespace=default_namespace, system_prompt=prompt)
    size = config_size(config_data(spec_dict(agent)))
    if size > CONFIG_MAP_LIMIT:
        # The ConfigMap that carries the agent into its sandbox would be refused by the API server.
        field = "/spec/systemPromptFile" if "systemPromptFile" in spec else "/spec/systemPrompt"
        return None, [problem(field, f"the agent's definition and prompt take {size:,} bytes, more than the "
                                     f"{CONFIG_MAP_LIMIT:,} a ConfigMap can hold (the prompt is "
                                     f"{len(prompt.encode()):,} bytes)", "shorten the prompt")]
    return agent, []


def _read_prompt(name: str, spec_path: str, read_file: FileReader) -> tuple[str, list[tuple[str, str]]]:
    try:
        data = read_file(name, relative_to=spec_path)
    except FileRefError as error:
        return "", [(f"systemPromptFile {name!r}: {error.reason}", error.hint or "fix the path")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return "", [(f"systemPromptFile {name!r} is not valid UTF-8 (byte offset {error.start})",
                     "save the prompt file as UTF-8")]
    if "\x00" in text:
        return "", [(f"systemPromptFile {name!r} is a binary file", "point it at a text file")]
    what = find_credential(text)
    if what:
        return "", [(f"systemPromptFile {name!r} contains what looks like {what}", CREDENTIAL_HINT)]
    return text.removeprefix("\ufeff"), []


def _duplicates(parsed: list[tuple[AgentSpec, Document]]) -> list[Problem]:
    first: dict[str, Document] = {}
    problems = []
    for agent, doc in parsed:
        seen = first.setdefault(agent.key, doc)
        if seen is not doc:
            line, column = doc.position("/metadata/name")
            seen_line, _ = seen.position("/metadata/name")
            problems.append(Problem(
                doc.file, line, column, "/metadata/name",
                f'agent "{agent.key}" is also declared at {seen.file}:{seen_line}',
                "names are unique per namespace: rename or remove one of them"))
    return problems
