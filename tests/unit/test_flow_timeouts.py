"""Every flow has a timeout, so a stuck run gives its worker slot back (flows/pipelines)."""

from __future__ import annotations

import importlib

import yaml

from flows.pipelines import FLOW_TIMEOUT_S
from tests.paths import REPO_ROOT


def test_every_deployed_flow_has_its_timeout():
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    assert {d["name"] for d in deployments} == set(FLOW_TIMEOUT_S)
    for deployment in deployments:
        path, function = deployment["entrypoint"].split(":")
        flow = getattr(
            importlib.import_module(path.removesuffix(".py").replace("/", ".")), function
        )
        assert flow.timeout_seconds == FLOW_TIMEOUT_S[deployment["name"]], deployment["name"]
