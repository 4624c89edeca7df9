"""The AsyncAPI export with core-only schemas: structure, references, sends
declarations, component keys, shared definitions, YAML and the CLI. (Validation
against the official AsyncAPI schema and parser: tests/asyncapi/.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from wskit.core import (
    JsonObjectCodec,
    Router,
    any_object,
    create_router,
    define_message,
    define_rpc,
)
from wskit.core.asyncapi import (
    ASYNCAPI_VERSION,
    Sends,
    asyncapi_document,
    declared_sends,
    sends,
    to_json,
    to_yaml,
)

Ping = define_message("PING", any_object())
Pong = define_message("PONG", any_object())
Bare = define_message("BARE")
Notice = define_message("NOTICE", any_object())
GetUser = define_rpc("GET_USER", any_object(), "USER", any_object())


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _resolve(document, node["$ref"])
    return node


def _all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _all_refs(v)]
    return []


def _router() -> Router[Any]:
    router = create_router()

    @router.on(Ping)
    @sends(Pong)
    async def ping(ctx: Any) -> None:
        ctx.send(Pong, {})

    @sends(Notice, topic="room:{room}")
    @router.on(Bare)
    def bare(ctx: Any) -> None:  # a sync handler, declared above the registration
        pass

    @router.rpc(GetUser)
    async def get_user(ctx: Any) -> None:
        ctx.reply({})

    @router.on_open
    @sends(Pong)
    @sends(Notice, topic="lobby")
    async def opened(ctx: Any) -> None:
        pass

    return router


def test_document_shape() -> None:
    doc = asyncapi_document(
        _router(),
        title="T",
        version="2.0.0",
        path="/ws",
        servers={"local": "ws://127.0.0.1:3000/ws"},
    )
    assert doc["asyncapi"] == ASYNCAPI_VERSION == "3.0.0"
    assert doc["info"]["title"] == "T" and doc["info"]["version"] == "2.0.0"
    assert doc["servers"] == {
        "local": {"host": "127.0.0.1:3000", "protocol": "ws", "pathname": "/ws"}
    }
    assert doc["channels"]["socket"]["address"] == "/ws"
    ops = doc["operations"]
    assert sorted(ops) == sorted(
        [
            "receive_PING",
            "receive_BARE",
            "rpc_GET_USER",
            "send_PONG",
            "publish_topic_room_room",
            "publish_topic_lobby",
            "receive_heartbeat",
            "receive_abort",
            "send_error",
        ]
    )
    names = {
        op: [_resolve(doc, m["$ref"])["name"] for m in body["messages"]] for op, body in ops.items()
    }
    assert names["receive_PING"] == ["PING"]
    assert names["send_PONG"] == ["PONG"]
    assert names["publish_topic_room_room"] == ["NOTICE"]
    assert ops["send_PONG"]["x-wskit-sent-by"] == ["PING", "$ws:open"]
    assert ops["publish_topic_room_room"]["x-wskit-sent-by"] == ["BARE"]
    assert ops["publish_topic_lobby"]["x-wskit-sent-by"] == ["$ws:open"]
    rpc = ops["rpc_GET_USER"]
    assert rpc["action"] == "receive"
    reply = [_resolve(doc, m["$ref"])["name"] for m in rpc["reply"]["messages"]]
    assert reply == ["USER", "$ws:rpc-progress", "RPC_ERROR"]
    room = doc["channels"]["topic_room_room"]
    assert room["address"] == "room:{room}" and list(room["parameters"]) == ["room"]
    assert "parameters" not in doc["channels"]["topic_lobby"]
    # Every reference resolves, and operations only use their channel's messages.
    for ref in _all_refs(doc):
        _resolve(doc, ref)
    for body in ops.values():
        channel = body["channel"]["$ref"]
        for m in body["messages"] + body.get("reply", {}).get("messages", []):
            assert m["$ref"].startswith(channel + "/messages/")
    json.dumps(doc, allow_nan=False)  # JSON-compatible


def test_messages_describe_whole_frames_with_correlation() -> None:
    doc = asyncapi_document(_router())
    messages = doc["components"]["messages"]
    ping = messages["PING"]["payload"]
    assert ping["properties"]["type"] == {"const": "PING"}
    assert ping["required"] == ["type", "payload"]
    assert ping["properties"]["meta"]["additionalProperties"] is False
    assert "traceparent" in ping["properties"]["meta"]["properties"]
    assert "$schema" not in ping
    assert messages["BARE"]["payload"]["required"] == ["type"]
    for key in ("GET_USER", "USER", "USER.progress", "RPC_ERROR", "abort"):
        body = messages[key]
        assert body["correlationId"] == {"$ref": "#/components/correlationIds/correlationId"}
        assert "correlationId" in body["payload"]["properties"]["meta"]["required"]
    assert "correlationId" not in messages["PING"]
    location = doc["components"]["correlationIds"]["correlationId"]["location"]
    assert location == "$message.payload#/meta/correlationId"
    progress = messages["USER.progress"]["payload"]
    assert progress["properties"]["type"] == {"const": "$ws:rpc-progress"}
    error = doc["components"]["schemas"]["Error"]
    codes = [c["const"] for c in error["properties"]["code"]["anyOf"] if "const" in c]
    assert len(codes) == 13 and "PERMISSION_DENIED" in codes
    assert messages["ERROR"]["payload"]["properties"]["payload"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_declarations_are_collected_through_wrappers() -> None:
    @sends(Pong)
    async def fn(ctx: Any) -> None:
        pass

    def wrapper(ctx: Any) -> None:
        pass

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    assert declared_sends(wrapper) == (Sends((Pong,), None),)
    assert declared_sends(lambda ctx: None) == ()


def test_sends_refuses_bad_declarations() -> None:
    with pytest.raises(TypeError, match="at least one"):
        sends()
    with pytest.raises(TypeError, match="event message schemas"):
        sends(GetUser)
    with pytest.raises(ValueError, match="topic parameter"):
        sends(Pong, topic="room:{a b}")
    with pytest.raises(TypeError, match="non-empty"):
        sends(Pong, topic="")


def test_odd_types_get_unique_valid_keys() -> None:
    router = create_router()
    for message_type in ("chat.message", "room/join", "a:b", "a_b", "heartbeat", "é"):
        router.on(define_message(message_type), lambda ctx: None)
    doc = asyncapi_document(router)
    messages = doc["components"]["messages"]
    by_name: dict[str, list[str]] = {}
    for key, body in messages.items():
        assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in key), key
        by_name.setdefault(body["name"], []).append(key)
    assert by_name["chat.message"] == ["chat.message"]
    assert by_name["room/join"] == ["room_join"]
    assert sorted(by_name["a:b"] + by_name["a_b"]) == ["a_b", "a_b_2"]
    # The user's route takes the key first; the system's __heartbeat gets the next one.
    assert (by_name["heartbeat"], by_name["__heartbeat"]) == (["heartbeat"], ["heartbeat_2"])
    assert by_name["é"] == ["message"]
    assert len({k for ks in by_name.values() for k in ks}) == len(messages)


class _Codec(JsonObjectCodec):
    """A codec whose JSON Schema has definitions (as pydantic and attrs write)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._schema = schema

    def json_schema(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._schema))


def _with_line(line: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"lines": {"type": "array", "items": {"$ref": "#/$defs/Line"}}},
        "$defs": {"Line": line, **(extra or {})},
    }


def test_definitions_are_hoisted_shared_and_renamed() -> None:
    line = {"type": "object", "properties": {"text": {"type": "string"}}}
    other = {"type": "object", "properties": {"n": {"type": "integer"}}}
    nested = {"type": "object", "properties": {"inner": {"$ref": "#/$defs/Inner"}}}
    router = create_router()
    schemas = [
        define_message("A", _Codec(_with_line(line))),
        define_message("B", _Codec(_with_line(line))),  # same Line: shared
        define_message("C", _Codec(_with_line(other))),  # another Line: renamed
        define_message("D", _Codec(_with_line(nested, {"Inner": line}))),
        define_message("E", _Codec(_with_line(nested, {"Inner": other}))),
        define_message("F", _Codec(_with_line(line, {"Error": other}))),  # clashes with ours
    ]
    for schema in schemas:
        router.on(schema, lambda ctx: None)
    doc = asyncapi_document(router)
    defs = doc["components"]["schemas"]
    messages = doc["components"]["messages"]

    def target(key: str) -> Any:
        items = messages[key]["payload"]["properties"]["payload"]["properties"]["lines"]["items"]
        return items["$ref"]

    assert target("A") == target("B") == "#/components/schemas/Line"
    assert target("C") == "#/components/schemas/Line_2" and defs["Line_2"] == other
    assert defs["Line"] == line
    # D's Line and E's Line look alike but reference different Inner definitions.
    assert target("D") != target("E")
    d_inner = _resolve(doc, _resolve(doc, target("D"))["properties"]["inner"]["$ref"])
    e_inner = _resolve(doc, _resolve(doc, target("E"))["properties"]["inner"]["$ref"])
    assert d_inner == line and e_inner == other
    assert defs["Error"]["title"] == "Error" and defs["Error_2"] == other
    for ref in _all_refs(doc):
        _resolve(doc, ref)


def test_extra_sends_and_publishes() -> None:
    doc = asyncapi_document(create_router(), sends=[Pong], publishes={"news": [Notice]})
    ops = doc["operations"]
    assert ops["send_PONG"]["description"] == "Sent to the connection by the application."
    assert [m["$ref"] for m in ops["publish_topic_news"]["messages"]] == [
        "#/channels/topic_news/messages/NOTICE"
    ]


def test_servers_must_be_websocket_urls() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        asyncapi_document(create_router(), servers={"x": "http://example.com"})
    doc = asyncapi_document(create_router(), servers={"p": "wss://example.com"})
    assert doc["servers"] == {"p": {"host": "example.com", "protocol": "wss"}}


def test_yaml_writer() -> None:
    doc = {
        "asyncapi": "3.0.0",
        "plain": {"key-1": 1, "x.y": 2.5, "$ref": "#/a", "on": True, "no": None},
        "strings": [
            "yes",
            "",
            "a: b",
            "- x",
            "#c",
            "é ü",
            "tab\there",
            "nl\nline",
            "\x85\x7f\u2028",
        ],
        "empty": {"list": [], "map": {}},
        "nested": [[1, [2]], {"a": [{"b": {}}], "c": "d"}],
        "quoted keys": {"a:b": 1, "true": 2, "": 3},
    }
    text = to_yaml(doc)
    assert text.startswith('asyncapi: "3.0.0"\n')
    assert '  "on": true\n' in text and '  "no": null\n' in text
    assert "  key-1: 1\n" in text and '  $ref: "#/a"\n' in text
    assert '  - "\\u0085\\u007f\\u2028"\n' in text
    assert "- - 1\n" in text and "  - - 2\n" in text
    assert to_yaml({}) == "{}\n"
    import yaml  # PyYAML, a test dependency: an independent YAML reader

    assert yaml.safe_load(text) == doc
    assert json.loads(to_json(doc)) == doc
    with pytest.raises(TypeError, match="cannot write"):
        to_yaml({"a": object()})


def test_yaml_matches_json_for_a_real_document() -> None:
    import yaml

    doc = asyncapi_document(_router())
    assert yaml.safe_load(to_yaml(doc)) == doc


def test_the_export_imports_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import wskit.core.asyncapi, wskit.core.asyncapi.__main__\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(','.join(sorted(m for m in new if m not in sys.stdlib_module_names)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out in ("", "wskit")


@pytest.fixture
def app_module(tmp_path: Path) -> Path:
    (tmp_path / "my_api.py").write_text(
        textwrap.dedent(
            """
            from wskit.core import any_object, create_router, define_message

            Ping = define_message("PING", any_object())

            def build():
                router = create_router()
                router.on(Ping, lambda ctx: None)
                return router

            router = build()
            not_a_router = 42
            """
        )
    )
    return tmp_path


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", "-m", "wskit.core.asyncapi", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_writes_json_and_yaml(app_module: Path) -> None:
    result = _cli(app_module, "my_api:router", "--title", "Mine", "--path", "/ws")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["info"]["title"] == "Mine" and doc["channels"]["socket"]["address"] == "/ws"
    assert "receive_PING" in doc["operations"]

    result = _cli(
        app_module, "my_api:build", "-o", "api.yaml", "--server", "prod=wss://example.com/ws"
    )
    assert result.returncode == 0, result.stderr
    text = (app_module / "api.yaml").read_text(encoding="utf-8")
    assert text.startswith('asyncapi: "3.0.0"\n')
    assert 'protocol: "wss"' in text
    assert _cli(app_module, "my_api:router", "--yaml").stdout == to_yaml(
        asyncapi_document(_load(app_module))
    )


def _load(cwd: Path) -> Any:
    sys.path.insert(0, str(cwd))
    try:
        import my_api  # type: ignore[import-not-found]

        return my_api.router
    finally:
        sys.path.remove(str(cwd))
        sys.modules.pop("my_api", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["my_api"], "expected module:router"),
        (["my_api:not_a_router"], "is not a wskit Router"),
        (["my_api:missing"], "wskit.core.asyncapi: 'my_api:missing': module 'my_api' has no"),
        (["no_such_api:router"], "wskit.core.asyncapi: cannot import 'no_such_api'"),
        (["my_api:router", "--server", "nope"], "--server expects NAME=URL"),
        (["my_api:router", "--server", "a=http://x"], "ws:// or wss://"),
    ],
)
def test_cli_errors(app_module: Path, args: list[str], message: str) -> None:
    result = _cli(app_module, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_required_extended_meta_makes_meta_required() -> None:
    class _Required(JsonObjectCodec):
        field_names = frozenset({"tenant"})

        def json_schema(self) -> dict[str, Any]:
            return {"type": "object", "properties": {"tenant": {}}, "required": ["tenant"]}

    schema = define_message("T", meta=_Required())
    envelope = schema.json_schema()
    assert envelope["required"] == ["type", "meta"]
    assert envelope["properties"]["meta"]["required"] == ["tenant"]
    assert define_message("U").json_schema()["required"] == ["type"]
