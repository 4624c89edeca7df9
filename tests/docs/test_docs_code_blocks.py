"""Every Python code block in README.md and docs/ is real: run as it stands, or compiled when
marked as a fragment or a file (the markers are described in conftest.py). Docs cannot drift
from the code."""

from __future__ import annotations

import asyncio
import importlib.util
import linecache
import os
import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> types.ModuleType:
    path = ROOT / "tools" / "docs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"wskit_docs_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


codeblocks = _load("codeblocks")
Block = codeblocks.Block
python_blocks = codeblocks.python_blocks
BLOCKS = codeblocks.all_blocks()


def _compile(block: Block) -> None:
    try:
        compile(block.code, block.id, "exec")
    except SyntaxError as exc:
        where = f"{exc.msg}, block line {exc.lineno}"
        pytest.fail(f"{block.id}: not valid Python as it stands ({where})")


def _run(code: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``code`` as the ``__main__``-like module ``name``, in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType(name)
    module.__dict__["__file__"] = str(tmp_path / f"{name}.py")
    module.__dict__["__name__"] = "__main__"  # as `python block.py` would run it
    monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "__main__", module)
    # Tracebacks show the block's lines.
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    exec(compile(code, name, "exec"), module.__dict__)
    # A block that left a loop set (asyncio.run closes its own) must not leak it.
    asyncio.set_event_loop(None)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.kind in ("run", "continue")], ids=lambda b: b.id
)
def test_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _compile(block)
    code = block.code
    if block.kind == "continue":
        earlier = [
            b.code
            for b in python_blocks(block.path)
            if b.line < block.line and b.kind in ("run", "continue")
        ]
        assert earlier, f"{block.id}: 'continue' needs an earlier runnable block on the page"
        code = "\n".join([*earlier, code])
    name = "docs_" + re.sub(r"\W", "_", block.id)
    _run(code, name, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.kind in ("fragment", "file")], ids=lambda b: b.id
)
def test_fragment_compiles(block: Block) -> None:
    _compile(block)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "include"], ids=lambda b: b.id)
def test_included_files_exist(block: Block) -> None:
    for line in block.code.strip().splitlines():
        target = line.split("--8<--", 1)[1].strip().strip("\"'")
        assert (ROOT / target).is_file(), f"{block.id}: {target} does not exist"


def test_the_docs_have_runnable_blocks() -> None:
    kinds = [b.kind for b in BLOCKS]
    assert kinds.count("run") >= 10, kinds


def test_a_broken_block_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above catch what a reader would hit: a syntax error (the top-level
    ``async with`` a pasted client snippet once had), a wrong import, a false assertion."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nfrom wskit.client import Client\n\nasync with Client('ws://x/') as c:\n"
        "    pass\n```\n\n<!-- docs: fragment -->\n"
        "```python\nawait ctx.topics.subscribe('t')\n```\n\n"
        "```python\nfrom wskit.pydantic import mesage\n```\n\n"
        "```python\nassert 1 + 1 == 3\n```\n",
        encoding="utf-8",
    )
    syntax, fragment, bad_import, false = python_blocks(page)
    assert [b.kind for b in (syntax, fragment, bad_import, false)] == [
        "run",
        "fragment",
        "run",
        "run",
    ]
    for block in (syntax, fragment):
        with pytest.raises(pytest.fail.Exception, match="not valid Python as it stands"):
            _compile(block)
    with pytest.raises(ImportError, match="mesage"):
        _run(bad_import.code, "docs_broken_import", tmp_path, monkeypatch)
    with pytest.raises(AssertionError):
        _run(false.code, "docs_broken_assert", tmp_path, monkeypatch)
    assert os.getcwd() == str(tmp_path)
