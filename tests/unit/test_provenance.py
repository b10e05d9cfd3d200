"""The stack's record of a version and the checks every loader makes (flows/logic/provenance.py),
on a version's files as MLflow 3.17 writes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.errors import UntrustedVersion
from flows.logic.provenance import Record, approvable, code_problems, file_digests, verified_files

MLMODEL = """\
artifact_path: model
flavors:
  python_function:
    code: code
    data: model.ubj
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.xgboost
    python_version: 3.11.11
  xgboost:
    code: code
    data: model.ubj
    model_class: flows.model.TripDurationRegressor
    model_format: ubj
    xgb_version: 3.0.5
mlflow_version: 3.17.0
"""


@pytest.fixture
def version(tmp_path) -> Path:
    """A downloaded version's files: MLmodel, booster, metadata, and its code/."""
    root = tmp_path / "version"
    (root / "code/flows").mkdir(parents=True)
    (root / "MLmodel").write_text(MLMODEL)
    (root / "model.ubj").write_bytes(b"\x7b booster bytes")
    (root / "requirements.txt").write_text("mlflow==3.17.0\n")
    for module in ("__init__.py", "model.py", "features.py"):
        (root / "code/flows" / module).write_text(f"# {module}\n")
    (root / "registered_model_meta").write_text("model_name: m\nmodel_version: '3'\n")
    return root


def platform_code(version: Path) -> dict[str, str]:
    """The code the stack runs: here, the same as the version's."""
    return {
        k.removeprefix("code/"): v
        for k, v in file_digests(version).items()
        if k.startswith("code/")
    }


def recorded(version: Path) -> str:
    """The record the stack writes for ``version`` (model m, version 3)."""
    return approvable("m", "3", version, platform_code(version), "training", []).to_tag()


def test_the_record_lists_every_file_but_the_download_s_own_note(version):
    record = Record.from_tag(recorded(version), "m", "3")
    assert set(record.files) == {
        "MLmodel",
        "model.ubj",
        "requirements.txt",
        "code/flows/__init__.py",
        "code/flows/model.py",
        "code/flows/features.py",
    }
    assert verified_files("m", "3", version, recorded(version)) == record


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda v: (v / "code/flows/features.py").write_text("import os\n"),
            "code/flows/features.py changed",
        ),
        (lambda v: (v / "model.ubj").write_bytes(b"other"), "model.ubj changed"),
        (
            lambda v: (v / "code/flows/sitecustomize.py").write_text("x"),
            "code/flows/sitecustomize.py added",
        ),
        (lambda v: (v / "requirements.txt").unlink(), "requirements.txt removed"),
    ],
    ids=["code", "booster", "added", "removed"],
)
def test_any_change_after_the_record_is_refused_naming_the_file(version, change, problem):
    tag = recorded(version)
    change(version)
    with pytest.raises(UntrustedVersion, match=f"version 3 of m refused: .*{problem}"):
        verified_files("m", "3", version, tag)


def test_no_record_or_another_version_s_record_is_refused(version):
    with pytest.raises(UntrustedVersion, match="no record"):
        verified_files("m", "3", version, None)
    with pytest.raises(UntrustedVersion, match="its record is of m version 3"):
        verified_files("m", "4", version, recorded(version))
    with pytest.raises(UntrustedVersion, match="not readable"):
        verified_files("m", "3", version, "{not json")


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("loader_module: mlflow.xgboost", "loader_module: mlflow.pyfunc.model", "loader_module"),
        ("model_class: flows.model.TripDurationRegressor", "model_class: os.system", "model_class"),
        ("model_format: ubj", "model_format: pickle", "model_format"),
        ("  xgboost:\n", "  sklearn:\n    pickled_model: m.pkl\n  xgboost:\n", "flavors"),
    ],
    ids=["loader", "class", "format", "another-flavor"],
)
def test_only_the_platforms_own_loader_is_approved(version, old, new, problem):
    mlmodel = version / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace(old, new))
    with pytest.raises(UntrustedVersion, match=problem):
        approvable("m", "3", version, platform_code(version), "loading", [])


def test_code_other_than_the_stacks_is_not_approved(version):
    stack = platform_code(version)
    (version / "code/flows/features.py").write_text("# a teammate's features\n")
    (version / "code/flows/helpers.py").write_text("# more\n")
    assert code_problems(version, stack) == [
        "code/flows/features.py differs from the stack's",
        "code/flows/helpers.py is not the stack's code",
    ]
    shutil.rmtree(version / "code")
    with pytest.raises(UntrustedVersion, match="code/flows/model.py is missing"):
        approvable("m", "3", version, stack, "loading", [])


def test_a_refusal_stays_one_short_line_however_much_differs(version):
    stack = {f"flows/module_{i}.py": "0" * 64 for i in range(200)}
    with pytest.raises(UntrustedVersion) as refused:
        approvable("m", "3", version, stack, "loading", ["it was logged in experiment 9"])
    assert str(refused.value).count(";") == 5 and "more" in str(refused.value)
    assert len(str(refused.value)) < 600


def released(version: Path, *more: str) -> dict[str, frozenset[str]]:
    """Released code that holds the version's code/ as it is, and ``more`` digests beside."""
    code = platform_code(version)
    return {path: frozenset({digest, *more}) for path, digest in code.items()}


def test_a_version_with_earlier_released_code_is_adopted_with_the_reason(version):
    from flows.logic.provenance import ADOPTED, adoptable

    record = adoptable("m", "3", version, released(version, "0" * 64), [])
    assert record.approved_by == ADOPTED
    assert verified_files("m", "3", version, record.to_tag()) == record


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda v: (v / "code/flows/features.py").write_text("import os\n"),
            "code/flows/features.py is not code the platform released",
        ),
        (
            lambda v: (v / "code/flows/extra.py").write_text("x = 1\n"),
            "code/flows/extra.py is not code the platform released",
        ),
        (lambda v: shutil.rmtree(v / "code"), "it carries no code/"),
        (
            lambda v: (v / "MLmodel").write_text(MLMODEL.replace("mlflow.xgboost", "evil")),
            "loader_module 'evil'",
        ),
    ],
    ids=["changed-module", "unknown-module", "no-code", "foreign-loader"],
)
def test_a_version_with_any_other_code_or_loader_is_not_adopted(version, change, problem):
    from flows.logic.provenance import adoptable

    known = released(version)
    change(version)
    with pytest.raises(UntrustedVersion, match=problem):
        adoptable("m", "3", version, known, [])


def test_a_version_logged_outside_the_training_experiment_is_not_adopted(version):
    from flows.logic.provenance import adoptable

    origin = ["it was logged in experiment 9, not the training experiment"]
    with pytest.raises(UntrustedVersion, match="experiment 9"):
        adoptable("m", "3", version, released(version), origin)


def test_the_released_code_holds_the_model_code_of_this_checkout():
    """A change of the model code must be added to released_code.json (python -m
    infra.releases.model_code) once committed: versions trained with it are adopted on the next
    upgrade only if it is there."""
    import hashlib

    from flows.logic.provenance import MODEL_MODULES, released_code
    from flows.resources.registry import FLOWS_DIR

    known = released_code()
    for module in MODEL_MODULES:
        digest = hashlib.sha256((FLOWS_DIR / module).read_bytes()).hexdigest()
        assert digest in known[f"flows/{module}"], f"flows/{module}: run infra.releases.model_code"
