"""YAML loading that remembers where every key is, so that errors can say ``policy.yaml:14:7``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass
class Located:
    """A YAML document's data, the file it came from, and the line:column of every key and item."""

    data: Any
    source: str = "<policy>"
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[Path_, tuple[int, int]]] = field(default_factory=list)

    def where(self, *path: str | int) -> str:
        """``file:line:col`` of the deepest known key along ``path`` (``file`` alone when none is known)."""
        p: Path_ = tuple(path)
        while p:
            if p in self.marks:
                line, col = self.marks[p]
                return f"{self.source}:{line}:{col}"
            p = p[:-1]
        return self.source


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader (no Python object tags): the only loader a policy is ever read with."""


def load_located(text: str, source: str = "<policy>") -> Located:
    """Parse YAML text into plain data plus the position of every key.

    Raises
    ------
    yaml.YAMLError
        When the text is not valid YAML (its ``problem_mark`` says where).
    """
    node = yaml.compose(text, Loader=_UniqueKeyLoader)
    data = yaml.load(text, Loader=_UniqueKeyLoader) if node is not None else None
    loc = Located(data=data, source=source)
    if node is not None:
        _walk(node, (), loc)
    return loc


def _walk(node: yaml.Node, path: Path_, loc: Located) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            child = (*path, key)
            if key in seen:
                loc.duplicates.append((child, mark))
            seen.add(key)
            loc.marks[child] = mark
            _walk(value_node, child, loc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            loc.marks[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, child, loc)
