"""Promotion flow: score challenger and champion on the same month, move `champion` if better."""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_names import CHALLENGER
from prefect import flow, get_run_logger

from flows.errors import UntrustedVersion
from flows.logic.params import platform_model
from flows.logic.results import PromotionResult
from flows.pipelines import FLOW_TIMEOUT_S
from flows.settings import Settings
from flows.steps.ingest import data_path, load, month_or_path
from flows.steps.promotion import (
    aliased_versions,
    check_promotable,
    decision,
    kept_as_challenger,
    measure,
    measure_champion,
    record,
    training_run,
)
from flows.steps.reporting import publish_report

if TYPE_CHECKING:
    pass


@flow(name="promote", log_prints=True, timeout_seconds=FLOW_TIMEOUT_S["promote"])
def promote(
    model_name: str | None = None,
    color: str = "green",
    val_month: str | None = None,
    val_path: str | None = None,
) -> PromotionResult:
    """Measure `challenger` and `champion` on one validation month; promote only when the
    challenger passes the gate (rmse margin, latency and size budgets)."""
    from flows.logic.gate import judge
    from flows.logic.reports import promotion_report

    settings = Settings.from_env()
    name = platform_model(model_name, settings.model_name)
    challenger, champion = aliased_versions(name)
    if challenger is None:
        get_run_logger().info("%s has no %s: nothing to decide", name, CHALLENGER)
        champion_version = str(champion.version) if champion else None
        return PromotionResult(
            name, False, f"no {CHALLENGER}", None, champion_version, None, None, None
        )
    challenger_run = check_promotable(challenger)
    if val_month or val_path:
        val_location = month_or_path(color, val_month, val_path, "val")
    else:
        # Default: the month the challenger was validated on, so the comparison is like for like
        # (from the data store only: whoever logged the run chose that value).
        val_location = data_path(challenger_run.data.params["val_uri"], "the challenger's val_uri")
    val = load(val_location)
    # Both models load (download, unpack) and score side by side: half the wait of one by one.
    challenger_measured = measure.submit(name, challenger, val)
    champion_measured = measure_champion.submit(name, champion, val) if champion else None
    challenger_numbers = challenger_measured.result()
    champion_numbers = champion_measured.result() if champion_measured else None
    budgets = settings.promotion_budgets()
    if isinstance(champion_numbers, UntrustedVersion):
        kept = kept_as_challenger(
            name, challenger, champion_numbers, val_location, challenger_numbers, budgets
        )
        record(kept, challenger, champion)
        publish_report("promotion-report", promotion_report(kept), kept.reason)
        get_run_logger().warning(kept.reason)
        return kept
    verdict = judge(challenger_numbers, champion_numbers, budgets)
    compared = {str(challenger.version): challenger_run}
    if champion:
        compared[str(champion.version)] = training_run(champion)
    numbers = (challenger_numbers, champion_numbers)
    result = decision(name, verdict, budgets, val_location, compared, *numbers)
    record(result, challenger, champion)
    publish_report("promotion-report", promotion_report(result), f"{name}: {verdict.reason}")
    print(
        f"{name} v{challenger.version}: {'promoted' if verdict.promote else 'kept out'} "
        f"({verdict.reason})"
    )
    return result
