"""Mistakes in an attrs schema definition name the message type, the field and the fix."""

from __future__ import annotations

import pytest

from wskit.attrs import message, rpc
from wskit.core import SchemaDefinitionError


def test_quick_form_field_that_is_not_a_type_is_named() -> None:
    with pytest.raises(SchemaDefinitionError) as info:
        message("CHAT", room=str, text=5)
    text = str(info.value)
    assert text.startswith("message 'CHAT' payload: ")
    assert "field 'text' (type 5)" in text
    assert "register a structure hook" in text
    assert "it.. " not in text and "it. A field's type must be" in text


@pytest.mark.parametrize("name", ["ERROR", "RPC_ERROR"])
def test_system_frame_types_are_refused(name: str) -> None:
    with pytest.raises(SchemaDefinitionError, match=f"'{name}' is a system frame type"):
        message(name, text=str)
    with pytest.raises(SchemaDefinitionError, match=f"'{name}' is a system frame type"):
        rpc("ASK", {"q": str}, name, {"a": str})
