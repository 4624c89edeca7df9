"""The README's quick start is real code: run it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_quick_start_runs() -> None:
    quick_start = _python_blocks()[0]
    assert "asyncio.run(main())" in quick_start
    result = subprocess.run(
        [sys.executable, "-c", quick_start], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_network_snippets_name_real_apis() -> None:
    serve_block, client_block = _python_blocks()[1:3]
    from wskit.aiohttp import serve
    from wskit.client import Client

    assert "from wskit.aiohttp import serve" in serve_block and callable(serve)
    assert "from wskit.client import Client" in client_block and callable(Client)
