"""Mistakes in a schema definition raise SchemaDefinitionError naming the type, the field and
the fix, at definition time."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from wskit.core import SchemaDefinitionError
from wskit.pydantic import message, rpc


def test_quick_form_field_that_is_not_a_type_is_named() -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        message("CHAT", room=str, text=5)
    text = str(info.value)
    assert "message 'CHAT'" in text
    assert "payload field 'text' = 5" in text
    assert "(type, default) pair" in text and "Field(...)" in text


def test_extended_meta_field_that_is_not_a_type_is_named() -> None:
    with pytest.raises(SchemaDefinitionError, match=r"message 'CHAT': meta field 'trace' = 5"):
        message("CHAT", text=str, meta={"trace": 5})


@pytest.mark.parametrize("name", ["ERROR", "RPC_ERROR"])
def test_system_frame_types_are_refused(name: str) -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        message(name, text=str)
    text = str(info.value)
    assert f"{name!r} is a system frame type" in text
    assert f"'APP_{name}'" in text and "ctx.error(code, message)" in text


def test_rpc_refuses_system_types_on_either_side() -> None:
    with pytest.raises(SchemaDefinitionError, match="'ERROR' is a system frame type"):
        rpc("ERROR", {"q": str}, "ANSWER", {"a": str})
    with pytest.raises(SchemaDefinitionError, match="'RPC_ERROR' is a system frame type"):
        rpc("ASK", {"q": str}, "RPC_ERROR", {"a": str})


def test_system_type_is_refused_before_the_model_is_looked_at() -> None:
    class Payload(BaseModel):
        code: str

    with pytest.raises(SchemaDefinitionError, match="system frame type"):
        message("ERROR", Payload)


def test_reserved_prefixes_say_why() -> None:
    for name in ("$ws:ping", "__ping"):
        with pytest.raises(SchemaDefinitionError, match="reserved: types starting with"):
            message(name)


def test_close_names_stay_allowed() -> None:
    assert message("APP_ERROR", code=str).type == "APP_ERROR"
    assert message("ERRORS").type == "ERRORS"
