"""Provider batch APIs: OpenAI's Batch API and Anthropic's Message Batches, at half price.

A stage works with batches in passes. Run with `--batch`, it answers what it can from the
response cache, queues every miss (`Client.pending`) and leaves those items undone;
`submit_pending` then sends the queue to the provider and records the batches in
OUT/batches.json, so `cai batch status` and `cai batch collect` work after a restart.
Collecting writes each result into the response cache under its request key, which is also
its custom_id, so results map back however out of order they come. Rerunning the stage with
`--batch` takes the finished requests from the cache, moves its items on to their next step,
and queues the next batch, until nothing is deferred.

Expired, cancelled and retryable results are left out of the cache, so the next pass queues
them again; a non-retryable error (a 400, a refusal) is cached with its reason, and the item
ends in failed.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from cai.chat import Completion, Message, Sampling
from cai.errors import BackendError, CaiError
from cai.models.backends.anthropic import message_completion, request_params
from cai.models.backends.base import redact
from cai.models.backends.openai import chat_completion, request_body
from cai.models.budget import record_spend
from cai.models.cache import ResponseCache
from cai.models.client import Client
from cai.records.read import read_json
from cai.records.rewrite import write_json
from cai.redact import HIDDEN, redact_urls

STATE = "batches.json"
# What collecting counts, per batch and in all: errored results are cached with their reason
# (the item fails); requeued ones (expired, cancelled, retryable) go into the next pass.
TALLIED = ("succeeded", "errored", "requeued", "tokens_in", "tokens_out")
OPENAI_ENDPOINT = "/v1/chat/completions"
# Uploads and status reads are safe to repeat, so they get the SDK's retries; creating a
# batch is not (a retry after a lost reply would pay for the same requests twice), so it is
# sent with retries off.
SAFE_RETRIES = 3


@dataclass(frozen=True)
class Limit:
    requests: int
    bytes: int


# The documented size of one batch; a module constant so tests can make it small.
LIMITS = {"openai": Limit(50_000, 200_000_000), "anthropic": Limit(100_000, 256_000_000)}

# A result for the cache: a completion, a non-retryable error's reason, or None to queue the
# request again in the next pass (expired, cancelled, rate-limited, a server error).
Outcome = Completion | str | None
Pending = dict[str, tuple[list[Message], Sampling]]
T = TypeVar("T")


def split(items: Sequence[T], size: Callable[[T], int], limit: Limit) -> list[list[T]]:
    """Cut items, in order, into groups within a request count and a byte size.

    >>> split([b"ab", b"cd", b"e"], len, Limit(requests=2, bytes=3))
    [[b'ab'], [b'cd', b'e']]
    """
    groups: list[list[T]] = []
    used = 0
    for item in items:
        n = size(item)
        if not groups or len(groups[-1]) >= limit.requests or used + n > limit.bytes:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += n
    return groups


def _parsed(make: Callable[[], Completion]) -> Outcome:
    try:
        return make()
    except BackendError as e:
        return None if e.retryable else str(e)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        # a body of the wrong shape will not get better when resent
        return f"malformed result: {e}"[:500]


def openai_outcome(line: dict[str, Any], model: str) -> Outcome:
    """What one line of a Batch API output or error file means for the cache."""
    response = line.get("response")
    if response is None:  # batch_expired, batch_cancelled: the request never ran
        return None
    status = int(response.get("status_code") or 0)
    if status == 200:
        return _parsed(lambda: chat_completion(response["body"], model))
    if status == 429 or status >= 500:
        return None
    error = (response.get("body") or {}).get("error") or {}
    return f"HTTP {status}: {error.get('message', 'request failed')}"


def anthropic_outcome(result: dict[str, Any], model: str) -> Outcome:
    """What one Message Batches result means for the cache."""
    kind = result.get("type")
    if kind == "succeeded":
        return _parsed(lambda: message_completion(result["message"], model))
    error = ((result.get("error") or {}).get("error")) or {}
    if kind == "errored" and error.get("type") == "invalid_request_error":
        return f"invalid_request_error: {error.get('message', '')}"
    return None  # canceled, expired, or an error worth sending again


class OpenAIBatches:
    """OpenAI's Batch API: a JSONL file of Chat Completions requests, then a batch over it."""

    key_variable = "OPENAI_API_KEY"
    finished = ("completed", "expired", "cancelled", "failed")

    def __init__(self, sdk: Any):
        self.sdk = sdk

    @staticmethod
    def connect(url: str, key: str) -> Any:
        import openai

        return openai.AsyncOpenAI(api_key=key, base_url=url, max_retries=SAFE_RETRIES)

    def entries(self, model: str, pending: Pending) -> list[tuple[str, bytes]]:
        return [(key, json.dumps({"custom_id": key, "method": "POST", "url": OPENAI_ENDPOINT,
                                  "body": request_body(model, messages, sampling)},
                                 ensure_ascii=False).encode() + b"\n")
                for key, (messages, sampling) in pending.items()]

    @staticmethod
    def size(entry: tuple[str, bytes]) -> int:
        return len(entry[1])

    async def submit(self, group: list[tuple[str, bytes]]) -> dict[str, Any]:
        data = b"".join(line for _, line in group)
        upload = await self.sdk.with_options(max_retries=SAFE_RETRIES).files.create(
            file=("requests.jsonl", data, "application/jsonl"), purpose="batch")
        create = self.sdk.with_options(max_retries=0).batches.create
        batch = await create(input_file_id=upload.id, endpoint=OPENAI_ENDPOINT,
                             completion_window="24h")
        return {"id": batch.id, "status": batch.status, "input_file_id": upload.id}

    async def refresh(self, record: dict[str, Any]) -> bool:
        batch = await self.sdk.batches.retrieve(record["id"])
        record["status"] = batch.status
        record["counts"] = batch.request_counts.model_dump() if batch.request_counts else {}
        record["output_file_id"], record["error_file_id"] = (batch.output_file_id,
                                                             batch.error_file_id)
        if batch.errors and batch.errors.data:  # a file that failed validation
            record["errors"] = [e.message for e in batch.errors.data]
        return batch.status in self.finished

    async def results(self, record: dict[str, Any], model: str) -> AsyncIterator[
            tuple[str, Outcome]]:
        for file_id in (record.get("output_file_id"), record.get("error_file_id")):
            if not file_id:
                continue
            content = await self.sdk.files.content(file_id)
            for text in content.text.splitlines():
                if text.strip():
                    line = json.loads(text)
                    yield line["custom_id"], openai_outcome(line, model)


class AnthropicBatches:
    """Anthropic's Message Batches: the requests go in the create call's body."""

    key_variable = "ANTHROPIC_API_KEY"

    def __init__(self, sdk: Any):
        self.sdk = sdk

    @staticmethod
    def connect(url: str, key: str) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=key, base_url=url, max_retries=SAFE_RETRIES)

    def entries(self, model: str, pending: Pending) -> list[tuple[str, dict[str, Any]]]:
        return [(key, {"custom_id": key, "params": request_params(model, messages, sampling)})
                for key, (messages, sampling) in pending.items()]

    @staticmethod
    def size(entry: tuple[str, dict[str, Any]]) -> int:
        return len(json.dumps(entry[1], ensure_ascii=False).encode()) + 2  # and a separator

    async def submit(self, group: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        create = self.sdk.with_options(max_retries=0).messages.batches.create
        batch = await create(requests=[r for _, r in group])
        return {"id": batch.id, "status": batch.processing_status}

    async def refresh(self, record: dict[str, Any]) -> bool:
        batch = await self.sdk.messages.batches.retrieve(record["id"])
        record["status"] = batch.processing_status
        record["counts"] = batch.request_counts.model_dump()
        return bool(batch.processing_status == "ended")

    async def results(self, record: dict[str, Any], model: str) -> AsyncIterator[
            tuple[str, Outcome]]:
        async for entry in await self.sdk.messages.batches.results(record["id"]):
            yield entry.custom_id, anthropic_outcome(entry.result.model_dump(), model)


PROVIDERS: dict[str, type[OpenAIBatches] | type[AnthropicBatches]] = {
    "openai": OpenAIBatches, "anthropic": AnthropicBatches}


def _provider_of(client: Client) -> str:
    api = client.kind.batch_api
    if api is None:
        raise CaiError(f"--batch needs an openai: or anthropic: model; '{client.spec}' has no "
                       "batch API. Run without --batch.")
    return api


def load_state(out: Path) -> dict[str, Any]:
    path = out / STATE
    if not path.exists():
        return {"version": 1, "batches": []}
    return dict(read_json(path))


def _recorded(out: Path) -> dict[str, Any]:
    if not (out / STATE).exists():
        raise CaiError(f"no {STATE} in {out}: run a stage with --batch and --out {out} first")
    return load_state(out)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


async def submit_pending(clients: Sequence[Client], out: Path) -> dict[str, Any]:
    """Submit every client's queued requests to its provider's batch API.

    Returns the batch ids, the requests sent, and per model the requests left out because a
    batch not collected yet holds them already.
    """
    queued = [c for c in clients if c.pending]
    for c in queued:  # check them all before anything is sent
        _provider_of(c)
        if c.cache is None:
            raise CaiError("--batch needs the response cache: results are collected into it")
    state = load_state(out)
    in_flight = {k for b in state["batches"] if not b["collected"] for k in b["custom_ids"]}
    report: dict[str, Any] = {"ids": [], "sent": 0, "in_flight": {}}
    connections = _Connections()
    try:
        for client in queued:
            fresh = {k: v for k, v in client.pending.items() if k not in in_flight}
            if len(fresh) < len(client.pending):
                report["in_flight"][client.spec] = len(client.pending) - len(fresh)
            report["ids"] += await _submit_client(client, fresh, out, state, connections)
            report["sent"] += len(fresh)
            client.pending.clear()
    finally:
        await connections.aclose()
    return report


async def _submit_client(client: Client, pending: Pending, out: Path, state: dict[str, Any],
                         connections: _Connections) -> list[str]:
    kind = _provider_of(client)
    provider = connections.provider({"provider": kind, "base_url": client.base_url})
    model = client.spec.partition(":")[2]
    entries: list[tuple[str, Any]] = provider.entries(model, pending)
    ids = []
    for group in split(entries, provider.size, LIMITS[kind]):
        keys = [key for key, _ in group]
        with _talking_to(f"submitting a batch to {kind}"):
            made = await provider.submit(group)
        state["batches"].append({
            **made, "provider": kind, "model": client.spec, "requests": len(keys),
            "custom_ids": keys, "submitted": _now(), "collected": False,
            "base_url": redact_urls(str(provider.sdk.base_url)), "cache": str(client.cache.path)
            if client.cache is not None else None,
            "price_per_mtok": list(client.price) if client.price is not None else None})
        write_json(out / STATE, state)  # after each batch: a crash loses no batch id
        ids.append(made["id"])
    return ids


@contextlib.contextmanager
def _talking_to(doing: str) -> Iterator[None]:
    """Turn an SDK's error into one clear CaiError that says what was being done."""
    try:
        yield
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("openai", "anthropic", "httpx"):
            raise
        text = str(e)
        for cls in PROVIDERS.values():  # in case a server echoed a key back
            text = redact(text, os.environ.get(cls.key_variable) or "\0")
        raise CaiError(f"{doing} failed: {text}") from None


class _Connections:
    """SDK clients for status and collect, one per provider and base URL, keys from the
    environment: a batch may outlive the process that submitted it. A base URL with
    credentials was recorded with them hidden; `base_urls` brings it back whole."""

    def __init__(self, base_urls: Sequence[str] = ()) -> None:
        self._made: dict[tuple[str, str], Any] = {}
        self._urls = base_urls

    def _whole(self, recorded: Any) -> Any:
        if recorded is None or HIDDEN not in recorded:
            return recorded
        for url in self._urls:
            if redact_urls(url).rstrip("/") == recorded.rstrip("/"):
                return url
        raise CaiError(f"the batch went to {recorded}, whose credentials cai does not write "
                       "down; pass that URL again with --base-url")

    def provider(self, record: dict[str, Any]) -> OpenAIBatches | AnthropicBatches:
        kind, url = record["provider"], self._whole(record["base_url"])
        cls = PROVIDERS[kind]
        if (kind, url) not in self._made:
            key = os.environ.get(cls.key_variable)
            if not key and (not url or "api.openai.com" in url or "api.anthropic.com" in url):
                raise CaiError(f"{cls.key_variable} is not set; export it to reach {kind}")
            self._made[kind, url] = cls.connect(url, key or "unused")  # stand-ins take any
        return cls(self._made[kind, url])

    async def refresh(self, record: dict[str, Any]) -> bool:
        """Read a batch's state from its provider into its record; True once it has ended."""
        with _talking_to(f"reading batch {record['id']}"):
            return await self.provider(record).refresh(record)

    async def aclose(self) -> None:
        for sdk in self._made.values():
            await sdk.close()


async def status(out: Path, base_urls: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every batch recorded in `out`, those not collected yet refreshed from their provider."""
    state = _recorded(out)
    connections = _Connections(base_urls)
    try:
        for record in state["batches"]:
            if not record["collected"]:
                await connections.refresh(record)
        write_json(out / STATE, state)
    finally:
        await connections.aclose()
    return list(state["batches"])


async def collect(out: Path, cache: ResponseCache | None = None,
                  base_urls: Sequence[str] = ()) -> dict[str, Any]:
    """Download finished batches' results into the response cache; say what came of them.

    `cache` overrides the cache each batch's stage ran with (recorded in batches.json).
    """
    state = _recorded(out)
    tallies: list[dict[str, Any]] = []
    running, problems = 0, []
    connections = _Connections(base_urls)
    opened: dict[str, ResponseCache] = {}
    try:
        for record in state["batches"]:
            if record["collected"]:
                continue
            if not await connections.refresh(record):
                running += 1
                continue
            path = record.get("cache") or ""
            if cache is None and path not in opened:  # the stage's own cache, for its rerun
                opened[path] = ResponseCache(path or None)
            target = cache if cache is not None else opened[path]
            tallies.append(await _collect_one(connections.provider(record), record, target))
            problems += [f"{record['id']}: {e}" for e in record.get("errors", ())]
            write_json(out / STATE, state)  # after each batch, so a kill loses no collection
    finally:
        await connections.aclose()
        for c in opened.values():
            c.close()
    totals = {name: sum(t[name] for t in tallies) for name in TALLIED}
    return {"collected": len(tallies), "running": running, **totals, "problems": problems,
            "cost_usd": round(sum(t["cost_usd"] or 0.0 for t in tallies), 6)}


async def _collect_one(provider: OpenAIBatches | AnthropicBatches, record: dict[str, Any],
                       cache: ResponseCache) -> dict[str, Any]:
    """Write one finished batch's results into the cache; count them in its record."""
    spec, expected = record["model"], set(record["custom_ids"])
    tally = dict.fromkeys(TALLIED, 0)
    seen: set[str] = set()
    with _talking_to(f"downloading the results of batch {record['id']}"):
        async for key, outcome in provider.results(record, spec.partition(":")[2]):
            if key not in expected or key in seen:
                continue  # not ours, or a repeat: the first answer stands
            seen.add(key)
            if isinstance(outcome, Completion):
                cache.put(key, spec, outcome)
                tally["succeeded"] += 1
                tally["tokens_in"] += outcome.usage.prompt_tokens
                tally["tokens_out"] += outcome.usage.completion_tokens
            elif isinstance(outcome, str):
                cache.put_error(key, spec, outcome)
                tally["errored"] += 1
    tally["requeued"] = len(expected) - tally["succeeded"] - tally["errored"]
    price = record.get("price_per_mtok")  # already halved for batch mode when submitted
    cost = (None if price is None else
            round((tally["tokens_in"] * price[0] + tally["tokens_out"] * price[1]) / 1e6, 6))
    record.update(collected=True, collected_at=_now(), results=tally, cost_usd=cost)
    record_spend(spec, tally["tokens_in"], tally["tokens_out"], cost or 0.0, tally["succeeded"])
    return {**tally, "cost_usd": cost}
