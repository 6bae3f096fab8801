"""Runs one stage's work over many items: resumable, failure-tolerant, with progress and a summary.

Every stage (revise, sample, judge) is an async function from one item to the records it
produces, keyed by output file. This module does the rest, the same way for all of them:

- Files are written in the order given; the last one commits the item. On a rerun, the ids in
  that file are skipped, and lines a killed run left in the other files for uncommitted items
  are dropped, so no record is lost or duplicated.
- An item that fails goes to `failed.jsonl` with its reason; the run goes on. A rerun tries
  it again.
- When a budget runs out, no new item starts; items in flight stop before their next request
  and are left undone, for a later run with a larger budget. Items waiting for a provider
  batch (`Deferred`) are left undone too, and the run goes on with the others.
- `summary.json` is written at the end, also when the run stops early.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from cai.budget import BudgetExhausted
from cai.client import Client, Deferred
from cai.errors import BackendError, CaiError
from cai.records import JsonlWriter, done_ids, keep_ids, write_json

FAILED = "failed.jsonl"
SUMMARY = "summary.json"

Records = dict[str, list[dict[str, Any]]]


class Item(Protocol):
    @property
    def id(self) -> str: ...


@dataclass
class StageResult:
    out: Path
    summary: dict[str, Any]
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return int(self.summary["done"])


async def run_stage(
    stage: str,
    items: Sequence[Item],
    work: Callable[[Any], Awaitable[Records]],
    *,
    out: Path,
    files: Sequence[str],
    clients: Iterable[Client],
    concurrency: int = 8,
    config: dict[str, Any] | None = None,
    describe: Callable[[Any], dict[str, Any]] = lambda item: {},
    progress: bool | None = None,
) -> StageResult:
    """Run `work` on every item not already done in `out`; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    clients = list(dict.fromkeys(clients))  # the same client may serve two roles
    commit = files[-1]
    already = done_ids(out / commit)
    for name in files[:-1]:
        keep_ids(out / name, already)
    todo = [item for item in items if item.id not in already]
    (out / FAILED).unlink(missing_ok=True)  # failures of earlier runs are tried again now

    writers = {name: JsonlWriter(out / name) for name in (*files, FAILED)}
    counts = {"done": 0, "failed": 0, "abandoned": 0, "deferred": 0}
    stop: list[str] = []
    failures: list[dict[str, Any]] = []
    started = time.monotonic()
    show = sys.stderr.isatty() if progress is None else progress
    bar = Progress(
        TextColumn(f"[bold]{stage}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[rate]} items/s  tokens {task.fields[tokens]}  "
                   "failed {task.fields[failed]}"),
        disable=not show, transient=False,
    )
    task = bar.add_task(stage, total=len(todo), rate="0.0", tokens=0, failed=0)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker() -> None:
        while not stop:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                records = await work(item)
            except asyncio.CancelledError:
                raise
            except BudgetExhausted as e:
                stop.append(str(e))
                counts["abandoned"] += 1
                continue
            except Deferred:
                counts["deferred"] += 1
                continue
            except Exception as e:  # one item's failure must not stop the run
                failure = {"id": item.id, **describe(item), "error": _reason(e),
                           "cause": getattr(e, "cause", type(e).__name__)}
                writers[FAILED].write(failure)
                failures.append(failure)
                counts["failed"] += 1
            else:
                for name in files:
                    for record in records.get(name, ()):
                        writers[name].write(record)
                counts["done"] += 1
            elapsed = max(time.monotonic() - started, 1e-9)
            bar.update(task, advance=1, failed=counts["failed"],
                       rate=f"{(counts['done'] + counts['failed']) / elapsed:.2f}",
                       tokens=sum(c.stats.prompt_tokens + c.stats.completion_tokens
                                  for c in clients))

    stopped: str | None = None
    try:
        with bar:
            await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(todo))))))
    except (KeyboardInterrupt, asyncio.CancelledError):
        stopped = "interrupted"
        raise
    finally:
        for w in writers.values():
            w.close()
        if (out / FAILED).stat().st_size == 0:
            (out / FAILED).unlink()
        elapsed = time.monotonic() - started
        stopped = stopped or (stop[0] if stop else None)
        summary = {
            "stage": stage,
            "total": len(items),
            "already_done": len(items) - len(todo),
            "done": counts["done"],
            "failed": counts["failed"],
            "failures_by_cause": _by_cause(failures),
            "abandoned": counts["abandoned"] + (queue.qsize() if stop else 0),
            "deferred": counts["deferred"],
            "finished": stopped is None and not counts["deferred"],
            "stopped_reason": stopped,
            "wall_seconds": round(elapsed, 3),
            "items_per_second": round((counts["done"] + counts["failed"]) / elapsed, 3)
            if elapsed > 0 else 0.0,
            "backends": {c.spec: c.stats.to_dict() for c in clients},
            "requests": sum(c.stats.requests for c in clients),
            "cache_hits": sum(c.stats.cache_hits for c in clients),
            "tokens_in": sum(c.stats.prompt_tokens for c in clients),
            "tokens_out": sum(c.stats.completion_tokens for c in clients),
            "cost_usd": round(sum(c.stats.cost_usd for c in clients), 6),
            "config": config or {},
        }
        write_json(out / SUMMARY, summary)
    return StageResult(out, summary, failures)


def _reason(e: Exception) -> str:
    if isinstance(e, (CaiError, BackendError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _by_cause(failures: list[dict[str, Any]]) -> dict[str, int]:
    causes: dict[str, int] = {}
    for f in failures:
        causes[f["cause"]] = causes.get(f["cause"], 0) + 1
    return causes
