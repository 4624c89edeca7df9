#!/usr/bin/env python3
"""Verify built wskit-* wheels keep the PEP 420 namespace intact: no ``wskit/__init__.py``,
``wskit/`` the only top level, every leaf under ``wskit/<leaf>/`` with its ``py.typed``.

For every wheel given (files, or directories searched for ``*.whl``), assert that:

* it ships no ``wskit/__init__.py`` (nor ``wskit/py.typed`` or other files directly in ``wskit/``);
* ``wskit/`` is its only top-level entry besides ``<name>.dist-info/`` (and no ``.data`` dir);
* every leaf ``wskit/<leaf>/`` it ships has ``__init__.py`` and ``py.typed``, and it ships at
  least one leaf;
* no two wheels ship the same leaf.

Usage: ``python tools/check_wheels.py dist/ [more.whl ...]``. Exits 1 with a report on failure.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path, PurePosixPath


def wheel_paths(args: list[str]) -> list[Path]:
    wheels: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            wheels.extend(sorted(path.rglob("*.whl")))
        elif path.is_file() and path.suffix == ".whl":
            wheels.append(path)
        else:
            raise SystemExit(f"check_wheels: not a wheel or directory: {arg}")
    return wheels


def check_wheel(wheel: Path) -> tuple[list[str], set[str]]:
    errors: list[str] = []
    leaves: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    for name in names:
        parts = PurePosixPath(name).parts
        top = parts[0]
        if top.endswith(".dist-info"):
            continue
        if top != "wskit":
            errors.append(f"unexpected top-level entry {top!r} ({name}); only wskit/ is allowed")
            continue
        if len(parts) == 2:
            if parts[1] == "__init__.py":
                errors.append(
                    "ships wskit/__init__.py — this turns the namespace into a regular package "
                    "and hides every other wskit-* distribution"
                )
            else:
                errors.append(f"file directly in the namespace dir: {name} (belongs in a leaf)")
            continue
        leaves.add(parts[1])

    if not leaves:
        errors.append("ships no wskit/<leaf>/ package")
    for leaf in sorted(leaves):
        for marker in ("__init__.py", "py.typed"):
            if f"wskit/{leaf}/{marker}" not in names:
                errors.append(f"wskit/{leaf}/{marker} missing")
    return errors, leaves


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    wheels = wheel_paths(argv[1:])
    if not wheels:
        print("check_wheels: FAILED: no wheels found in " + " ".join(argv[1:]), file=sys.stderr)
        return 1

    failed = False
    owners: dict[str, list[str]] = {}
    for wheel in wheels:
        errors, leaves = check_wheel(wheel)
        for leaf in leaves:
            owners.setdefault(leaf, []).append(wheel.name)
        if errors:
            failed = True
            print(f"check_wheels: {wheel.name}: FAILED", file=sys.stderr)
            for error in errors:
                print(f"  - {error}", file=sys.stderr)
        else:
            print(f"check_wheels: {wheel.name}: OK (wskit.{', wskit.'.join(sorted(leaves))})")
    for leaf, names in sorted(owners.items()):
        if len(names) > 1:
            failed = True
            print(
                f"check_wheels: leaf wskit.{leaf} shipped by several wheels: {names}",
                file=sys.stderr,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
