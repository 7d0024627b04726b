"""Retrying calls to providers and CRMs: a tenacity wait that honours "retry after"."""

from __future__ import annotations

from collections.abc import Callable

from tenacity import RetryCallState

# The longest a provider's "retry after" is waited out inside one call (longer: the caller
# gives up for now and schedules the work again).
MAX_RETRY_AFTER_S = 60.0


def honouring_retry_after(fallback: Callable[[RetryCallState], float]
                          ) -> Callable[[RetryCallState], float]:
    """A tenacity wait: what the provider asked for (the failure's `retry_after`, at most
    MAX_RETRY_AFTER_S), else the fallback's backoff."""

    def wait(state: RetryCallState) -> float:
        failed = state.outcome.exception() if state.outcome is not None else None
        after = getattr(failed, "retry_after", None)
        if isinstance(after, int | float) and after > 0:
            return min(float(after), MAX_RETRY_AFTER_S)
        return fallback(state)
    return wait
