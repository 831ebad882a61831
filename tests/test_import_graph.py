"""The import graph of mfcore, read from the source (AST, nothing imported): no cycles between
packages or between modules, and each package imports only the layers below it (the table in
docs/architecture.md, "Packages and who may import whom")."""
import ast
from collections import defaultdict
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "python" / "mfcore"

# package -> the mfcore packages it may import (function-local imports included). A new arrow here
# is a design decision: make it in docs/architecture.md too.
MAY_IMPORT = {
    "mfcore": {"_core", "generation"},  # the package's own __init__: core version, mfcore.generate (lazy)
    "errors": set(),
    "_core": set(),
    "io": {"errors"},
    "data": {"errors", "io", "_core"},
    "models": {"errors", "io"},
    "optim": {"errors", "models"},  # models.layers.cpu_kernels: the C++ square-sum kernel of the grad norm
    "plan": {"errors", "models", "parallel"},  # parallel.pipeline_split: the one layer-split rule (no MindSpore)
    "migrate": {"errors", "data"},
    "generation": {"errors", "models", "checkpoint"},
    "checkpoint": {"errors", "io", "models"},
    "parallel": {"errors", "models", "optim", "checkpoint"},
    "config": {"errors", "io", "data", "models", "plan", "parallel", "migrate"},
    "launch": {"errors"},
    "train": {"errors", "io", "data", "models", "config", "parallel", "checkpoint", "plan", "optim"},
    "demo": {"errors", "data"},
    "cli": {"errors", "io", "data", "models", "config", "parallel", "checkpoint", "launch", "train", "demo", "plan", "optim", "migrate", "generation"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    base = PACKAGE_ROOT.parent / rel
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists() or name == "mfcore._core"


def _imports(path: Path, top_level_only: bool):
    """The mfcore modules ``path`` imports (``from pkg import module`` counts as the module)."""
    name, is_pkg = _module_name(path), path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "mfcore")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if is_pkg else -1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "mfcore":
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield sub if _is_module(sub) else module


def _graph(top_level_only: bool):
    graph = defaultdict(set)
    for path in PACKAGE_ROOT.rglob("*.py"):
        graph[_module_name(path)].update(m for m in _imports(path, top_level_only))
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mfcore"


def _cycle(graph):
    """One cycle of ``graph`` as a list of nodes, or None (iterative depth-first search)."""
    state = {}
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        state[start] = "open"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = "done"
                stack.pop()
            elif state.get(child) == "open":
                path = [n for n, _ in stack]
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = "open"
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def _package_graph():
    packages = defaultdict(set)
    for module, imported in _graph(top_level_only=False).items():
        for other in imported:
            if _package(other) != _package(module):
                packages[_package(module)].add(_package(other))
    return packages


def test_no_cycle_between_packages():
    assert _cycle(_package_graph()) is None


def test_no_cycle_between_modules():
    # function-local imports included: a lazy import hides a cycle from the interpreter, not from us
    assert _cycle(_graph(top_level_only=False)) is None
    graph = _graph(top_level_only=True)
    # importing a.b.c runs a/__init__ and a/b/__init__ first: count those edges too
    for module in list(graph):
        for imported in list(graph[module]):
            parts = imported.split(".")
            graph[module].update(".".join(parts[:i]) for i in range(2, len(parts))
                                 if ".".join(parts[:i]) != module and not module.startswith(".".join(parts[:i]) + "."))
    assert _cycle(graph) is None


def test_each_package_imports_only_the_layers_below_it():
    packages = _package_graph()
    assert set(packages) <= set(MAY_IMPORT), f"packages missing from MAY_IMPORT: {set(packages) - set(MAY_IMPORT)}"
    wrong = {pkg: sorted(deps - MAY_IMPORT[pkg]) for pkg, deps in packages.items() if deps - MAY_IMPORT[pkg]}
    assert wrong == {}, f"imports against the layering: {wrong}"
    assert "train" not in packages["data"] | packages["models"]


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
