"""Suite-wide: when tests failed for want of a system tool, say which tool, how to install it
and how many tests needed it, at the end of the run (the tests themselves fail, never skip:
they prove things the project promises)."""

from __future__ import annotations

from typing import Any

#: Text a failure report contains -> (the tool, how to get it).
NEEDS = {
    "RedisServerMissing": ("redis-server", "apt-get install redis-server"),
    "no Chromium at": ("chromium", "apt-get install chromium"),
    "interop setup:": ("Node.js and npm", "apt-get install nodejs npm"),
}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    missing: dict[tuple[str, str], int] = {}
    for key in ("failed", "error"):
        for report in terminalreporter.stats.get(key, []):
            text = str(getattr(report, "longrepr", ""))
            for marker, need in NEEDS.items():
                if marker in text:
                    missing[need] = missing.get(need, 0) + 1
    for (tool, how), count in sorted(missing.items()):
        terminalreporter.write_sep("=", f"{count} tests need {tool}: {how}", red=True, bold=True)
