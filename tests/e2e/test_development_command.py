"""The README's development command: training in this process, with no Prefect server of its own.

In the end-to-end suite (it needs no Docker, but starts a whole temporary Prefect server on a new
database, which `make test` should not wait for); it runs before the compose stack comes up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.paths import REPO_ROOT, TLC_DATA

pytestmark = pytest.mark.e2e

JAN, FEB = (str(TLC_DATA / f"green_tripdata_2021-0{m}.parquet") for m in (1, 2))


def test_readme_development_command_works_on_a_fresh_prefect_home(tracking, unique_name, tmp_path):
    """`python -m flows.cli train-here --train ... --val ...`: no Prefect server, new PREFECT_HOME.

    Prefect then starts a temporary server whose first start (new database, every migration)
    can outlast Prefect's default 20 s start-up timeout on a loaded machine. The timeout is set to
    1 s here, so the command passes only because it gives that server the time it needs.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "S3_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
        "MLFLOW_TRACKING_URI": tracking,
        "MODEL_NAME": unique_name,
        "MLFLOW_EXPERIMENT_NAME": unique_name,
    }
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "train-here", "--train", JAN, "--val", FEB],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"run_id=[0-9a-f]{32} rmse=\d+\.\d{4} version=1", last), last
    assert "database is locked" not in result.stderr
