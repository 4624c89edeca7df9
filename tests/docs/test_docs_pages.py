"""The docs pages are real code: each page's Python blocks run, in order, as one
program (later blocks use what earlier ones defined)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["asyncapi.md", "middleware.md"]


def _blocks(page: str) -> list[str]:
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page: str) -> None:
    blocks = _blocks(page)
    assert len(blocks) >= 3, f"docs/{page}: expected its examples as ```python blocks"
    program = "\n\n".join(blocks)
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, f"docs/{page}:\n{result.stderr[-3000:]}"
