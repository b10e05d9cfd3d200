"""Canonical request paths: a path is accepted only in the one spelling the server behind reads
the same way, never normalised.

Proxies in front of servers have been bypassed by paths the proxy and the server read
differently: ``/a/../b``, ``//a``, ``/a%2Fb``, ``%2e%2e``, double encodings (Envoy
GHSA-xcx5-93pw-jw2w, Istio CVE-2021-31920). Here the raw path (ASGI ``raw_path``, before any
decoding) must equal the canonical encoding of its decoded segments: no empty or dot segments,
no encoded ``/``, no ``%`` but as the start of one canonical escape, no control bytes or
backslashes, each byte encoded exactly when RFC 3986 requires it. Anything else is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# RFC 3986 pchar without "%": unreserved, sub-delims, ":" and "@" stay as they are.
SAFE = "-._~!$&'()*+,;=:@"


@dataclass(frozen=True)
class CanonicalPath:
    """A path accepted as canonical: its decoded text and its segments."""

    text: str
    segments: tuple[str, ...]


class NotCanonical(ValueError):
    """A path refused, with why."""


def canonical_segment(segment: str) -> str:
    """The one encoding of a decoded path segment."""
    return quote(segment, safe=SAFE, encoding="utf-8", errors="strict")


def canonical_path(raw_path: bytes) -> CanonicalPath:
    """The decoded path when ``raw_path`` is canonical; else NotCanonical saying why."""
    try:
        raw = raw_path.decode("ascii")
    except UnicodeDecodeError:
        raise NotCanonical("the path has bytes that are not encoded") from None
    if not raw.startswith("/"):
        raise NotCanonical("the path must start with /")
    if "?" in raw or "#" in raw:
        raise NotCanonical("the path holds ? or #")
    segments = raw[1:].split("/")
    decoded = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "" and not last:
            raise NotCanonical("the path has an empty segment (//)")
        try:
            text = unquote_to_bytes(segment).decode("utf-8")
        except UnicodeDecodeError:
            raise NotCanonical("the path decodes to bytes that are not UTF-8") from None
        if text in (".", ".."):
            raise NotCanonical("the path has a . or .. segment")
        if "/" in text or "\\" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise NotCanonical("the path encodes /, a backslash or a control character")
        if canonical_segment(text) != segment:
            raise NotCanonical("the path is not in its canonical encoding")
        decoded.append(text)
    return CanonicalPath("/" + "/".join(decoded), tuple(decoded))


def path_of(segments: list[str] | tuple[str, ...]) -> str:
    """The canonical raw path of decoded segments (the inverse of ``canonical_path``)."""
    return "/" + "/".join(canonical_segment(segment) for segment in segments)
