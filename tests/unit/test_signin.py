"""Signing in with MLflow accounts (services/signin.py): the password cache and the brake."""

from __future__ import annotations

import asyncio
import base64
import json

from services.serving.app import without_echo
from services.signin import (
    FAILURES_ALLOWED,
    CredentialCache,
    FailureBrake,
    from_header,
    from_token,
)


def test_the_cache_holds_no_password_and_knows_only_what_it_was_told():
    cache: CredentialCache[str] = CredentialCache(ttl_s=30, entries=2)
    cache.put("alice", "right", "teammate")
    assert cache.get("alice", "right") == "teammate"
    assert cache.get("alice", "wrong") is None
    assert all(b"right" not in digest for _, digest in cache.valid)
    cache.put("bob", "b", "teammate")
    cache.put("carol", "c", "teammate")  # bounded: the oldest goes
    assert cache.get("alice", "right") is None and cache.get("carol", "c") == "teammate"
    cache.forget("carol")
    assert cache.get("carol", "c") is None


def test_the_cache_forgets_after_its_ttl():
    cache: CredentialCache[bool] = CredentialCache(ttl_s=0)
    cache.put("alice", "right", True)
    assert cache.get("alice", "right") is None


def test_repeated_wrong_passwords_are_braked_per_address_and_per_user():
    brake = FailureBrake()
    for _ in range(FAILURES_ALLOWED):
        brake.failed("10.0.0.9", "alice")
    assert brake.retry_after("10.0.0.9", "alice") == 0  # a few mistakes cost nothing
    brake.failed("10.0.0.9", "alice")
    assert brake.retry_after("10.0.0.9", "bob") > 0  # the address is braked
    assert brake.retry_after("10.0.0.7", "alice") > 0  # and the username, from anywhere
    assert brake.retry_after("10.0.0.7", "bob") == 0
    first = brake.retry_after("10.0.0.9", None)
    brake.failed("10.0.0.9", "alice")
    assert brake.retry_after("10.0.0.9", None) > first  # it doubles
    brake.succeeded("alice")
    assert brake.retry_after(None, "alice") == 0


def test_credentials_parse_from_basic_auth_and_prefect_tokens():
    header = "Basic " + base64.b64encode(b"alice:p:w").decode()
    assert from_header(header) == from_token("alice:p:w")
    assert from_header(header).password == "p:w"
    for bad in (
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
    ):
        assert from_header(bad) is None
    assert from_token(":pw") is None and from_token(42) is None


def test_error_answers_of_mlflows_scoring_app_never_quote_the_request():
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def mlflow_refuses() -> None:
        guarded = without_echo(send)
        await guarded({"type": "http.response.start", "status": 400, "headers": []})
        await guarded({"type": "http.response.body", "body": b"junk " * 1000, "more_body": True})
        await guarded({"type": "http.response.body", "body": b"more junk", "more_body": False})

    asyncio.run(mlflow_refuses())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"junk" not in body and len(body) < 200
    assert json.loads(body)["error_code"] == "BAD_REQUEST"
    assert sent[0]["status"] == 400
