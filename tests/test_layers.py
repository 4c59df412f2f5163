"""The house stays layered: no import cycles, and every import points down (or across one floor).

Every import counts, including the ones inside functions: a late import hides a cycle from Python,
not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import model_serving

PACKAGE = Path(model_serving.__file__).parent

# Floors from the ground up; a module may import its own floor and the floors below.
FLOORS: list[set[str]] = [
    {"errors", "settings", "requests", "failures", "limits", "jobs", "util", "__init__"},
    {"toolchain"},  # the llama.cpp build: the binding's libraries and the tools every floor above runs
    {"gguf"},
    {"checkpoint", "quantize"},
    {"serve"},
    {"bench", "skill"},
    {"deploy", "publish", "cluster"},
    {"verbs", "results"},
    {"mcp"},
    {"cli", "__main__"},  # the CLI may list the MCP face's tools (skill validate, mcp-config)
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import submodule` depends on the submodule, not on pkg's __init__
            names = [f"{base}.{alias.name}" for alias in node.names]
            found.update(n for n in names if n in modules)
            if any(n not in modules for n in names):
                found.add(base)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        edges[name] = {t for t in imports_of(path, name, set(files)) if t in files and t != name}
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def floor_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for number, names in enumerate(FLOORS):
        if top in names:
            return number
    raise AssertionError(f"{module} is on no floor: add its top-level name to FLOORS")


def test_no_import_cycles() -> None:
    assert strongly_connected(graph()) == []


def test_every_import_points_down() -> None:
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets if floor_of(b) > floor_of(a)]
    assert upward == []


def test_floors_name_every_top_level_module() -> None:
    for module in graph():
        floor_of(module)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


LONGEST_FUNCTION = 60


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({lines} lines)")
    assert long == []


def test_test_files_have_unique_names() -> None:
    # tests/ has no __init__.py files, so pytest imports each test module by its file name alone
    names = [p.name for p in Path(__file__).parent.rglob("test_*.py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
