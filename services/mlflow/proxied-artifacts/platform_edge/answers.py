"""Answers and bodies of the edge's ASGI apps: one JSON answer, one body reader, one replay."""

from __future__ import annotations

import json
from typing import Any


async def read_body(receive: Any, limit: int | None = None) -> bytes | None:
    """A request's whole body, read from ASGI ``receive``; None once it passes ``limit`` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if limit is not None and len(body) > limit:
            return None
        if not message.get("more_body"):
            return bytes(body)


def replay(body: bytes) -> Any:
    """An ASGI ``receive`` that hands an app a body already read."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def respond_json(
    send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON answer, with ``headers`` besides its type and length."""
    payload = json.dumps(body).encode()
    length = str(len(payload)).encode()
    fixed = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send(
        {"type": "http.response.start", "status": status, "headers": [*fixed, *(headers or [])]}
    )
    await send({"type": "http.response.body", "body": payload})
