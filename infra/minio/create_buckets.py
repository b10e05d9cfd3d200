"""Create the artifact and data buckets if they are missing; safe to run any number of times."""

from __future__ import annotations

import os
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError


def s3_client():
    """An S3 client for the configured endpoint (MinIO in compose, any S3-compatible server)."""
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}),
    )


def ensure_bucket(client, name: str) -> bool:
    """Create ``name`` unless it exists; return True when it was created."""
    try:
        client.head_bucket(Bucket=name)
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] not in {"404", "NoSuchBucket", "NotFound"}:
            raise
    try:
        client.create_bucket(Bucket=name)
    except ClientError as error:
        # Another init run may have won the race; that is the state we want.
        if error.response["Error"]["Code"] not in {
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        }:
            raise
    return True


def main(bucket_names: list[str], timeout_s: float = 60.0) -> int:
    """Ensure every bucket exists, waiting up to ``timeout_s`` for the endpoint to answer."""
    client = s3_client()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.list_buckets()
            break
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                print(f"S3 endpoint {client.meta.endpoint_url} did not answer", file=sys.stderr)
                return 1
            time.sleep(1)
    for name in bucket_names:
        created = ensure_bucket(client, name)
        print(f"bucket {name}: {'created' if created else 'exists'}")
    return 0


if __name__ == "__main__":
    names = sys.argv[1:] or [os.environ["MLFLOW_ARTIFACT_BUCKET"], os.environ["DATA_BUCKET"]]
    sys.exit(main(names))
