"""Coalescing: concurrent callers' items handled together in one batch (one transaction,
one round trip), each caller getting back its own result or its own exception."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Handles a batch: one result, or the exception to raise, per item and in the same order.
Flush = Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    """Gathers the items submitted while a batch is running (or in the same loop turn) and
    flushes them together, in submission order, one batch at a time."""

    def __init__(self, flush: Flush[T, R], *, max_batch: int = 100) -> None:
        self._flush = flush
        self._max = max(1, max_batch)
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Handle `item` with whatever else is waiting; its own result (or exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        # A caller cancelled while waiting leaves its item to be handled anyway (the batch
        # may be committing); only its wait ends.
        return await asyncio.shield(future)

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            await asyncio.sleep(0)  # let the callers of this loop turn join the first batch
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max], self._waiting[self._max:]
                try:
                    results: Sequence[R | BaseException] = await self._flush(
                        [item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"flush gave {len(results)} results for {len(batch)}")
                except Exception as exc:  # the whole batch failed: every caller hears why
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                batch = []
        except BaseException:
            # Cancelled (shutting down): nobody is left waiting forever.
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting = []
            raise
