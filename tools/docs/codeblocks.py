"""The Python code blocks of README.md and docs/**/*.md, for tests/docs/.

A block runs as it stands unless the line before its fence is a marker comment:

- ``<!-- docs: fragment -->``: only a part of a program (a handler body, a config excerpt); it
  must still compile as module code (so no ``await`` outside ``async def``);
- ``<!-- docs: continue -->``: runs after the page's earlier runnable blocks, in one module;
- ``<!-- docs: file NAME -->``: the content of file NAME, which a test of that page writes out
  and runs (tests/docs/test_docs_getting_started.py); it must compile.

A block made only of ``--8<--`` lines includes a file shown elsewhere (examples/ are tested
by tests/examples/); it is checked to name files that exist.

Standard library only; the tests load it by path (test modules cannot import each other).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
MARKER = re.compile(r"^\s*<!-- docs: (?P<kind>fragment|continue|file) ?(?P<arg>[\w./-]*) -->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    kind: str  # "run", "fragment", "continue", "file", "include"
    arg: str
    code: str

    @property
    def id(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f"{shown}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks(path: Path, text: str | None = None) -> list[Block]:
    """Every ```python block of one markdown file, with its marker."""
    text = path.read_text(encoding="utf-8") if text is None else text
    blocks = []
    for match in FENCE.finditer(text):
        if match["info"].strip().split(" ")[0] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        body = textwrap.dedent(match["body"])
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.match(before)
        kind, arg = (marker["kind"], marker["arg"]) if marker else ("run", "")
        if all(ln.strip().startswith("--8<--") for ln in body.strip().splitlines()):
            kind = "include"
        blocks.append(Block(path, line, kind, arg, body))
    return blocks


def all_blocks() -> list[Block]:
    return [b for path in doc_files() for b in python_blocks(path)]
