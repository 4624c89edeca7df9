"""The public surface: exact exports, and the extras stay optional."""

from __future__ import annotations

import subprocess
import sys

import wskit.middleware
from wskit.middleware import auth, logs


def test_exports_are_exact() -> None:
    assert sorted(wskit.middleware.__all__) == sorted(set(auth.__all__) | set(logs.__all__))
    assert all(hasattr(wskit.middleware, name) for name in wskit.middleware.__all__)


def test_the_base_imports_neither_extra() -> None:
    code = (
        "import sys\n"
        "import wskit.middleware\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('opentelemetry', 'prometheus_client', 'aiohttp')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "[]"


def test_the_aiohttp_helper_imports_aiohttp_only_when_used() -> None:
    code = (
        "import sys\n"
        "import wskit.middleware.prometheus, wskit.middleware.tracing\n"
        "print('aiohttp' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert out == "False"
