"""The one wrapper around every backend: concurrency, retries and the counts for summaries."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from cai.backends.base import Backend
from cai.chat import Completion, Message, Sampling
from cai.errors import BackendError

# At a 20% transient fault rate, ten attempts lose one item in ten million.
DEFAULT_ATTEMPTS = 10


@dataclass
class Stats:
    """What a stage did, for its summary.json."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": dict(self.retries),
            "tokens_in": self.prompt_tokens,
            "tokens_out": self.completion_tokens,
            "failed_requests": dict(self.failures),
            "wall_seconds": round(time.monotonic() - self.started, 3),
        }


def _retryable(e: BaseException) -> bool:
    return isinstance(e, BackendError) and e.retryable


class _Wait:
    """Exponential backoff with jitter, capped; a server's Retry-After wins when it says more."""

    def __init__(self, initial: float, cap: float):
        self.backoff = wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial)
        self.cap = cap

    def __call__(self, state: Any) -> float:
        wait = self.backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, BackendError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.cap))
        return wait


class Client:
    """Calls a backend under a concurrency bound, retrying transient faults."""

    def __init__(self, backend: Backend, *, concurrency: int = 8,
                 attempts: int = DEFAULT_ATTEMPTS, backoff: float = 1.0, max_wait: float = 60.0,
                 stats: Stats | None = None):
        self.backend = backend
        self.stats = stats or Stats()
        self._slots = asyncio.Semaphore(concurrency)
        self._attempts = attempts
        self._wait = _Wait(backoff, max_wait)

    @property
    def spec(self) -> str:
        return self.backend.spec

    def sampling(self, **changes: Any) -> Sampling:
        """The backend's default sampling with some fields changed."""
        return self.backend.default_sampling.with_(**changes)

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._slots:
                        self.stats.requests += 1
                        completion = await self.backend.complete(messages, sampling)
        except BackendError as e:
            self.stats.failures[e.cause] += 1
            raise
        self.stats.prompt_tokens += completion.usage.prompt_tokens
        self.stats.completion_tokens += completion.usage.completion_tokens
        return completion

    def _count_retry(self, state: Any) -> None:
        error = state.outcome.exception()
        self.stats.retries[getattr(error, "cause", type(error).__name__)] += 1

    async def aclose(self) -> None:
        await self.backend.aclose()
