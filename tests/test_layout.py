"""The package's layout rules: no import cycles, weights/ only fetches, stage code lists that exist, a CLI that imports
a stage's module only when its command runs, stand-alone official scripts (docs/architecture.md)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_t2i.workflow import STAGE_MODULES

from .conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "imagenet_t2i"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (they never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports, at module level or inside functions (``if TYPE_CHECKING:`` left out)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read_from_the_code():
    assert "imagenet_t2i.train.trainer" in GRAPH["imagenet_t2i.train.launcher"]
    assert "imagenet_t2i.train.loop" in GRAPH["imagenet_t2i.train.trainer"]  # a function-level import counts
    assert "imagenet_t2i.train.trainer" not in GRAPH["imagenet_t2i.train.loop"]  # under TYPE_CHECKING: does not
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_others():
    assert _cycles(GRAPH) == []


@pytest.mark.parametrize("forbidden", ["imagenet_t2i.evaluation", "imagenet_t2i.captions", "imagenet_t2i.world"])
def test_weights_only_resolves_fetches_and_checks(forbidden):
    """The random-init stand-ins live beside what they stand in for; `imagenet_t2i.random_init` dispatches."""
    weights = [m for m in GRAPH if m == "imagenet_t2i.weights" or m.startswith("imagenet_t2i.weights.")]
    assert weights
    assert {m: sorted(i for i in GRAPH[m] if i == forbidden or i.startswith(forbidden + ".")) for m in weights} == {
        m: [] for m in weights}


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_every_stage_code_path_exists(stage):
    missing = [entry for entry in STAGE_MODULES[stage] if not (PACKAGE / entry).exists()]
    assert missing == [], f"workflow.STAGE_MODULES['{stage}'] names paths that do not exist: {missing}"


def _parser_entries() -> dict[str, str]:
    """command words -> "<module>:<function>" of every leaf of the console script's parser."""
    from imagenet_t2i.cli import build_parser

    out = {}

    def walk(parser, words: tuple[str, ...]) -> None:  # noqa: ANN001
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
        if parser.get_default("fn"):
            out[" ".join(words)] = parser.get_default("fn")

    walk(build_parser(), ())
    return out


def test_every_command_names_a_function_of_its_stage_module():
    from imagenet_t2i.cli import command

    entries = _parser_entries()
    assert len(entries) == 32 and {"train", "geneval score", "fd score", "table"} <= set(entries)
    for words, spec in entries.items():
        assert callable(command(spec)), words
    modules = {spec.split(":")[0] for spec in entries.values()}
    rules = {p.stem for p in (REPO / "workflow" / "rules").glob("*.smk")}
    assert rules <= modules | {"train"} and modules - rules == {"check"}  # one CLI module per rules file


def test_the_parser_imports_no_stage_module():
    """``imagenet-t2i <command>`` imports its stage's module only: the parser alone imports none of them."""
    code = ("import sys; from imagenet_t2i.cli import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith('imagenet_t2i.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert eval(out) == ["imagenet_t2i.cli", "imagenet_t2i.config", "imagenet_t2i.malloc"]  # noqa: S307 (our output)


@pytest.mark.parametrize("script", ["evaluation/geneval/official.py", "evaluation/dpg/official.py"])
def test_official_scripts_stand_alone(script):
    """They run in their own Python 3.9 environments: no imports of this package; the rules name their paths."""
    module = _module_name(PACKAGE / script)
    assert GRAPH[module] == set()
    assert "imagenet_t2i" not in (PACKAGE / script).read_text().split('"""', 2)[-1].replace("imagenet_t2i/", "")
    assert any(f"src/imagenet_t2i/{script}" in p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
