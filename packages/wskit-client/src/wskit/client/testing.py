"""Helpers for tests of code that drives a :class:`~wskit.client.Client`."""

from __future__ import annotations

import asyncio

from wskit.client._client import Client, ClientState

__all__ = ["StateRecorder"]


class StateRecorder:
    """Records every state ``client`` enters from now on (``client.on_state``).

    ``await recorder.reached(state)`` returns once ``state`` is recorded after
    the one the previous ``reached`` call returned for. States recorded before
    the call count, so a test cannot miss a quick transition. It raises
    ``asyncio.TimeoutError`` after ``timeout`` seconds: a safety net, not
    something to wait for.
    """

    def __init__(self, client: Client, *, timeout: float = 10.0) -> None:
        self.states: list[ClientState] = []
        self.timeout = timeout
        self._cursor = 0
        self._changed: asyncio.Future[None] | None = None
        client.on_state(self._on_state)

    def _on_state(self, state: ClientState) -> None:
        self.states.append(state)
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)

    async def reached(self, state: ClientState) -> None:
        async def wait() -> None:
            while True:
                try:
                    index = self.states.index(state, self._cursor)
                except ValueError:
                    self._changed = asyncio.get_running_loop().create_future()
                    await self._changed
                    continue
                self._cursor = index + 1
                return

        await asyncio.wait_for(wait(), self.timeout)
