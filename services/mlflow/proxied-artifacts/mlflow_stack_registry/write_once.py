"""What a registered version is made of is written once: its run's artifacts and its logged
model's files, once a version of any model stands on them.

MLflow lets anyone with EDIT on an experiment write, replace and delete files under its runs and
logged models through the artifact proxy, registered ones included (EDIT is what a worker on
another host holds on the training experiment). A changed file makes the stack refuse the version
(flows/logic/provenance.py), but a refused champion is a stopped team: the write must not happen.
Here an artifact-proxy write under ``<experiment>/<run id>/...`` or
``<experiment>/models/<model id>/...`` is refused when a model version stands on that run or
logged model, unless an admin or the stack's own account makes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlalchemy as sa

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")


@dataclass(frozen=True)
class Owner:
    """What an artifact path belongs to: a run (its id) or a logged model (its id)."""

    kind: str  # "run" or "logged model"
    id: str


def owner_of(artifact_path: str) -> Owner | None:
    """The run or logged model whose files an artifact-proxy path names, if any."""
    parts = artifact_path.split("/")
    if parts[:1] == ["workspaces"]:
        parts = parts[2:]
    if len(parts) >= 3 and parts[1] == "models" and MODEL_ID.match(parts[2]):
        return Owner("logged model", parts[2])
    if len(parts) >= 2 and RUN_ID.match(parts[1]):
        return Owner("run", parts[1])
    return None


VERSIONS_ON = sa.text(
    "SELECT name, version FROM model_versions "
    "WHERE current_stage <> 'Deleted_Internal' AND ("
    " run_id = :id OR source = :source OR storage_location LIKE :location) "
    "ORDER BY creation_time LIMIT 1"
)


def version_on(engine: sa.Engine, owner: Owner) -> str | None:
    """'version V of M' standing on the run or logged model, or None."""
    with engine.connect() as connection:
        found = connection.execute(
            VERSIONS_ON,
            {
                "id": owner.id,
                "source": f"models:/{owner.id}",
                "location": f"%/models/{owner.id}/%",
            },
        ).first()
    return f"version {found.version} of {found.name}" if found else None
