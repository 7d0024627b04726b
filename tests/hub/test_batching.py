"""The coalescer: concurrent callers share a batch, each gets its own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from hub.batching import Coalescer


async def test_concurrent_items_share_batches_in_order_with_their_own_results() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int | BaseException]:
        batches.append(list(items))
        await asyncio.sleep(0.01)  # a transaction's round trips
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=4)
    results = await asyncio.gather(*(coalescer.submit(i) for i in range(10)),
                                   return_exceptions=True)
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        0, "odd 1", 20, "odd 3", 40, "odd 5", 60, "odd 7", 80, "odd 9"]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    # Later callers start a new batch.
    assert await coalescer.submit(12) == 120
    assert batches[-1] == [12]


async def test_a_failed_batch_fails_each_of_its_callers() -> None:
    async def flush(items: Sequence[str]) -> list[str | BaseException]:
        raise ConnectionError("database gone")

    coalescer: Coalescer[str, str] = Coalescer(flush)
    results = await asyncio.gather(coalescer.submit("a"), coalescer.submit("b"),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    with pytest.raises(ConnectionError):
        await coalescer.submit("c")
