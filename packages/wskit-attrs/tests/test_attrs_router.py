"""wskit.attrs through a real router (harness): class-form payloads, plugin, wire frames."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import attrs
import pytest

from wskit.attrs import WIRE_NAME, create_router, message, rpc, with_attrs
from wskit.core import CapabilityError, MessageContext, RpcContext
from wskit.core.testing import Harness


@attrs.define
class Member:
    user_id: str = attrs.field(metadata={WIRE_NAME: "userId"})
    roles: list[str] = attrs.Factory(list)


@attrs.define
class JoinRoom:
    room_id: str = attrs.field(metadata={WIRE_NAME: "roomId"})
    members: list[Member]


@attrs.frozen
class Joined:
    room_id: str = attrs.field(metadata={WIRE_NAME: "roomId"})
    size: int = attrs.field(validator=attrs.validators.ge(0))


Join = message("JOIN_ROOM", JoinRoom)
JoinedMsg = message("JOINED", Joined)
GetRoom = rpc("GET_ROOM", {"room_id": str}, "ROOM", Joined)


async def test_class_form_payload_is_the_instance_and_replies_use_wire_names() -> None:
    router = create_router().plugin(with_attrs())
    seen: list[Any] = []

    @router.on(Join)
    async def join(ctx: MessageContext[JoinRoom, Any]) -> None:
        seen.append(ctx.payload)
        ctx.send(JoinedMsg, Joined(ctx.payload.room_id, len(ctx.payload.members)))

    @router.rpc(GetRoom)
    async def get_room(ctx: RpcContext[Any, Joined, Any]) -> None:
        ctx.progress({"room_id": ctx.payload.room_id, "size": 0})
        ctx.reply(Joined(ctx.payload.room_id, 3))

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Join, {"roomId": "r1", "members": [{"userId": "u1", "roles": ["admin"]}]})
        await h.flush()
        assert seen == [JoinRoom("r1", [Member("u1", ["admin"])])]
        assert conn.frames == [
            {"type": "JOINED", "meta": {}, "payload": {"roomId": "r1", "size": 1}}
        ]
        call = conn.call(GetRoom, {"roomId": "r1"})
        assert await call.result() == {"roomId": "r1", "size": 3}
        assert call.progress == [{"roomId": "r1", "size": 0}]


async def test_validation_failures_are_invalid_argument_with_nested_paths() -> None:
    router = create_router().plugin(with_attrs())
    router.on(Join, lambda ctx: None)
    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Join, {"roomId": 5, "members": [{"userId": "u1", "role": "x"}, {"roles": [1]}]})
        await h.flush()
        [error] = conn.errors
        assert error["code"] == "INVALID_ARGUMENT"
        assert error["details"]["issues"] == [
            {"path": ["payload", "roomId"], "message": "Input should be a valid string"},
            {"path": ["payload", "members", 0, "role"], "message": "Unrecognized key"},
            {"path": ["payload", "members", 1, "userId"], "message": "Field required"},
            {
                "path": ["payload", "members", 1, "roles", 0],
                "message": "Input should be a valid string",
            },
        ]
        assert h.reported_codes == ["INVALID_ARGUMENT"]


async def test_outbound_validation_is_on_by_default_and_can_be_switched_off() -> None:
    for plugin, expected in (
        (with_attrs(), "INTERNAL"),
        (with_attrs(validate_outgoing=False), None),
    ):
        router = create_router().plugin(plugin)

        @router.on(Join)
        async def join(ctx: Any) -> None:
            ctx.send(JoinedMsg, {"room_id": ctx.payload.room_id, "size": "many"})

        async with Harness(router) as h:
            conn = await h.connect()
            conn.send(Join, {"roomId": "r", "members": []})
            await h.flush()
            if expected is None:
                assert conn.payloads(JoinedMsg) == [{"roomId": "r", "size": "many"}]
            else:
                assert conn.error_codes == [expected]
                assert conn.payloads(JoinedMsg) == []
                assert len(h.take_reported()) == 1


async def test_outbound_attrs_validators_apply() -> None:
    router = create_router().plugin(with_attrs())

    @router.on(Join)
    async def join(ctx: Any) -> None:
        ctx.send(JoinedMsg, {"room_id": "r", "size": -1})

    async with Harness(router) as h:
        conn = await h.connect()
        conn.send(Join, {"roomId": "r", "members": []})
        await h.flush()
        assert conn.error_codes == ["INTERNAL"]
        assert "size" in str(h.take_reported()[0].error)


def test_plugin_is_required_and_idempotent() -> None:
    with pytest.raises(CapabilityError, match="with_attrs"):
        create_router().on(Join, lambda ctx: None)
    router = create_router().plugin(with_attrs(validate_outgoing=False)).plugin(with_attrs())
    assert router.validate_outgoing is False  # the second application was a no-op
    assert "validation" in router.capabilities
    router.on(Join, lambda ctx: None)


def test_core_imports_neither_attrs_nor_cattrs() -> None:
    code = (
        "import sys, wskit.core, wskit.core.testing\n"
        "bad = [m for m in ('attrs', 'attr', 'cattrs', 'pydantic') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_envelope_json_schema_hoists_nested_definitions() -> None:
    schema = Join.json_schema()
    payload = schema["properties"]["payload"]
    assert payload["title"] == "JoinRoom"
    assert payload["properties"]["members"] == {
        "type": "array",
        "items": {"$ref": "#/$defs/Member"},
    }
    assert schema["$defs"]["Member"]["properties"]["userId"] == {"type": "string"}
    assert schema["required"] == ["type", "payload"]


def test_public_surface_matches_wskit_pydantic() -> None:
    import wskit.attrs as wa

    assert sorted(wa.__all__) == sorted(set(wa.__all__))
    for name in wa.__all__:
        assert hasattr(wa, name), name
    for name in ("create_router", "message", "rpc"):
        assert name in wa.__all__
    assert with_attrs().plugin_key == "wskit.attrs"
