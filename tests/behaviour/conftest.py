"""The validator-parametrized fixtures of the shared behaviour suite.

Every test in tests/behaviour/ runs once per validator package, through the
same quick-form API (``message("PING", text=str)``), so the validators cannot
drift. Validator-specific details live in each package's own tests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass(frozen=True)
class Validator:
    name: str
    message: Callable[..., Any]
    rpc: Callable[..., Any]
    plugin: Callable[..., Any]
    create_router: Callable[..., Any]


def _load(name: str, plugin: str) -> Validator:
    module = importlib.import_module(f"wskit.{name}")
    return Validator(
        name, module.message, module.rpc, getattr(module, plugin), module.create_router
    )


VALIDATORS: dict[str, Callable[[], Validator]] = {
    "pydantic": lambda: _load("pydantic", "with_pydantic"),
    "attrs": lambda: _load("attrs", "with_attrs"),
}


@pytest.fixture(params=sorted(VALIDATORS))
def validator(request: pytest.FixtureRequest) -> Validator:
    return VALIDATORS[request.param]()


@dataclass
class App:
    """A router with the validator plugin and a few schemas, no handlers yet."""

    v: Validator
    router: Any
    Ping: Any
    Pong: Any
    Notice: Any
    Bare: Any
    GetUser: Any
    Slow: Any


def make_app(v: Validator, **router_options: Any) -> App:
    router = v.create_router(**router_options).plugin(v.plugin())
    return App(
        v=v,
        router=router,
        Ping=v.message("PING", text=str),
        Pong=v.message("PONG", reply=str),
        Notice=v.message("NOTICE", user_id=str, count=int),
        Bare=v.message("BARE"),
        GetUser=v.rpc("GET_USER", {"user_id": str}, "USER_DATA", {"name": str}),
        Slow=v.rpc("SLOW", {"n": int}, "SLOW_DONE", {"n": int}),
    )


@pytest.fixture
def app(validator: Validator) -> App:
    return make_app(validator)


@pytest.fixture
def app_factory(validator: Validator) -> Callable[..., App]:
    return lambda **options: make_app(validator, **options)
