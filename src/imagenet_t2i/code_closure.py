"""What code a command runs, read statically: the import closure of its function and the hash of that code.

The re-run rule of the workflow: a job re-runs when the code its command runs changes, not on any edit of the
package. A command's code is the import closure of its function in its stage's CLI module (the imports in that
function and in the module's functions it calls, and the CLI module's own imports), followed through every package
module, module-level and function-level imports alike (imports under ``if TYPE_CHECKING:`` never run and are left
out). Its hash covers each module's syntax tree without docstrings, so a docstring, comment or formatting edit
changes nothing. Only the standard library is imported here (the Snakefile calls it for every rule).
"""
from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

COMMAND_ENV = "IMAGENET_T2I_COMMAND"  # set by the console script: the command this process runs, "<module>:<function>"
PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


@functools.cache
def package_modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package (``pkg.sub`` for ``pkg/sub/__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(package_modules()[module].read_text())


@functools.cache
def _type_checking_ids(module: str) -> frozenset[int]:
    """ids of the nodes of ``module``'s tree under ``if TYPE_CHECKING:`` (they never run)."""
    skip = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return frozenset(skip)


def _resolve(name: str) -> str | None:
    """The package module an imported dotted name lives in (a name imported from a module: that module)."""
    modules = package_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, nodes: list[ast.AST] | None = None, parents: bool = True) -> set[str]:
    """The package modules ``module`` imports (in ``nodes`` only, when given) and, with ``parents``, the packages
    above each (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    tree = _tree(module)
    skip = _type_checking_ids(module)
    package = module.split(".") if package_modules()[module].name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in (n for root in (nodes if nodes is not None else [tree]) for n in ast.walk(root)):
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
            target = _resolve(name)
            while target and target.startswith(PACKAGE):
                found.add(target)
                target = _resolve(target.rpartition(".")[0]) if parents else None
    found.discard(module)
    return found


@functools.cache
def _module_imports(module: str) -> frozenset[str]:
    """`imports_of` the whole module, once per process (every command's closure walks the same modules)."""
    return frozenset(imports_of(module))


def closure(roots: set[str]) -> set[str]:
    """Every package module the ``roots`` import, directly or not, the roots included."""
    seen, todo = set(), list(roots)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_module_imports(module) - seen)
    return seen


def command_modules(spec: str) -> set[str]:
    """The closure of a command named ``"<module>:<function>"`` (the CLI parser's entries, module under ``cli``):
    its function, the module's functions it calls (by name, transitively), and those of the CLI module's top-level
    imports whose names they use."""
    cli_module, function = spec.split(":")
    module = f"{PACKAGE}.cli.{cli_module}"
    tree = _tree(module)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    used, todo = set(), [function]
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo.extend(n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions)
    names = {n.id for f in used for n in ast.walk(functions[f]) if isinstance(n, ast.Name)}
    top = [n for n in tree.body if isinstance(n, ast.Import) or (
        isinstance(n, ast.ImportFrom) and any((a.asname or a.name) in names for a in n.names))]
    roots = imports_of(module, [*top, *(functions[n] for n in used)]) | {f"{PACKAGE}.cli"}
    return closure(roots) | {module}


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


@functools.cache
def _module_digest(module: str) -> bytes:
    """sha256 of a module's syntax tree without docstrings (comments and formatting are not in the tree)."""
    tree = _without_docstrings(ast.parse(package_modules()[module].read_text()))
    return hashlib.sha256(ast.dump(tree).encode()).digest()


def code_hash(modules: set[str]) -> str:
    """sha256 (16 hex digits) of the modules' names and syntax trees without docstrings."""
    h = hashlib.sha256()
    for module in sorted(modules):
        h.update(module.encode())
        h.update(_module_digest(module))
    return h.hexdigest()[:16]


@functools.cache
def command_code(spec: str) -> str:
    """The code hash of a command (``"<module>:<function>"``)."""
    return code_hash(command_modules(spec))
