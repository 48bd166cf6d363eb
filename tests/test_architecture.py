"""The package's shape, checked: the import layers (import-linter, contract in pyproject.toml), no
import cycles (function-level imports included), and one definition of each shared constant."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "plume_capture"


def test_import_layers_hold():
    done = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                           "sys.exit(lint_imports())"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "KEPT" in done.stdout and "BROKEN" not in done.stdout


def _cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("plume_capture")
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    # A package's __init__ re-exporting its own submodules is not a cycle of the design.
    edges = {m: {w for w in ws if not w.startswith(m + ".")} for m, ws in edges.items()}
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: constants and defaults that must have exactly one definition in the package
ONE_HOME = ["SEED_MAX", "BLOCK_BYTES", "STEP_PENALTY", "GOAL_REWARD", "N_ACTIONS", "POLICY_ACTIONS",
            "DEFAULT_MAX_STEPS", "DEFAULT_GOAL_RADIUS", "FLOAT32_EPS", "MAX_FIELD_BYTES", "EXECUTION_ONLY_KEYS",
            "OBSERVATION_TYPES", "REWARD_TYPES", "PLUMES", "STEP_POLICIES", "TARGET_SHARD_STEPS",
            "SCHEMA_VERSION", "RUN_JSON_KEYS", "CONFIG_NAME", "LOCAL_MAX_STEPS", "JOURNAL", "MANIFEST",
            "__version__"]


def _module_level_names(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    names.append(n.id)
    return names


def test_each_constant_has_one_definition():
    where: dict[str, list[str]] = {name: [] for name in ONE_HOME}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _module_level_names(path):
            if name in where:
                where[name].append(str(path.relative_to(REPO)))
    assert {k: v for k, v in where.items() if len(v) != 1} == {}


def test_version_agrees_with_pyproject():
    from plume_capture import __version__

    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', text, re.M).group(1) == __version__
