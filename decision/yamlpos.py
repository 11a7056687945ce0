"""YAML that remembers where each value came from.

PyYAML's `load` forgets positions; its `compose` keeps them on nodes but hands
out raw parser nodes. This module turns the composed tree into small frozen
`Node`s carrying the 1-based line of every key and value, so a validator can
say `catalog.yaml:42: offers[3].value: ...` without knowing PyYAML.

Scalars follow the YAML 1.2 core schema rather than PyYAML's YAML 1.1
default: only true/false are booleans (country code `NO` stays a string) and
`21:00` is not the sexagesimal number 1260. Mapping keys are kept as their
source text, so `on:` is the key "on", not True. Duplicate keys are kept (the
caller decides how to report them); merge keys (`<<: *defaults`) are expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

__all__ = ["Entry", "Node", "YamlSyntaxError", "parse"]

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"


# libyaml's parser when PyYAML was built with it: ~15x faster on a catalog,
# which matters for hot reloads of a large file. Positions are the same.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CoreSchemaLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """SafeLoader with YAML 1.2 core-schema booleans and numbers."""


_CoreSchemaLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CoreSchemaLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# Decimal only: a leading zero ("0123") stays a string instead of becoming octal.
_CoreSchemaLoader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_CoreSchemaLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


class YamlSyntaxError(Exception):
    """The text is not YAML (or not a tree we can read). `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Entry:
    """One `key: value` pair of a mapping. `key` is None for a non-scalar key."""

    key: str | None
    key_line: int
    value: Node


@dataclass(frozen=True, slots=True)
class Node:
    kind: Literal["scalar", "seq", "map"]
    line: int
    # scalar: the typed value (str, int, float, bool, None, date, datetime)
    value: Any = None
    items: tuple[Node, ...] = ()
    # map: entries in file order, duplicates kept
    entries: tuple[Entry, ...] = ()
    # scalar: None (plain), "'" or '"' (quoted), "|" (literal block) or ">" (folded block)
    style: str | None = None

    @property
    def text_line(self) -> int:
        """The line the scalar's text starts on: a block scalar starts on
        the line after its `|` or `>` indicator."""
        return self.line + 1 if self.style in ("|", ">") else self.line

    @property
    def is_null(self) -> bool:
        return self.kind == "scalar" and self.value is None

    def describe(self) -> str:
        """A short phrase for error messages: `a list`, `the number 3`."""
        if self.kind == "seq":
            return "a list"
        if self.kind == "map":
            return "a mapping"
        if self.value is None:
            return "nothing (null)"
        if isinstance(self.value, bool):
            return f"the boolean {str(self.value).lower()}"
        if isinstance(self.value, (int, float)):
            return f"the number {self.value!r}"
        if isinstance(self.value, str):
            return f"the string {self.value!r}"
        return f"the {type(self.value).__name__} {self.value}"


def parse(text: str) -> Node | None:
    """Parse one YAML document; None when the document is empty."""
    try:
        root = yaml.compose(text, Loader=_CoreSchemaLoader)
    except yaml.MarkedYAMLError as e:
        raise YamlSyntaxError(*_describe(e)) from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(1, str(e)) from None
    return None if root is None else _Converter().node(root)


def _describe(e: yaml.MarkedYAMLError) -> tuple[int, str]:
    """(line, message) of a PyYAML error. The problem is often noticed a line
    after its cause (an unclosed bracket), so the context's line is named too."""
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else 1
    context = e.context or ""
    if context and e.context_mark is not None and e.context_mark.line + 1 != line:
        context += f" (started at line {e.context_mark.line + 1})"
    message = ": ".join(part for part in (context, e.problem) if part)
    return line, message or "invalid YAML"


class _Converter:
    """One conversion: refuses recursive aliases (`&a [*a]`), which would
    never end, and builds scalars with a constructor of its own (PyYAML's
    caches every node it built, so a shared one would grow on every reload)."""

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._scalars = SafeConstructor()

    def node(self, node: yaml.Node) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            return Node("scalar", line, value=self._scalar(node), style=node.style)
        if id(node) in self._open:
            raise YamlSyntaxError(line, "recursive alias")
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return Node("seq", line, items=tuple(self.node(n) for n in node.value))
            assert isinstance(node, MappingNode)
            return Node("map", line, entries=self._entries(node))
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self._scalars.construct_object(node)
        except (ValueError, yaml.YAMLError):
            # e.g. a date-shaped "2026-13-45": keep the text; the reader says
            # what it expected instead of the whole file failing here.
            return node.value

    def _entries(self, node: MappingNode) -> tuple[Entry, ...]:
        own: list[Entry] = []
        merged: list[Entry] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merge_source(value_node))
                continue
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            own.append(Entry(key, key_node.start_mark.line + 1, self.node(value_node)))
        # Explicit keys win over merged ones, and earlier merge sources over
        # later ones, as the YAML merge key specifies.
        explicit = {e.key for e in own}
        inherited: dict[str | None, Entry] = {}
        for e in merged:
            if e.key not in explicit:
                inherited.setdefault(e.key, e)
        return tuple(inherited.values()) + tuple(own)

    def _merge_source(self, node: yaml.Node) -> list[Entry]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        entries: list[Entry] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                raise YamlSyntaxError(
                    source.start_mark.line + 1, "a merge key (<<) needs a mapping or a list of mappings"
                )
            entries.extend(self.node(source).entries)
        return entries
