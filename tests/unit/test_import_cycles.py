"""No import cycle goes through hosts/: a module there that needs another one in a cycle has been
hidden by moving the import into a function, which hides the tangle without untying it."""

from __future__ import annotations

import ast
from pathlib import Path

import compute_platform

PACKAGE = Path(compute_platform.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, at the top or in a function; not those under `if TYPE_CHECKING:`
    (annotations only: they never run, so they make no cycle)."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def imported(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The package's modules an import statement loads (`from a import b` loads a.b if a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert node.level == 0, "the package uses absolute imports"
        base = node.module or ""
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
        ]
    return {name for name in names if name in modules}


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        nodes = runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = set().union(*(imported(node, set(paths)) for node in nodes)) - {name}
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


def test_no_import_cycle_goes_through_hosts() -> None:
    graph = import_graph()
    hosts = sorted(name for name in graph if name.partition(".")[2].split(".")[0] == "hosts")
    assert "compute_platform.hosts.ssh" in hosts  # the graph is read from the real package
    cycles = [chain for name in hosts if (chain := cycle_through(graph, name))]
    assert not cycles, "\n".join(" -> ".join(chain) for chain in cycles)


def test_the_finder_sees_function_level_imports() -> None:
    tree = ast.parse("def f():\n    from a import b\nif TYPE_CHECKING:\n    import c\n")
    assert [imported(node, {"a", "a.b", "c"}) for node in runtime_imports(tree)] == [{"a.b"}]
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
