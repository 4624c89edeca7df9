#!/usr/bin/env python3
"""Guard the PEP 420 ``wskit`` namespace layout of the monorepo (a stray
``__init__.py`` in ``src/wskit/`` would shadow every sibling distribution).

Fails (exit 1) with a clear message when:

* any ``packages/*/src/wskit/__init__.py`` exists (a regular package would shadow every sibling
  namespace portion: ``import wskit.pydantic`` then raises ``ModuleNotFoundError``);
* a leaf ``packages/*/src/wskit/<leaf>/`` lacks ``__init__.py`` or ``py.typed``;
* two distributions define the same leaf;
* a distribution ships something under ``src/`` besides ``wskit/`` (or a module directly in
  ``src/wskit/``), which would be importable in dev but not shipped, or shipped at the wrong place.

Usage: ``python tools/check_namespace.py [REPO_ROOT]`` (default: the repo containing this file).
"""

from __future__ import annotations

import sys
from pathlib import Path

IGNORED = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".DS_Store"}


def check(root: Path) -> list[str]:
    errors: list[str] = []
    packages_dir = root / "packages"
    if not packages_dir.is_dir():
        return [f"{packages_dir}: directory not found"]

    owners: dict[str, list[str]] = {}
    dists = sorted(p for p in packages_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    for dist in dists:
        rel = dist.relative_to(root)
        if not (dist / "pyproject.toml").is_file():
            errors.append(f"{rel}: no pyproject.toml (each packages/<dist> must be a distribution)")
        src = dist / "src"
        ns = src / "wskit"
        if not ns.is_dir():
            errors.append(f"{rel}: missing {ns.relative_to(root)}/ (expected src/wskit/<leaf>/)")
            continue

        for extra in sorted(src.iterdir()):
            if (
                extra.name not in IGNORED
                and extra.name != "wskit"
                and not extra.name.endswith(".egg-info")
            ):
                errors.append(
                    f"{extra.relative_to(root)}: only wskit/ may live in src/ "
                    "(anything else is importable in dev but never shipped)"
                )

        init = ns / "__init__.py"
        if init.exists():
            errors.append(
                f"{init.relative_to(root)}: must not exist — wskit is a PEP 420 namespace package; "
                "a regular wskit/__init__.py shadows every other wskit-* distribution"
            )

        leaves = []
        for entry in sorted(ns.iterdir()):
            if entry.name in IGNORED or entry.name == "__init__.py":
                continue
            if entry.is_dir():
                leaves.append(entry)
            else:
                errors.append(
                    f"{entry.relative_to(root)}: files directly in src/wskit/ are not allowed "
                    "(put modules in src/wskit/<leaf>/; py.typed belongs in each leaf)"
                )

        if not leaves:
            errors.append(f"{ns.relative_to(root)}: defines no leaf package (src/wskit/<leaf>/)")
        for leaf in leaves:
            owners.setdefault(leaf.name, []).append(dist.name)
            for marker in ("__init__.py", "py.typed"):
                if not (leaf / marker).is_file():
                    errors.append(f"{leaf.relative_to(root)}: missing {marker}")

    for leaf_name, dist_names in sorted(owners.items()):
        if len(dist_names) > 1:
            errors.append(
                f"leaf wskit.{leaf_name} is defined by several distributions: "
                + ", ".join(dist_names)
            )
    return errors


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parent.parent
    errors = check(root)
    if errors:
        print(f"check_namespace: FAILED ({len(errors)} problem(s)) in {root}:", file=sys.stderr)
        for error in errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(f"check_namespace: OK ({root / 'packages'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
