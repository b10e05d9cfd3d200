"""Create the artifact and data buckets if they are missing; safe to run any number of times.

python -m infra.minio.create_buckets [BUCKET...]    (default: MLFLOW_ARTIFACT_BUCKET, DATA_BUCKET)
"""

from __future__ import annotations

import sys
import time
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from flows.resources.s3 import error_code, is_missing, s3_client
from flows.settings import Settings

# Another init run may have won the race to create a bucket; that is the state we want.
ALREADY_THERE = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def ensure_bucket(client: Any, name: str) -> bool:
    """Create ``name`` unless it exists; return True when it was created."""
    try:
        client.head_bucket(Bucket=name)
        return False
    except ClientError as error:
        if not is_missing(error):
            raise
    try:
        client.create_bucket(Bucket=name)
    except ClientError as error:
        if error_code(error) not in ALREADY_THERE:
            raise
    return True


def wait_for_endpoint(client: Any, timeout_s: float) -> bool:
    """True once the S3 endpoint answers; False after ``timeout_s`` of silence."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.list_buckets()
            return True
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                return False
            time.sleep(1)


def main(bucket_names: list[str], timeout_s: float = 60.0) -> int:
    """Ensure every bucket exists, waiting up to ``timeout_s`` for the endpoint to answer."""
    client = s3_client(Settings.from_env().s3_endpoint_url)
    if not wait_for_endpoint(client, timeout_s):
        print(f"S3 endpoint {client.meta.endpoint_url} did not answer", file=sys.stderr)
        return 1
    for name in bucket_names:
        created = ensure_bucket(client, name)
        print(f"bucket {name}: {'created' if created else 'exists'}")
    return 0


def default_buckets() -> list[str]:
    """The buckets the settings name."""
    settings = Settings.from_env()
    return [settings.mlflow_artifact_bucket, *filter(None, [settings.data_bucket])]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or default_buckets()))
