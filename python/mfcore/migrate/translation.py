"""The bookkeeping of a config translation: every leaf key of the source is read through
:class:`SourceConfig`, which remembers what was read, so a key no rule looked at is reported instead
of silently dropped; :class:`Translation` collects the mfcore keys (each with the source key it came
from) and the keys that were ignored or have no equivalent, and renders the commented YAML."""
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import yaml

MISSING = object()


def flatten(data: Any, prefix: str = "") -> Dict[str, Any]:
    """Dotted leaf paths of a nested mapping; a list of ``{type: ...}`` mappings (callbacks) is keyed
    by each item's type: ``callbacks.CheckpointMonitor.save_checkpoint_steps``."""
    if isinstance(data, dict):
        if not data and prefix:
            return {prefix: data}
        out: Dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and data and all(isinstance(x, dict) and "type" in x for x in data):
        out = {}
        for item in data:
            out.update(flatten(item, f"{prefix}.{item['type']}"))
        return out
    return {prefix: data}


class SourceConfig:
    """Read access to the source config's leaves by dotted path, recording every key read."""

    def __init__(self, data: Dict[str, Any]):
        self.leaves = flatten(data)
        self.read: set = set()

    def get(self, path: str, default: Any = None) -> Any:
        """The leaf at ``path`` (marked as handled), or ``default``."""
        if path in self.leaves:
            self.read.add(path)
            return self.leaves[path]
        return default

    def has(self, path: str) -> bool:
        return path in self.leaves

    def under(self, prefix: str) -> Dict[str, Any]:
        """Every leaf below ``prefix`` (not marked)."""
        return {k: v for k, v in self.leaves.items() if k.startswith(prefix + ".")}

    def mark(self, pattern: str) -> List[Tuple[str, Any]]:
        """Marks the leaves matching the glob ``pattern`` as handled; returns them."""
        hits = [(k, v) for k, v in self.leaves.items() if fnmatch.fnmatchcase(k, pattern)]
        self.read.update(k for k, _ in hits)
        return hits

    def unread(self) -> List[Tuple[str, Any]]:
        return [(k, v) for k, v in self.leaves.items() if k not in self.read]


@dataclass
class Translation:
    """The mfcore config built from a source, and what could not be carried over."""

    source: str
    values: Dict[str, Tuple[Any, str]] = field(default_factory=dict)   # mfcore key -> (value, comment)
    ignored: List[Tuple[str, Any, str]] = field(default_factory=list)  # (source key, value, why)
    no_equivalent: List[Tuple[str, Any, str]] = field(default_factory=list)

    def set(self, key: str, value: Any, comment: str) -> None:
        self.values[key] = (value, comment)

    def ignore(self, key: str, value: Any, why: str) -> None:
        self.ignored.append((key, value, why))

    def unsupported(self, key: str, value: Any, why: str) -> None:
        self.no_equivalent.append((key, value, why))

    def to_dict(self) -> Dict[str, Any]:
        """The nested mfcore config (``model.overrides.x`` keys nest under ``overrides``)."""
        out: Dict[str, Any] = {}
        for dotted, (value, _) in self.values.items():
            node = out
            parts = dotted.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
            node[parts[-1]] = value
        return out

    def message(self) -> str:
        """One message listing every source key not carried over: key, value, why."""
        lines = [f"{self.source}: MindSpore Transformers config translated to mfcore"]
        if self.no_equivalent:
            lines.append(f"  no equivalent in mfcore (yet), {len(self.no_equivalent)} key(s):")
            lines += [f"    {k} = {_inline(v)}: {why}" for k, v, why in self.no_equivalent]
        if self.ignored:
            lines.append(f"  ignored, {len(self.ignored)} key(s) (Ascend/MindSpore internals, inference or "
                         "evaluation settings with no effect on mfcore training):")
            lines += [f"    {k} = {_inline(v)}: {why}" for k, v, why in self.ignored]
        return "\n".join(lines)

    def to_yaml(self) -> str:
        """The mfcore config as YAML, a comment per key naming the source key; the message on top."""
        head = [f"# {line}" if line else "#" for line in self.message().splitlines()]
        body: List[str] = []
        _render(self.to_dict(), self.values, "", 0, body)
        return "\n".join(head + ["", *body]) + "\n"


def _inline(value: Any) -> str:
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()
    return text[1:-1]


def _render(node: Dict[str, Any], values, prefix: str, depth: int, out: List[str]) -> None:
    pad = "  " * depth
    for k, v in node.items():
        dotted = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and dotted not in values:
            out.append(f"{pad}{k}:")
            _render(v, values, dotted, depth + 1, out)
        else:
            out.append(f"{pad}{k}: {_inline(v)}  # {values[dotted][1]}")
