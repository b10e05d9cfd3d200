"""The same tuning search with one worker and with three, in one run.

    uv run python -m bench.tune_workers [--trials 12]

Against the running compose stack of ENV_FILE (.env): `make up WORKERS=1`, then `make tune`
with ``--trials`` trials; `make up WORKERS=3`, the same search again (the sampler is seeded, so
both runs ask the same parameter sets in the same order); then back to one worker. It prints the
wall of each `make tune` (command to printed result), the trials' own fit times, and the
speed-up. Every worker here shares the same 2 cores: replicas divide the cores between them
(infra/prefect/worker.py), so the gain can only come from overlapping what is not compute
(process start, imports, reads, logging) and from the one slot the tuning run itself holds.
"""

from __future__ import annotations

import argparse
import re
import time

from bench.stack import TRAIN_MONTH, VAL_MONTH, make, prepare


def tune_wall(trials: int) -> tuple[float, str]:
    """One `make tune`: (wall, output)."""
    started = time.perf_counter()
    months = (f"TRAIN_MONTH={TRAIN_MONTH}", f"VAL_MONTH={VAL_MONTH}")
    output = make("tune", *months, f"TRIALS={trials}")
    return time.perf_counter() - started, output


def main() -> int:
    """Both runs; the table and the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()
    rows = []
    try:
        for workers in (1, 3):
            make("up", f"WORKERS={workers}")
            prepare()
            time.sleep(5)  # every worker polling
            wall, output = tune_wall(args.trials)
            best = re.search(r"best holdout rmse ([\d.]+)", output)
            rows.append((workers, wall, best[1] if best else "?"))
            print(f"{workers} worker(s): {wall:.1f} s", flush=True)
    finally:
        make("up", "WORKERS=1")
    print(f"\n`make tune` with {args.trials} trials ({TRAIN_MONTH} -> {VAL_MONTH}), same seed")
    print("| workers | wall (s) | best holdout rmse |\n| ---: | ---: | ---: |")
    for workers, wall, best in rows:
        print(f"| {workers} | {wall:.1f} | {best} |")
    (_, one, _), (_, three, _) = rows
    print(f"speed-up 3 workers / 1 worker: {one / three:.2f}x (wall ratio {three / one:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
