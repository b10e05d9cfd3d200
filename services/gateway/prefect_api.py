"""Prefect's API as Prefect's server reads it: the route a request reaches, found with the same
router, and the values that route's endpoint would act on, read with its own schemas; then the
request rebuilt from those values alone, for the gateway to forward.

The gateway builds Prefect's API app in its own process (``create_api_app``: no database is
opened) and keeps FastAPI's effective route contexts: each route's path pattern and convertors,
methods, and the dependant tree whose path, query, header and body parameters FastAPI validates
before it calls the endpoint. A request is matched as Starlette's router matches it (the first
full match in route order; a path only another method serves is a 405), and parsed with FastAPI's
own ``request_params_to_args`` and ``request_body_to_args``, dependency by dependency, as
``solve_dependencies`` does. What is forwarded is rebuilt from the parsed values: the route's path
with its parameters, the query and headers the route declares, the body serialised from the
parsed models (``exclude_unset``: fields the client left out stay out, so Prefect fills its own
defaults, as for the original). A request that is not canonical is refused, never repaired: a
query key the route does not read, a single-valued key given twice, a body where the route takes
none, a body that is not JSON, a cookie. tests/unit/test_gateway_matching.py holds the matcher to
Prefect's own router.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any
from urllib.parse import parse_qsl, urlencode

from platform_edge.paths import path_of
from starlette.datastructures import Headers, QueryParams
from starlette.routing import Match

# Headers every Prefect client sends that no route declares but Prefect reads as a whole
# (the API version check is a declared dependency; content negotiation is not).
PASSED_HEADERS = ("accept", "user-agent")


class Refused(Exception):
    """A request the gateway will not forward, with the status and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Endpoint:
    """One route of Prefect's API: its method ("WS" for a WebSocket) and path template under
    /api, and FastAPI's effective context (pattern, convertors, dependants, body field)."""

    method: str
    template: str
    context: Any

    @cached_property
    def dependants(self) -> tuple[Any, ...]:
        """The endpoint's dependant and every dependency's, in FastAPI's solving order."""
        root = getattr(self.context, "dependant", None)
        return tuple(walk(root)) if root is not None else ()

    @cached_property
    def body_fields(self) -> tuple[Any, ...]:
        """Every body parameter of the endpoint and its dependencies."""
        return tuple(field for dependant in self.dependants for field in dependant.body_params)

    @cached_property
    def embedded(self) -> bool:
        """Whether the body is an object keyed by parameter (FastAPI's embedding rule)."""
        return bool(getattr(self.context, "_embed_body_fields", False))

    @cached_property
    def sequence_aliases(self) -> frozenset[str]:
        """Query aliases that take repeated values (list-typed parameters)."""
        from fastapi._compat import field_annotation_is_sequence

        return frozenset(
            field.alias
            for dependant in self.dependants
            for field in dependant.query_params
            if field_annotation_is_sequence(field.field_info.annotation)
        )


@dataclass(frozen=True)
class Parsed:
    """A request as Prefect's endpoint would read it, and the request rebuilt from that."""

    endpoint: Endpoint
    path: str  # under /api, canonical, rebuilt from the path parameters
    values: Mapping[str, Any]  # every parameter the endpoint and its dependencies read, by name
    query: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    body_keys: frozenset[str]  # the top-level keys the client's JSON body had (or empty)


@cache
def prefect_api() -> PrefectApi:
    """The installed Prefect's routes and schemas, built once per process (~10 s)."""
    return PrefectApi()


def walk(dependant: Any) -> Iterator[Any]:
    """A dependant and its dependencies, depth first, as FastAPI solves them."""
    yield dependant
    for sub in dependant.dependencies:
        yield from walk(sub)


class PrefectApi:
    """Prefect's routes and schemas, loaded from the installed Prefect."""

    def __init__(self) -> None:
        from fastapi.routing import iter_route_contexts
        from prefect.server.api.server import create_api_app

        app = create_api_app(ignore_cache=True)
        self.contexts = list(iter_route_contexts(app.router.routes))

    def endpoints(self) -> list[Endpoint]:
        """Every route, as (method, template), in route order."""
        found = []
        for context in self.contexts:
            template = str(context.path_format)
            if is_websocket(context):
                found.append(Endpoint("WS", template, context))
            for method in sorted(getattr(context, "methods", None) or []):
                found.append(Endpoint(method, template, context))
        return found

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, Any]]:
        """The route Prefect's router sends ``method path`` to (under /api), and its path
        parameters; Refused (404, 405) when it sends it to none."""
        websocket = method == "WS"
        scope: dict[str, Any] = {
            "type": "websocket" if websocket else "http",
            "path": path,
            "root_path": "",
            "method": "GET" if websocket else method,
            "path_params": {},
        }
        partial = None
        for context in self.contexts:
            if websocket != is_websocket(context):
                continue
            found, child_scope = context.matches(scope)
            if found == Match.FULL:
                endpoint = Endpoint(method, str(context.path_format), context)
                return endpoint, dict(child_scope.get("path_params", {}))
            if found == Match.PARTIAL and partial is None:
                partial = context
        if partial is not None:
            raise Refused(405, f"{path} does not take {method}")
        raise Refused(404, f"{path} is not a route of Prefect's API")

    async def parse(
        self,
        endpoint: Endpoint,
        path_params: dict[str, Any],
        query_string: bytes,
        headers: Headers,
        body: bytes,
    ) -> Parsed:
        """The endpoint's parameters read from the request as FastAPI reads them, and the
        request rebuilt from them; Refused (400, 415, 422) naming what is wrong."""
        from fastapi.dependencies.utils import request_params_to_args

        if "cookie" in headers:
            raise Refused(400, "Prefect's API takes no cookies")
        query = canonical_query(query_string, endpoint)
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for dependant in endpoint.dependants:
            for fields, received in (
                (dependant.path_params, path_params),
                (dependant.query_params, query),
                (dependant.header_params, headers),
            ):
                found, failed = request_params_to_args(fields, received)
                values.update(found)
                errors += failed
        body_value, body_keys = await self.parse_body(endpoint, headers, body, values, errors)
        if errors:
            raise Refused(422, validation_message(errors))
        return Parsed(
            endpoint=endpoint,
            path=rebuilt_path(endpoint, path_params),
            values=values,
            query=tuple(self.rebuilt_params(endpoint, "query_params", query, values)),
            headers=tuple(self.rebuilt_params(endpoint, "header_params", headers, values)),
            body=body_value,
            body_keys=body_keys,
        )

    async def reserialized(self, parsed: Parsed) -> Parsed:
        """The request with its body serialised again from its parsed values, after the gateway
        changed one of them (the starter tag of a run)."""
        from dataclasses import replace

        body = serialized_body(parsed.endpoint, parsed.values, parsed.body_keys)
        return replace(parsed, body=body)

    @staticmethod
    async def parse_body(
        endpoint: Endpoint,
        headers: Headers,
        body: bytes,
        values: dict[str, Any],
        errors: list[Any],
    ) -> tuple[bytes | None, frozenset[str]]:
        """Validate the JSON body with the endpoint's body fields; the body re-serialised from
        the parsed values, and the keys the client's object had."""
        from fastapi.dependencies.utils import request_body_to_args

        if not endpoint.body_fields:
            if body:
                raise Refused(400, f"{endpoint.method} {endpoint.template} takes no body")
            return None, frozenset()
        received: Any = None
        if body:
            content_type = headers.get("content-type")
            if not is_json(content_type):
                raise Refused(
                    415, "bodies of Prefect's API are JSON (Content-Type: application/json)"
                )
            try:
                received = json.loads(body)
            except ValueError as error:
                raise Refused(422, f"the body is not JSON: {error}") from None
        found, failed = await request_body_to_args(
            body_fields=list(endpoint.body_fields),
            received_body=received,
            embed_body_fields=endpoint.embedded,
        )
        values.update(found)
        errors += failed
        if failed:
            return None, frozenset()
        keys = frozenset(received) if isinstance(received, dict) else frozenset()
        if not body:
            return None, keys
        return serialized_body(endpoint, found, keys), keys

    @staticmethod
    def rebuilt_params(
        endpoint: Endpoint, kind: str, received: Any, values: Mapping[str, Any]
    ) -> Iterator[tuple[str, str]]:
        """(name, value) pairs of the query or headers the endpoint declares and the client
        gave, serialised from the parsed values."""
        done: set[str] = set()
        for dependant in endpoint.dependants:
            for field in getattr(dependant, kind):
                name = header_name(field) if kind == "header_params" else field.alias
                if name in done or name not in received or field.name not in values:
                    continue
                done.add(name)
                for item in flat(field.serialize(values[field.name], mode="json")):
                    yield name, item
        if kind == "header_params":
            for name in PASSED_HEADERS:
                if name in received and name not in done:
                    yield name, received[name]


def is_websocket(context: Any) -> bool:
    """True for a WebSocket route."""
    return type(getattr(context, "original_route", context)).__name__ in (
        "APIWebSocketRoute",
        "WebSocketRoute",
    )


def is_json(content_type: str | None) -> bool:
    """True for the content type FastAPI parses as JSON, in its canonical spelling."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type() == "application/json"


def canonical_query(query_string: bytes, endpoint: Endpoint) -> QueryParams:
    """The query as Starlette reads it, when every key is one the endpoint reads and no
    single-valued key is given twice."""
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"), keep_blank_values=True, strict_parsing=False
        )
    except UnicodeDecodeError:
        raise Refused(400, "the query string has bytes that are not encoded") from None
    declared = {
        field.alias for dependant in endpoint.dependants for field in dependant.query_params
    }
    seen: set[str] = set()
    for key, _ in pairs:
        if key not in declared:
            raise Refused(400, f"{endpoint.template} reads no query parameter {key!r}")
        if key in seen and key not in endpoint.sequence_aliases:
            raise Refused(400, f"query parameter {key!r} is given more than once")
        seen.add(key)
    return QueryParams(query_string.decode("ascii"))


def header_name(field: Any) -> str:
    """The header a declared header parameter reads (FastAPI converts underscores)."""
    alias = str(field.alias)
    if getattr(field.field_info, "convert_underscores", True) and alias == field.name:
        alias = alias.replace("_", "-")
    return alias.lower()


def flat(value: Any) -> Iterator[str]:
    """A serialised query or header value as the strings it is sent as."""
    if value is None:
        return
    if isinstance(value, list | tuple):
        for item in value:
            yield from flat(item)
    elif isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, dict):
        yield json.dumps(value, separators=(",", ":"))
    else:
        yield str(value)


def serialized_body(endpoint: Endpoint, found: Mapping[str, Any], keys: frozenset[str]) -> bytes:
    """The body from the parsed values: the single model, or an object of the parameters the
    client gave (an embedded body), with only the fields the client set."""
    fields = endpoint.body_fields
    if not endpoint.embedded:
        field = fields[0]
        data = field.serialize(found[field.name], mode="json", exclude_unset=True)
    else:
        data = {
            field.alias: field.serialize(found[field.name], mode="json", exclude_unset=True)
            for field in fields
            if field.alias in keys and field.name in found
        }
    return json.dumps(data, separators=(",", ":")).encode()


def rebuilt_path(endpoint: Endpoint, path_params: Mapping[str, Any]) -> str:
    """The route's path with its matched parameters, each segment in canonical encoding."""
    convertors = getattr(endpoint.context, "param_convertors", {})
    text = str(endpoint.template)
    for name, value in path_params.items():
        convertor = convertors.get(name)
        text = text.replace(
            "{" + name + "}", convertor.to_string(value) if convertor else str(value)
        )
    return path_of(text[1:].split("/"))


def validation_message(errors: list[Any]) -> str:
    """FastAPI's validation errors as one line: where, and what is wrong (never the input)."""
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    more = len(errors) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def encoded_query(pairs: tuple[tuple[str, str], ...]) -> str:
    """The query string of rebuilt pairs."""
    return urlencode(list(pairs))
