"""The one S3 client of the platform, and what S3-compatible servers say when a thing is missing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

# Codes for "no such object/bucket" across AWS, MinIO and other S3-compatible servers (a HEAD
# request has no body, so it can only say 404).
MISSING_OBJECT = frozenset({"404", "NoSuchKey", "NotFound"})
MISSING_BUCKET = frozenset({"NoSuchBucket"})


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client: SigV4 (MinIO and most S3-compatible servers require it) and boto3's
    standard retries, which ride out a few seconds of an unreachable endpoint; credentials come
    from the environment (AWS_ACCESS_KEY_ID, ...)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}),
    )


def error_code(error: ClientError) -> str:
    """The S3 error code of a failed request."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_missing(error: ClientError) -> bool:
    """True when the request failed because the object or its bucket does not exist."""
    return error_code(error) in MISSING_OBJECT | MISSING_BUCKET
