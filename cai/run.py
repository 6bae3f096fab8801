"""How one command's run is set up: its clients share one cache, one budget and one price
table, and a dry run swaps every backend for an estimator that sends nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends import load_backend, split_urls
from cai.backends.base import Backend
from cai.budget import Budget, load_prices, price_of
from cai.cache import ResponseCache
from cai.chat import Completion, Message, Sampling, Usage
from cai.client import Client, Limits, estimate_tokens
from cai.errors import CaiError


class DryRunBackend(Backend):
    """Answers every request with a reply of max_tokens tokens, and sends nothing.

    Token counts use the same four-characters-a-token estimate as the rate limiter, and
    outputs are taken at their max_tokens bound, so a dry run errs towards the high side.
    """

    def __init__(self, real: Backend):
        self.spec = real.spec
        self.default_sampling = real.default_sampling
        self.supports_logprobs = real.supports_logprobs
        self.max_top_logprobs = real.max_top_logprobs

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        text = ("word " * sampling.max_tokens)[: 4 * sampling.max_tokens]
        return Completion(text, "length", Usage(estimate_tokens(messages), sampling.max_tokens),
                          self.spec)


@dataclass
class RunSettings:
    """The options every model-calling command shares, parsed once."""

    base_urls: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    cache_path: str | None = None
    use_cache: bool = True
    budget: Budget = field(default_factory=Budget)
    prices_file: str | None = None
    dry_run: bool = False
    batch: bool = False
    _cache: ResponseCache | None = None
    clients: list[Client] = field(default_factory=list)

    def cache(self) -> ResponseCache | None:
        if self.dry_run or not (self.use_cache or self.batch):
            return None
        if self._cache is None:
            self._cache = ResponseCache(self.cache_path)
        return self._cache

    def client(self, spec: str, *, logprobs: bool = False) -> Client:
        """The client for a model spec; the same spec twice gets the same client."""
        for c in self.clients:
            if c.spec == spec:
                return c
        backend = load_backend(spec, base_urls=split_urls(self.base_urls), logprobs=logprobs,
                               concurrency=self.limits.concurrency,
                               lazy=self.dry_run)
        price = price_of(backend.spec, load_prices(self.prices_file))
        if price is None and self.budget.max_cost is not None:
            raise CaiError(f"no price known for '{spec}', so --max-cost cannot be kept; add it "
                           "with --prices FILE ({model: {input: X, output: Y}}, USD per 1M "
                           "tokens)")
        if price is not None and self.batch:
            price = (price[0] / 2, price[1] / 2)  # provider batch APIs charge half
        if self.dry_run:
            backend = DryRunBackend(backend)
        client = Client(backend, self.limits, cache=self.cache(), budget=self.budget,
                        price=price, defer=self.batch)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()
        if self._cache is not None:
            self._cache.close()


def dry_run_report(summary: dict[str, Any]) -> dict[str, Any]:
    """What a dry run estimates a real run would send and spend."""
    return {
        "dry_run": True,
        "items": summary["total"] - summary["already_done"],
        "requests": summary["requests"],
        "tokens_in": summary["tokens_in"],
        "tokens_out": summary["tokens_out"],
        "cost_usd": summary["cost_usd"],
        "note": "outputs counted at their max_tokens bound; tokens estimated at 4 characters "
                "each",
    }


def dry_run_out(out: Path) -> Path:
    """Where a dry run writes: beside the real output, never into it."""
    return out.parent / (out.name + ".dry-run")
