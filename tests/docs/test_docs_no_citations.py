"""The project's text stands alone: no docs, docstring, comment or test cites the internal
planning documents (the specification, the reference notes or the style guide) by section;
each states the rule itself."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Written with character classes so this file does not match itself.
CITATION = re.compile(r"\bS[P]EC\b|dig[e]st §|S[T]YLE\.md|S[T]YLE §")
SUFFIXES = {".py", ".md", ".toml", ".ini", ".yml", ".yaml", ".html", ".cfg"}
TREES = ["packages", "docs", "examples", "tests", "tools", "typing_tests"]
FILES = ["README.md", "CONTRIBUTING.md", "pyproject.toml", "hatch.toml", "tox.ini", "mkdocs.yml"]


def _files() -> list[Path]:
    found = [ROOT / name for name in FILES if (ROOT / name).is_file()]
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            skipped = set(path.relative_to(ROOT).parts) & {"node_modules", ".hatch"}
            if path.suffix in SUFFIXES and path.is_file() and not skipped:
                found.append(path)
    return found


def test_no_citations_of_internal_documents() -> None:
    files = _files()
    assert len(files) > 100  # the walk found the tree
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if CITATION.search(line)
    ]
    assert hits == [], "state the rule instead of citing it:\n" + "\n".join(hits)
