"""Reading a month of trips through the data proxy (what a worker on another host does) against
reading it straight from S3 (what the stack's own workers do), in the same run.

    uv run python -m bench.data_proxy [--reads 10]

Against the running compose stack of ENV_FILE (.env); stores green 2021-01 (1.3 MB) first. Each
row times `--reads` calls of the flows' own `read_bytes` of that month's key:

- baseline: `BucketStore` in the worker container (S3 API of the compose network, root key);
- `ProxyStore` in the worker container, to http://data-proxy:5000 with the worker's account;
- `ProxyStore` on this host, to the published http://localhost:DATA_PROXY_PORT with the admin's
  account: the path a worker elsewhere takes, minus the network between the hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench.stack import compose, make
from infra.make_env import read_env
from tests.paths import REPO_ROOT, TLC_DATA

MONTH = "2021-01"
IN_WORKER = """
import json, sys, time
from flows.settings import Settings
from flows.resources.store import ProxyStore, data_store
from flows.logic.months import bucket_key
key, reads = bucket_key("green", "{month}"), {reads}
stores = {{"s3": data_store(Settings.from_env()), "proxy": ProxyStore("http://data-proxy:5000")}}
timings = {{}}
for name, store in stores.items():
    store.read_bytes(key)  # a first read opens connections
    timings[name] = []
    for _ in range(reads):
        started = time.perf_counter()
        size = len(store.read_bytes(key))
        timings[name].append(time.perf_counter() - started)
print(json.dumps({{"size": size, **timings}}))
"""


def host_reads(reads: int) -> list[float]:
    """Seconds of each read through the published data proxy, as the admin."""
    from flows.logic.months import bucket_key
    from flows.resources.store import ProxyStore

    settings = read_env(REPO_ROOT / os.environ.get("ENV_FILE", ".env"))
    os.environ["MLFLOW_TRACKING_USERNAME"] = settings.get("MLFLOW_ADMIN_USERNAME") or "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = settings["MLFLOW_ADMIN_PASSWORD"]
    store = ProxyStore(f"http://localhost:{settings.get('DATA_PROXY_PORT') or 5001}")
    key = bucket_key("green", MONTH)
    store.read_bytes(key)
    timings = []
    for _ in range(reads):
        started = time.perf_counter()
        store.read_bytes(key)
        timings.append(time.perf_counter() - started)
    return timings


def row(label: str, samples: list[float], baseline: float) -> str:
    """A markdown row in milliseconds, with the ratio of its p50 to the baseline's."""
    p50 = statistics.median(samples)
    return (
        f"| {label} | {p50 * 1e3:.1f} | {min(samples) * 1e3:.1f} | {max(samples) * 1e3:.1f} "
        f"| {p50 / baseline:.2f} |"
    )


def main() -> int:
    """Store the month, time the three ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=10)
    args = parser.parse_args()
    make("upload-data", f"FILES={TLC_DATA / f'green_tripdata_{MONTH}.parquet'}")
    code = IN_WORKER.format(month=MONTH, reads=args.reads)
    inside = json.loads(compose("exec", "-T", "worker", "python", "-c", code).splitlines()[-1])
    outside = host_reads(args.reads)
    baseline = statistics.median(inside["s3"])
    print(f"green {MONTH} ({inside['size'] / 1e6:.1f} MB), {args.reads} reads each (ms)")
    print("| how | p50 | min | max | p50 / baseline |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(row("baseline: S3 in the worker container (BucketStore)", inside["s3"], baseline))
    print(row("data proxy in the worker container (ProxyStore)", inside["proxy"], baseline))
    print(row("data proxy from this host, published port (ProxyStore)", outside, baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
