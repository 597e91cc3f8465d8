"""A stage's code identity: the hash of its module and every package module it imports.

A cached output must not outlive the code that made it.  Rather than a version
number someone has to remember to bump, a stage's key includes the sha256 of
the source of the module that defines its ``run`` function and of every module
of the same package that it imports, directly or not, lazily or not (read
statically from the import statements, without importing anything).  Editing
the trainer reruns ``train`` and what follows; editing a figure reruns only
``figures`` and ``render``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import sys
from pathlib import Path


@functools.cache
def package_modules(package: str) -> dict[str, Path]:
    """Every module of ``package``: dotted name -> source file."""
    root = Path(sys.modules[package].__file__).parent
    out = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


@functools.cache
def module_imports(module: str) -> frozenset[str]:
    """The package modules ``module`` imports (every import statement, the lazy ones too)."""
    package = module.split(".")[0]
    mods = package_modules(package)
    path = mods[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            # the packages above a module are not its code (`from tlreport.pipeline import resources`)
            if t and t != module and not module.startswith(t + "."):
                found.add(t)
    return frozenset(found)


def module_closure(module: str) -> frozenset[str]:
    """``module`` and every package module it imports, directly or not: what its code identity covers."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(module_imports(m) - seen)
    return frozenset(seen)


@functools.cache
def code_fingerprint(module: str) -> str:
    """sha256 over the sources of ``module`` and its transitive package imports."""
    mods = package_modules(module.split(".")[0])
    h = hashlib.sha256()
    for m in sorted(module_closure(module)):
        h.update(f"{m}\0".encode())
        h.update(mods[m].read_bytes())
    return h.hexdigest()
