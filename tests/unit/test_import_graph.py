"""The flows package's layers: who may import whom, no import circle, and light entry points.

flows.model, flows.features, flows.logic   model and data logic: no Prefect, no adapters
flows.resources                             adapters to MLflow, S3, Prefect's API, TLC's site
flows.steps                                 the Prefect tasks, by stage
flows.pipelines                             the flows, one per file, named as their deployments:
                                            no task, no MLflow, no S3 client (they read as
                                            their DAG)
flows.cli                                   the command line
"""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import yaml

from tests.paths import REPO_ROOT

PACKAGE = "flows"
# Model and data logic, and what it may import of the package.
LOGIC = ("flows.model", "flows.features", "flows.logic")
LOGIC_MAY_IMPORT = (*LOGIC, "flows.errors")
# The outside world, which only adapters (and the tasks and flows above them) talk to.
OUTSIDE = ("prefect", "mlflow.tracking", "mlflow.client", "boto3", "botocore", "requests")


def guarded(node: ast.If) -> bool:
    """True for `if TYPE_CHECKING:` and `if __name__ == "__main__":` (not run on import)."""
    test = ast.unparse(node.test)
    return test == "TYPE_CHECKING" or "__main__" in test


def imported_modules(tree: ast.AST) -> set[str]:
    """Modules imported anywhere in ``tree`` except under the guards above; for
    ``from flows.logic import plots``, the submodule ``flows.logic.plots`` too."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and guarded(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if is_package_module(f"{node.module}.{alias.name}")
            }
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        stack.extend(ast.iter_child_nodes(node))
    return found


def is_package_module(name: str) -> bool:
    """Whether ``name`` is a module or subpackage of this package."""
    path = REPO_ROOT.joinpath(*name.split("."))
    return name.startswith(PACKAGE) and (path.with_suffix(".py").is_file() or path.is_dir())


def module_name(path: Path) -> str:
    """``flows/logic/gate.py`` -> ``flows.logic.gate``; a package's ``__init__`` is the package."""
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources() -> dict[str, ast.AST]:
    """Each module of the package, subpackages included, parsed."""
    return {
        module_name(path): ast.parse(path.read_text())
        for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py"))
    }


def import_graph() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    return {
        module: {m for m in imported_modules(tree) if within(m, (PACKAGE,))}
        for module, tree in package_sources().items()
    }


def within(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


def test_flow_modules_import_each_other_without_a_circle():
    graph = import_graph()
    assert "flows.pipelines.promote" in graph["flows.pipelines.train"]  # the graph sees it
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a circle
    assert set(order) >= set(graph)


def test_model_and_data_logic_import_neither_prefect_nor_the_adapters():
    offenders = {}
    for module, tree in package_sources().items():
        if not within(module, LOGIC):
            continue
        imported = imported_modules(tree)
        inside = {m for m in imported if within(m, (PACKAGE,)) and not within(m, LOGIC_MAY_IMPORT)}
        outside = {m for m in imported if within(m, OUTSIDE)}
        if inside or outside:
            offenders[module] = sorted(inside | outside)
    assert offenders == {}


def test_pipelines_hold_flows_only_and_never_call_mlflow_or_s3():
    offenders = {}
    for module, tree in package_sources().items():
        if not within(module, ("flows.pipelines",)):
            continue
        clients = {m for m in imported_modules(tree) if within(m, ("mlflow", "boto3", "botocore"))}
        tasks = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef)
            and any("task" in ast.unparse(d) for d in node.decorator_list)
        ]
        if clients or tasks:
            offenders[module] = sorted(clients) + tasks
    assert offenders == {}


def test_lower_layers_never_import_higher_ones():
    order = ["flows.resources", "flows.steps", "flows.pipelines", "flows.cli"]
    for module, imports in import_graph().items():
        for rank, layer in enumerate(order):
            if within(module, (layer,)):
                higher = tuple(order[rank + 1 :])
                assert not [m for m in imports if within(m, higher)], (module, imports)


def test_each_deployment_runs_a_flow_of_its_own_name_in_a_file_of_that_name():
    """prefect.yaml's entry points: `flows/pipelines/<name>.py:<name>`, flow named as the
    deployment; every file of flows/pipelines holds one flow."""
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    declared = set()
    for deployment in deployments:
        name, entrypoint = deployment["name"], deployment["entrypoint"]
        snake = name.replace("-", "_")
        assert entrypoint == f"flows/pipelines/{snake}.py:{snake}", entrypoint
        source = (REPO_ROOT / entrypoint.split(":")[0]).read_text()
        assert re.findall(r'@flow\(name="([\w-]+)"', source) == [name], entrypoint
        declared.add(f"{snake}.py")
    files = {p.name for p in (REPO_ROOT / "flows/pipelines").glob("*.py")} - {"__init__.py"}
    assert files == declared


def test_lazy_imports_count_and_guarded_ones_do_not():
    source = """
from flows.logic.months import CHAMPION
if TYPE_CHECKING:
    from flows.logic.trips import TripData
def task():
    from flows.logic import plots
    import flows.model
if __name__ == "__main__":
    from flows.cli import main
"""
    assert imported_modules(ast.parse(source)) == {
        "flows.logic.months",
        "flows.logic",
        "flows.logic.plots",
        "flows.model",
    }


def test_starting_a_flow_run_or_the_cli_imports_no_heavy_library():
    """A flow run's process imports its flow module before it may start; the CLI starts on every
    make verb. Neither may pay for pandas, MLflow, xgboost or Evidently until a task needs them."""
    import subprocess
    import sys

    modules = ["flows.cli.commands"] + [
        f"flows.pipelines.{p.stem}"
        for p in sorted((REPO_ROOT / "flows/pipelines").glob("*.py"))
        if p.stem != "__init__"
    ]
    heavy = ["pandas", "numpy", "mlflow", "xgboost", "evidently", "optuna", "matplotlib"]
    code = (
        f"import sys; import {', '.join(modules)}; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_image_carries_every_python_module_of_services():
    """The Dockerfile copies services/ piece by piece: a new module there must be copied too
    (the gateway once failed to start in the image for want of services/signin.py)."""
    dockerfile = (REPO_ROOT / "services/app/Dockerfile").read_text()
    copied = " ".join(line for line in dockerfile.splitlines() if line.startswith("COPY "))
    modules = [
        path.relative_to(REPO_ROOT).as_posix()
        for path in (REPO_ROOT / "services").iterdir()
        if path.suffix == ".py" or (path / "__init__.py").exists()
    ]
    missing = [module for module in modules if module not in copied]
    assert not missing, f"services/app/Dockerfile does not copy {missing}"
