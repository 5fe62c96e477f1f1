"""The shape of the code base: no import cycles, no hidden upward imports, short files,
tests that mirror the tree. ``python -m pytest tests/test_layout.py`` is the command that
shows it (the failure names the cycle, the import or the file)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toymodels", "studies", "figures")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """(imported project module, inside a function?, line) for every import in a file."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def resolve(mod: str) -> str | None:
        while mod and mod not in modules:
            mod = mod.rpartition(".")[0]
        return mod or None

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1]
                                    + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in child.names] + [base]
            for t in targets:
                mod = resolve(t)
                if mod and mod != name and not (t == mod + "" and False):
                    found.append((mod, in_function, child.lineno))
            visit(child, nested)
    visit(tree, False)
    return found


def _graph():
    modules = _modules()
    return modules, {name: _imports(path, name, modules) for name, path in modules.items()}


def test_no_import_cycles():
    modules, imports = _graph()
    edges = {m: sorted({t for t, _, _ in imps if t in modules}) for m, imps in imports.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle of ideas: drop
    # edges from a package into its own subtree and from a submodule up to its package.
    for m in edges:
        edges[m] = [t for t in edges[m] if not (t.startswith(m + ".") or m.startswith(t + "."))]
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))
    for v in sorted(edges):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_project_imports_inside_functions():
    _, imports = _graph()
    hidden = [f"{m}:{line} imports {t}" for m, imps in imports.items() for t, in_fn, line in imps if in_fn]
    assert not hidden, "function-level imports hide dependencies:\n" + "\n".join(hidden)


def test_no_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_tests_mirror_the_library():
    """Every test of a library module sits at tests/toymodels/<same path>/test_<module>.py."""
    tests = ROOT / "tests"
    stray = [str(p.relative_to(ROOT)) for p in tests.glob("test_*.py") if p.name != "test_layout.py"]
    assert not stray, f"tests outside the mirrored tree: {stray}"
    for path in (tests / "toymodels").rglob("test_*.py"):
        rel = path.relative_to(tests / "toymodels")
        src = ROOT / "toymodels" / rel.parent
        assert src.is_dir(), f"{path}: no package toymodels/{rel.parent}"
