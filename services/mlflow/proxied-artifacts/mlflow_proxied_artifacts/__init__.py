"""An S3 artifact repository for the MLflow server that keeps every transfer behind its proxy.

MLflow 3 advertises multipart uploads and downloads in ``/server-info`` whenever the artifact
destination's repository class mixes in ``MultipartUploadMixin``/``MultipartDownloadMixin``. Clients
then ask the server for presigned S3 URLs, which name the S3 endpoint as the *server* sees it
(``http://minio:9000`` inside compose). A teammate's laptop cannot resolve that name, and the client
raises instead of falling back to the proxy. This class delegates to MLflow's own
``S3ArtifactRepository`` but is not one of those mixins, so the server advertises neither feature
and every byte goes through ``/api/2.0/mlflow-artifacts``: clients need only the tracking URL.
"""

from __future__ import annotations

from typing import Any

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.s3_artifact_repo import S3ArtifactRepository


class ProxiedS3ArtifactRepository(ArtifactRepository):
    """S3 storage for MLflow's artifact proxy, without presigned-URL capabilities."""

    def __init__(self, artifact_uri: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(artifact_uri, *args, **kwargs)
        self._s3 = S3ArtifactRepository(artifact_uri, *args, **kwargs)

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Upload one file (boto3 still uses S3 multipart between server and bucket)."""
        self._s3.log_artifact(local_file, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload a directory tree."""
        self._s3.log_artifacts(local_dir, artifact_path)

    def list_artifacts(self, path: str | None = None) -> list:
        """List the direct children of ``path``."""
        return self._s3.list_artifacts(path)

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        """Fetch one object to a local file."""
        self._s3._download_file(remote_file_path, local_path)

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Delete everything under ``artifact_path``."""
        self._s3.delete_artifacts(artifact_path)

    def __getattr__(self, name: str) -> Any:
        if name == "_s3":  # not assigned yet: avoid recursing while __init__ runs
            raise AttributeError(name)
        # Anything else the server may call (e.g. trace archival) behaves as in MLflow's class.
        # The multipart/presign methods are reachable too, but the server only calls them after an
        # isinstance() check against the mixins, which this class deliberately fails.
        return getattr(self._s3, name)
