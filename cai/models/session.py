"""One command's models: its clients share one cache, one budget and one price table; a dry
run swaps every backend for an estimator that sends nothing; in batch mode, cache misses are
queued for the provider's batch API and submitted when a stage ends."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.models.backends.dryrun import DryRunBackend
from cai.models.budget import Budget, load_prices, price_of
from cai.models.cache import ResponseCache
from cai.models.client import Client, Limits
from cai.models.registry import load_backend, split_urls


@dataclass
class Session:
    """The options every model-calling command shares, and the clients made from them."""

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

    def __post_init__(self) -> None:
        if self.batch and self.dry_run:
            raise CaiError("--batch and --dry-run do not go together; dry-run first, then "
                           "submit with --batch")
        if self.prices_file is not None:
            load_prices(self.prices_file)  # checked now, before any output is written

    def cache(self) -> ResponseCache | None:
        if self.dry_run or not (self.use_cache or self.batch):
            return None
        if self._cache is None:
            self._cache = ResponseCache(self.cache_path)
        return self._cache

    def client(self, spec: str, *, logprobs: bool = False,
               constrain: str | None = None) -> Client:
        """The client for a model spec; the same spec twice gets the same client."""
        for c in self.clients:
            if c.spec == spec:
                return c
        backend = load_backend(spec, base_urls=split_urls(self.base_urls), logprobs=logprobs,
                               concurrency=self.limits.concurrency, lazy=self.dry_run,
                               constrain=constrain)
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

    def target(self, out: Path) -> Path:
        """Where a stage writes: `out`, or for a dry run a scratch folder in the temporary
        directory (removed when the stage ends): never in or beside `out`, whose parent
        folders a dry run would otherwise make."""
        if not self.dry_run:
            return out
        key = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"cai-dry-run-{os.getpid()}-{key}"

    async def end_stage(self, out: Path, summary: dict[str, Any]) -> None:
        """After a stage: submit what batch mode queued, or drop a dry run's scratch folder."""
        if self.batch:
            from cai.models.provider_batch import submit_pending

            summary["batches_submitted"] = await submit_pending(self.clients, out)
        if self.dry_run:
            shutil.rmtree(self.target(out), ignore_errors=True)
            summary["dry_run"] = dry_run_report(summary)

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()
        if self._cache is not None:
            self._cache.close()


def dry_run_report(summary: dict[str, Any]) -> dict[str, Any]:
    """What a dry run estimates a real run would send and spend; with several models (a
    panel of judges), each model's share as well."""
    models = summary.get("backends") or {}
    by_model = {"by_model": {spec: {k: st[k] for k in ("requests", "tokens_in", "tokens_out",
                                                      "cost_usd")}
                             for spec, st in models.items()}} if len(models) > 1 else {}
    return {
        "dry_run": True,
        "items": summary["total"] - summary["already_done"],
        "requests": summary["requests"],
        "tokens_in": summary["tokens_in"],
        "tokens_out": summary["tokens_out"],
        "cost_usd": summary["cost_usd"],
        **by_model,
        "note": "outputs counted at their max_tokens bound; tokens estimated at 4 characters "
                "each",
    }
