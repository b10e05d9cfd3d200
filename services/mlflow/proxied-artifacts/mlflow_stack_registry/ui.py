"""The MLflow UI as a model-training team first meets it: in its model-training mode, without the
GenAI assistant's panel (it talks to a model server the stack does not run) or the "Detect
Issues" pop-over.

MLflow 3.17 keeps these choices in the browser's localStorage (its useLocalStorage hook: the key
``<name>_v<version>``, the value as JSON) and opens in GenAI mode when nothing is stored. The page
MLflow serves at ``/`` gets a script that stores the stack's defaults where nothing is stored
yet: a person's own choice in the UI stays theirs.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

# localStorage key -> the value the stack starts with (MLflow's keys and values, JSON-encoded).
UI_DEFAULTS: dict[str, object] = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.detectIssues.guidanceShown_v1": True,
}
UI_PAGE = "/"


def defaults_script() -> bytes:
    """An inline script storing each default whose key holds nothing yet."""
    stored = {key: json.dumps(value) for key, value in UI_DEFAULTS.items()}
    return (
        "<script>(function(d){for(var k in d){try{if(localStorage.getItem(k)===null)"
        f"localStorage.setItem(k,d[k])}}catch(e){{}}}}}})({json.dumps(stored)});</script>"
    ).encode()


def with_defaults(page: bytes) -> bytes:
    """MLflow's index page with the defaults script first in its head (the app reads them)."""
    head = page.find(b"<head>")
    if head < 0:
        return page
    at = head + len(b"<head>")
    return page[:at] + defaults_script() + page[at:]


Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def injecting(send: Send) -> Send:
    """A ``send`` that adds the defaults to an HTML answer of the UI page (a few KB, held whole)."""
    start: MutableMapping[str, Any] = {}
    body = bytearray()

    async def send_with_defaults(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
        page = bytes(body)
        if start.get("status") == 200 and content_type.startswith(b"text/html"):
            page = with_defaults(page)
        headers.append((b"content-length", str(len(page)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": page})

    return send_with_defaults
