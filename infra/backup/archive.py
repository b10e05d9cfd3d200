"""`make backup` and `make restore`: the stack's databases and buckets in one archive.

    python3 -m infra.backup.archive backup  --env-file .env [--dir backups]
    python3 -m infra.backup.archive restore --env-file .env FILE

The archive (`<project>-<UTC time>.tar`) holds one `pg_dump -Fc` per database (MLflow's, its
accounts', Prefect's and the gateway's), `buckets.tar`
(every object of the artifact and data buckets) and `manifest.json` (sizes and sha256 of each).
Backups run on a live stack: the databases are dumped first, then the buckets are copied, so
every artifact the dumps refer to is in the archive. Restore stops MLflow, Prefect and the
worker (and the servers in front of them), replaces the databases and the buckets' contents, and
starts them again.

Runs on the host with the standard library only; the work happens in the stack's containers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from platform_names import MAINTENANCE_LOCK

from infra.make_env import read_env

# The services that hold connections to the databases a restore replaces.
APP_SERVICES = ["mlflow", "data-proxy", "prefect-server", "prefect-gateway", "worker"]
# The Prefect gateway's database (its audit log and worker accounts); postgres-init makes its
# tables, so a restore puts back their rows only.
GATEWAY_DATABASE = "gateway"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why."""


class Stack:
    """Runs commands in the compose stack's containers."""

    def __init__(self, compose: list[str], env: dict[str, str]) -> None:
        self.compose, self.env = compose, env

    def run(
        self, *args: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """`docker compose ARGS`, failing loudly with its error output."""
        result = subprocess.run(
            [*self.compose, *args],
            stdin=stdin,
            stdout=stdout if stdout is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if result.returncode != 0:
            command = shlex.join(["docker compose", *args])
            raise BackupError(f"{command} failed:\n{result.stderr.decode(errors='replace')}")
        return result

    def databases(self) -> dict[str, str]:
        """Each service database and the role that owns it."""
        mlflow = self.env.get("MLFLOW_DB_USER") or "mlflow"
        prefect = self.env.get("PREFECT_DB_USER") or "prefect"
        return {
            mlflow: mlflow,
            f"{mlflow}_auth": mlflow,
            prefect: prefect,
            GATEWAY_DATABASE: "postgres",
        }

    def existing_databases(self) -> set[str]:
        """The databases the running PostgreSQL has (a stack of an earlier release may lack one
        this release backs up)."""
        listed = self.run(
            "exec", "-T", "postgres", "psql", "-U", "postgres", "--no-psqlrc", "-At",
            "-c", "SELECT datname FROM pg_database",
        )  # fmt: skip
        return set(listed.stdout.decode().split())

    def buckets(self, command: str, **streams: IO[bytes]) -> None:
        """`infra.backup.buckets export|import` in a one-off container holding the S3 key."""
        self.run(
            "run", "--rm", "--no-deps", "-T", "create-buckets",
            "python", "-m", "infra.backup.buckets", command,
            **streams,
        )  # fmt: skip

    @contextmanager
    def maintenance_lock(self) -> Iterator[None]:
        """Hold MAINTENANCE_LOCK in MLflow's database for the block (waiting for a sweep)."""
        database = self.env.get("MLFLOW_DB_USER") or "mlflow"
        session = subprocess.Popen(
            [*self.compose, "exec", "-T", "postgres", "psql", "-U", "postgres", "--no-psqlrc",
             "-v", "ON_ERROR_STOP=1", "--quiet", "--tuples-only", "-d", database],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert session.stdin is not None and session.stdout is not None
        session.stdin.write(f"SELECT pg_advisory_lock({MAINTENANCE_LOCK});\n\\echo locked\n")
        session.stdin.flush()
        for line in session.stdout:
            if line.strip() == "locked":
                break
        else:
            error = session.stderr.read() if session.stderr else ""
            raise BackupError(f"could not take the maintenance lock in {database}: {error}")
        try:
            yield
        finally:
            session.stdin.close()  # psql ends, and the lock with its session
            session.wait(timeout=60)

    def psql(self, sql: str) -> None:
        """Run SQL as the superuser, in the postgres container."""
        self.run(
            "exec", "-T", "postgres", "psql", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql
        )


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def bucket_manifest(buckets_tar: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of each object in the exported bucket stream."""
    objects = {}
    with tarfile.open(buckets_tar, mode="r|") as archive:
        for member in archive:
            content = archive.extractfile(member) if member.isfile() else None
            if content is not None:
                # A tar member is a BufferedReader (readinto included); typeshed says IO[bytes].
                hashed = hashlib.file_digest(content, "sha256")  # type: ignore[arg-type]
                digest = hashed.hexdigest()
                objects[member.name] = {"size": member.size, "sha256": digest}
    return objects


def backup(stack: Stack, target_dir: Path) -> Path:
    """Write one archive of the databases and the buckets; return its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    project = stack.env.get("COMPOSE_PROJECT_NAME") or "taxi-mlops"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{project}-{stamp}.tar"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest: dict[str, Any] = {
            "created": stamp, "project": project, "databases": {}, "objects": {}
        }  # fmt: skip
        # Dumps to last object under the lock housekeeping deletes under (MAINTENANCE_LOCK).
        existing = stack.existing_databases()
        with stack.maintenance_lock():
            for database, owner in stack.databases().items():
                if database not in existing:
                    print(f"database {database}: not in this stack (an earlier release)")
                    continue
                dump = work / f"{database}.dump"
                with dump.open("wb") as out:
                    stack.run(
                        "exec",
                        "-T",
                        "postgres",
                        "pg_dump",
                        "-U",
                        "postgres",
                        "-Fc",
                        # The superuser's helper in MLflow's database (infra/postgres/
                        # database-sizes.sql): postgres-init makes it again after a restore.
                        "--exclude-schema=platform_admin",
                        database,
                        stdout=out,
                    )
                manifest["databases"][database] = {
                    "owner": owner,
                    "size": dump.stat().st_size,
                    "sha256": sha256(dump),
                }
                print(f"database {database}: {dump.stat().st_size / 1e6:.1f} MB", flush=True)
            buckets = work / "buckets.tar"
            with buckets.open("wb") as out:
                stack.buckets("export", stdout=out)
        manifest["objects"] = bucket_manifest(buckets)
        print(
            f"buckets: {len(manifest['objects'])} objects, {buckets.stat().st_size / 1e6:.1f} MB",
            flush=True,
        )
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        partial = target.with_name(target.name + ".partial")
        # Owner-only from the moment it exists: it holds MLflow's password hashes and every
        # run's data.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out, tarfile.open(fileobj=out, mode="w") as archive:
            for path in sorted(work.iterdir()):
                archive.add(path, arcname=path.name)
        partial.rename(target)  # an archive that exists is complete
    return target


def checked_members(archive_path: Path, work: Path) -> dict[str, Any]:
    """Unpack the archive into ``work`` and verify it against its manifest; return the manifest."""
    try:
        with tarfile.open(archive_path) as archive:
            archive.extractall(work, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise BackupError(f"{archive_path}: not a readable backup archive ({error})") from error
    manifest_path = work / "manifest.json"
    if not manifest_path.is_file():
        raise BackupError(f"{archive_path}: no manifest.json, not made by `make backup`")
    manifest = json.loads(manifest_path.read_text())
    for database, entry in manifest["databases"].items():
        dump = work / f"{database}.dump"
        if not dump.is_file() or sha256(dump) != entry["sha256"]:
            raise BackupError(f"{archive_path}: {database}.dump is missing or damaged")
    if bucket_manifest(work / "buckets.tar") != manifest["objects"]:
        raise BackupError(f"{archive_path}: buckets.tar does not match its manifest")
    return dict(manifest)


def replace_contents(stack: Stack, manifest: dict[str, Any], work: Path) -> None:
    """Drop and reload each database from its dump, then replace the buckets' objects."""
    for database in manifest["databases"]:
        stack.psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    # Recreated empty by the stack's own init job: owner and REVOKE ... FROM PUBLIC as on `make up`
    # (a dump of one database carries neither).
    stack.run("run", "--rm", "--no-deps", "-T", "postgres-init")
    for database, entry in manifest["databases"].items():
        owner = stack.databases().get(database, entry["owner"])
        # The gateway's tables are made by postgres-init (the superuser's, with the gateway's
        # append-only grants): only their rows come from the dump.
        data_only = ["--data-only"] if database == GATEWAY_DATABASE else []
        with (work / f"{database}.dump").open("rb") as dump:
            stack.run(
                "exec",
                "-T",
                "postgres",
                "pg_restore",
                "-U",
                "postgres",
                "--dbname",
                database,
                "--no-owner",
                f"--role={owner}",
                *data_only,
                "--exit-on-error",
                stdin=dump,
            )
        print(f"database {database}: restored", flush=True)
    with (work / "buckets.tar").open("rb") as buckets:
        stack.buckets("import", stdin=buckets)
    print(f"buckets: {len(manifest['objects'])} objects restored", flush=True)


def restore(stack: Stack, archive_path: Path) -> None:
    """Replace the stack's databases and bucket contents with the archive's."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        manifest = checked_members(archive_path, work)  # nothing is touched before this passes
        print(f"restoring {archive_path.name} (made {manifest['created']})", flush=True)
        stack.run("stop", *APP_SERVICES)
        try:
            replace_contents(stack, manifest, work)
        except BackupError as error:
            raise BackupError(
                f"{error}\nThe restore stopped midway; MLflow, Prefect and the worker stay "
                "stopped. Fix the cause and run `make restore` again: it starts over."
            ) from error
    # Starts the stopped services; the one-shot jobs re-apply roles and the worker's account.
    stack.run("up", "--detach", "--wait", "--wait-timeout", "300")
    print("stack is back up", flush=True)


def main(argv: list[str] | None = None) -> int:
    """`backup` or `restore`; exit code 1 with the reason when it cannot be done."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["backup", "restore"])
    parser.add_argument("file", nargs="?", type=Path, help="restore: the archive")
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    parser.add_argument("--dir", type=Path, default=Path("backups"), help="backup: where to write")
    args = parser.parse_intermixed_args(argv)  # FILE may follow the options
    stack = Stack(["docker", "compose", "--env-file", str(args.env_file)], read_env(args.env_file))
    if args.command == "restore" and (args.file is None or not args.file.is_file()):
        parser.error(f"restore needs an existing archive: FILE={args.file or ''}")
    try:
        if args.command == "backup":
            print(f"backup written: {backup(stack, args.dir)}")
        else:
            restore(stack, args.file)
    except BackupError as error:
        print(f"make {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
