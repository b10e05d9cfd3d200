"""Signing in with an MLflow account, for the services in front of MLflow's accounts (the model
server, the Prefect gateway): the password cache and the brake on wrong passwords.

MLflow checks a password with PBKDF2 (about 0.4 s of CPU). A good one is remembered for a TTL,
keyed on the username and a keyed hash of the password (the cache never holds a password, and a
process's key is its own), in a bounded cache. A wrong one is never remembered; after a few within
a window, from one address or for one username, further attempts are refused at once (429) for a
while that doubles with each further failure, without asking MLflow: a flood of wrong passwords
cannot saturate MLflow's server processes, and a signed-in caller (cached) is never held up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Value = TypeVar("Value")

CACHE_ENTRIES = 10_000  # bounded: a flood of distinct good credentials cannot grow the process
FAILURES_ALLOWED = 5  # wrong passwords per address or username within the window...
FAILURE_WINDOW_S = 60.0
FIRST_BRAKE_S = 2.0  # ...then refused at once for this long, doubling per further failure
LONGEST_BRAKE_S = 30.0
TRACKED_KEYS = 10_000


@dataclass(frozen=True)
class Credentials:
    """A username and password, parsed from a basic-auth header or a `user:password` token."""

    username: str
    password: str


def from_header(authorization: str | bytes | None) -> Credentials | None:
    """Credentials of ``Authorization: Basic ...``, or None when absent or malformed."""
    if not authorization:
        return None
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, encoded = text.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    return from_token(decoded)


def from_token(token: object) -> Credentials | None:
    """Credentials of a ``user:password`` string (Prefect's auth string), or None."""
    if not isinstance(token, str):
        return None
    username, separator, password = token.partition(":")
    if not separator or not username or not password:
        return None
    return Credentials(username, password)


def basic_header(credentials: Credentials) -> str:
    """The ``Authorization`` header value that sends these credentials on."""
    pair = f"{credentials.username}:{credentials.password}".encode()
    return f"Basic {base64.b64encode(pair).decode()}"


class CredentialCache(Generic[Value]):
    """Good credentials for ``ttl_s``: (username, HMAC of the password) -> what they sign in as."""

    def __init__(self, ttl_s: float, entries: int = CACHE_ENTRIES) -> None:
        self.ttl_s, self.entries = ttl_s, entries
        self.key = secrets.token_bytes(32)
        self.valid: OrderedDict[tuple[str, bytes], tuple[float, Value]] = OrderedDict()

    def cache_key(self, username: str, password: str) -> tuple[str, bytes]:
        """The username and a keyed hash of the password."""
        return username, hmac.new(self.key, password.encode(), hashlib.sha256).digest()

    def get(self, username: str, password: str) -> Value | None:
        """What these credentials signed in as, while the TTL lasts."""
        key = self.cache_key(username, password)
        found = self.valid.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        self.valid.move_to_end(key)
        return found[1]

    def put(self, username: str, password: str, value: Value) -> None:
        """Remember credentials MLflow accepted."""
        self.valid[self.cache_key(username, password)] = (time.monotonic() + self.ttl_s, value)
        while len(self.valid) > self.entries:
            self.valid.popitem(last=False)

    def forget(self, username: str) -> None:
        """Drop an account's entries (its role changed)."""
        for key in [key for key in self.valid if key[0] == username]:
            del self.valid[key]


@dataclass
class Failures:
    """Recent wrong passwords of one address or username."""

    times: list[float] = field(default_factory=list)
    braked_until: float = 0.0


class FailureBrake:
    """Counts wrong passwords per address and per username; says when to refuse at once."""

    def __init__(self) -> None:
        self.seen: OrderedDict[str, Failures] = OrderedDict()

    def retry_after(self, address: str | None, username: str | None) -> float:
        """Seconds until these may try again (0: now)."""
        now = time.monotonic()
        waits = [
            self.seen[key].braked_until - now
            for key in self.keys(address, username)
            if key in self.seen
        ]
        return max([0.0, *waits])

    def failed(self, address: str | None, username: str | None) -> None:
        """One more wrong password."""
        now = time.monotonic()
        for key in self.keys(address, username):
            failures = self.seen.setdefault(key, Failures())
            self.seen.move_to_end(key)
            failures.times = [t for t in failures.times if now - t < FAILURE_WINDOW_S] + [now]
            excess = len(failures.times) - FAILURES_ALLOWED
            if excess > 0:
                brake = min(FIRST_BRAKE_S * 2 ** (excess - 1), LONGEST_BRAKE_S)
                failures.braked_until = now + brake
        while len(self.seen) > TRACKED_KEYS:
            self.seen.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """A good password clears the username's count (not the address's)."""
        self.seen.pop(f"user:{username}", None)

    @staticmethod
    def keys(address: str | None, username: str | None) -> list[str]:
        """The counters one attempt touches."""
        return [
            f"{kind}:{value}" for kind, value in (("addr", address), ("user", username)) if value
        ]
