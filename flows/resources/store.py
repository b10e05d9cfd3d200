"""Where the platform keeps trip files: an S3 bucket (compose stack), the same bucket through the
stack's data proxy (workers on other hosts), or a local folder (make local).

Every store uses the same keys (``tlc/{color}/{file}``), so the flows and ``make upload-data`` do
not care which one is configured.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from platform_names import ARTIFACTS_API_PATH

from flows.resources.s3 import MISSING_OBJECT, error_code, s3_client
from flows.settings import Settings

if TYPE_CHECKING:
    from flows.logic.retention import StoredObject


class DataStore(Protocol):
    """The few operations the flows need from the data bucket."""

    def uri(self, key: str) -> str:
        """The location of ``key`` that ``flows.resources.tlc_files.load_trips`` reads."""

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


class ListableStore(DataStore, Protocol):
    """A store the stack holds itself (a bucket or a folder): housekeeping lists it."""

    def listing(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``."""


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

    def listing(self, prefix: str) -> Iterator[StoredObject]:
        from flows.logic.retention import StoredObject

        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], int(item["Size"]), item["LastModified"])


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

    def listing(self, prefix: str) -> Iterator[StoredObject]:
        from flows.logic.retention import StoredObject

        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix):
                stat = path.stat()
                yield StoredObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))


class ReadOnlyStore(PermissionError):
    """The store refused a write: this account may only read it."""


class ProxyStore:
    """Keys are files of the data bucket served by the stack's data proxy: ``mlflow server
    --artifacts-only`` over DATA_BUCKET, behind the same accounts as MLflow, so a worker on
    another host reads trip files with its MLflow account and never holds an S3 key.

    Credentials come from MLFLOW_TRACKING_USERNAME/PASSWORD, as for MLflow itself. Accounts read
    (the default permission); only admins write, so such a worker cannot change the data.
    """

    ROOT = ARTIFACTS_API_PATH

    def __init__(self, base_url: str) -> None:
        from mlflow.store.artifact import http_artifact_repo

        self.root = base_url.rstrip("/") + self.ROOT
        # MLflow's client for its artifact proxy (auth, retries); its methods carry no types.
        repository: Any = http_artifact_repo.HttpArtifactRepository
        self.repo: Any = repository(self.root)

    def uri(self, key: str) -> str:
        return f"{self.root}/{key}"

    def key_of(self, location: str) -> str | None:
        """The key of a location this store gave out, else None."""
        prefix = self.root + "/"
        return location[len(prefix) :] if location.startswith(prefix) else None

    def exists(self, key: str) -> bool:
        parent, name = PurePosixPath(key).parent, PurePosixPath(key).name
        try:
            listed = self.repo.list_artifacts(str(parent))
        except Exception as error:
            if status_of(error) == 404:
                return False
            raise
        return any(PurePosixPath(info.path).name == name and not info.is_dir for info in listed)

    def put_file(self, path: Path, key: str) -> str:
        target = PurePosixPath(key)
        with tempfile.TemporaryDirectory() as tmp:
            named = path
            if path.name != target.name:  # the proxy stores a file under its own name
                named = Path(tmp) / target.name
                shutil.copyfile(path, named)
            try:
                self.repo.log_artifact(str(named), str(target.parent))
            except Exception as error:
                if status_of(error) in (401, 403):
                    raise ReadOnlyStore(f"{self.uri(key)}: this account may not write") from error
                raise
        return self.uri(key)

    def put_bytes(self, data: bytes, key: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / "data"
            local.write_bytes(data)
            self.put_file(local, key)

    def read_bytes(self, key: str) -> bytes:
        # The proxy answers a missing object with a 500, which MLflow's client retries for
        # minutes: ask first.
        if not self.exists(key):
            raise FileNotFoundError(self.uri(key))
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / PurePosixPath(key).name
            self.repo._download_file(key, str(local))  # one file, streamed
            return local.read_bytes()

    def delete(self, key: str) -> None:
        try:
            self.repo.delete_artifacts(key)
        except Exception as error:
            if status_of(error) != 404:
                raise


def status_of(error: BaseException) -> int | None:
    """The HTTP status of a failed request to the proxy (MLflow raises requests' HTTPError)."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def data_store(settings: Settings) -> DataStore | None:
    """The configured store: DATA_BUCKET on S3, else the data proxy (DATA_PROXY_URL), else
    DATA_DIR, else none (read TLC directly)."""
    if settings.data_bucket:
        return BucketStore(s3_client(settings.s3_endpoint_url), settings.data_bucket)
    if settings.data_proxy_url:
        return ProxyStore(settings.data_proxy_url)
    if settings.data_dir:
        return FolderStore(Path(settings.data_dir))
    return None
