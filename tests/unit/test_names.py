"""The names that cross processes (platform_names) agree with prefect.yaml, which cannot import
them: deployment ids, the breach event and the labels its trigger reads; and no package spells
one itself."""

from __future__ import annotations

import re
from pathlib import Path

import platform_names as names
import yaml

from tests.paths import REPO_ROOT


def deployments() -> dict[str, dict]:
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    return {d["name"]: d for d in declared}


def test_every_deployment_id_names_a_declared_deployment_and_its_flow():
    ids = {v for k, v in vars(names).items() if k.endswith("_DEPLOYMENT")}
    assert {f"{name}/{name}" for name in deployments()} == ids  # flows named as deployments


def test_the_retrain_trigger_matches_the_breach_event_and_reads_its_labels():
    (trigger,) = deployments()["retrain"]["triggers"]
    assert trigger["expect"] == [names.BREACH_EVENT]
    # Breaches of scored months only: served traffic's month has no trips to retrain on yet.
    assert trigger["match"] == {
        "prefect.resource.id": f"{names.MODEL_RESOURCE_PREFIX}*",
        names.SOURCE_LABEL: "batch",
    }
    read = {
        parameter: re.fullmatch(r"\{\{ event\.resource\['([\w.]+)'\] \}\}", template)
        for parameter, template in trigger["parameters"].items()
    }
    labels = {p: m[1] for p, m in read.items() if m}
    assert labels == {
        "color": names.COLOR_LABEL,
        "month": names.MONTH_LABEL,
        "model_name": names.MODEL_LABEL,
        "version": names.VERSION_LABEL,
    }


# Every package that writes or reads a name another process reads.
PACKAGES = ("flows", "services", "infra", "bench")
HOME = REPO_ROOT / "services/mlflow/proxied-artifacts/platform_names/__init__.py"


def test_no_module_spells_a_cross_process_name_itself():
    """Namespaced tag keys, deployment ids, event names, API paths and experiment suffixes are
    written in platform_names only (plain words such as a column called model_version may
    recur), in the flows, the services, the MLflow apps, infra and bench alike."""
    spelled = {
        v
        for k, v in vars(names).items()
        if k.isupper() and isinstance(v, str) and any(mark in v for mark in "./-")
    }
    offenders = []
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if path == HOME:
                continue
            literals = set(re.findall(r"""["']([^"'\s{}]+)["']""", path.read_text()))
            found = sorted(literals & spelled)
            offenders += [f"{path.relative_to(REPO_ROOT)}: {v}" for v in found]
    assert offenders == []


def test_the_home_of_the_names_is_the_module_every_package_imports():
    assert Path(names.__file__).resolve().name == "__init__.py"
    assert HOME.read_text() == Path(names.__file__).read_text()
