"""The platform's two buckets as a whole: export, import, list, checksum, and put files.

Runs inside the stack (the `create-buckets` service holds the S3 key and the bucket names):

    python -m infra.backup.buckets export > buckets.tar     # members: <bucket>/<key>
    python -m infra.backup.buckets import < buckets.tar     # empties each bucket, then fills it
    python -m infra.backup.buckets list                     # JSON {"<bucket>/<key>": size}
    python -m infra.backup.buckets digests                  # JSON {"<bucket>/<key>": sha256}
    python -m infra.backup.buckets put PREFIX FILE...       # FILE -> data bucket, PREFIX/<name>

Objects are streamed one at a time, so memory stays flat whatever the buckets hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from flows.resources.s3 import s3_client
from flows.settings import Settings

SPOOL_BYTES = 64 << 20  # objects above this go through a temporary file


class BucketsError(Exception):
    """A bucket stream that cannot be imported, or a setting that is missing."""


def bucket_names(settings: Settings) -> list[str]:
    """The artifact bucket and the data bucket."""
    if not settings.data_bucket:
        raise BucketsError("DATA_BUCKET is not set")
    return [settings.mlflow_artifact_bucket, settings.data_bucket]


def keys(s3: Any, bucket: str) -> Iterator[tuple[str, int]]:
    """Every (key, size) of ``bucket``, in key order."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]


def objects(s3: Any, buckets: list[str]) -> Iterator[tuple[str, str, int]]:
    """Every (bucket, key, size) of ``buckets``."""
    for bucket in buckets:
        for key, size in keys(s3, bucket):
            yield bucket, key, size


def export(s3: Any, buckets: list[str], out: IO[bytes]) -> int:
    """Write every object of the buckets to ``out`` as a tar stream; return the object count."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|") as archive:
        for bucket in buckets:
            directory = tarfile.TarInfo(bucket)  # an empty bucket is still restored
            directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, time.time()
            archive.addfile(directory)
            for key, size in keys(s3, bucket):
                member = tarfile.TarInfo(f"{bucket}/{key}")
                member.size, member.mtime = size, time.time()
                archive.addfile(member, s3.get_object(Bucket=bucket, Key=key)["Body"])
                count += 1
    return count


def empty(s3: Any, bucket: str) -> int:
    """Delete every object of ``bucket``; return how many there were."""
    batch: list[dict[str, str]] = []
    deleted = 0
    for key, _ in keys(s3, bucket):
        batch.append({"Key": key})
        if len(batch) == 1000:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch})
            deleted, batch = deleted + len(batch), []
    if batch:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch})
        deleted += len(batch)
    return deleted


def restore(s3: Any, buckets: list[str], source: IO[bytes]) -> int:
    """Replace the buckets' contents with the objects of a tar stream; return the count."""
    known = set(buckets)
    for bucket in buckets:
        print(f"bucket {bucket}: {empty(s3, bucket)} objects removed", file=sys.stderr)
    count = 0
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            content = archive.extractfile(member) if member.isfile() else None
            if content is None:
                continue
            bucket, _, key = member.name.partition("/")
            if bucket not in known or not key:
                raise BucketsError(f"buckets.tar: {member.name} is not in {sorted(known)}")
            # Spooled: boto3 wants a seekable file, a tar stream is not; memory stays bounded.
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                shutil.copyfileobj(content, spool)
                spool.seek(0)
                s3.upload_fileobj(spool, bucket, key)
            count += 1
    return count


def sizes(s3: Any, buckets: list[str]) -> dict[str, int]:
    """Size of every object, keyed ``<bucket>/<key>``."""
    return {f"{bucket}/{key}": size for bucket, key, size in objects(s3, buckets)}


def digests(s3: Any, buckets: list[str]) -> dict[str, str]:
    """sha256 of every object, keyed ``<bucket>/<key>``."""
    return {
        f"{bucket}/{key}": hashlib.file_digest(
            s3.get_object(Bucket=bucket, Key=key)["Body"], "sha256"
        ).hexdigest()
        for bucket, key, _ in objects(s3, buckets)
    }


def put(s3: Any, bucket: str, prefix: str, paths: list[Path]) -> list[str]:
    """Copy local files into ``bucket`` under ``prefix``, as they are; return their keys."""
    stored = []
    for path in paths:
        key = f"{prefix.strip('/')}/{path.name}"
        s3.upload_file(str(path), bucket, key)
        stored.append(key)
    return stored


def main(argv: list[str] | None = None) -> int:
    """Run one command against the stack's buckets."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["export", "import", "list", "digests", "put"])
    parser.add_argument("args", nargs="*", help="put: PREFIX FILE...")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    s3 = s3_client(settings.s3_endpoint_url)
    try:
        buckets = bucket_names(settings)
        if args.command == "export":
            print(f"exported {export(s3, buckets, sys.stdout.buffer)} objects", file=sys.stderr)
        elif args.command == "import":
            print(f"restored {restore(s3, buckets, sys.stdin.buffer)} objects", file=sys.stderr)
        elif args.command == "list":
            print(json.dumps(sizes(s3, buckets), sort_keys=True))
        elif args.command == "digests":
            print(json.dumps(digests(s3, buckets), sort_keys=True))
        else:
            if len(args.args) < 2:
                parser.error("put needs PREFIX and at least one FILE")
            prefix, *files = args.args
            stored = put(s3, buckets[1], prefix, [Path(f) for f in files])
            print(json.dumps([f"s3://{buckets[1]}/{key}" for key in stored]))
    except BucketsError as error:
        print(f"buckets: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
