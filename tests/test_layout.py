"""The package's layout rules: no import cycles, weights/ only fetches, a CLI that imports a stage's module only when
its command runs, stand-alone official scripts (docs/architecture.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_t2i.code_closure import imports_of, package_modules
from imagenet_t2i.workflow import command_specs

from .conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "imagenet_t2i"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


GRAPH = {m: imports_of(m, parents=False) for m in package_modules()}  # the import statements, as written


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


def test_every_command_names_a_function_of_its_stage_module():
    from imagenet_t2i.cli import command

    entries = command_specs()
    assert len(entries) == 39 and {"train", "geneval score", "aesthetic score", "table"} <= set(entries)
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
    assert eval(out) == ["imagenet_t2i.cli", "imagenet_t2i.code_closure", "imagenet_t2i.config",  # noqa: S307
                         "imagenet_t2i.malloc"]


@pytest.mark.parametrize("script", ["evaluation/geneval/official.py", "evaluation/dpg/official.py"])
def test_official_scripts_stand_alone(script):
    """They run in their own Python 3.9 environments: no imports of this package; the rules name their paths."""
    module = _module_name(PACKAGE / script)
    assert GRAPH[module] == set()
    assert "imagenet_t2i" not in (PACKAGE / script).read_text().split('"""', 2)[-1].replace("imagenet_t2i/", "")
    assert any(f"src/imagenet_t2i/{script}" in p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
