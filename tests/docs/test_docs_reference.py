"""The API reference generator (tools/docs/reference.py, the mkdocs hook): every distribution
under packages/ gets a page, and every public name is documented on exactly one page."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    path = ROOT / "tools/docs/reference.py"
    spec = importlib.util.spec_from_file_location("wskit_docs_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _documented(markdown: str) -> list[str]:
    """Dotted names a page documents: each ``::: module`` block's members (its __all__
    when the block lists none)."""
    gen = _generator()
    names = []
    for block in re.split(r"(?m)^(?=::: )", markdown)[1:]:
        module = block.split()[1]
        members = re.findall(r"(?m)^        - (\w+)$", block)
        if not members:
            path = ROOT.glob(f"packages/*/src/{module.replace('.', '/')}/__init__.py")
            members = gen._all_names(next(path)) or []
        names += [f"{module}.{m}" for m in members]
    return names


def test_every_distribution_has_a_page() -> None:
    pages = _generator().reference_pages(ROOT)
    dists = sorted(p.name for p in ROOT.glob("packages/*") if (p / "pyproject.toml").is_file())
    assert len(dists) >= 8
    assert sorted(pages) == sorted([*(f"reference/{d}.md" for d in dists), "reference/index.md"])
    for dist in dists:
        assert f"| [{dist}]({dist}.md) |" in pages["reference/index.md"]


def test_every_public_name_is_on_exactly_one_page() -> None:
    gen = _generator()
    pages = gen.reference_pages(ROOT)
    documented = [n for text in pages.values() for n in _documented(text)]
    assert len(documented) == len(set(documented)), "a name is documented twice"
    expected = set()
    for _dist, leaf, leaf_dir in gen.leaves(ROOT):
        leaf_all = set(gen._all_names(leaf_dir / "__init__.py") or [])
        assert leaf_all, f"wskit.{leaf} has no __all__"
        expected |= {f"wskit.{leaf}.{n}" for n in leaf_all}
        for name, path in gen._public_submodules(leaf_dir):
            for n in gen._all_names(path) or []:
                if n not in leaf_all and name != "__main__":
                    expected.add(f"wskit.{leaf}.{name}.{n}")
    assert "wskit.core.testing.Harness" in expected
    assert set(documented) == expected


def test_a_new_distribution_is_picked_up_without_configuration(tmp_path: Path) -> None:
    leaf = tmp_path / "packages/wskit-newthing/src/wskit/newthing"
    leaf.mkdir(parents=True)
    (leaf / "__init__.py").write_text('"""A new thing."""\n__all__ = ["Thing"]\nclass Thing: ...\n')
    (leaf / "testing.py").write_text('"""Test helpers."""\n__all__ = ["FakeThing"]\n')
    (leaf / "_private.py").write_text('__all__ = ["Hidden"]\n')
    pages = _generator().reference_pages(tmp_path)
    assert sorted(pages) == ["reference/index.md", "reference/wskit-newthing.md"]
    text = pages["reference/wskit-newthing.md"]
    assert text.startswith("# wskit-newthing\n\n`pip install wskit-newthing` · `import wskit.")
    assert "::: wskit.newthing\n" in text and "::: wskit.newthing.testing\n" in text
    assert "        - FakeThing" in text and "Hidden" not in text
