"""Signing in with MLflow accounts (platform_edge.signin): the password cache, the brake per
account and client address, and which address a request comes from."""

from __future__ import annotations

import asyncio
import base64
import json

from platform_edge.signin import (
    FAILURES_ALLOWED,
    CredentialCache,
    Credentials,
    FailureBrake,
    SignIn,
    client_address,
    from_header,
    from_token,
    trusted_networks,
)

from services.serving.app import without_echo


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


def test_wrong_passwords_are_braked_per_account_and_address_only():
    brake = FailureBrake()
    alice_wrong, bob = Credentials("alice", "wrong"), Credentials("bob", "b")
    for _ in range(FAILURES_ALLOWED):
        brake.failed(alice_wrong, "10.0.0.9")
    assert brake.retry_after(alice_wrong, "10.0.0.9") == 0  # a few mistakes cost nothing
    brake.failed(alice_wrong, "10.0.0.9")
    assert brake.retry_after(alice_wrong, "10.0.0.9") > 0
    assert brake.retry_after(bob, "10.0.0.9") == 0  # another account from the same address
    assert brake.retry_after(alice_wrong, "10.0.0.7") == 0  # the account from elsewhere
    first = brake.retry_after(alice_wrong, "10.0.0.9")
    brake.failed(alice_wrong, "10.0.0.9")
    assert brake.retry_after(alice_wrong, "10.0.0.9") > first  # it doubles


def test_a_password_that_was_right_passes_a_brake_on_its_address():
    brake = FailureBrake()
    alice = Credentials("alice", "right")
    brake.succeeded(alice, "10.0.0.7")
    for _ in range(FAILURES_ALLOWED + 3):
        brake.failed(Credentials("alice", "guess"), "10.0.0.9")
    assert brake.retry_after(Credentials("alice", "guess-again"), "10.0.0.9") > 0
    assert brake.retry_after(alice, "10.0.0.9") == 0


def test_sign_in_asks_once_per_ttl_and_never_remembers_a_wrong_password():
    asked: list[str] = []

    async def verify(credentials: Credentials) -> tuple[int, str | None]:
        asked.append(credentials.password)
        return (200, "alice") if credentials.password == "right" else (401, None)

    sign_in: SignIn[str] = SignIn(verify, ttl_s=60)

    async def attempts() -> list[object]:
        return [
            await sign_in(Credentials("alice", "right"), "10.0.0.1"),
            await sign_in(Credentials("alice", "right"), "10.0.0.1"),
            await sign_in(Credentials("alice", "wrong"), "10.0.0.1"),
            await sign_in(None, "10.0.0.1"),
        ]

    assert asyncio.run(attempts()) == ["alice", "alice", 401, 401]
    assert asked == ["right", "wrong"]


def test_the_client_address_is_the_proxys_word_only_from_the_proxy():
    proxy = trusted_networks("10.1.0.0/24, 127.0.0.1")
    forwarded = [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.9")]
    assert client_address("10.1.0.5", forwarded, proxy) == "203.0.113.9"  # the proxy appended
    assert client_address("192.0.2.4", forwarded, proxy) == "192.0.2.4"  # anyone else: the peer
    assert client_address("10.1.0.5", [(b"x-forwarded-for", b"junk")], proxy) == "10.1.0.5"
    assert client_address("10.1.0.5", [], proxy) == "10.1.0.5"
    assert client_address("10.1.0.5", forwarded, trusted_networks("")) == "10.1.0.5"


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
