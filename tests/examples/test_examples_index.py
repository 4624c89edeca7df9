"""Every example in examples/ has a README paragraph, its own test module, and a section of
docs/examples.md that includes that paragraph (so the docs site shows every example)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_example_is_documented_and_tested() -> None:
    examples = sorted(p.name for p in (ROOT / "examples").iterdir() if (p / "__init__.py").is_file())
    assert len(examples) >= 9, examples
    page = (ROOT / "docs" / "examples.md").read_text(encoding="utf-8")
    for name in examples:
        readme = (ROOT / "examples" / name / "README.md").read_text(encoding="utf-8")
        assert "<!-- --8<-- [start:docs] -->" in readme and "<!-- --8<-- [end:docs] -->" in readme
        assert f'--8<-- "examples/{name}/README.md:docs"' in page, name
        assert (ROOT / "tests" / "examples" / f"test_examples_{name}.py").is_file(), name
