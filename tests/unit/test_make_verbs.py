"""The make verbs never run what a value holds: names are checked against their pattern before
anything runs, free text goes through as one argument, and no value is pasted into a shell line.
A stand-in `docker` records what the verbs would have run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

FAKE_DOCKER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def make(tmp_path: Path):
    """`make VERB ...` against the compose stack with a stand-in docker; (exit code, output,
    the docker command lines it ran)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    calls = tmp_path / "docker-calls"
    env_file = tmp_path / "stack.env"
    env_file.write_text("MLFLOW_PORT=5000\n")

    def run(*arguments: str) -> tuple[int, str, list[list[str]]]:
        calls.write_text("")
        result = subprocess.run(
            ["make", "--no-print-directory", *arguments, "STACK=compose", f"ENV_FILE={env_file}"],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PATH": f"{bin_dir}:{os.environ['PATH']}",
                "DOCKER_CALLS": str(calls),
            },
            capture_output=True,
            text=True,
        )
        ran = [json.loads(line) for line in calls.read_text().splitlines()]
        return result.returncode, result.stdout + result.stderr, ran

    return run


@pytest.mark.parametrize(
    ("verb", "variable"),
    [
        ("user", "NAME"),
        ("user-delete", "NAME"),
        ("grant", "NAME"),
        ("audit", "NAME"),
        ("worker-env", "NAME"),
        ("rollback", "VERSION"),
        ("monitor", "VERSION"),
        ("score", "MONTH"),
        ("train", "TRAIN_MONTH"),
        ("retry", "RUN"),
    ],
)
def test_a_value_that_is_no_name_is_refused_before_anything_runs(make, tmp_path, verb, variable):
    planted = tmp_path / "planted"
    hostile = f"x`touch {planted}`x"
    fill = {"grant": ["EXPERIMENT=e"], "monitor": ["MONTH=2021-01"],
            "train": ["VAL_MONTH=2021-02"]}.get(verb, [])  # fmt: skip
    code, output, ran = make(verb, f"{variable}={hostile}", *fill)
    assert code == 2 and f"{variable} must match" in output, output
    assert not planted.exists()
    checks = (["info"], ["compose", "version"])  # what docker-check asks
    assert [call for call in ran if call not in checks] == [], "nothing ran"


def test_free_text_goes_through_as_one_argument_never_run(make, tmp_path):
    planted = tmp_path / "planted"
    reason = f"rmse up; `touch {planted}` \"quoted\" 'too' && touch {planted}"
    code, output, ran = make("rollback", f"REASON={reason}")
    assert code == 0, output
    assert not planted.exists()
    (call,) = [call for call in ran if "rollback" in call]
    assert call[call.index("--reason") + 1] == reason
    # Nor is make's own syntax: the value is text.
    reason = f"$(shell touch {planted})"
    code, output, ran = make("rollback", f"REASON={reason}")
    assert code == 0 and not planted.exists(), output
    (call,) = [call for call in ran if "rollback" in call]
    assert call[call.index("--reason") + 1] == reason
    code, output, _ = make("user", f"NAME=$(shell touch {planted})")
    assert code == 2 and not planted.exists(), output


def test_experiment_names_with_spaces_reach_the_job_whole(make):
    code, output, ran = make("grant", "NAME=alice", "EXPERIMENT=alice sandbox", "PERMISSION=EDIT")
    assert code == 0, output
    (call,) = [call for call in ran if "grant" in call]
    assert call[call.index("--experiment") + 1] == "alice sandbox"
    assert call[call.index("--permission") + 1] == "EDIT"
