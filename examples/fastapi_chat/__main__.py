"""Run the FastAPI chat example: ``python -m examples.fastapi_chat [--host] [--port]``."""

from __future__ import annotations

import argparse

from wskit.asgi import serve

from .app import make_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.fastapi_chat", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app, chat = make_app()

    def ready(urls: list[str]) -> None:
        for url in urls:
            page = url.replace("ws://", "http://", 1).removesuffix("/ws") + "/"
            print(f"wskit FastAPI chat: open {page} in a browser (WebSocket: {url})", flush=True)
        print("Press Ctrl+C to stop.", flush=True)

    serve(app, host=args.host, port=args.port, path="/ws", websocket_apps=[chat], on_ready=ready)


if __name__ == "__main__":
    main()
