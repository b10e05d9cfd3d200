"""What a registered version must be before anything of it is imported: its files, its loader.

`mlflow.pyfunc.load_model` imports the module a version's `MLmodel` names and puts the version's
`code/` first on `sys.path`: loading a version runs its code. So the stack records, for each
version it trained or approved, the digest of every file (the version tag `platform.record`, which
only the stack's account may write: services/mlflow/proxied-artifacts, `mlflow_stack_registry`),
and every loader checks the downloaded files against that record first (`verified_files`).

A version trained elsewhere (a worker on another host) is approved by the stack when it was logged
in the training experiment (which only the platform's workers may write), its loader is the
platform's (xgboost, `flows.model.TripDurationRegressor`, a UBJ/JSON booster: data, not code) and
its `code/` is byte for byte the code the stack runs itself (`approvable`).

A version trained before the stack kept records (an upgrade from such a release) is adopted once
(`adoptable`, run by every `make up`): logged in the training experiment, with the platform's
loader, and every file of its `code/` the project's own code as one of its commits had it
(released_code.json, written from git by infra/releases/model_code.py), so loading it runs
nothing but the platform's code. Anything else stays refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from flows.errors import UntrustedVersion

RECORD_FORMAT = 1
MODEL_CLASS = "flows.model.TripDurationRegressor"
LOADER_MODULE = "mlflow.xgboost"
BOOSTER_FORMATS = frozenset({"ubj", "json"})
# The files of a logged version that loading reads as data or never reads (metadata, examples).
METADATA_FILES = frozenset(
    {
        "MLmodel",
        "conda.yaml",
        "python_env.yaml",
        "requirements.txt",
        "input_example.json",
        "serving_input_example.json",
    }
)
# Written into the download by MLflow itself (name and version of a `models:/` URI): not a file
# of the version.
DOWNLOAD_ONLY_FILES = frozenset({"registered_model_meta"})
CODE_DIR = "code"
# Problems named in one refusal: the rest are counted (a whole foreign package would be hundreds).
SHOWN_PROBLEMS = 5
# The modules of the `flows` package a version carries in its code/ (all the model needs to load).
MODEL_MODULES = ("__init__.py", "model.py", "features.py")


@dataclass(frozen=True)
class Record:
    """The stack's record of one version: which it is and the sha256 of each of its files."""

    model_name: str
    version: str
    files: Mapping[str, str]
    approved_by: str = "training"
    format: int = field(default=RECORD_FORMAT)

    def to_tag(self) -> str:
        """The record as the JSON value of the version tag."""
        return json.dumps(
            {
                "format": self.format,
                "model": self.model_name,
                "version": self.version,
                "approved_by": self.approved_by,
                "files": dict(sorted(self.files.items())),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_tag(cls, value: str, model_name: str, version: str) -> Record:
        """A record read back from its tag; UntrustedVersion when it is not one."""
        try:
            data = json.loads(value)
            record = cls(
                model_name=str(data["model"]),
                version=str(data["version"]),
                files={str(k): str(v) for k, v in dict(data["files"]).items()},
                approved_by=str(data.get("approved_by", "")),
                format=int(data["format"]),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise UntrustedVersion(model_name, version, "its record is not readable") from error
        if record.format != RECORD_FORMAT:
            raise UntrustedVersion(model_name, version, f"record format {record.format} unknown")
        return record


def summary(problems: list[str]) -> str:
    """The first problems, and how many more: one line, whatever the number."""
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = len(problems) - SHOWN_PROBLEMS
    return f"{shown}; and {more} more" if more > 0 else shown


def file_digests(directory: Path) -> dict[str, str]:
    """The sha256 of every file under ``directory``, by POSIX path relative to it."""
    digests = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_file() and relative not in DOWNLOAD_ONLY_FILES:
            digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def loader_problems(directory: Path) -> list[str]:
    """What about the version's `MLmodel` and files differs from the platform's own loader."""
    try:
        mlmodel = yaml.safe_load((directory / "MLmodel").read_text())
        flavors = dict(mlmodel["flavors"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return ["its MLmodel is missing or unreadable"]
    problems = []
    if set(flavors) != {"python_function", "xgboost"}:
        problems.append(f"flavors {sorted(flavors)} are not python_function and xgboost")
    pyfunc, xgb = dict(flavors.get("python_function") or {}), dict(flavors.get("xgboost") or {})
    if pyfunc.get("loader_module") != LOADER_MODULE:
        problems.append(f"loader_module {pyfunc.get('loader_module')!r} is not {LOADER_MODULE!r}")
    if xgb.get("model_class") != MODEL_CLASS:
        problems.append(f"model_class {xgb.get('model_class')!r} is not {MODEL_CLASS!r}")
    if xgb.get("model_format") not in BOOSTER_FORMATS:
        problems.append(f"model_format {xgb.get('model_format')!r} is not ubj or json")
    booster = xgb.get("data")
    if pyfunc.get("data") != booster or pyfunc.get("code") not in (None, CODE_DIR):
        problems.append("python_function's data or code differs from the xgboost flavor's")
    allowed = METADATA_FILES | {str(booster)}
    for name in file_digests(directory):
        if name not in allowed and not name.startswith(f"{CODE_DIR}/"):
            problems.append(f"unexpected file {name}")
    return problems


def code_problems(directory: Path, platform_code: Mapping[str, str]) -> list[str]:
    """How the version's `code/` differs from ``platform_code`` (path under code/ -> sha256)."""
    logged = {
        name.removeprefix(f"{CODE_DIR}/"): digest
        for name, digest in file_digests(directory).items()
        if name.startswith(f"{CODE_DIR}/")
    }
    problems = [
        f"code/{name} differs from the stack's"
        for name in sorted(set(logged) & set(platform_code))
        if logged[name] != platform_code[name]
    ]
    extra, missing = set(logged) - set(platform_code), set(platform_code) - set(logged)
    problems += [f"code/{name} is not the stack's code" for name in sorted(extra)]
    problems += [f"code/{name} is missing" for name in sorted(missing)]
    return problems


def approvable(
    model_name: str,
    version: str,
    directory: Path,
    platform_code: Mapping[str, str],
    by: str,
    origin_problems: list[str],
) -> Record:
    """The record of a downloaded version the stack may vouch for; else UntrustedVersion.

    ``origin_problems`` are what the registry said about where it came from (a model logged
    outside the training experiment, which only the platform's workers write).
    """
    problems = [*origin_problems, *loader_problems(directory)]
    problems += code_problems(directory, platform_code)
    if problems:
        raise UntrustedVersion(model_name, version, summary(problems))
    return Record(model_name, str(version), file_digests(directory), approved_by=by)


# How an adopted version's record says it was approved.
ADOPTED = "adopted at upgrade: trained here before records, with the platform's released code"
RELEASED_CODE = Path(__file__).with_name("released_code.json")


@cache
def released_code() -> dict[str, frozenset[str]]:
    """Path under a version's code/ -> the sha256 of every version of it the project released."""
    found = json.loads(RELEASED_CODE.read_text())
    return {path: frozenset(digests) for path, digests in found.items()}


def released_code_problems(directory: Path, released: Mapping[str, frozenset[str]]) -> list[str]:
    """Which files of the version's `code/` are not the project's code as a commit had it."""
    problems = []
    for name, digest in file_digests(directory).items():
        if not name.startswith(f"{CODE_DIR}/"):
            continue
        path = name.removeprefix(f"{CODE_DIR}/")
        if digest not in released.get(path, frozenset()):
            problems.append(f"{name} is not code the platform released")
    return problems


def adoptable(
    model_name: str,
    version: str,
    directory: Path,
    released: Mapping[str, frozenset[str]],
    origin_problems: list[str],
) -> Record:
    """The record of a version trained before records existed that the stack may adopt; else
    UntrustedVersion naming why not."""
    problems = [*origin_problems, *loader_problems(directory)]
    problems += released_code_problems(directory, released)
    if not any(name.startswith(f"{CODE_DIR}/") for name in file_digests(directory)):
        problems.append("it carries no code/ (not logged by the platform)")
    if problems:
        raise UntrustedVersion(model_name, version, summary(problems))
    return Record(model_name, str(version), file_digests(directory), approved_by=ADOPTED)


def verified_files(
    model_name: str, version: str, directory: Path, record_tag: str | None
) -> Record:
    """The record, when the downloaded files are exactly what it lists; else UntrustedVersion."""
    if not record_tag:
        raise UntrustedVersion(
            model_name, version, "the stack has no record of it (not trained or approved here)"
        )
    record = Record.from_tag(record_tag, model_name, version)
    if (record.model_name, record.version) != (model_name, str(version)):
        raise UntrustedVersion(
            model_name,
            version,
            f"its record is of {record.model_name} version {record.version}",
        )
    found = file_digests(directory)
    changed = sorted(n for n in set(found) & set(record.files) if found[n] != record.files[n])
    added, removed = sorted(set(found) - set(record.files)), sorted(set(record.files) - set(found))
    problems = [f"{n} changed" for n in changed] + [f"{n} added" for n in added]
    problems += [f"{n} removed" for n in removed]
    problems += loader_problems(directory)
    if problems:
        raise UntrustedVersion(model_name, version, summary(problems))
    return record
