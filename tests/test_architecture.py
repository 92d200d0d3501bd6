"""The project's modules import each other without circles: the import graph of ``deepmr_kipoi``
and ``model_adapters`` (module-level and function-level imports alike), read with ``ast``."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("deepmr_kipoi", "model_adapters")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its body (``from pkg import mod`` counts as
    an import of ``pkg.mod`` when that is a module, else of ``pkg``)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in modules else stem for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None. A package importing its own
    submodule is not a circle: Python runs the package first by construction."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(nxt + "."):  # a submodule importing its parent package
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circles_among_project_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_checker_finds_a_circle_and_sees_function_level_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    graph = import_graph()
    # function-level imports are in the graph: kipoi_models.load imports validation inside load_model
    assert "deepmr_kipoi.validation" in graph["deepmr_kipoi.kipoi_models.load"]
    # the adapter API is below both sides of the adapter layer
    assert "deepmr_kipoi.adapters" in graph["model_adapters.generic"]
    assert "deepmr_kipoi.adapters" in graph["deepmr_kipoi.kipoi_models.load"]
    assert not graph["deepmr_kipoi.adapters"] & {"deepmr_kipoi.kipoi_models", "deepmr_kipoi.registry"}
    assert not any(m.startswith("model_adapters") for m in graph["deepmr_kipoi.kipoi_models.load"])
    assert "model_adapters.bpnet_weights" in graph["model_adapters.bpnet_torch"]
    assert "model_adapters.bpnet_oskn" not in graph["model_adapters.bpnet_torch"]


MAX_LINES = 600


def _long_modules(modules: dict[str, Path], limit: int = MAX_LINES) -> dict[str, int]:
    """Modules with more than ``limit`` lines: name -> line count."""
    counts = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules.items()}
    return {name: n for name, n in sorted(counts.items()) if n > limit}


def test_no_module_is_longer_than_600_lines():
    long = _long_modules(_modules())
    for name, n in long.items():
        print(f"{name}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): " + ", ".join(
        f"{name} ({n})" for name, n in long.items()
    )


def test_the_length_check_counts_lines(tmp_path):
    short, long = tmp_path / "short.py", tmp_path / "long.py"
    short.write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    long.write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    assert _long_modules({"short": short, "long": long}) == {"long": MAX_LINES + 1}
    assert len(_modules()) > 50 and "deepmr_kipoi.report.drawing" in _modules()
