"""The shape of the house, held by the test suite (docs/architecture.md): the core's layers (import-linter
contracts in pyproject.toml), no import circle anywhere in the core (imports inside functions and under
TYPE_CHECKING counted), plugins that import only the plugin API, and no core function over 100 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core" / "src" / "edgeconv"
MAX_FUNCTION_LINES = 100


def _plugin_sources() -> list[Path]:
    """Every file of a plugin: the built-ins, the backends under plugins/, the example plugin."""
    files = sorted((CORE / "builtins").glob("*.py"))
    for src in [*ROOT.glob("plugins/*/src"), *ROOT.glob("docs/examples/*/src")]:
        files += sorted(src.rglob("*.py"))
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, inside functions too; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _package_of(path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *( [node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.append((node.lineno, module))
    return out


def _package_of(path: Path) -> str:
    parts = []
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def test_plugins_import_only_the_plugin_api():
    allowed = ("edgeconv.plugin", "edgeconv.builtins")  # a built-in may import its siblings
    found = []
    for path in _plugin_sources():
        builtin = CORE in path.parents
        for line, module in _imports(path):
            if module == "edgeconv" or module.startswith("edgeconv."):
                ok = module == "edgeconv.plugin" or (builtin and module.startswith("edgeconv.builtins"))
                if not ok and not module.startswith(allowed[0] + "."):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not found, "plugins reach core internals instead of edgeconv.plugin:\n" + "\n".join(found)


def _cycles() -> list[list[str]]:
    import grimp

    graph = grimp.build_graph("edgeconv", include_external_packages=False, exclude_type_checking_imports=False,
                              cache_dir=None)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    for m in sorted(adj):
        if m not in index:
            visit(m)
    return out


def test_the_core_has_no_import_circle():
    cycles = _cycles()
    assert not cycles, "import circles in the core: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_core_function_is_over_100_lines():
    long = []
    for path in sorted(CORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)


def test_the_layer_contracts_hold():
    """import-linter's contracts (pyproject.toml [tool.importlinter]): the layers and the independent strategies."""
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.fail("lint-imports is missing: import-linter is a dev requirement (requirements-dev.txt)")
    proc = subprocess.run([str(exe), str(ROOT / "pyproject.toml"), "--no-cache"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_importing_the_plugin_api_is_cheap():
    code = ("import sys, edgeconv.plugin; heavy = [m for m in ('numpy', 'onnx', 'onnxruntime', 'torch', 'tensorflow',"
            " 'openvino', 'typer', 'rich') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import edgeconv.plugin loads {out}"
