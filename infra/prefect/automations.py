"""The Prefect automations the platform relies on; safe to run any number of times.

- "crash zombie flow runs": a flow run whose heartbeats stop (worker killed, machine lost) is
  marked Crashed instead of Running forever (Prefect's documented recipe for self-hosted servers;
  the worker sends heartbeats every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds).
- "notify on failed flow runs": Failed or Crashed flow runs are posted to NOTIFY_WEBHOOK_URL
  (removed when that setting is empty).
- "fail MLflow runs of crashed flow runs": runs the reaper deployment on each crash (made once
  `make deploy` has created that deployment).

Run by the compose job `prefect-automations` on every `make up`, and by `make deploy`.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from prefect.automations import AutomationCore
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, RunDeployment, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.exceptions import ObjectNotFound

ZOMBIES = "crash zombie flow runs"
NOTIFY = "notify on failed flow runs"
REAP = "fail MLflow runs of crashed flow runs"
WEBHOOK_BLOCK = "platform-alerts"
REAPER_DEPLOYMENT = "fail-orphaned-mlflow-runs/reap-mlflow-runs"
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


def notify_automation(block_document_id) -> AutomationCore:
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


def reap_automation(deployment_id) -> AutomationCore:
    """Each crash runs the reaper deployment, which fails the crashed run's MLflow run."""
    return AutomationCore(
        name=REAP,
        description="Runs fail-orphaned-mlflow-runs when a flow run crashes.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"}, match=FLOW_RUNS, posture=Posture.Reactive
        ),
        actions=[RunDeployment(source="selected", deployment_id=deployment_id, parameters={})],
    )


def put(client, automation: AutomationCore) -> str:
    """Create the automation, or replace the one with its name; return what was done."""
    existing = client.read_automations_by_name(automation.name)
    for duplicate in existing[1:]:
        client.delete_automation(duplicate.id)
    if existing:
        client.update_automation(existing[0].id, automation)
        return "updated"
    client.create_automation(automation)
    return "created"


def remove(client, name: str) -> bool:
    """Delete the automations called ``name``; True when one existed."""
    existing = client.read_automations_by_name(name)
    for automation in existing:
        client.delete_automation(automation.id)
    return bool(existing)


def webhook_block(url: str):
    """Save the webhook block (JSON with text, subject and body: Slack and Mattermost read text)."""
    block = CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url=url,
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"},
    )
    return block.save(WEBHOOK_BLOCK, overwrite=True)


def sync(webhook_url: str | None) -> None:
    """Bring the server's automations in line with the settings."""
    with get_client(sync_client=True) as client:
        print(f"automation '{ZOMBIES}': {put(client, zombie_automation())}")
        if webhook_url:
            block_id = webhook_block(webhook_url)
            print(f"automation '{NOTIFY}': {put(client, notify_automation(block_id))}")
        elif remove(client, NOTIFY):
            print(f"automation '{NOTIFY}': removed (NOTIFY_WEBHOOK_URL is empty)")
        try:
            deployment = client.read_deployment_by_name(REAPER_DEPLOYMENT)
        except ObjectNotFound:
            print(f"automation '{REAP}': waits for `make deploy` ({REAPER_DEPLOYMENT})")
            return
        print(f"automation '{REAP}': {put(client, reap_automation(deployment.id))}")


if __name__ == "__main__":
    sync(os.environ.get("NOTIFY_WEBHOOK_URL") or None)
    sys.exit(0)
