"""The Prefect objects the platform relies on: its work pool and automations; safe to re-run.

- the work pool WORK_POOL (process type), limited to WORK_POOL_CONCURRENCY_LIMIT flow runs at once
  whatever the number of workers (each worker also has its own limit: infra/prefect/worker.py).

- "crash zombie flow runs": a flow run whose heartbeats stop (worker killed, machine lost) is
  marked Crashed instead of Running forever (Prefect's documented recipe for self-hosted servers;
  the worker sends heartbeats every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds).
- "notify on failed flow runs": Failed or Crashed flow runs are posted to NOTIFY_WEBHOOK_URL
  (removed when that setting is empty).
- "notify on monitoring breaches": a month where the champion breached its monitoring thresholds
  (the event flows/pipelines/monitor.py emits) is posted to the same webhook: which metric,
  which month, by how much. The retraining itself is the `retrain` deployment's trigger.

What a deployment does on an event (the MLflow-run reaper on each crash) is a deployment trigger in
prefect.yaml instead, applied by `make deploy`. Deployments of flows since renamed are removed.

    python -m infra.prefect.automations     (the compose job `prefect-automations` on every
                                             `make up`, and `make deploy`)
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any
from uuid import UUID

from platform_names import (
    BREACH_EVENT,
    MODEL_LABEL,
    MODEL_RESOURCE_PREFIX,
    MONTH_LABEL,
    MONTHLY_DEPLOYMENT,
    REAPER_DEPLOYMENT,
    RETRAIN_DEPLOYMENT,
    VERSION_LABEL,
)
from prefect.automations import AutomationCore
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound

from flows.settings import Settings

ZOMBIES = "crash zombie flow runs"
NOTIFY = "notify on failed flow runs"
NOTIFY_BREACH = "notify on monitoring breaches"
WEBHOOK_BLOCK = "platform-alerts"
# Deployments whose flow was renamed to its deployment's name: the old ones would keep their
# schedules and triggers, pointing at entry points that are gone.
RETIRED_DEPLOYMENTS = {
    "monthly-training/monthly": MONTHLY_DEPLOYMENT,
    "fail-orphaned-mlflow-runs/reap-mlflow-runs": REAPER_DEPLOYMENT,
}
# Made by earlier versions; now the reaper deployment's own trigger (prefect.yaml) does this.
RETIRED = ["fail MLflow runs of crashed flow runs"]
# Three heartbeats (every 30 s) missed: the flow run's process is gone.
ZOMBIE_AFTER = timedelta(seconds=90)
FLOW_RUNS = ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]})


def zombie_automation() -> AutomationCore:
    """Running flow runs that stop sending heartbeats become Crashed."""
    return AutomationCore(
        name=ZOMBIES,
        description="Marks a flow run Crashed when its heartbeats stop (worker or machine lost).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=FLOW_RUNS,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=ZOMBIE_AFTER,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {ZOMBIE_AFTER.seconds} s: its process is gone.",
            )
        ],
    )


def failure_trigger() -> EventTrigger:
    """Any flow run entering Failed or Crashed."""
    return EventTrigger(
        expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        match=FLOW_RUNS,
        posture=Posture.Reactive,
        threshold=1,
    )


def notify_automation(block_document_id: UUID) -> AutomationCore:
    """Failed and crashed flow runs are posted to the webhook block."""
    return AutomationCore(
        name=NOTIFY,
        description="Posts failed and crashed flow runs to NOTIFY_WEBHOOK_URL.",
        trigger=failure_trigger(),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="Flow run {{ flow.name }}/{{ flow_run.name }} {{ flow_run.state.name }}",
                body=(
                    "Flow run {{ flow.name }}/{{ flow_run.name }} (id {{ flow_run.id }}) entered "
                    "{{ flow_run.state.name }}: {{ flow_run.state.message }}\n"
                    "Deployment: {{ deployment.name }}\n{{ flow_run|ui_url }}"
                ),
            )
        ],
    )


def breach_automation(block_document_id: UUID) -> AutomationCore:
    """Monitoring breaches are posted to the webhook block, with the reason."""
    return AutomationCore(
        name=NOTIFY_BREACH,
        description="Posts each monitoring breach (and the retraining it starts) to the webhook.",
        trigger=EventTrigger(
            expect={BREACH_EVENT},
            match=ResourceSpecification({"prefect.resource.id": [f"{MODEL_RESOURCE_PREFIX}*"]}),
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject=(
                    f"Monitoring breach: {{{{ event.resource['{MODEL_LABEL}'] }}}} "
                    f"v{{{{ event.resource['{VERSION_LABEL}'] }}}} on "
                    f"{{{{ event.resource['{MONTH_LABEL}'] }}}}"
                ),
                body=(
                    "{{ event.payload.reason }}.\nA retraining starts (deployment "
                    f"{RETRAIN_DEPLOYMENT}) on the months up to "
                    f"{{{{ event.resource['{MONTH_LABEL}'] }}}}."
                ),
            )
        ],
    )


def put(client: Any, automation: AutomationCore) -> str:
    """Create the automation, or replace the one with its name; return what was done."""
    existing = client.read_automations_by_name(automation.name)
    for duplicate in existing[1:]:
        client.delete_automation(duplicate.id)
    if existing:
        client.update_automation(existing[0].id, automation)
        return "updated"
    client.create_automation(automation)
    return "created"


def remove(client: Any, name: str) -> bool:
    """Delete the automations called ``name``; True when one existed."""
    existing = client.read_automations_by_name(name)
    for automation in existing:
        client.delete_automation(automation.id)
    return bool(existing)


def webhook_block(url: str) -> UUID:
    """Save the webhook block (JSON with text, subject and body: Slack and Mattermost read text).
    The URL is a secret (whoever holds an incoming webhook's URL posts to the team's chat): kept
    in the block's secret values, which only admins read, and put in place when it posts."""
    block = CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url="{{webhook_url}}",
        secrets={"webhook_url": url},
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"},
    )
    saved: UUID = block.save(WEBHOOK_BLOCK, overwrite=True)  # type: ignore[assignment]
    return saved


def ensure_pool(client: Any, name: str, limit: int) -> str:
    """Create the process work pool, or set its concurrency limit; return what was done."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.workers.process import ProcessWorker

    try:
        pool = client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        client.create_work_pool(
            WorkPoolCreate(
                name=name, type="process", base_job_template=template, concurrency_limit=limit
            )
        )
        return f"created (at most {limit} flow runs at once)"
    if pool.concurrency_limit != limit:
        client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=limit))
        return f"limit set to {limit} flow runs at once"
    return f"unchanged (at most {limit} flow runs at once)"


def remove_deployment(client: Any, deployment_id: str) -> bool:
    """Delete the deployment ``flow name/deployment name``; True when it existed."""
    try:
        deployment = client.read_deployment_by_name(deployment_id)
    except ObjectNotFound:
        return False
    client.delete_deployment(deployment.id)
    return True


def sync(settings: Settings) -> None:
    """Bring the server's work pool and automations in line with the settings."""
    webhook_url = settings.notify_webhook_url
    with get_client(sync_client=True) as client:
        pool = settings.work_pool
        print(f"work pool '{pool}': {ensure_pool(client, pool, settings.pool_limit)}")
        print(f"automation '{ZOMBIES}': {put(client, zombie_automation())}")
        if webhook_url:
            block_id = webhook_block(webhook_url)
            print(f"automation '{NOTIFY}': {put(client, notify_automation(block_id))}")
            print(f"automation '{NOTIFY_BREACH}': {put(client, breach_automation(block_id))}")
        else:
            for name in (NOTIFY, NOTIFY_BREACH):
                if remove(client, name):
                    print(f"automation '{name}': removed (NOTIFY_WEBHOOK_URL is empty)")
        for name in RETIRED:
            if remove(client, name):
                print(f"automation '{name}': removed (a deployment trigger does it now)")
        for retired, successor in RETIRED_DEPLOYMENTS.items():
            if remove_deployment(client, retired):
                print(f"deployment '{retired}': removed (now {successor}, after `make deploy`)")


if __name__ == "__main__":
    sync(Settings.from_env())
    sys.exit(0)
