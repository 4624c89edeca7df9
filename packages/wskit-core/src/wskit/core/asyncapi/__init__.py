"""AsyncAPI 3.0 documents from a router: the contract as other teams, code
generators and docs portals read it.

::

    from wskit.core.asyncapi import asyncapi_document, sends, to_yaml

    @router.on(Join)
    @sends(Notice, topic="room:{room}")         # published to the room's subscribers
    async def join(ctx): ...

    @router.on_open
    @sends(Welcome)                             # sent to the connection itself
    async def welcome(ctx): ...

    document = asyncapi_document(router, title="Chat", version="1.0.0")
    print(to_yaml(document))

From the command line: ``python -m wskit.core.asyncapi module:router
[--yaml] [-o FILE]``.

The document describes the server. Every frame is one JSON text frame
``{"type", "meta", "payload"}``, so each message's ``payload`` schema is the
whole frame (built from the validator's JSON Schema for the payload and for
extended meta). Inbound routes are ``receive`` operations; an RPC's reply lists
its response, its ``$ws:rpc-progress`` updates and ``RPC_ERROR``, correlated by
``$message.payload#/meta/correlationId``. Messages a handler or lifecycle hook
declares with :func:`sends` are ``send`` operations, on the socket's channel or,
when published, on a channel per topic pattern. The error frames (with the
standard codes) and the system frames (heartbeat, abort) are always included.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

from wskit.core.envelope import (
    ABORT,
    ERROR,
    HEARTBEAT,
    HEARTBEAT_ACK,
    RPC_ERROR,
    RPC_PROGRESS,
)
from wskit.core.errors import ERROR_CODE_META
from wskit.core.schema import MessageSchema, RpcSchema, envelope_json_schema

if TYPE_CHECKING:
    from wskit.core.router import Router

__all__ = [
    "ASYNCAPI_VERSION",
    "Sends",
    "asyncapi_document",
    "declared_sends",
    "sends",
    "to_json",
    "to_yaml",
]

#: The AsyncAPI version of the documents this module writes.
ASYNCAPI_VERSION: Final = "3.0.0"

_F = TypeVar("_F", bound=Callable[..., Any])

_ATTR: Final = "__wskit_sends__"
_KEY_CHARS: Final = re.compile(r"[^A-Za-z0-9_.\-]+")
_TOPIC_PARAM: Final = re.compile(r"\{([^{}]*)\}")
_PARAM_NAME: Final = re.compile(r"^[A-Za-z0-9_\-]+$")
_CORRELATION_LOCATION: Final = "$message.payload#/meta/correlationId"
_OPEN: Final = "$ws:open"
_CLOSE: Final = "$ws:close"


# ------------------------------------------------------------- declarations


@dataclass(frozen=True, slots=True)
class Sends:
    """Server → client messages declared with :func:`sends`: sent to the
    connection itself (``topic`` is ``None``) or published to ``topic``."""

    schemas: tuple[MessageSchema[Any], ...]
    topic: str | None = None


def sends(*schemas: MessageSchema[Any], topic: str | None = None) -> Callable[[_F], _F]:
    """Declare the messages a handler or lifecycle hook sends, for the AsyncAPI
    document (nothing changes at run time).

    Without ``topic`` they go to the connection itself (``ctx.send``); with
    ``topic`` they are published to it (``ctx.publish``). A topic pattern names
    its variable parts in braces, as in ``"room:{room}"``. Stack several
    ``@sends`` for several topics; the order relative to ``@router.on`` does
    not matter.
    """
    if not schemas:
        raise TypeError("sends() needs at least one message schema")
    for schema in schemas:
        if not isinstance(schema, MessageSchema) or isinstance(schema, RpcSchema):
            raise TypeError(f"sends() takes event message schemas, got {schema!r}")
    if topic is not None:
        if not isinstance(topic, str) or not topic:
            raise TypeError("sends(topic=...) must be a non-empty string")
        for name in _TOPIC_PARAM.findall(topic):
            if not _PARAM_NAME.match(name):
                raise ValueError(
                    f"sends(topic={topic!r}): a topic parameter is letters, digits, '_' "
                    f"or '-' in braces, got {{{name}}}"
                )
    declaration = Sends(tuple(schemas), topic)

    def mark(fn: _F) -> _F:
        try:
            setattr(fn, _ATTR, (*getattr(fn, _ATTR, ()), declaration))
        except (AttributeError, TypeError):
            raise TypeError(f"sends() cannot annotate {fn!r}") from None
        return fn

    return mark


def declared_sends(fn: Callable[..., Any]) -> tuple[Sends, ...]:
    """What :func:`sends` declared on ``fn`` (or on a function it wraps)."""
    found: list[Sends] = []
    seen: set[int] = set()
    current: Any = fn
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        for declaration in getattr(current, _ATTR, ()):
            if declaration not in found:
                found.append(declaration)
        current = getattr(current, "__wrapped__", None)
    return tuple(found)


# ------------------------------------------------------------------ builder


class _Keys:
    """Unique component keys made of the characters AsyncAPI allows."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def take(self, wanted: str) -> str:
        base = _KEY_CHARS.sub("_", wanted).strip("_") or "message"
        key, n = base, 1
        while key in self.taken:
            n += 1
            key = f"{base}_{n}"
        self.taken.add(key)
        return key


def _refs(node: Any, rename: Mapping[str, str]) -> Any:
    """A copy of ``node`` with ``#/$defs/X`` references pointing at
    ``#/components/schemas/<rename[X]>``."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                name = value[len("#/$defs/") :]
                out[key] = f"#/components/schemas/{rename.get(name, name)}"
            else:
                out[key] = _refs(value, rename)
        return out
    if isinstance(node, list):
        return [_refs(item, rename) for item in node]
    return node


def _local_refs(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                found.add(ref[len("#/$defs/") :])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class _Builder:
    def __init__(self) -> None:
        self.message_keys = _Keys()
        self.schema_keys = _Keys()
        self.schemas: dict[str, Any] = {}  # components.schemas
        # key -> (the definition as its codec wrote it, the keys its references got)
        self.registered: dict[str, tuple[Any, dict[str, str]]] = {}
        self.messages: dict[str, Any] = {}  # components.messages
        self.by_schema: dict[int, str] = {}
        self.socket_messages: list[str] = []
        self.operations: dict[str, Any] = {}
        self.operation_keys = _Keys()
        self.channels: dict[str, Any] = {}
        self.topic_channels: dict[str, str] = {}  # pattern -> channel key

    # ---------------------------------------------------------- schemas

    def hoist(self, schema: dict[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
        """Move ``defs`` into ``components.schemas`` and point the references of
        ``schema`` at them. A definition keeps its name when the name is free, or
        shares an existing one when it and everything it references are the same;
        otherwise it gets a new name (``Line_2``)."""
        shared = {name for name in defs if self._same(name, defs, set())}
        rename: dict[str, str] = {}
        for name in defs:
            if name in shared:
                rename[name] = name
                self.schema_keys.taken.add(name)
            else:
                rename[name] = self.schema_keys.take(name)
        for name, definition in defs.items():
            key = rename[name]
            if key not in self.registered:
                refs = {n: rename.get(n, n) for n in _local_refs(definition)}
                self.registered[key] = (definition, refs)
                self.schemas[key] = _refs(definition, rename)
        return dict(_refs(schema, rename))

    def _same(self, name: str, defs: Mapping[str, Any], seen: set[str]) -> bool:
        if name in seen:
            return True
        seen.add(name)
        if _KEY_CHARS.sub("_", name) != name:
            return False
        entry = self.registered.get(name)
        if entry is None:
            return name not in self.schema_keys.taken
        raw, refs = entry
        if raw != defs.get(name):
            return False
        return all(key == n and self._same(n, defs, seen) for n, key in refs.items())

    def envelope(self, schema: MessageSchema[Any], *, correlated: bool) -> dict[str, Any]:
        env = envelope_json_schema(schema)
        env.pop("$schema", None)
        defs: dict[str, Any] = dict(env.pop("$defs", {}))
        if schema.meta is not None:
            defs.update(schema.meta.json_schema().get("$defs", {}))
        if correlated:
            meta = env["properties"]["meta"]
            meta["required"] = ["correlationId", *meta.get("required", [])]
            if "meta" not in env["required"]:
                env["required"] = [*env["required"], "meta"]
        return self.hoist(env, defs)

    # --------------------------------------------------------- messages

    def message(
        self,
        schema: MessageSchema[Any],
        *,
        correlated: bool = False,
        summary: str | None = None,
    ) -> str:
        known = self.by_schema.get(id(schema))
        if known is not None:
            return known
        key = self.message_keys.take(schema.type)
        payload = self.envelope(schema, correlated=correlated)
        body: dict[str, Any] = {"name": schema.type, "title": schema.type}
        codec_schema = schema.payload.json_schema() if schema.payload is not None else {}
        description = codec_schema.get("description")
        if summary is not None:
            body["summary"] = summary
        if isinstance(description, str) and description.strip():
            body["description"] = description.strip()
        body["contentType"] = "application/json"
        body["payload"] = payload
        if correlated:
            body["correlationId"] = {"$ref": "#/components/correlationIds/correlationId"}
        self.messages[key] = body
        self.by_schema[id(schema)] = key
        self.socket_messages.append(key)
        return key

    def system_message(
        self,
        key: str,
        message_type: str,
        summary: str,
        *,
        meta: dict[str, Any],
        payload: dict[str, Any] | None = None,
        correlated: bool = False,
    ) -> str:
        key = self.message_keys.take(key)
        properties: dict[str, Any] = {"type": {"const": message_type}, "meta": meta}
        required = ["type", "meta"] if correlated or meta.get("required") else ["type"]
        if payload is not None:
            properties["payload"] = payload
            required.append("payload")
        body: dict[str, Any] = {
            "name": message_type,
            "title": message_type,
            "summary": summary,
            "contentType": "application/json",
            "payload": {
                "title": message_type,
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        }
        if correlated:
            body["correlationId"] = {"$ref": "#/components/correlationIds/correlationId"}
        self.messages[key] = body
        self.socket_messages.append(key)
        return key

    def progress_message(self, rpc: RpcSchema[Any, Any]) -> str:
        response = rpc.response
        env = self.envelope(response, correlated=True)
        env["title"] = RPC_PROGRESS
        env["properties"]["type"] = {"const": RPC_PROGRESS}
        key = self.message_keys.take(f"{response.type}.progress")
        self.messages[key] = {
            "name": RPC_PROGRESS,
            "title": f"{RPC_PROGRESS} ({rpc.type})",
            "summary": f"A progress update of {rpc.type}, before its {response.type} reply.",
            "contentType": "application/json",
            "payload": env,
            "correlationId": {"$ref": "#/components/correlationIds/correlationId"},
        }
        self.socket_messages.append(key)
        return key

    # ------------------------------------------------------- operations

    def operation(
        self,
        name: str,
        action: str,
        channel: str,
        messages: list[str],
        *,
        summary: str,
        description: str | None = None,
        reply: list[str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        op: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
        }
        if description:
            op["description"] = description
        op["messages"] = [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages]
        if reply is not None:
            op["reply"] = {
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in reply],
            }
        op.update(extensions or {})
        self.operations[self.operation_keys.take(name)] = op

    def topic_channel(self, pattern: str) -> str:
        key = self.topic_channels.get(pattern)
        if key is None:
            key = self.topic_channels[pattern] = _unique(
                "topic_" + pattern, self.channels.keys() | set(self.topic_channels.values())
            )
        return key


def _unique(wanted: str, taken: Iterable[str]) -> str:
    keys = _Keys()
    keys.taken = set(taken)
    return keys.take(wanted)


def _error_schema() -> dict[str, Any]:
    codes = [
        {"const": code, "description": meta.description} for code, meta in ERROR_CODE_META.items()
    ]
    return {
        "title": "Error",
        "description": (
            "An error answer. `code` is one of the standard codes or an application-defined "
            "one; clients infer retryability from the code unless `retryable` is sent."
        ),
        "type": "object",
        "properties": {
            "code": {"anyOf": [*codes, {"type": "string", "description": "An application code"}]},
            "message": {"type": "string"},
            "details": {
                "type": "object",
                "description": "Context (credential-like keys are never sent)",
            },
            "retryAfterMs": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "Suggested wait before a retry; null: do not retry",
            },
            "retryable": {"type": "boolean"},
        },
        "required": ["code", "message"],
        "additionalProperties": False,
    }


def _describe_senders(senders: list[str]) -> str:
    parts = []
    for sender in senders:
        if sender == _OPEN:
            parts.append("when a connection opens")
        elif sender == _CLOSE:
            parts.append("when a connection closes")
        elif sender == "":
            parts.append("by the application")
        else:
            parts.append(f"by the {sender} handler")
    return ", ".join(parts)


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"server must be a ws:// or wss:// URL, got {url!r}")
    server: dict[str, Any] = {"host": parts.netloc, "protocol": parts.scheme}
    if parts.path and parts.path != "/":
        server["pathname"] = parts.path
    return server


_DEFAULT_DESCRIPTION: Final = (
    "A WebSocket API served by wskit. Every frame is one JSON text frame "
    '`{"type", "meta", "payload"}`: each message\'s payload schema below describes the '
    "whole frame. Unknown keys are rejected at every level; `meta` accepts the standard "
    "fields (`timestamp`, `correlationId`, `timeoutMs`, `idempotencyKey`, `traceparent`, "
    "`tracestate`) and the extended meta a message declares. An RPC request carries "
    "`meta.correlationId`; the server echoes it on the reply, on `$ws:rpc-progress` "
    "updates and on `RPC_ERROR`. Invalid or unknown messages are answered with `ERROR` "
    "(`RPC_ERROR` when they carry a correlationId)."
)


def asyncapi_document(
    router: Router[Any],
    *,
    title: str = "wskit API",
    version: str = "1.0.0",
    description: str | None = None,
    path: str = "/",
    servers: Mapping[str, str] | None = None,
    sends: Iterable[MessageSchema[Any]] = (),
    publishes: Mapping[str, Iterable[MessageSchema[Any]]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``router`` as a JSON-compatible dict.

    - ``title``, ``version``, ``description``: the document's ``info``.
    - ``path``: the WebSocket path (the socket channel's address).
    - ``servers``: name → ``ws://`` / ``wss://`` URL, e.g.
      ``{"production": "wss://chat.example.com/ws"}``.
    - ``sends`` / ``publishes``: server → client messages sent outside any
      handler (background tasks), besides those declared with :func:`sends`;
      ``publishes`` maps a topic pattern to its messages.
    """
    b = _Builder()
    socket = "socket"
    routes = list(router.routes.values())

    # Inbound routes (and, for RPCs, their replies).
    inbound: list[tuple[str, str, list[str] | None]] = []
    error_schema_key = b.schema_keys.take("Error")
    for route in routes:
        schema = route.schema
        if isinstance(schema, RpcSchema):
            request = b.message(schema, correlated=True, summary=f"RPC request {schema.type}")
            response = b.message(
                schema.response,
                correlated=True,
                summary=f"The reply to {schema.type}",
            )
            progress = b.progress_message(schema)
            inbound.append((request, schema.type, [response, progress]))
        else:
            key = b.message(schema, summary=f"Client message {schema.type}")
            inbound.append((key, schema.type, None))

    # Declared server → client messages.
    direct: dict[str, list[str]] = {}
    published: dict[str, dict[str, list[str]]] = {}

    def declare(schema: MessageSchema[Any], topic: str | None, sender: str) -> None:
        key = b.message(schema)
        senders = (direct if topic is None else published.setdefault(topic, {})).setdefault(key, [])
        if sender not in senders:
            senders.append(sender)

    sources: list[tuple[str, Callable[..., Any]]] = [
        (route.schema.type, route.handler) for route in routes
    ]
    sources += [(_OPEN, hook) for hook in getattr(router, "_open_hooks", ())]
    sources += [(_CLOSE, hook) for hook in getattr(router, "_close_hooks", ())]
    for sender, fn in sources:
        for declaration in declared_sends(fn):
            for schema in declaration.schemas:
                declare(schema, declaration.topic, sender)
    order = {sender: i for i, (sender, _) in enumerate(sources)}
    order[""] = len(order)
    for schema in sends:
        declare(schema, None, "")
    for topic, schemas in (publishes or {}).items():
        for schema in schemas:
            declare(schema, topic, "")

    # System frames.
    correlation_meta: dict[str, Any] = {
        "type": "object",
        "properties": {"correlationId": {"type": "string"}},
        "required": ["correlationId"],
    }
    heartbeat = b.system_message(
        "heartbeat",
        HEARTBEAT,
        "Client liveness probe; the server answers __heartbeat_ack at once.",
        meta={"type": "object"},
    )
    heartbeat_ack = b.system_message(
        "heartbeat_ack",
        HEARTBEAT_ACK,
        "The answer to __heartbeat, with the server time in milliseconds.",
        meta={
            "type": "object",
            "properties": {"ts": {"type": "integer", "description": "Server time (ms)"}},
            "required": ["ts"],
            "additionalProperties": False,
        },
    )
    abort = b.system_message(
        "abort",
        ABORT,
        "Cancel the running RPC named by meta.correlationId; nothing more is sent for it.",
        meta=correlation_meta,
        correlated=True,
    )
    error_ref = {"$ref": f"#/components/schemas/{error_schema_key}"}
    b.schemas[error_schema_key] = _error_schema()
    error = b.system_message(
        "ERROR",
        ERROR,
        "An error answer to a message that is not an RPC (or not a valid one).",
        meta={
            "type": "object",
            "properties": {"correlationId": {"type": "string"}},
            "additionalProperties": False,
        },
        payload=error_ref,
    )
    rpc_error = b.system_message(
        "RPC_ERROR",
        RPC_ERROR,
        "The terminal error answer to an RPC request.",
        meta={**correlation_meta, "additionalProperties": False},
        payload=error_ref,
        correlated=True,
    )

    # Channels.
    b.channels[socket] = {
        "address": path,
        "title": "WebSocket",
        "description": (
            "The WebSocket connection: every frame in both directions travels here. "
            "Messages published to a topic reach the connections subscribed to it "
            "over this same socket."
        ),
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in b.socket_messages},
    }
    for topic, by_key in published.items():
        channel = b.topic_channel(topic)
        params = _TOPIC_PARAM.findall(topic)
        body: dict[str, Any] = {
            "address": topic,
            "title": f"Topic {topic}",
            "description": (
                f"Pub/sub topic `{topic}`: a message published here is delivered to every "
                "connection subscribed to the topic, over its WebSocket."
            ),
            "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in by_key},
        }
        if params:
            body["parameters"] = {
                name: {"description": f"The {name} part of the topic"} for name in params
            }
        b.channels[channel] = body

    # Operations, from the server's point of view.
    for key, message_type, reply in inbound:
        if reply is None:
            b.operation(
                f"receive_{key}",
                "receive",
                socket,
                [key],
                summary=f"Handle {message_type}",
                description="Answered with ERROR when it is invalid or its handler fails.",
            )
        else:
            b.operation(
                f"rpc_{key}",
                "receive",
                socket,
                [key],
                summary=f"Handle the {message_type} RPC",
                description=(
                    "Request/response: the reply carries the request's correlationId; "
                    f"`{RPC_PROGRESS}` updates may come first; `RPC_ERROR` ends it with an "
                    "error. A `$ws:abort` or an elapsed `meta.timeoutMs` cancels it."
                ),
                reply=[*reply, rpc_error],
            )
    for key, senders in direct.items():
        b.operation(
            f"send_{key}",
            "send",
            socket,
            [key],
            summary=f"Send {b.messages[key]['name']}",
            description=f"Sent to the connection {_describe_senders(senders)}.",
            extensions={"x-wskit-sent-by": senders},
        )
    for topic, by_key in published.items():
        channel = b.topic_channels[topic]
        senders = sorted({n for names in by_key.values() for n in names}, key=order.__getitem__)
        b.operation(
            f"publish_{channel}",
            "send",
            channel,
            list(by_key),
            summary=f"Publish to {topic}",
            description=f"Published {_describe_senders(senders)}.",
            extensions={"x-wskit-sent-by": senders},
        )
    b.operation(
        "receive_heartbeat",
        "receive",
        socket,
        [heartbeat],
        summary="Answer heartbeats",
        reply=[heartbeat_ack],
    )
    b.operation("receive_abort", "receive", socket, [abort], summary="Cancel a running RPC")
    b.operation("send_error", "send", socket, [error], summary="Report an error")

    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": description if description is not None else _DEFAULT_DESCRIPTION,
        },
    }
    if servers:
        document["servers"] = {name: _server(url) for name, url in servers.items()}
    document["defaultContentType"] = "application/json"
    document["channels"] = b.channels
    document["operations"] = b.operations
    document["components"] = {
        "schemas": dict(sorted(b.schemas.items())),
        "messages": b.messages,
        "correlationIds": {
            "correlationId": {
                "description": "The RPC's correlation id, in the frame's meta",
                "location": _CORRELATION_LOCATION,
            }
        },
    }
    return copy.deepcopy(document)


# ---------------------------------------------------------------- rendering


def to_json(document: Mapping[str, Any], *, indent: int | None = 2) -> str:
    """The document as JSON text (UTF-8, not ASCII-escaped)."""
    return json.dumps(document, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


_PLAIN_KEY: Final = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$\-]*$")
_YAML_WORDS: Final = frozenset({"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"})
# Escaped in strings: what YAML does not allow raw, and what YAML 1.1 readers take
# for line breaks (NEL, LS, PS).
_NOT_PRINTABLE: Final = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
)


def _yaml_string(text: str) -> str:
    quoted = json.dumps(text, ensure_ascii=False)
    return _NOT_PRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _yaml_key(key: Any) -> str:
    text = str(key)
    if _PLAIN_KEY.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return _yaml_string(text)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return json.dumps(value, allow_nan=False)
    if isinstance(value, str):
        return _yaml_string(value)
    if isinstance(value, Mapping) and not value:
        return "{}"
    if isinstance(value, (list, tuple)) and not value:
        return "[]"
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _is_block(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and bool(value)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{pad}{_yaml_key(key)}:"
            if _is_block(item):
                lines.append(head)
                lines.extend(_yaml_lines(item, indent + 2))
            else:
                lines.append(f"{head} {_yaml_scalar(item)}")
        return lines
    for item in value:
        if _is_block(item):
            nested = _yaml_lines(item, indent + 2)
            lines.append(f"{pad}- {nested[0][indent + 2 :]}")
            lines.extend(nested[1:])
        else:
            lines.append(f"{pad}- {_yaml_scalar(item)}")
    return lines


def to_yaml(document: Mapping[str, Any]) -> str:
    """The document as block-style YAML (strings double-quoted, JSON escapes),
    written without a YAML library."""
    if not document:
        return "{}\n"
    return "\n".join(_yaml_lines(document, 0)) + "\n"
