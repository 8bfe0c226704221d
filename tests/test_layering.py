"""The package's shape, checked by parsing every module (imports inside functions included):

* layers: ``core`` <- ``sampling`` <- ``models`` <- the commands <- ``batch``; a lower layer never
  imports a higher one, and no command package imports another;
* no import cycles between modules;
* no function body longer than 60 lines (signature and docstring not counted: a CLI command's
  options are declarations; a network's ``__init__`` that declares its layers is excepted);
* ``vidforge --help`` and ``--version`` import no torch.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vidforge"
COMMANDS = ("stylize", "animate", "extend", "evaluate")
LAYERS = {"core": 0, "sampling": 1, "models": 2, **dict.fromkeys(COMMANDS, 3), "batch": 4}
MAX_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """vidforge modules ``name`` imports anywhere in its body (``from pkg import module`` resolved)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.startswith("vidforge")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vidforge"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    return {m for m in out if m in known and m != name}


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_layer_imports_a_higher_one_and_no_command_imports_another():
    trees = modules()
    bad = []
    for name, tree in trees.items():
        here = layer(name)
        for target in imported(name, tree, set(trees)):
            there = layer(target)
            if here is None or there is None or here == there:
                continue
            if LAYERS[there] > LAYERS[here] or (here in COMMANDS and there in COMMANDS):
                bad.append(f"{name} -> {target}")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycles():
    trees = modules()
    known = set(trees)
    # a package's __init__ re-exporting its own modules is not a cycle of the code that matters
    graph = {
        name: {t for t in imported(name, tree, known) if not name.startswith(t + ".")}
        for name, tree in trees.items()
    }
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layering_check_catches_what_it_should():
    tree = ast.parse("def f():\n    from vidforge.animate.pipeline import run\n")
    known = {"vidforge.animate.pipeline", "vidforge.extend.pipeline"}
    assert imported("vidforge.extend.pipeline", tree, known) == {"vidforge.animate.pipeline"}


def long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
            length = node.end_lineno - body[0].lineno + 1
            is_network_init = node.name == "__init__" and "models" in path.parts
            if length > MAX_LINES and not is_network_init:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_body_is_longer_than_60_lines():
    assert not long_functions(), "\n".join(long_functions())


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["stylize", "--help"], ["extend", "--help"], ["batch", "--help"]]
)
def test_the_cli_edge_imports_no_torch(argv):
    code = (
        "import sys\nfrom vidforge.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
