"""``python -m wskit.core.asyncapi module:router [--yaml] [-o FILE]``: write a
router's AsyncAPI 3.0 document (JSON by default; YAML with ``--yaml`` or an
output file ending in ``.yaml``/``.yml``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from wskit.core import loader
from wskit.core.asyncapi import asyncapi_document, to_json, to_yaml
from wskit.core.router import Router

__all__ = ["load_router", "main"]


def load_router(target: str) -> Router[Any]:
    """Import ``module:attr`` (``attr`` may be dotted); call it if it is a
    factory rather than a router."""
    return loader.load_router(target, prog="wskit.core.asyncapi")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m wskit.core.asyncapi",
        description="Write the AsyncAPI 3.0 document of a wskit router.",
    )
    parser.add_argument("target", help="module:router (or module:factory)")
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    parser.add_argument("--yaml", action="store_true", help="write YAML instead of JSON")
    parser.add_argument("--title", default="wskit API")
    parser.add_argument("--version", default="1.0.0", help="the API's version")
    parser.add_argument("--description", default=None)
    parser.add_argument("--path", default="/", help="the WebSocket path (default /)")
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a server, e.g. production=wss://example.com/ws (repeatable)",
    )
    args = parser.parse_args(argv)
    servers: dict[str, str] = {}
    for item in args.server:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            parser.error(f"--server expects NAME=URL, got {item!r}")
        servers[name] = url
    router = load_router(args.target)
    try:
        document = asyncapi_document(
            router,
            title=args.title,
            version=args.version,
            description=args.description,
            path=args.path,
            servers=servers,
        )
    except ValueError as exc:
        parser.error(str(exc))
    yaml = args.yaml or (args.output or "").endswith((".yaml", ".yml"))
    text = to_yaml(document) if yaml else to_json(document)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
