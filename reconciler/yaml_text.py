"""The YAML text of a record (dicts, lists, strings, numbers, booleans, None) exactly as PyYAML's block
dumper in diffs.py writes it, several times faster: a plan's text of thousands of objects spent most of
its time in PyYAML's representer and resolver, node by node.

What this writer cannot be sure to write alike is left to PyYAML, for the whole record: a key that is not
a short string of printable ASCII, a multi-line string PyYAML would not write as a literal block, a line PyYAML
would fold at its width, a type other than those above. A string's form (plain or quoted) is PyYAML's
own answer for that string, asked once and kept, except for the plain words that can be nothing else.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

WIDTH = 80  # PyYAML's best width: a line past it may be folded at a space
LONGEST_KEY = 120  # from 128 characters on, a key is no simple key for libyaml (it writes "? key")
# Plain to YAML 1.1 and to PyYAML's emitter: a letter, then letters, digits and _ . / -, unless one of
# the words that would read back as a boolean or null.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*")
_NOT_STRINGS = frozenset("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF "
                         "null Null NULL".split())
# A literal block PyYAML writes as it stands: printable ASCII lines, none ending in a space, not starting
# with a space or a line break (those need an indentation indicator).
_BLOCK = re.compile(r"[^ \n][\x20-\x7e\n]*")
_OTHER_BREAKS = re.compile("[\x85\u2028\u2029]")
_FORMS_KEPT = 50_000


class _Unsure(Exception):
    """The record holds something PyYAML may write otherwise than this module would."""


class YamlText:
    """PyYAML's text of records. `pyyaml_dump_all(records)` is PyYAML's own (what is left to it); `probe(value)`
    PyYAML's one-line form of a scalar (as a list item), or None when it has none."""

    def __init__(self, pyyaml_dump_all: Callable[[list[Any]], str], probe: Callable[[Any], str | None]) -> None:
        self._pyyaml_dump_all, self._probe = pyyaml_dump_all, probe
        self._forms: dict[tuple[type, str], str | None] = {}
        self._lock = threading.Lock()

    def dump(self, record: Any) -> str:
        return self.dump_all([record])

    def dump_all(self, records: list[Any]) -> str:
        """Documents one after another; all of them by PyYAML when one of them is left to it (how a
        document ends may change how the next begins)."""
        try:
            return self._documents(records)
        except _Unsure:
            return self._pyyaml_dump_all(records)

    def _documents(self, records: list[Any]) -> str:
        out: list[str] = []
        for i, record in enumerate(records):
            if type(record) is not dict or not record:
                raise _Unsure
            if i:
                out.append("---\n")
            self._mapping(record, 0, out, first_line=False)
        return "".join(out)

    def _form(self, value: Any) -> str:
        kind = type(value)
        if kind is str:
            if _PLAIN.fullmatch(value) and value not in _NOT_STRINGS:
                return value
        elif kind is bool:
            return "true" if value else "false"
        elif kind is int:
            return str(value)
        elif value is None:
            return "null"
        elif kind is not float:
            raise _Unsure
        key = (kind, value if kind is str else repr(value))  # -0.0 == 0.0, yet PyYAML writes them apart
        form = self._forms.get(key, False)
        if form is False:
            form = self._probe(value)
            if form is not None and _OTHER_BREAKS.search(form):
                form = None  # a quoted line break, which PyYAML follows with the indentation of its place
            with self._lock:
                if len(self._forms) >= _FORMS_KEPT:
                    self._forms.clear()
                self._forms[key] = form
        if form is None:
            raise _Unsure
        return form  # type: ignore[return-value]

    def _scalar(self, value: Any, column: int, indent: int, out: list[str]) -> None:
        """A scalar after "key:" or "-", its first character at `column`; a literal block's lines at `indent`."""
        if type(value) is str and "\n" in value:
            if not _BLOCK.fullmatch(value) or " \n" in value or value.endswith(" "):
                raise _Unsure
            if not value.endswith("\n"):
                head = " |-\n"
            elif value.endswith("\n\n"):
                raise _Unsure  # kept trailing breaks ("|+") end PyYAML's document otherwise
            else:
                head, value = " |\n", value[:-1]
            out.append(head)
            pad = " " * indent
            out.extend(f"{pad}{line}\n" if line else "\n" for line in value.split("\n"))
            return
        form = self._form(value)
        if column + len(form) > WIDTH and (" " in form or form[:1] == '"'):
            raise _Unsure
        out.append(f" {form}\n")

    def _mapping(self, mapping: dict[Any, Any], indent: int, out: list[str], *, first_line: bool) -> None:
        """A non-empty mapping's items at `indent`; with first_line the first key follows a "- " already written."""
        pad = " " * indent
        for key, value in mapping.items():
            if type(key) is not str or not (key.isascii() and key.isprintable()) or len(key) > LONGEST_KEY:
                raise _Unsure
            key_form = self._form(key)
            if first_line:
                out.append(f"{key_form}:")
                first_line = False
            else:
                out.append(f"{pad}{key_form}:")
            self._value(value, indent + len(key_form) + 2, indent, out, in_mapping=True)

    def _sequence(self, items: list[Any], indent: int, out: list[str], *, first_line: bool) -> None:
        pad = " " * indent
        for item in items:
            out.append("-" if first_line else f"{pad}-")
            first_line = False
            self._value(item, indent + 2, indent, out, in_mapping=False)

    def _value(self, value: Any, column: int, indent: int, out: list[str], *, in_mapping: bool) -> None:
        """What follows "key:" (a mapping's item at `indent`) or "-" (a sequence's item at `indent`)."""
        kind = type(value)
        if kind is dict:
            if not value:
                out.append(" {}\n")
            elif in_mapping:
                out.append("\n")
                self._mapping(value, indent + 2, out, first_line=False)
            else:
                out.append(" ")
                self._mapping(value, indent + 2, out, first_line=True)
        elif kind is list:
            if not value:
                out.append(" []\n")
            elif in_mapping:  # PyYAML writes a mapping's sequences without indenting them
                out.append("\n")
                self._sequence(value, indent, out, first_line=False)
            else:
                out.append(" ")
                self._sequence(value, indent + 2, out, first_line=True)
        else:
            self._scalar(value, column, indent + 2, out)
