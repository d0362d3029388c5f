"""Arrows one way: the CLI (`balancetrl/commands`, `balancetrl/cli.py`) and the training script (`balancetrl/scripts`)
use the library, never the reverse."""

import ast
from pathlib import Path

import balancetrl

PACKAGE = Path(balancetrl.__file__).parent
CLI_MODULES = ("balancetrl.commands", "balancetrl.cli")
SCRIPT_MODULES = ("balancetrl.scripts",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module `path` imports (absolute names, relative imports resolved), at any depth of the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from balancetrl import cli` imports the module balancetrl.cli
            found += [(node.lineno, module)] + [(node.lineno, f"{module}.{a.name}") for a in node.names]
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in packages)


def _is_cli(module: str) -> bool:
    return _within(module, CLI_MODULES)


def test_library_never_imports_the_cli():
    library = [p for p in sorted(PACKAGE.rglob("*.py")) if not _is_cli(_module_name(p))]
    assert len(library) > 30  # the walk found the package
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} imports {module}"
                 for p in library for line, module in _imports(p) if _is_cli(module)]
    assert offenders == []


def test_library_never_imports_the_training_script():
    # like trl/scripts: the script (and the CLI that launches it) import the library, not the other way round
    library = [p for p in sorted(PACKAGE.rglob("*.py"))
               if not _within(_module_name(p), CLI_MODULES + SCRIPT_MODULES)]
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} imports {module}"
                 for p in library for line, module in _imports(p) if _within(module, SCRIPT_MODULES)]
    assert offenders == []


def test_the_walk_sees_relative_and_lazy_imports(tmp_path):
    # The check itself: a relative import inside a function of a library module is caught.
    probe = PACKAGE / "hdr" / "_layering_probe.py"
    probe.write_text("def f():\n    from ..commands.check import CheckCommand\n    from .. import cli\n")
    try:
        assert _imports(probe) == [(2, "balancetrl.commands.check"), (2, "balancetrl.commands.check.CheckCommand"),
                                   (3, "balancetrl"), (3, "balancetrl.cli")]
        assert _is_cli("balancetrl.commands.check") and _is_cli("balancetrl.cli") and not _is_cli("balancetrl.client")
    finally:
        probe.unlink()


def _group(module: str) -> str | None:
    """The part of the library a module belongs to: a subpackage (`balancetrl.hdr`), or a top-level module
    (`balancetrl.segments`); None outside balancetrl."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "balancetrl" and len(parts) > 1 else None


def _group_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        src = _group(_module_name(p))
        if src is None or _within(src, CLI_MODULES + SCRIPT_MODULES + ("balancetrl.vendor",)):
            continue
        for _, module in _imports(p):
            dst = _group(module)
            # `from balancetrl import BalanceSFTTrainer` names no part: only modules and subpackages count
            path = PACKAGE.parent / (dst or "").replace(".", "/")
            if dst and dst != src and (path.is_dir() or path.with_suffix(".py").exists()):
                graph.setdefault(src, set()).add(dst)
    return graph


def test_the_library_parts_import_each_other_one_way():
    # the training core (trainer/) sits above HDR, HDR above generation and the run's artifacts, all of them above the
    # runtime checks and the shared readings (cot, segments, models): no two parts import each other, at any distance
    graph = _group_graph()
    assert {"balancetrl.trainer", "balancetrl.hdr", "balancetrl.artifacts", "balancetrl.runtime"} <= set(graph) | {
        d for ds in graph.values() for d in ds}
    reach = {g: set(ds) for g, ds in graph.items()}
    for _ in range(len(reach)):
        for g in reach:
            reach[g] |= {e for d in list(reach[g]) for e in reach.get(d, ())}
    assert sorted(g for g in reach if g in reach[g]) == []  # no circles
    assert reach.get("balancetrl.runtime", set()) <= {"balancetrl.models"}
    assert not reach.get("balancetrl.artifacts", set()) & {"balancetrl.trainer", "balancetrl.hdr", "balancetrl.eval"}
    assert "balancetrl.trainer" not in set().union(*(reach.get(g, set()) for g in ("balancetrl.hdr", "balancetrl.eval",
                                                                                   "balancetrl.generation")))
