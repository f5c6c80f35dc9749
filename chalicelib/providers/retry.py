"""Time budget and retries for provider calls.

One ``Budget`` covers a whole test or invoke, retries and backoff included. Only retryable
errors are retried (rate limits, 5xx/529, timeouts, resets), at most ``max_retries`` times,
with exponential backoff and full jitter, or exactly the provider's retry hint when it gave one.
A wait that would not fit in the remaining budget is not started: the error is returned.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from chalicelib.providers.base import ProviderError

T = TypeVar("T")

BACKOFF_BASE = 0.5  # seconds; attempt n waits up to base * 2**n
BACKOFF_CAP = 8.0
MIN_ATTEMPT = 0.05  # an attempt needs at least this much budget to be worth starting


class Clock(Protocol):
    """Time and randomness for the retry loop; tests inject a fake one."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def random(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def random(self) -> float:
        return random.random()


SYSTEM_CLOCK = SystemClock()


class Budget:
    """The time left for one test or invoke."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self.clock = clock
        self.total = seconds
        self.started = clock.monotonic()
        self.deadline = self.started + seconds
        self.slept = 0.0  # time spent in backoff, not waiting for the provider

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock.monotonic())

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.started

    def exhausted_error(self) -> ProviderError:
        return ProviderError(
            "timeout", f"No answer within the {self.total:g} s time budget.", retryable=False
        )

    def require(self) -> float:
        """The remaining seconds; raises a timeout error when too little is left."""
        left = self.remaining()
        if left < MIN_ATTEMPT:
            raise self.exhausted_error()
        return left

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
        self.slept += seconds


def backoff_delay(attempt: int, clock: Clock) -> float:
    """Full jitter: uniform between 0 and base * 2**attempt (capped)."""
    return clock.random() * min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)


async def with_retries(
    attempt: Callable[[], Awaitable[T]], *, budget: Budget, max_retries: int,
    final_codes: frozenset[str] = frozenset(),
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or retries or budget run out.
    ``final_codes``: errors not retried here (the caller has a better next step, such as
    another credential set for a rate-limited key)."""
    retries = 0
    while True:
        budget.require()
        try:
            return await attempt()
        except ProviderError as err:
            if not err.retryable or retries >= max_retries or err.code in final_codes:
                raise
            if err.retry_after is not None:
                delay = err.retry_after
            else:
                delay = backoff_delay(retries, budget.clock)
            if delay + MIN_ATTEMPT > budget.remaining():
                raise  # the provider (or backoff) asks for longer than we have left
            await budget.sleep(delay)
            retries += 1
