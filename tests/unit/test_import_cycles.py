"""No import cycle in the package: not at the top, not in functions (that hides a tangle without untying
it), not under `if TYPE_CHECKING:` (the types of two layers would still need each other)."""

from __future__ import annotations

import ast
from pathlib import Path

import compute_platform

PACKAGE = Path(compute_platform.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement: at the top, in a function, under `if TYPE_CHECKING:`."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported(node: ast.Import | ast.ImportFrom, modules: set[str], importer: str = "") -> set[str]:
    """The package's modules an import statement loads (`from a import b` loads a.b if a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert node.level == 0, "the package uses absolute imports"
        base = node.module or ""
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
        ]
    found = {name for name in names if name in modules}
    # importing a.b.c from outside a.b runs a/b/__init__.py first (its own modules are imported by it)
    inside = set(parents(importer))
    return found | {p for name in found for p in parents(name) if p in modules and p not in inside}


def parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        nodes = all_imports(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = set().union(*(imported(node, set(paths), name) for node in nodes)) - {name}
    return graph


def cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A shortest chain of imports from `start` back to itself, if any (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module]):
                if target == start:
                    chain = [module]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [*reversed(chain), start]
                if target not in came_from:
                    came_from[target] = module
                    following.append(target)
        frontier = following
    return None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "compute_platform.hosts.ssh" in graph  # the graph is read from the real package
    modules = sorted(graph)
    cycles = [chain for name in modules if (chain := cycle_through(graph, name))]
    assert not cycles, "\n".join(" -> ".join(chain) for chain in cycles)


def test_the_finder_sees_every_import() -> None:
    tree = ast.parse("def f():\n    from a import b\nif TYPE_CHECKING:\n    import c\n")
    found = [imported(node, {"a", "a.b", "c"}) for node in all_imports(tree)]
    assert sorted(map(sorted, found)) == [["a", "a.b"], ["c"]]
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]


# The layers, lowest first: a module imports only from its own folder and from layers below it (the
# rule docs/architecture.md states). Names are the first part under compute_platform/.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors"),  # the package's version; errors, a leaf every layer raises
    ("input",),  # YAML reading, hosts.yaml and configs.yaml, ~/.ssh/config
    ("hosts",),  # the Host interface and its connections, the command builder, transfers
    ("ledger",),  # archive/ and job.csv
    ("scheduling",),  # sweeps, job scripts, the Slurm and tmux backends
    ("context",),  # what a task is and may use: the interface of the task layer
    ("tasks",),  # the task types
    ("playbook",),  # a playbook file -> Tasks (looks action keys up in the task registry)
    ("run",),  # the runner, the reporters
    ("checks", "jobs"),  # check --remote and --ping; following jobs from the ledger
    ("report",),  # the plots, the pages and compute ui's server: pictures of what jobs/ finds
    ("cli",),
    ("entry",),  # the `compute` program and compute.py
    ("__main__",),  # python -m compute_platform
)


def layer(module: str) -> str:
    return module.removeprefix("compute_platform").removeprefix(".").split(".")[0]


def test_each_layer_imports_only_from_the_layers_below() -> None:
    rank = {name: n for n, names in enumerate(LAYERS) for name in names}
    graph = import_graph()
    assert {layer(module) for module in graph} <= set(rank), "a folder missing from LAYERS"
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer(module) != layer(target) and rank[layer(target)] >= rank[layer(module)]
    ]
    assert not upward, "\n".join(upward)
