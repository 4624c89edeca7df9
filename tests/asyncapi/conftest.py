"""Fixtures for the AsyncAPI contract tests: the official JSON Schema (vendored in
spec/) and the reference parser, ``@asyncapi/parser`` on node, installed with npm
into a per-user cache on first use."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the chat example (examples/chat)
PARSER_PACKAGE = "@asyncapi/parser@3.6.3"


@pytest.fixture(scope="session")
def asyncapi_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (HERE / "spec" / "asyncapi-3.0.0.json").read_text(encoding="utf-8")
    )
    return schema


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wskit-tests" / PARSER_PACKAGE.replace("/", "-").replace("@", "")


def _install(target: Path) -> None:
    """npm-install the parser into ``target`` once (a lock guards parallel workers;
    the install goes to a temporary directory that is renamed when complete)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
            return
        staging = Path(tempfile.mkdtemp(prefix="install-", dir=target.parent))
        try:
            result = subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(staging),
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--loglevel=error",
                    PARSER_PACKAGE,
                ],
                capture_output=True,
                text=True,
                timeout=480,
            )
            if result.returncode != 0:
                pytest.fail(f"npm install {PARSER_PACKAGE} failed:\n{result.stderr[-4000:]}")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


@pytest.fixture(scope="session")
def asyncapi_parser(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Any]:
    """``parse(text, suffix)``: what the reference parser makes of a document."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to run the AsyncAPI reference parser (node, npm)")
    target = _cache_dir()
    _install(target)
    script = target / "parse.mjs"
    staged = target / f"parse.{os.getpid()}.tmp"
    shutil.copyfile(HERE / "parse.mjs", staged)
    os.replace(staged, script)  # atomic: parallel workers never see half a script
    work = tmp_path_factory.mktemp("asyncapi")

    def parse(text: str, suffix: str = ".json") -> Any:
        path = work / f"document{suffix}"
        path.write_text(text, encoding="utf-8")
        result = subprocess.run(
            ["node", str(script), str(path)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return parse
