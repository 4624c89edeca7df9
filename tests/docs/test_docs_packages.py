"""What the package index shows for each distribution stands on its own: project URLs in every
pyproject.toml, and package READMEs whose links are absolute (relative links break on the
index) and point at files that exist in this repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DISTS = sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml"))
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _repo() -> str:
    (url,) = re.findall(r"(?m)^repo_url:\s*(\S+)$", (ROOT / "mkdocs.yml").read_text())
    return url.rstrip("/")


def _urls(pyproject: Path) -> dict[str, str]:
    text = pyproject.read_text(encoding="utf-8")
    table = re.search(r"(?ms)^\[project\.urls\]\n(.*?)(?:^\[|\Z)", text)
    assert table, f"{pyproject}: no [project.urls]"
    return dict(re.findall(r'(?m)^(\w+)\s*=\s*"([^"]+)"', table[1]))


def test_every_distribution_has_project_urls() -> None:
    repo = _repo()
    assert len(DISTS) >= 8
    for dist in DISTS:
        urls = _urls(dist / "pyproject.toml")
        assert sorted(urls) == ["Changelog", "Documentation", "Homepage", "Issues", "Source"]
        assert urls["Homepage"] == repo
        assert urls["Issues"] == f"{repo}/issues"
        assert urls["Source"] == f"{repo}/tree/main/packages/{dist.name}"
        assert urls["Changelog"] == f"{repo}/blob/main/packages/{dist.name}/CHANGELOG.md"
        doc = urls["Documentation"].removeprefix(f"{repo}/blob/main/")
        assert (ROOT / doc).is_file(), urls["Documentation"]


def test_package_readmes_link_absolutely_to_files_that_exist() -> None:
    repo = _repo()
    for dist in DISTS:
        links = LINK.findall((dist / "README.md").read_text(encoding="utf-8"))
        assert links, dist.name
        for target in links:
            assert target.startswith("https://"), f"{dist.name}/README.md: relative link {target}"
            if target.startswith(f"{repo}/blob/main/") or target.startswith(f"{repo}/tree/main/"):
                path = target.split("/main/", 1)[1].split("#", 1)[0]
                assert (ROOT / path).exists(), f"{dist.name}/README.md: {target} does not exist"


def test_license_and_contributing() -> None:
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for topic in ("hatch test", "changelog.d/", "docs/decisions/", "hatch run docs:build"):
        assert topic in contributing
