"""`make restore` checks an archive against its manifest before it touches the stack."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from infra.backup import archive

OBJECTS = {"mlflow-artifacts/1/abc/artifacts/model/MLmodel": b"flavors: {}\n", "taxi-data/x": b"x"}


def make_archive(directory: Path, damage: str | None = None) -> Path:
    """An archive laid out as `make backup` writes it; ``damage`` corrupts one member."""
    work = directory / "work"
    work.mkdir()
    manifest = {"created": "20261126T000000Z", "project": "p", "databases": {}, "objects": {}}
    for database in ("mlflow", "mlflow_auth", "prefect"):
        dump = work / f"{database}.dump"
        dump.write_bytes(f"PGDMP {database}".encode())
        manifest["databases"][database] = {"owner": "x", "size": 1, "sha256": archive.sha256(dump)}
    with tarfile.open(work / "buckets.tar", "w") as buckets:
        for name, data in OBJECTS.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            buckets.addfile(member, io.BytesIO(data))
    manifest["objects"] = archive.bucket_manifest(work / "buckets.tar")
    (work / "manifest.json").write_text(json.dumps(manifest))
    if damage == "dump":
        (work / "prefect.dump").write_bytes(b"PGDMP changed")
    elif damage == "object":
        data = (work / "buckets.tar").read_bytes().replace(b"flavors", b"flavorz")
        (work / "buckets.tar").write_bytes(data)
    elif damage == "manifest":
        (work / "manifest.json").unlink()
    path = directory / "backup.tar"
    with tarfile.open(path, "w") as out:
        for member in sorted(work.iterdir()):
            out.add(member, arcname=member.name)
    return path


class UntouchedStack(archive.Stack):
    """A stack that fails the test if restore runs any command on it."""

    def __init__(self) -> None:
        super().__init__(["false"], {})

    def run(self, *args, **kwargs):
        raise AssertionError(f"restore touched the stack: {args}")


def test_intact_archive_passes_its_manifest(tmp_path):
    manifest = archive.checked_members(make_archive(tmp_path), tmp_path / "out")
    assert set(manifest["objects"]) == set(OBJECTS)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("dump", "prefect.dump is missing or damaged"),
        ("object", "buckets.tar does not match its manifest"),
        ("manifest", "no manifest.json"),
    ],
)
def test_damaged_archive_is_refused_before_the_stack_is_touched(tmp_path, damage, message):
    path = make_archive(tmp_path, damage)
    with pytest.raises(archive.BackupError, match=message):
        archive.restore(UntouchedStack(), path)


def test_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "notes.tar"
    path.write_text("hello")
    with pytest.raises(archive.BackupError, match="not a readable backup archive"):
        archive.restore(UntouchedStack(), path)
