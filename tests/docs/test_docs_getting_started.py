"""docs/getting-started.md, as a newcomer follows it: its files written out as shown, the
server started (`python server.py`), the client run against it (`python client.py`, output
as printed on the page), the server stopped with Ctrl+C, and the page's test run by pytest."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "getting-started.md"
TIMEOUT = 30.0  # a safety net only


def _codeblocks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "wskit_docs_codeblocks", ROOT / "tools/docs/codeblocks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _console_output(text: str, command: str) -> list[str]:
    """The lines a ```console block shows after ``$ <command>``."""
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.splitlines()
        if lines and lines[0] == f"$ {command}":
            return lines[1:]
    raise AssertionError(f"no console block for {command!r}")


async def _run(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_getting_started_as_written(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    files = {b.arg: b.code for b in _codeblocks().python_blocks(PAGE) if b.kind == "file"}
    assert sorted(files) == ["client.py", "schemas.py", "server.py", "test_server.py"]
    for name, code in files.items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    (ini,) = re.findall(r"```ini\n(.*?)```", text, re.S)
    (tmp_path / "pytest.ini").write_text(ini, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = ""

    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        cwd=tmp_path,
        env={**env, "PORT": "0"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), TIMEOUT)).decode()
        shown = _console_output(text, "python server.py")
        assert shown == ["wskit: serving ws://127.0.0.1:3000/ (Ctrl+C to stop)"]
        # "(Ctrl+C to stop; uvloop)" where uvloop is installed, as in the test env.
        match = re.fullmatch(
            r"wskit: serving (ws://127\.0\.0\.1:\d+/) \(Ctrl\+C to stop(; uvloop)?\)\n", line
        )
        assert match, line

        code, out, err = await _run(
            sys.executable, "client.py", cwd=tmp_path, env={**env, "URL": match[1]}
        )
        assert (code, err) == (0, "")
        assert out.splitlines() == _console_output(text, "python client.py")

        server.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(server.wait(), TIMEOUT) == 0
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()

    code, out, err = await _run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "test_server.py",
        cwd=tmp_path,
        env=env,
    )
    assert code == 0, out + err
    assert _console_output(text, "pytest test_server.py") == ["1 passed"]
    assert re.search(r"^1 passed in ", out, re.M), out
