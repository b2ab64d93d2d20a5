"""Overrides for sweeps: set a value in a scenario's plain data by key path ("a.b[0].c")."""

from __future__ import annotations

import copy
import re
from typing import Any

from testbed.scenario.errors import ScenarioError

_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set_path(data: dict[str, Any], path: str, value: Any, source: str) -> None:
    """Set ``data[a][b][0]...`` for ``path`` "a.b[0]...", creating mappings as needed."""
    parts: list[str | int] = [
        int(m.group(2)) if m.group(2) is not None else m.group(1)
        for m in _PATH_PART.finditer(path)
    ]
    if not parts or "".join(str(p) for p in parts) != re.sub(r"[.\[\]]", "", path):
        raise ScenarioError(f"{source}: override path {path!r} (expected keys like a.b[0].c)")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ScenarioError(f"{source}: override path {path!r} (no item [{part}])")
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node[part]
        else:
            if not isinstance(node, dict):
                raise ScenarioError(f"{source}: override path {path!r} ({part!r} is not a key)")
            if last:
                node[part] = copy.deepcopy(value)
            else:
                node = node.setdefault(part, {})
