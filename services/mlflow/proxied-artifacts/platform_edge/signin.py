"""Signing callers in with their MLflow account: credentials, the cache of good ones, the brake on
wrong ones, and which address a request comes from.

MLflow checks a password with PBKDF2 (about 0.4 s of CPU). A good one is remembered for a TTL,
keyed on the username and a keyed hash of the password (the cache never holds a password, and a
process's key is its own), in a bounded cache. A wrong one is never remembered; after a few for
one account from one client address within a window, further attempts of that account from that
address are refused at once (429) for a while that doubles with each further failure, without
asking MLflow. The brake counts per account *and* address, so guesses at one account never lock
out another account, nor the same account elsewhere; and a password that was right lately passes
it even from a braked address: the person it belongs to is never refused for someone else's
guesses (every teammate may reach the stack from one address, a NAT or the TLS proxy).

The client address is the TCP peer's, except behind the TLS proxy: a request from one of the
trusted proxy addresses is taken to come from the address the proxy appended to
``X-Forwarded-For`` (the last entry); the header is ignored from anyone else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Caller = TypeVar("Caller")

CACHE_ENTRIES = 10_000  # bounded: a flood of distinct good credentials cannot grow the process
FAILURES_ALLOWED = 5  # wrong passwords per account and address within the window...
FAILURE_WINDOW_S = 60.0
FIRST_BRAKE_S = 2.0  # ...then refused at once for this long, doubling per further failure
LONGEST_BRAKE_S = 30.0
TRACKED_KEYS = 10_000
# How long a password that was right lets its owner through a brake on their address.
REMEMBERED_GOOD_S = 24 * 3600.0


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


class CredentialCache(Generic[Caller]):
    """Good credentials for ``ttl_s``: (username, HMAC of the password) -> what they sign in as."""

    def __init__(self, ttl_s: float, entries: int = CACHE_ENTRIES) -> None:
        self.ttl_s, self.entries = ttl_s, entries
        self.key = secrets.token_bytes(32)
        self.valid: OrderedDict[tuple[str, bytes], tuple[float, Caller]] = OrderedDict()

    def cache_key(self, username: str, password: str) -> tuple[str, bytes]:
        """The username and a keyed hash of the password."""
        return username, hmac.new(self.key, password.encode(), hashlib.sha256).digest()

    def get(self, username: str, password: str) -> Caller | None:
        """What these credentials signed in as, while the TTL lasts."""
        key = self.cache_key(username, password)
        found = self.valid.get(key)
        if found is None or found[0] <= time.monotonic():
            return None
        self.valid.move_to_end(key)
        return found[1]

    def put(self, username: str, password: str, value: Caller) -> None:
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
    """Recent wrong passwords of one account from one address."""

    times: list[float] = field(default_factory=list)
    braked_until: float = 0.0


class FailureBrake:
    """Counts wrong passwords per (account, address); says when to refuse at once. Remembers,
    for a day, keyed hashes of passwords that were right, which a brake never stops."""

    def __init__(self) -> None:
        self.seen: OrderedDict[tuple[str, str], Failures] = OrderedDict()
        self.key = secrets.token_bytes(32)
        self.good: OrderedDict[tuple[str, bytes], float] = OrderedDict()

    def digest(self, credentials: Credentials) -> tuple[str, bytes]:
        """The account and a keyed hash of the password."""
        mac = hmac.new(self.key, credentials.password.encode(), hashlib.sha256).digest()
        return credentials.username, mac

    def retry_after(self, credentials: Credentials, address: str | None) -> float:
        """Seconds until these credentials may try again from ``address`` (0: now)."""
        remembered = self.good.get(self.digest(credentials))
        if remembered is not None and remembered > time.monotonic():
            return 0.0
        failures = self.seen.get((credentials.username, address or ""))
        return max(0.0, failures.braked_until - time.monotonic()) if failures else 0.0

    def failed(self, credentials: Credentials, address: str | None) -> None:
        """One more wrong password for this account from this address."""
        now = time.monotonic()
        key = (credentials.username, address or "")
        failures = self.seen.setdefault(key, Failures())
        self.seen.move_to_end(key)
        failures.times = [t for t in failures.times if now - t < FAILURE_WINDOW_S] + [now]
        excess = len(failures.times) - FAILURES_ALLOWED
        if excess > 0:
            failures.braked_until = now + min(FIRST_BRAKE_S * 2 ** (excess - 1), LONGEST_BRAKE_S)
        while len(self.seen) > TRACKED_KEYS:
            self.seen.popitem(last=False)

    def succeeded(self, credentials: Credentials, address: str | None) -> None:
        """A right password: its owner passes brakes from now on, and this address's count of
        the account's failures starts again."""
        self.seen.pop((credentials.username, address or ""), None)
        key = self.digest(credentials)
        self.good[key] = time.monotonic() + REMEMBERED_GOOD_S
        self.good.move_to_end(key)
        while len(self.good) > TRACKED_KEYS:
            self.good.popitem(last=False)


# What an account check answers: 200 with what the caller signs in as, or 401 (no or wrong
# credentials), 403 (signed in but may not), 404 (signed in, the resource is missing) or 503.
Verify = Callable[[Credentials], Awaitable[tuple[int, Any]]]


class SignIn(Generic[Caller]):
    """Credentials to callers: the cache first, then the brake, then the account check."""

    def __init__(self, verify: Verify, ttl_s: float) -> None:
        self.verify = verify
        self.cache: CredentialCache[Caller] = CredentialCache(ttl_s)
        self.brake = FailureBrake()

    async def __call__(self, credentials: Credentials | None, address: str | None) -> Caller | int:
        """The caller, or the status refusing them (401, 403, 404, 429, 503)."""
        if credentials is None:
            return 401
        cached = self.cache.get(credentials.username, credentials.password)
        if cached is not None:
            return cached
        if self.brake.retry_after(credentials, address) > 0:
            return 429
        status, caller = await self.verify(credentials)
        if status == 401:
            self.brake.failed(credentials, address)
            return 401
        if status != 200:
            return status
        self.brake.succeeded(credentials, address)
        self.cache.put(credentials.username, credentials.password, caller)
        return caller  # type: ignore[no-any-return]

    def forget(self, username: str) -> None:
        """Drop an account's cached sign-ins (its record changed)."""
        self.cache.forget(username)


def trusted_networks(text: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Networks of the TLS proxy (a comma-separated list of addresses or CIDR networks)."""
    parts = [part.strip() for part in (text or "").split(",") if part.strip()]
    return tuple(ipaddress.ip_network(part, strict=False) for part in parts)


def client_address(
    peer: str | None,
    headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]],
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> str | None:
    """The address a request comes from: the peer's, or, when the peer is the trusted proxy, the
    last address the proxy appended to X-Forwarded-For."""
    if not peer or not trusted or not in_networks(peer, trusted):
        return peer
    forwarded = forwarded_for(headers)
    if not forwarded:
        return peer
    candidate = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return peer


def forwarded_for(headers: Mapping[str, str] | Iterable[tuple[bytes, bytes]]) -> str:
    """Every X-Forwarded-For value of a request, joined in order."""
    if isinstance(headers, Mapping):
        return str(headers.get("x-forwarded-for", ""))
    values = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    return ",".join(values)


def in_networks(
    address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    """True when ``address`` is in one of ``networks``."""
    try:
        found = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(found in network for network in networks)
