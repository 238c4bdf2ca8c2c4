"""The packages form one-way layers, and no two files import each other in a loop.

Order, lowest first: metrics -> benchmarks -> edtalk (model, training, inference, the method adapter)
-> ablations -> reports -> the command-line tools on top (edtalk/cli.py, edtalk/__main__.py,
edtalk/commands/*, the `python -m edtalk.perf.*` benchmarks, noxfile.py).
A file may import its own layer or any layer below it. Every import counts, including those inside
functions (a function-level import is still a dependency, only a hidden one); relative imports are
resolved against the importing file.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("metrics", "benchmarks", "edtalk", "ablations", "reports")
LAYER_NAMES = ("metrics", "benchmarks", "edtalk", "ablations", "reports", "cli")
CLI_PATHS = ("edtalk/cli.py", "edtalk/__main__.py", "edtalk/commands/", "edtalk/perf/", "noxfile.py")


def layer_of(relative_path: str) -> int | None:
    """The layer index of a project file (a path relative to the root, '/'-separated); None if outside."""
    if any(relative_path == p or (p.endswith("/") and relative_path.startswith(p)) for p in CLI_PATHS):
        return LAYER_NAMES.index("cli")
    top = relative_path.split("/", 1)[0]
    return LAYER_NAMES.index(top) if top in PACKAGES else None


def project_files(root: Path) -> list[str]:
    files = [p for pkg in PACKAGES if (root / pkg).is_dir() for p in (root / pkg).rglob("*.py")]
    files += [root / "noxfile.py"] if (root / "noxfile.py").is_file() else []
    return sorted(p.relative_to(root).as_posix() for p in files)


def module_file(root: Path, dotted: str) -> str | None:
    """The project file that defines the dotted module (a package means its __init__.py)."""
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate.relative_to(root).as_posix()
    return None


def package_of(relative_path: str) -> list[str]:
    """The dotted package a file's relative imports start from."""
    parts = relative_path[:-3].split("/")
    return parts if parts[-1] == "__init__" and parts.pop() is not None else parts[:-1]


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str  # a project file
    line: int


def imports_of(root: Path, relative_path: str) -> list[Import]:
    """Every project file that `relative_path` imports, wherever in the file the import statement stands."""
    tree = ast.parse((root / relative_path).read_text(encoding="utf-8"), filename=relative_path)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = package_of(relative_path)
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from a import b` imports a.b when b is a module, else the name b from a.
            targets = [f"{base}.{alias.name}" if module_file(root, f"{base}.{alias.name}") else base
                       for alias in node.names]
        for dotted in targets:
            if dotted.split(".", 1)[0] not in PACKAGES:
                continue
            target = module_file(root, dotted)
            while target is None and "." in dotted:  # `import a.b.name` style: fall back to the defining module
                dotted = dotted.rsplit(".", 1)[0]
                target = module_file(root, dotted)
            if target is not None and target != relative_path:
                found.append(Import(relative_path, target, node.lineno))
    return sorted(set(found), key=lambda imp: (imp.line, imp.imported))


def upward_imports(root: Path) -> list[str]:
    problems = []
    for path in project_files(root):
        for imp in imports_of(root, path):
            low, high = layer_of(path), layer_of(imp.imported)
            if low is not None and high is not None and high > low:
                problems.append(f"{path}:{imp.line} ({LAYER_NAMES[low]}) imports {imp.imported} ({LAYER_NAMES[high]})")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components of more than one file in the file import graph (Tarjan)."""
    graph = {path: sorted({imp.imported for imp in imports_of(root, path)}) for path in project_files(root)}
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                lowlink[node] = min(lowlink[node], lowlink[nxt])
            elif nxt in on_stack:
                lowlink[node] = min(lowlink[node], index[nxt])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_import_runs_up_the_layers():
    problems = upward_imports(ROOT)
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_import_cycle_between_files():
    cycles = import_cycles(ROOT)
    assert not cycles, "files that import each other in a loop:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def tiny_tree(tmp_path) -> Path:
    _write(tmp_path, {
        "metrics/__init__.py": "",
        "metrics/psnr.py": "import numpy\n",
        "benchmarks/__init__.py": "",
        "benchmarks/media.py": "from metrics.psnr import x\n",
        "edtalk/__init__.py": "",
        "edtalk/model.py": "from benchmarks import media\n",
        "edtalk/commands/__init__.py": "",
        "edtalk/commands/train.py": "from ablations.variants import resolve\nfrom reports import render\n",
        "ablations/__init__.py": "",
        "ablations/variants.py": "from edtalk.model import Net\n",
        "reports/__init__.py": "",
        "reports/render.py": "from ..ablations import variants\n",
    })
    return tmp_path


def test_checker_passes_a_clean_tree(tiny_tree):
    assert upward_imports(tiny_tree) == []
    assert import_cycles(tiny_tree) == []


def test_checker_finds_an_upward_import_hidden_in_a_function(tiny_tree):
    _write(tiny_tree, {"benchmarks/media.py": "def f():\n    from edtalk import model\n"})
    assert upward_imports(tiny_tree) == ["benchmarks/media.py:2 (benchmarks) imports edtalk/model.py (edtalk)"]


def test_checker_resolves_relative_imports_and_sees_the_cli_layer(tiny_tree):
    _write(tiny_tree, {
        "edtalk/model.py": "from .commands.train import main\n",
        "edtalk/train/__init__.py": "",
        "edtalk/train/api.py": "def run():\n    from ..commands import train\n    from .. import model\n",
    })
    assert upward_imports(tiny_tree) == [
        "edtalk/model.py:1 (edtalk) imports edtalk/commands/train.py (cli)",
        "edtalk/train/api.py:2 (edtalk) imports edtalk/commands/train.py (cli)",
    ]


def test_checker_finds_a_cycle_between_files_of_one_layer(tiny_tree):
    _write(tiny_tree, {
        "metrics/psnr.py": "from metrics import ssim\n",
        "metrics/ssim.py": "def g():\n    import metrics.psnr\n",
    })
    assert import_cycles(tiny_tree) == [["metrics/psnr.py", "metrics/ssim.py"]]


MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 80


def oversized(root: Path) -> list[str]:
    """Project files over MAX_FILE_LINES lines and functions over MAX_FUNCTION_LINES (decorators excluded)."""
    problems = []
    for path in project_files(root):
        text = (root / path).read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_FILE_LINES:
            problems.append(f"{path}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text, filename=path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{path}:{node.lineno} {node.name}: {length} lines")
    return problems


def test_no_file_or_function_too_long_to_read_at_once():
    problems = oversized(ROOT)
    assert not problems, "split these by concept:\n" + "\n".join(problems)


def test_size_checker_finds_a_long_function(tiny_tree):
    _write(tiny_tree, {"reports/render.py": "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES})
    assert oversized(tiny_tree) == [f"reports/render.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]
