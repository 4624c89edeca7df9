"""The API reference pages, generated from the source tree (used by mkdocs.yml as a hook).

One page per distribution, ``reference/<dist>.md``, found by walking
``packages/*/src/wskit/<leaf>/``: a distribution added to ``packages/`` appears in the
reference with no change here or in ``mkdocs.yml``. A page documents the leaf's public
names (its ``__all__``) and then each public submodule's names that the leaf does not
re-export (``wskit.core.testing``, ``wskit.pubsub.testing``...), so every public name is on
exactly one page.

The page text comes from :func:`reference_pages`, which needs only the standard library
(the test suite checks it); the ``on_*`` functions are the mkdocs hook.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NAV_TITLE = "API reference"


def _all_names(path: Path) -> list[str] | None:
    """The literal ``__all__`` of a module, or None when it has none."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                value = node.value
                if isinstance(value, (ast.List, ast.Tuple)):
                    return [e.value for e in value.elts if isinstance(e, ast.Constant)]
    return None


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ")


def leaves(root: Path = ROOT) -> list[tuple[str, str, Path]]:
    """``(distribution, leaf, leaf_dir)`` for every ``packages/*/src/wskit/<leaf>/``."""
    found = []
    for leaf_dir in sorted(root.glob("packages/*/src/wskit/*/__init__.py")):
        leaf_dir = leaf_dir.parent
        found.append((leaf_dir.parents[2].name, leaf_dir.name, leaf_dir))
    return found


def _public_submodules(leaf_dir: Path) -> list[tuple[str, Path]]:
    subs = []
    for path in sorted(leaf_dir.iterdir()):
        name = path.stem if path.suffix == ".py" else path.name
        if name.startswith("_"):
            continue
        if path.suffix == ".py":
            subs.append((name, path))
        elif (path / "__init__.py").is_file():
            subs.append((name, path / "__init__.py"))
    return subs


def page(dist: str, leaf: str, leaf_dir: Path) -> str:
    """The markdown of one distribution's reference page."""
    module = f"wskit.{leaf}"
    init = leaf_dir / "__init__.py"
    exported = set(_all_names(init) or [])
    lines = [
        f"# {dist}",
        "",
        f"`pip install {dist}` · `import {module}`",
        "",
        f"::: {module}",
        "    options:",
        "      show_submodules: false",
        "",
    ]
    for name, path in _public_submodules(leaf_dir):
        if name == "__main__":
            continue
        names = _all_names(path)
        if names is None:
            continue
        rest = [n for n in names if n not in exported]
        if not rest:
            continue
        lines += [
            f"## `{module}.{name}`",
            "",
            _summary(path),
            "",
            f"::: {module}.{name}",
            "    options:",
            "      show_root_heading: false",
            "      show_root_toc_entry: false",
            "      members:",
            *[f"        - {n}" for n in rest],
            "",
        ]
    return "\n".join(lines)


def reference_pages(root: Path = ROOT) -> dict[str, str]:
    """``{"reference/<dist>.md": markdown}`` for every distribution, plus an index."""
    pages = {}
    index = [
        "# API reference",
        "",
        "Generated from the docstrings of each distribution's public names.",
        "",
        "| distribution | import | what it is |",
        "|---|---|---|",
    ]
    for dist, leaf, leaf_dir in leaves(root):
        pages[f"reference/{dist}.md"] = page(dist, leaf, leaf_dir)
        summary = _summary(leaf_dir / "__init__.py")
        index.append(f"| [{dist}]({dist}.md) | `wskit.{leaf}` | {summary} |")
    pages["reference/index.md"] = "\n".join([*index, ""])
    return pages


# -- mkdocs hook ----------------------------------------------------------------------------


def _nav_files(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_files(v) for v in nav.values()))
    if isinstance(nav, list):
        return set().union(*(_nav_files(v) for v in nav))
    return set()


def on_config(config: Any) -> Any:
    """Fill the ``API reference`` and ``Decisions`` nav sections from the tree, and append
    every other top-level ``docs/*.md`` page the nav does not list to ``Packages``."""
    root = Path(config.config_file_path).parent
    docs = Path(config.docs_dir)
    pages = reference_pages(root)
    reference: list[Any] = ["reference/index.md"]
    reference += [
        {p.removeprefix("reference/").removesuffix(".md"): p}
        for p in sorted(pages)
        if p != "reference/index.md"
    ]
    decisions = [f"decisions/{p.name}" for p in sorted((docs / "decisions").glob("*.md"))]
    listed = _nav_files(config.nav)
    unlisted = [p.name for p in sorted(docs.glob("*.md")) if p.name not in listed]

    def fill(items: list[Any]) -> None:
        for item in items:
            if not isinstance(item, dict):
                continue
            for title, value in item.items():
                if title == NAV_TITLE:
                    item[title] = reference
                elif title == "Decisions":
                    item[title] = decisions
                elif title == "Packages" and isinstance(value, list):
                    value.extend(unlisted)
                elif isinstance(value, list):
                    fill(value)

    fill(config.nav or [])
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site (never written into docs/)."""
    from mkdocs.structure.files import File

    for path, text in reference_pages(Path(config.config_file_path).parent).items():
        files.append(File.generated(config, path, content=text))
    return files
