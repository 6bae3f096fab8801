"""The one wrapper around every backend: cache, budget, rate limits, concurrency, retries,
and the counts for summaries. Backends only talk to their model; everything else is here."""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from cai.chat import Completion, Message, Sampling
from cai.errors import BackendError, CaiError, CaiWarning
from cai.models.backends.base import Backend, estimate_tokens
from cai.models.budget import Budget, BudgetExhausted, record_spend
from cai.models.cache import ResponseCache, request_key
from cai.models.registry import Kind, parse_spec

# At a 20% transient fault rate, ten attempts lose one item in ten million.
DEFAULT_ATTEMPTS = 10


class Deferred(CaiError):
    """The request was queued for a provider batch; the item waits for its results."""


@dataclass
class Stats:
    """What a stage did, for its summary.json."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def since(self, earlier: Stats | None) -> Stats:
        """What was done after `earlier` (a `copy()` taken then): one stage's share of a
        client that several stages of a command use."""
        if earlier is None:
            return self
        return Stats(self.requests - earlier.requests, self.cache_hits - earlier.cache_hits,
                     self.prompt_tokens - earlier.prompt_tokens,
                     self.completion_tokens - earlier.completion_tokens,
                     self.cost_usd - earlier.cost_usd, self.retries - earlier.retries,
                     self.failures - earlier.failures, earlier.started)

    def copy(self) -> Stats:
        """These figures as they stand now, timed from now."""
        return Stats(self.requests, self.cache_hits, self.prompt_tokens, self.completion_tokens,
                     self.cost_usd, Counter(self.retries), Counter(self.failures))

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": dict(self.retries),
            "tokens_in": self.prompt_tokens,
            "tokens_out": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "failed_requests": dict(self.failures),
            "wall_seconds": round(time.monotonic() - self.started, 3),
        }


class Pacer:
    """Spaces out a quantity (requests, tokens) so no minute holds more than `per_minute`."""

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def take(self, amount: float = 1.0) -> None:
        # Waiters queue on the lock and each spacing counts from the moment the previous one
        # really went, so an event loop that stalls cannot release a burst afterwards.
        async with self._lock:
            delay = self._next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next = time.monotonic() + amount * self.interval


def _retryable(e: BaseException) -> bool:
    return isinstance(e, BackendError) and e.retryable


class _Wait:
    """Exponential backoff with jitter, capped; a server's Retry-After wins when it says more."""

    def __init__(self, initial: float, cap: float):
        self.backoff = wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial)
        self.initial = initial
        self.cap = cap

    def __call__(self, state: Any) -> float:
        error = state.outcome.exception() if state.outcome else None
        return self.honour(self.backoff(state), error)

    def first(self, error: BaseException) -> float:
        """The wait before the first retry, for the fast path that tried once on its own."""
        return self.honour(self.initial * random.uniform(1.0, 2.0), error)

    def honour(self, wait: float, error: BaseException | None) -> float:
        if isinstance(error, BackendError) and error.retry_after is not None:
            wait = max(wait, min(error.retry_after, self.cap))
        return wait


@dataclass
class Limits:
    """How hard a client may push its backend."""

    concurrency: int = 8
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute (prompt estimate plus max_tokens)
    attempts: int = DEFAULT_ATTEMPTS
    backoff: float = 1.0  # first retry wait, seconds; doubles each time
    max_wait: float = 60.0


class Client:
    """Calls a backend under limits and a budget, from the cache when it can."""

    def __init__(self, backend: Backend, limits: Limits | None = None, *,
                 cache: ResponseCache | None = None, budget: Budget | None = None,
                 price: tuple[float, float] | None = (0.0, 0.0), defer: bool = False,
                 stats: Stats | None = None, **limit_fields: Any):
        self.backend = backend
        self.limits = limits or Limits(**limit_fields)
        self.cache = cache
        self.budget = budget or Budget()
        self.price = price
        self.defer = defer  # batch mode: queue cache misses instead of sending them
        self.pending: dict[str, tuple[list[Message], Sampling]] = {}
        self.stats = stats or Stats()
        self._slots = asyncio.Semaphore(min(self.limits.concurrency,
                                            backend.parallel or self.limits.concurrency))
        self._rpm = Pacer(self.limits.rpm) if self.limits.rpm else None
        self._tpm = Pacer(self.limits.tpm) if self.limits.tpm else None
        self._wait = _Wait(self.limits.backoff, self.limits.max_wait)
        self._warned: set[str] = set()
        self._identity: str | None = None

    @property
    def spec(self) -> str:
        return self.backend.spec

    # What the backend can do, so that callers need not reach through to it.
    @property
    def supports_logprobs(self) -> bool:
        return self.backend.supports_logprobs

    @property
    def max_top_logprobs(self) -> int:
        return self.backend.max_top_logprobs

    @property
    def constrains_choices(self) -> bool:
        """Whether replies can be constrained to given options (Sampling.choices)."""
        return "choices" in self.backend.sends

    @property
    def identity(self) -> str:
        """The spec, or with the weights' fingerprint or the deployment where it is needed."""
        if self._identity is None:
            self._identity = self.backend.identity
        return self._identity

    @property
    def kind(self) -> Kind:
        return parse_spec(self.spec).kind

    @property
    def base_url(self) -> str | None:
        return self.backend.base_url

    def sampling(self, **changes: Any) -> Sampling:
        """The backend's default sampling with some fields changed; a change the backend
        cannot send is warned about once (the seed excepted: it still tells samples apart)."""
        for name, value in changes.items():
            if (name not in self.backend.sends and name != "seed" and value is not None
                    and name not in self._warned):
                self._warned.add(name)
                warnings.warn(f"'{name}' cannot be sent to {self.spec}; the provider's "
                              "default applies, and records show it as not sent (null)",
                              CaiWarning, stacklevel=2)
        return self.backend.default_sampling.with_(**changes)

    def sent(self, sampling: Sampling) -> dict[str, Any]:
        """The sampling as records show it: what the backend really sent, None elsewhere."""
        return {k: (v if k in self.backend.sends else None)
                for k, v in sampling.to_dict().items()}

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        key = request_key(self.identity, messages, sampling) if self.cache is not None else ""
        if self.cache is not None:
            cached = self.cache.get(key)
            if isinstance(cached, Completion):
                self.stats.cache_hits += 1
                return cached
            if isinstance(cached, str):
                raise BackendError(cached, cause="provider-error")
        if self.defer:
            if key not in self.pending:
                # Counted now, at its largest, since a submitted batch cannot be recalled.
                tokens = estimate_tokens(messages) + sampling.max_tokens
                in_price, out_price = self.price or (0.0, 0.0)
                cost = (estimate_tokens(messages) * in_price
                        + sampling.max_tokens * out_price) / 1e6
                self.budget.reserve(tokens, cost)
                self.pending[key] = (list(messages), sampling)
            raise Deferred("waiting for a provider batch")
        completion = await self._send(messages, sampling)
        if self.cache is not None:
            self.cache.put(key, self.spec, completion)
        return completion

    async def _send(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        try:
            try:
                # Most requests succeed at once: only a failure pays for the retry machinery.
                completion = await self._attempt(messages, sampling)
            except BackendError as e:
                if not e.retryable or self.limits.attempts < 2:
                    raise
                self.stats.retries[e.cause] += 1
                await asyncio.sleep(self._wait.first(e))
                completion = await self._retry(messages, sampling)
        except BackendError as e:
            self.stats.failures[e.cause] += 1
            raise
        self._account(completion)
        return completion

    async def _retry(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.limits.attempts - 1), wait=self._wait,
            retry=retry_if_exception(_retryable), before_sleep=self._count_retry, reraise=True)
        async for attempt in retrying:
            with attempt:
                completion = await self._attempt(messages, sampling)
        return completion

    async def _attempt(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        await self._pace(messages, sampling)
        async with self._slots:
            if (reason := self.budget.exhausted()) is not None:
                raise BudgetExhausted(reason)
            self.stats.requests += 1
            self.budget.spent_requests += 1
            return await self.backend.complete(messages, sampling)

    async def _pace(self, messages: Sequence[Message], sampling: Sampling) -> None:
        if self._rpm:
            await self._rpm.take()
        if self._tpm:
            await self._tpm.take(estimate_tokens(messages) + sampling.max_tokens)

    def _account(self, completion: Completion) -> None:
        used = completion.usage
        self.stats.prompt_tokens += used.prompt_tokens
        self.stats.completion_tokens += used.completion_tokens
        self.budget.spent_tokens += used.prompt_tokens + used.completion_tokens
        cost = 0.0
        if self.price is not None:
            cost = (used.prompt_tokens * self.price[0] + used.completion_tokens * self.price[1])
            self.stats.cost_usd += cost / 1e6
            self.budget.spent_cost += cost / 1e6
        record_spend(self.spec, used.prompt_tokens, used.completion_tokens, cost / 1e6)

    def _count_retry(self, state: Any) -> None:
        error = state.outcome.exception()
        self.stats.retries[getattr(error, "cause", type(error).__name__)] += 1

    async def aclose(self) -> None:
        await self.backend.aclose()
