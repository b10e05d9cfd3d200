"""Which explicit trip files a flow may read (flows/logic/locations.py): only the data store's."""

from __future__ import annotations

import pytest

from flows.errors import InvalidParameters
from flows.logic.locations import allowed_location

TLC = "https://d37ci6vzurychx.cloudfront.net/trip-data"
PROXY = "http://data-proxy:5000/api/2.0/mlflow-artifacts/artifacts"


def allowed(location: str, folders: list[str] | None = None) -> str:
    """The location as a compose worker with a data folder would check it."""
    return allowed_location(location, "train_path", "taxi-data", [TLC, PROXY], folders or [])


@pytest.mark.parametrize(
    "location",
    [
        "s3://taxi-data/tlc/green/green_tripdata_2021-01.parquet",
        f"{TLC}/green_tripdata_2021-01.parquet",
        f"{PROXY}/tlc/green/green_tripdata_2021-01.parquet",
    ],
)
def test_the_data_store_is_allowed(location):
    assert allowed(location) == location


def test_a_file_under_a_data_folder_is_allowed(tmp_path):
    inside = tmp_path / "green_tripdata_2021-01.parquet"
    assert allowed(str(inside), [str(tmp_path)]) == str(inside)


@pytest.mark.parametrize(
    "location",
    [
        "/app/.env",
        "file:///etc/passwd",
        "s3://mlflow-artifacts/1/abc/artifacts/model/model.ubj",
        "s3://taxi-data/../mlflow-artifacts/x.parquet",
        "s3://taxi-data/tlc/%2e%2e/x.parquet",
        "http://mlflow:5000/api/2.0/mlflow/experiments/search",
        "http://minio:9000/taxi-data/x.parquet",
        f"{TLC}/../../latest-secrets",
        f"{TLC}/%2e%2e/x.parquet",
        f"{TLC}/green_tripdata_2021-01.parquet?redirect=http://mlflow:5000",
        "https://d37ci6vzurychx.cloudfront.net.evil.example/trip-data/x.parquet",
        "https://user@d37ci6vzurychx.cloudfront.net/trip-data/x.parquet",
        f"{TLC}-other/x.parquet",
        "ftp://example.org/x.parquet",
    ],
)
def test_anything_else_is_refused_naming_the_parameter_and_where_files_may_be(location):
    with pytest.raises(InvalidParameters) as refused:
        allowed(location)
    message = str(refused.value)
    assert message.startswith(f"train_path {location!r} is outside the data store")
    assert "s3://taxi-data/..." in message and f"{TLC}/..." in message


def test_a_path_that_climbs_out_of_a_data_folder_is_refused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.parquet").write_bytes(b"x")
    with pytest.raises(InvalidParameters):
        allowed(str(data / ".." / "secret.parquet"), [str(data)])
    (data / "link.parquet").symlink_to(tmp_path / "secret.parquet")
    with pytest.raises(InvalidParameters):
        allowed(str(data / "link.parquet"), [str(data)])


def test_a_path_with_dot_segments_is_refused_even_where_it_lands_inside(tmp_path):
    """Where `..` lands depends on the folders around the data store (a checkout under the temp
    folder, say): it is refused as written, wherever it resolves."""
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "x.parquet").write_bytes(b"x")
    for climbing in ("sub/../x.parquet", "./x.parquet", "sub/%2e%2e/x.parquet"):
        with pytest.raises(InvalidParameters):
            allowed(f"file://{data}/{climbing}", [str(data)])
    with pytest.raises(InvalidParameters):
        allowed(f"{data}/sub/../x.parquet", [str(data)])
    assert allowed(str(data / "x.parquet"), [str(data)]) == str(data / "x.parquet")


def test_with_no_store_configured_nothing_is_allowed():
    with pytest.raises(InvalidParameters, match="none is configured"):
        allowed_location("/tmp/x.parquet", "path", None, [], [])
