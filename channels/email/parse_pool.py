"""Parsing a fetched batch of mail off the event loop, on the machine's other cores.

Parsing costs about a millisecond of CPU per mail (mostly the `email` package's header
parsing), which is most of an import's work besides storing. A first sync of a mailbox hands
over thousands at once: they are parsed in a small pool of processes while the event loop
fetches the next batch and stores the last one. A few new mails (IDLE pushed one) are parsed
in place: the pool round trip would only add latency.

The pool is started by the first large batch, with the `spawn` method (the poller's process
has threads: database drivers; forking it is not safe), and lives as long as the process.
Starting takes a second or so: until the pool answers, batches are parsed in place, so a
small import never waits for it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from channels.email.parse import ParsedEmail, UnparseableEmail, parse_email

INLINE_UP_TO = 32  # mails; above this, a batch goes to the pool (when the machine has one)
CHUNK = 25  # mails per task: big enough to amortise pickling, small enough to spread

# What parsing one mail gave: the parsed mail, or why it is refused (to quarantine it).
Outcome = ParsedEmail | UnparseableEmail

_pool: ProcessPoolExecutor | None = None
_ready: Future[bool] | None = None  # done once the pool's processes answer
_pool_lock = threading.Lock()


def pool_size() -> int:
    """Processes for parsing: the cores beyond the one this process runs on, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


def parse_one(raw: bytes) -> Outcome:
    """One mail parsed, or the reason it cannot be (a ValueError of the parser's)."""
    try:
        return parse_email(raw)
    except UnparseableEmail as exc:
        return exc
    except ValueError as exc:  # what the standard library raises on broken structure
        return UnparseableEmail(str(exc) or type(exc).__name__)


def _parse_chunk(raws: Sequence[bytes]) -> list[Outcome]:
    return [parse_one(raw) for raw in raws]


def _answer() -> bool:
    return True


def _executor() -> ProcessPoolExecutor | None:
    """The pool once it answers; None before (starting it) or on a one-core machine."""
    global _pool, _ready
    if pool_size() == 0:
        return None
    with _pool_lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=pool_size(), mp_context=multiprocessing.get_context("spawn"))
            _ready = _pool.submit(_answer)
        ready = _ready is not None and _ready.done() and _ready.exception() is None
        return _pool if ready else None


def _discard(broken: ProcessPoolExecutor) -> None:
    global _pool, _ready
    with _pool_lock:
        if _pool is broken:
            _pool, _ready = None, None
    broken.shutdown(wait=False, cancel_futures=True)


async def parse_many(raws: Sequence[bytes]) -> list[Outcome]:
    """Every mail of the batch parsed, in order; in the pool when the batch is large."""
    executor = _executor() if len(raws) > INLINE_UP_TO else None
    if executor is None:
        return _parse_chunk(raws)
    loop = asyncio.get_running_loop()
    chunks = [list(raws[i:i + CHUNK]) for i in range(0, len(raws), CHUNK)]
    try:
        parts = await asyncio.gather(
            *(loop.run_in_executor(executor, _parse_chunk, chunk) for chunk in chunks))
    except BrokenProcessPool:
        # A parser process died (killed, out of memory): parse here, start a new pool later.
        _discard(executor)
        return _parse_chunk(raws)
    return [outcome for part in parts for outcome in part]


def shutdown() -> None:
    """Stop the pool's processes (at exit; a later batch starts a new pool)."""
    global _pool, _ready
    with _pool_lock:
        pool, _pool, _ready = _pool, None, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
