"""The flow modules import each other without a circle, lazily imported modules included."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

from tests.paths import REPO_ROOT

PACKAGE = "flows"


def guarded(node: ast.If) -> bool:
    """True for `if TYPE_CHECKING:` and `if __name__ == "__main__":` (not run on import)."""
    test = ast.unparse(node.test)
    return test == "TYPE_CHECKING" or "__main__" in test


def imported_modules(tree: ast.AST) -> set[str]:
    """Modules of the package imported anywhere in ``tree`` except under the guards above."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and guarded(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:  # `from flows import plots`
                found |= {f"{PACKAGE}.{alias.name}" for alias in node.names}
            elif node.module.startswith(f"{PACKAGE}."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(f"{PACKAGE}.")}
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    graph = {}
    for path in sorted((REPO_ROOT / PACKAGE).glob("*.py")):
        module = f"{PACKAGE}.{path.stem}" if path.stem != "__init__" else PACKAGE
        graph[module] = imported_modules(ast.parse(Path(path).read_text()))
    return graph


def test_flow_modules_import_each_other_without_a_circle():
    graph = import_graph()
    assert "flows.promote" in graph["flows.train"]  # the graph sees what it should
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a circle
    assert set(order) >= set(graph)


def test_lazy_imports_count_and_guarded_ones_do_not():
    source = """
from flows.registry import CHAMPION
if TYPE_CHECKING:
    from flows.data import TripData
def task():
    from flows import plots
    import flows.model
if __name__ == "__main__":
    from flows.cli import main
"""
    assert imported_modules(ast.parse(source)) == {"flows.registry", "flows.plots", "flows.model"}


def test_starting_a_flow_run_or_the_cli_imports_no_heavy_library():
    """A flow run's process imports its flow module before it may start; the CLI starts on every
    make verb. Neither may pay for pandas, MLflow, xgboost or Evidently until a task needs them."""
    import subprocess
    import sys

    modules = ["flows.cli", "flows.train", "flows.score", "flows.monitor", "flows.tune"]
    heavy = ["pandas", "numpy", "mlflow", "xgboost", "evidently", "optuna", "matplotlib"]
    code = (
        f"import sys; import {', '.join(modules)}; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
