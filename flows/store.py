"""Where the platform keeps trip files: an S3 bucket (compose stack) or a local folder (make local).

Both stores use the same keys (``tlc/{color}/{file}``), so the flows and ``make upload-data`` do
not care which one is configured.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Protocol

from flows.s3 import MISSING_OBJECT, error_code, s3_client
from flows.settings import Settings


class DataStore(Protocol):
    """The few operations the flows need from the data bucket."""

    def uri(self, key: str) -> str:
        """The location of ``key`` that ``flows.data.load_trips`` reads."""

    def exists(self, key: str) -> bool:
        """True when ``key`` is stored."""

    def put_file(self, path: Path, key: str) -> str:
        """Store a local file under ``key``; return its location."""

    def put_bytes(self, data: bytes, key: str) -> None:
        """Store ``data`` under ``key``."""

    def read_bytes(self, key: str) -> bytes:
        """The bytes stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is absent)."""


class BucketStore:
    """Keys are objects of one S3 bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error_code(error) in MISSING_OBJECT:
                return False
            raise

    def put_file(self, path: Path, key: str) -> str:
        self.s3.upload_file(str(path), self.bucket, key)
        return self.uri(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)

    def read_bytes(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)


class FolderStore:
    """Keys are files under one local directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, key: str) -> str:
        return str(self.root / key)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def put_file(self, path: Path, key: str) -> str:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy next to the target, then rename: a reader never sees half a file.
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(path, partial)
        partial.replace(target)
        return str(target)

    def put_bytes(self, data: bytes, key: str) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def read_bytes(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


def data_store(settings: Settings) -> DataStore | None:
    """The configured store: DATA_BUCKET on S3, else DATA_DIR, else none (read TLC directly)."""
    if settings.data_bucket:
        return BucketStore(s3_client(settings.s3_endpoint_url), settings.data_bucket)
    if settings.data_dir:
        return FolderStore(Path(settings.data_dir))
    return None
