"""A large batch of mail is parsed in the pool of processes, with the same outcome as in place."""

from __future__ import annotations

import asyncio

from channels.email import parse_pool
from channels.email.parse import UnparseableEmail, parse_email


def _mail(n: int) -> bytes:
    return (f"From: Ada {n} <ada{n}@example.com>\r\nTo: help@acme.test\r\nSubject: Hello {n}"
            f"\r\nMessage-ID: <p{n}@example.com>\r\n\r\nbody {n}\r\n").encode()


async def test_a_large_batch_is_parsed_in_the_pool_in_order_and_refusals_kept() -> None:
    raws = [_mail(n) for n in range(100)]
    raws[40] = b"To: help@acme.test\r\nSubject: nobody sent this\r\n\r\n?\r\n"
    try:
        async with asyncio.timeout(60):
            while parse_pool._executor() is None:  # started by the first call, then warm
                await asyncio.sleep(0.05)
        assert parse_pool.pool_size() >= 1
        outcomes = await parse_pool.parse_many(raws)
        assert len(outcomes) == 100
        for n, outcome in enumerate(outcomes):
            if n == 40:
                assert isinstance(outcome, UnparseableEmail) and "sender" in str(outcome)
            else:
                assert not isinstance(outcome, UnparseableEmail)
                assert outcome == parse_email(raws[n])
        # A few mails (IDLE pushed one) are parsed in place, never waiting on the pool.
        assert (await parse_pool.parse_many(raws[:2]))[1] == parse_email(raws[1])
    finally:
        parse_pool.shutdown()


async def test_a_dead_parser_process_falls_back_to_parsing_in_place() -> None:
    try:
        async with asyncio.timeout(60):
            while (pool := parse_pool._executor()) is None:
                await asyncio.sleep(0.05)
        for process in list(pool._processes.values()):  # killed, as the OOM killer would
            process.kill()
            process.join()
        outcomes = await parse_pool.parse_many([_mail(n) for n in range(50)])
        assert [o.message_id for o in outcomes if not isinstance(o, UnparseableEmail)] == [
            f"p{n}@example.com" for n in range(50)]
    finally:
        parse_pool.shutdown()
