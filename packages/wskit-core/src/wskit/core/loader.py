"""Import what a command line names as ``module:attr``: the router a runner
serves (``python -m wskit.aiohttp app:router``), the router an export documents
(``python -m wskit.core.asyncapi app:router``), an ``authenticate`` function.

Mistakes exit with a one-line message naming the command (``prog``) and what to
fix, not a traceback; an import error inside the named module is shown as it is.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from wskit.core.router import Router

__all__ = ["load_object", "load_router"]


def load_object(target: str, *, what: str = "module:name", prog: str = "wskit") -> object:
    """Import ``module:attr`` (``attr`` may be dotted) from the current directory
    or ``sys.path``; a mistake raises ``SystemExit`` with a message saying what to fix
    (``what`` names the expected form, ``prog`` starts the message)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"{prog}: expected {what}, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise  # the module exists but one of its own imports failed: show that
        raise SystemExit(
            f"{prog}: cannot import {module_name!r} for {target!r} ({exc}); run from "
            f"the directory that holds it, or add that directory to PYTHONPATH"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SystemExit(
                f"{prog}: {target!r}: {type(obj).__name__} "
                f"{getattr(obj, '__name__', module_name)!r} has no attribute {part!r}"
            ) from None
    return obj


def load_router(target: str, *, prog: str = "wskit") -> Router[Any]:
    """Import the router ``module:attr`` names; call it first if it is a factory
    rather than a router."""
    obj = load_object(target, what="module:router", prog=prog)
    if not isinstance(obj, Router) and callable(obj):
        obj = obj()
    if not isinstance(obj, Router):
        raise SystemExit(f"{prog}: {target!r} is not a wskit Router")
    return obj
