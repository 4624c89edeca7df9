"""Envelope parsing/serialization, errors and schema definitions (no validator package)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import wskit.core
from wskit.core import (
    ERROR_CODE_META,
    ErrorCode,
    JsonObjectCodec,
    ProtocolError,
    RpcError,
    SchemaDefinitionError,
    ValidationError,
    any_object,
    decode_frame,
    define_message,
    define_rpc,
    encode_envelope,
    is_standard_error_code,
    sanitize_details,
)


def test_wire_constants_match_ws_kit() -> None:
    assert wskit.core.HEARTBEAT == "__heartbeat"
    assert wskit.core.HEARTBEAT_ACK == "__heartbeat_ack"
    assert wskit.core.RPC_PROGRESS == "$ws:rpc-progress"
    assert wskit.core.ABORT == "$ws:abort"
    assert wskit.core.ERROR == "ERROR"
    assert wskit.core.RPC_ERROR == "RPC_ERROR"
    assert {"clientId", "receivedAt"} == wskit.core.RESERVED_META_KEYS


def test_the_thirteen_codes_and_their_retry_metadata() -> None:
    table = {
        code: (m.retryable, m.suggest_backoff_ms, m.retry_after)
        for code, m in ERROR_CODE_META.items()
    }
    assert table == {
        "UNAUTHENTICATED": (False, None, "forbidden"),
        "PERMISSION_DENIED": (False, None, "forbidden"),
        "INVALID_ARGUMENT": (False, None, "forbidden"),
        "FAILED_PRECONDITION": (False, None, "forbidden"),
        "NOT_FOUND": (False, None, "forbidden"),
        "ALREADY_EXISTS": (False, None, "forbidden"),
        "UNIMPLEMENTED": (False, None, "forbidden"),
        "CANCELLED": (False, None, "forbidden"),
        "DEADLINE_EXCEEDED": (True, 50, "optional"),
        "RESOURCE_EXHAUSTED": (True, 100, "optional"),
        "UNAVAILABLE": (True, 100, "optional"),
        "ABORTED": (True, 50, "optional"),
        "INTERNAL": ("maybe", 200, "optional"),
    }
    assert all(getattr(ErrorCode, c) == c for c in table)
    assert is_standard_error_code("NOT_FOUND") and not is_standard_error_code("MY_CODE")


def test_decode_frame_accepts_text_and_binary() -> None:
    frame = {"type": "PING", "meta": {}, "payload": {"text": "ü"}}
    text = json.dumps(frame, ensure_ascii=False)
    assert decode_frame(text) == frame
    assert decode_frame(text.encode()) == frame
    assert decode_frame(bytearray(text.encode())) == frame
    assert decode_frame(memoryview(text.encode())) == frame


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "nan",
        "[]",
        "null",
        '{"type": []}',
        '{"meta": {}}',
        '{"type": "A", "p": NaN}',
        '{"type": "A"} trailing',
        '{"type": "A", "p": -Infinity}',
    ],
)
def test_decode_frame_rejects_bad_envelopes(raw: str) -> None:
    with pytest.raises(ProtocolError) as exc_info:
        decode_frame(raw)
    assert exc_info.value.code == "INVALID_ARGUMENT"


def test_encode_envelope_is_compact_and_payload_optional() -> None:
    assert encode_envelope("A", None) == '{"type":"A","meta":{}}'
    assert encode_envelope("A", {"x": 1}, None, has_payload=True) == (
        '{"type":"A","meta":{"x":1},"payload":null}'
    )
    assert encode_envelope("A", {}, {"t": "é"}, has_payload=True) == (
        '{"type":"A","meta":{},"payload":{"t":"é"}}'
    )
    with pytest.raises(ValueError):
        encode_envelope("A", {}, {"n": float("nan")}, has_payload=True)


@pytest.mark.parametrize("bad", ["", "$ws:x", "__x", 5, None])
def test_reserved_or_empty_types_are_refused_at_definition(bad: Any) -> None:
    with pytest.raises(SchemaDefinitionError):
        define_message(bad, any_object())


class _MetaCodec(JsonObjectCodec):
    def __init__(self, names: set[str]) -> None:
        self.field_names = frozenset(names)


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ({"clientId"}, "Reserved meta keys not allowed in schema: clientId"),
        ({"receivedAt", "x"}, "Reserved meta keys not allowed in schema: receivedAt"),
        ({"timestamp"}, "Standard meta keys are built in"),
    ],
)
def test_extended_meta_may_not_redeclare_reserved_or_standard_keys(
    names: set[str], match: str
) -> None:
    with pytest.raises(SchemaDefinitionError, match=match):
        define_message("X", any_object(), meta=_MetaCodec(names))


def test_rpc_schema_binds_response() -> None:
    schema = define_rpc("GET", any_object(), "GOT", None)
    assert schema.kind == "rpc" and schema.response.kind == "event"
    assert schema.response.type == "GOT" and schema.response.payload is None
    with pytest.raises(SchemaDefinitionError):
        wskit.core.RpcSchema("A", None, schema)  # an RPC cannot answer with an RPC


def test_envelope_json_schema() -> None:
    schema = define_message("PING", any_object())
    assert schema.json_schema() == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "PING",
        "type": "object",
        "properties": {
            "type": {"const": "PING"},
            "meta": {
                "type": "object",
                "properties": {
                    "timestamp": {"type": "number"},
                    "correlationId": {"type": "string"},
                    "timeoutMs": {"type": "integer", "exclusiveMinimum": 0},
                    "idempotencyKey": {"type": "string"},
                    "traceparent": {
                        "type": "string",
                        "description": "W3C trace context (traceparent)",
                    },
                    "tracestate": {
                        "type": "string",
                        "description": "W3C trace context (tracestate)",
                    },
                },
                "additionalProperties": False,
            },
            "payload": {"type": "object"},
        },
        "required": ["type", "payload"],
        "additionalProperties": False,
    }
    assert define_message("BARE").json_schema()["required"] == ["type"]


def test_sanitize_details() -> None:
    assert sanitize_details(None) is None
    assert sanitize_details({"password": "x"}) is None
    assert sanitize_details(
        {
            "user": "u1",
            "Access-Token": "t",
            "refresh_token": "r",
            "nested": {"SECRET": 1, "keep": [1, {"cookie": "c", "ok": True}]},
            "huge": {"k": "v" * 600},
            "bad": object(),
        }
    ) == {"user": "u1", "nested": {"keep": [1, {"ok": True}]}}


def test_rpc_error_defaults_message_from_code() -> None:
    assert RpcError("NOT_FOUND").message == "Target resource absent"
    assert RpcError("CUSTOM").message == "CUSTOM"
    err = ValidationError("bad", [{"path": ["a"], "message": "m"}])
    assert err.code == "INVALID_ARGUMENT"
    assert err.details == {"issues": [{"path": ["a"], "message": "m"}]}


def test_exports_are_exact_and_unique() -> None:
    modules = [
        "clock",
        "connection",
        "context",
        "envelope",
        "errors",
        "pubsub",
        "router",
        "schema",
        "validation",
    ]
    union: set[str] = set()
    for name in modules:
        module = __import__(f"wskit.core.{name}", fromlist=["__all__"])
        exported = set(module.__all__)
        assert not (exported & union), f"{name} re-exports a name another module exports"
        union |= exported
    assert set(wskit.core.__all__) == union
    assert all(hasattr(wskit.core, n) for n in wskit.core.__all__)


def test_core_imports_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import wskit.core, wskit.core.testing\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "third = sorted(m for m in new if m not in sys.stdlib_module_names and m != 'wskit')\n"
        "print(','.join(third))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_namespace_has_no_regular_package() -> None:
    import wskit

    assert not hasattr(wskit, "__file__") or wskit.__file__ is None
