"""pytest plugin (auto-registered by wskit-core): harness fixtures.

- ``fake_clock``: a fresh :class:`~wskit.core.testing.FakeClock`.
- ``wskit_harness``: a factory ``wskit_harness(router, **options)`` returning a
  :class:`~wskit.core.testing.Harness` that uses ``fake_clock``; every harness
  it made is closed at teardown, and fails the test if router timers leaked or
  the router reported an error the test did not expect (see ``Harness``).

The fixtures are async-aware through pytest-asyncio (``asyncio_mode = "auto"``
or ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

try:  # strict-mode pytest-asyncio needs its own decorator for async fixtures
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - pytest-asyncio is how async tests run
    _async_fixture = pytest.fixture  # type: ignore[assignment]

from wskit.core.router import Router
from wskit.core.testing import FakeClock, Harness

__all__ = ["fake_clock", "wskit_harness"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake clock starting at 0 ms."""
    return FakeClock()


@_async_fixture
async def wskit_harness(
    fake_clock: FakeClock,
) -> AsyncIterator[Callable[..., Harness[Any]]]:
    """Factory: ``h = wskit_harness(router)``; closed and leak-checked at teardown."""
    made: list[Harness[Any]] = []

    def make(router: Router[Any], **options: Any) -> Harness[Any]:
        options.setdefault("clock", fake_clock)
        harness: Harness[Any] = Harness(router, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.close()
    for harness in made:
        unexpected = harness.unexpected_errors()
        if unexpected:
            try:
                harness.check()
            except AssertionError as exc:
                pytest.fail(str(exc))
    leaked = fake_clock.pending_timers()
    if leaked:
        pytest.fail(f"router timers leaked after the test: {leaked}")
