"""Every example in examples/ has a README paragraph, a test that runs it, and a section of
docs/examples.md that includes that paragraph (so the docs site shows every example); and
each example the README says to run with plain ``python -m examples.<name>`` prints exactly
the transcript its README shows (all run at once, as separate processes)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / "__init__.py").is_file())


def _readme(name: str) -> str:
    return (ROOT / "examples" / name / "README.md").read_text(encoding="utf-8")


def test_every_example_is_documented_and_tested() -> None:
    assert len(EXAMPLES) >= 9, EXAMPLES
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    for name in EXAMPLES:
        readme = _readme(name)
        assert "<!-- --8<-- [start:docs] -->" in readme and "<!-- --8<-- [end:docs] -->" in readme
        assert f'--8<-- "examples/{name}/README.md:docs"' in page, name
        tests = [
            path
            for path in (ROOT / "tests").rglob("test_*.py")
            if f"examples.{name}" in path.read_text(encoding="utf-8")
        ]
        assert tests, f"no test imports or runs examples.{name}"


def _transcripts() -> dict[str, list[str]]:
    """``{name: lines shown}`` for READMEs whose console block runs the bare module."""
    shown = {}
    for name in EXAMPLES:
        for block in re.findall(r"```console\n(.*?)```", _readme(name), re.S):
            command, *output = block.splitlines()
            if command.split("#", 1)[0].strip() == f"$ python -m examples.{name}":
                shown[name] = output
    return shown


async def test_examples_print_what_their_readmes_show() -> None:
    shown = _transcripts()
    assert len(shown) >= 7, sorted(shown)

    async def run(name: str) -> tuple[int | None, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"examples.{name}",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(), err.decode()

    results = await asyncio.gather(*(run(name) for name in shown))
    for name, (code, out, err) in zip(shown, results, strict=True):
        assert (code, err) == (0, ""), name
        assert out.splitlines() == shown[name], name
