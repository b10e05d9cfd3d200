"""The data proxy: trip files of the data bucket for workers on other hosts, through MLflow's
authenticated artifact proxy (``mlflow server --artifacts-only``), never with an S3 key."""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import requests

from flows.errors import TripDataError
from flows.logic.months import bucket_key
from flows.resources.store import ProxyStore, ReadOnlyStore
from flows.resources.tlc_files import ensure_month_stored, load_trips
from tests import servers
from tests.conftest import PLATFORM_MODEL
from tests.paths import TLC_DATA

pytestmark = pytest.mark.integration

JANUARY = TLC_DATA / "green_tripdata_2021-01.parquet"


@pytest.fixture(scope="module")
def data_proxy(accounts, s3) -> servers.AccountsServer:
    """The data proxy over a bucket that holds January 2021, as the stack's workers store it."""
    proxy = accounts.data_proxy
    s3.client().upload_file(str(JANUARY), proxy.bucket, bucket_key("green", "2021-01"))
    return proxy


@pytest.fixture(scope="module")
def worker_account(data_proxy) -> tuple[str, str]:
    """An ordinary account (the default permission, READ), as an outside worker has."""
    return data_proxy.create_account(f"outside-worker-{secrets.token_hex(3)}")


def signed_in(monkeypatch, account: tuple[str, str]) -> None:
    """Use ``account`` for MLflow's HTTP clients, as a worker's environment does."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", account[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", account[1])


def test_anonymous_requests_are_refused(data_proxy):
    key = bucket_key("green", "2021-01")
    response = requests.get(ProxyStore(data_proxy.url).uri(key), timeout=30)
    assert response.status_code == 401


def test_a_worker_account_reads_the_stored_month(data_proxy, worker_account, monkeypatch):
    signed_in(monkeypatch, worker_account)
    store = ProxyStore(data_proxy.url)
    key = bucket_key("green", "2021-01")
    assert store.exists(key)
    assert not store.exists(bucket_key("green", "2021-02"))

    trips = load_trips(store.uri(key), proxy=store)

    assert trips.digest == hashlib.sha256(JANUARY.read_bytes()).hexdigest()
    assert trips.rows_kept > 70_000
    with pytest.raises(TripDataError, match="file not found"):
        load_trips(store.uri(bucket_key("green", "2021-02")), proxy=store)


def test_a_worker_account_cannot_change_the_data(data_proxy, worker_account, s3, monkeypatch):
    signed_in(monkeypatch, worker_account)
    store = ProxyStore(data_proxy.url)
    key = bucket_key("green", "2021-01")
    before = s3.client().get_object(Bucket=data_proxy.bucket, Key=key)["ETag"]

    with pytest.raises(ReadOnlyStore, match="may not write"):
        store.put_bytes(b"not a parquet file", key)
    with pytest.raises(requests.HTTPError):
        store.delete(key)

    assert s3.client().get_object(Bucket=data_proxy.bucket, Key=key)["ETag"] == before


def test_an_account_managing_an_experiment_cannot_write_under_its_id(
    data_proxy, worker_account, s3
):
    # MLflow reads a proxied path's first segment as an experiment id: an account that created
    # experiment 7 on the tracking server (MANAGE on it, in the same accounts) could write under
    # 7/ of the data bucket. The data proxy's app refuses every write by anyone but an admin.
    granted = requests.post(
        f"{data_proxy.url}/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": worker_account[0],
            "resource_type": "experiment",
            "resource_id": "7",
            "permission": "MANAGE",
        },
        auth=data_proxy.admin,
        timeout=30,
    )
    granted.raise_for_status()
    s3.client().put_object(Bucket=data_proxy.bucket, Key="7/kept.txt", Body=b"kept")
    url = f"{data_proxy.url}/api/2.0/mlflow-artifacts/artifacts/7"

    put = requests.put(f"{url}/planted.txt", data=b"x", auth=worker_account, timeout=30)
    delete = requests.delete(f"{url}/kept.txt", auth=worker_account, timeout=30)
    read = requests.get(f"{url}/kept.txt", auth=worker_account, timeout=30)

    assert (put.status_code, delete.status_code, read.status_code) == (403, 403, 200)
    listed = s3.client().list_objects_v2(Bucket=data_proxy.bucket, Prefix="7/")["Contents"]
    assert [item["Key"] for item in listed] == ["7/kept.txt"]


def test_a_month_missing_from_a_read_only_store_is_read_from_tlc(
    data_proxy, worker_account, s3, tlc_site, monkeypatch
):
    signed_in(monkeypatch, worker_account)
    base_url, _ = tlc_site
    store = ProxyStore(data_proxy.url)

    location = ensure_month_stored(store, base_url, "green", "2021-02", logging.getLogger())

    assert location == f"{base_url}/green_tripdata_2021-02.parquet"
    listed = s3.client().list_objects_v2(Bucket=data_proxy.bucket, Prefix="tlc/green/")
    assert [o["Key"] for o in listed["Contents"]] == [bucket_key("green", "2021-01")]


def test_an_admin_writes_reads_and_deletes_through_it(data_proxy, monkeypatch):
    signed_in(monkeypatch, data_proxy.admin)
    store = ProxyStore(data_proxy.url)
    key = "predictions/color=green/year=2021/month=01/check.parquet"

    store.put_bytes(b"bytes through the proxy", key)
    assert store.exists(key)
    assert store.read_bytes(key) == b"bytes through the proxy"
    store.delete(key)
    assert not store.exists(key)


ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def served_key(now: datetime, version: int = 999, model: str = PLATFORM_MODEL) -> str:
    """A key the model server makes (services/serving/traffic.py), at ``now``."""
    return (
        f"served/year={now:%Y}/month={now:%m}/{model}-v{version}-{now:%Y%m%dT%H%M%SZ}-"
        f"{secrets.token_hex(3)}.parquet"
    )


@pytest.fixture(scope="module")
def serving_account(accounts) -> tuple[str, str]:
    """The model server's account (DATA_PROXY_TRAFFIC_WRITER)."""
    return accounts.serving


def test_the_model_server_adds_its_answered_records_and_nothing_else(
    data_proxy, serving_account, worker_account, s3
):
    key = served_key(datetime.now(UTC))
    url = f"{data_proxy.url}{ARTIFACTS}/{key}"
    added = requests.put(url, data=b"PAR1 answered records", auth=serving_account, timeout=30)
    assert added.status_code == 200, added.text
    body = s3.client().get_object(Bucket=data_proxy.bucket, Key=key)["Body"].read()
    assert body == b"PAR1 answered records"

    elsewhere = [
        ("PUT", f"{data_proxy.url}{ARTIFACTS}/{bucket_key('green', '2021-01')}"),
        ("PUT", f"{data_proxy.url}{ARTIFACTS}/served/notes.txt"),
        ("PUT", url.replace("/month=", "%2Fmonth=")),  # requests would resolve a ../ itself
        ("PUT", url + "?overwrite=1"),
        ("DELETE", url),
        ("POST", f"{data_proxy.url}/api/2.0/mlflow-artifacts/mpu/create/served/x.parquet"),
    ]  # fmt: skip
    for method, target in elsewhere:
        refused = requests.request(method, target, data=b"x", auth=serving_account, timeout=30)
        assert refused.status_code in (400, 403, 404), (method, target, refused.status_code)
    other = requests.put(url, data=b"x", auth=worker_account, timeout=30)
    assert other.status_code == 403, "only the model server's account adds answered records"
    assert s3.client().get_object(Bucket=data_proxy.bucket, Key=key)["Body"].read() == body


def test_answered_records_are_never_replaced_and_only_fresh_and_small(
    data_proxy, serving_account, s3
):
    """served/ is append-only and bounded: an existing key, another model, a month or a time
    far from now, an object over the size limit: each refused, and nothing written."""
    now = datetime.now(UTC)
    key = served_key(now)
    url = f"{data_proxy.url}{ARTIFACTS}/{key}"
    assert requests.put(url, data=b"first", auth=serving_account, timeout=30).status_code == 200
    again = requests.put(url, data=b"second", auth=serving_account, timeout=30)
    assert again.status_code == 409, again.text
    assert s3.client().get_object(Bucket=data_proxy.bucket, Key=key)["Body"].read() == b"first"
    for refused_key, status in [
        (served_key(now, model="someone-elses-model"), 403),
        (served_key(now - timedelta(days=40)), 403),
        (served_key(now + timedelta(days=3)), 403),
        (served_key(now).replace(f"year={now:%Y}", "year=0000"), 403),
    ]:
        answer = requests.put(f"{data_proxy.url}{ARTIFACTS}/{refused_key}", data=b"x",
                              auth=serving_account, timeout=30)  # fmt: skip
        assert answer.status_code == status, (refused_key, answer.text)
    too_big = b"x" * (16 * 1024 * 1024 + 1)
    large = requests.put(f"{data_proxy.url}{ARTIFACTS}/{served_key(now)}", data=too_big,
                         auth=serving_account, timeout=60)  # fmt: skip
    assert large.status_code == 413
