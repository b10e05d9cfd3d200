"""Export the platform's buckets as one tar stream, or replace their contents from one.

Runs inside the stack (the `create-buckets` service: it holds the S3 key and the bucket names):

    python infra/backup/buckets.py export > buckets.tar     # members: <bucket>/<key>
    python infra/backup/buckets.py import < buckets.tar     # empties each bucket, then fills it

Objects are streamed one at a time, so memory stays flat whatever the bucket holds.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import time
from typing import IO

import boto3
from botocore.config import Config

SPOOL_BYTES = 64 << 20  # objects above this go through a temporary file


def s3_client():
    """The S3 client of the stack (the same settings as the bucket-init job)."""
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}),
    )


def bucket_names() -> list[str]:
    """The artifact bucket and the data bucket."""
    return [os.environ["MLFLOW_ARTIFACT_BUCKET"], os.environ["DATA_BUCKET"]]


def keys(s3, bucket: str):
    """Every (key, size) of ``bucket``, in key order."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            yield item["Key"], item["Size"]


def export(s3, out: IO[bytes]) -> int:
    """Write every object of the buckets to ``out`` as a tar stream; return the object count."""
    count = 0
    with tarfile.open(fileobj=out, mode="w|") as archive:
        for bucket in bucket_names():
            directory = tarfile.TarInfo(bucket)  # an empty bucket is still restored
            directory.type, directory.mode, directory.mtime = tarfile.DIRTYPE, 0o755, time.time()
            archive.addfile(directory)
            for key, size in keys(s3, bucket):
                member = tarfile.TarInfo(f"{bucket}/{key}")
                member.size, member.mtime = size, time.time()
                body = s3.get_object(Bucket=bucket, Key=key)["Body"]
                archive.addfile(member, body)
                count += 1
    return count


def empty(s3, bucket: str) -> int:
    """Delete every object of ``bucket``; return how many there were."""
    batch, deleted = [], 0
    for key, _ in keys(s3, bucket):
        batch.append({"Key": key})
        if len(batch) == 1000:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch})
            deleted, batch = deleted + len(batch), []
    if batch:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch})
        deleted += len(batch)
    return deleted


def restore(s3, source: IO[bytes]) -> int:
    """Replace the buckets' contents with the objects of a tar stream; return the count."""
    known = set(bucket_names())
    for bucket in known:
        print(f"bucket {bucket}: {empty(s3, bucket)} objects removed", file=sys.stderr)
    count = 0
    with tarfile.open(fileobj=source, mode="r|") as archive:
        for member in archive:
            if member.isdir():
                continue
            bucket, _, key = member.name.partition("/")
            if bucket not in known or not key:
                raise SystemExit(f"buckets.tar: {member.name} is not in {sorted(known)}")
            # Spooled: boto3 wants a seekable file, a tar stream is not; memory stays bounded.
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
                shutil.copyfileobj(archive.extractfile(member), spool)
                spool.seek(0)
                s3.upload_fileobj(spool, bucket, key)
            count += 1
    return count


def main(argv: list[str]) -> int:
    if argv not in (["export"], ["import"]):
        print(__doc__, file=sys.stderr)
        return 2
    s3 = s3_client()
    if argv == ["export"]:
        count = export(s3, sys.stdout.buffer)
        print(f"exported {count} objects", file=sys.stderr)
    else:
        count = restore(s3, sys.stdin.buffer)
        print(f"restored {count} objects", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
