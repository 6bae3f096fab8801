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
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from cai.errors import BackendError, CaiError
from cai.folders import SETTINGS, read_settings
from cai.models.budget import BudgetExhausted
from cai.models.client import Client, Deferred
from cai.records.append import JsonlWriter
from cai.records.read import done_ids
from cai.records.rewrite import keep_ids, write_json

if TYPE_CHECKING:
    from cai.models.session import Session

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
    report: dict[str, Any] | None = None  # a stage's own report, e.g. a judge's calibration

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
    summarize: Callable[[Path], dict[str, Any]] | None = None,
    session: Session | None = None,
    summary_file: str = SUMMARY,
) -> StageResult:
    """Run `work` on every item not already done in `out`; return the summary.

    `summarize` adds a stage's own figures to summary.json, read from its finished outputs.
    With a `session`, a dry run writes to a scratch folder beside `out` (removed after) and
    batch mode submits what it queued when the stage ends.
    """
    target = session.target(out) if session is not None else out
    # The same client may serve two roles: count it once.
    run = _Run(stage, target, files, list(dict.fromkeys(clients)), describe, progress)
    check_settings(target, stage, config or {})
    todo = run.resume(items)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    stopped: str | None = None
    try:
        with run.bar(len(todo)):
            workers = max(1, min(concurrency, len(todo)))
            await asyncio.gather(*(run.worker(queue, work) for _ in range(workers)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        stopped = "interrupted"
        raise
    finally:
        run.close()
        summary = run.summary(len(items), len(todo), stopped, queue.qsize(), config or {})
        if summarize is not None and stopped is None:
            summary.update(summarize(target))
        write_json(target / summary_file, summary)
    if session is not None:
        await session.end_stage(out, summary)
    return StageResult(out, summary, run.failures)


class _Run:
    """One run of a stage: its writers, counts, progress bar and failures."""

    def __init__(self, stage: str, out: Path, files: Sequence[str], clients: list[Client],
                 describe: Callable[[Any], dict[str, Any]], progress: bool | None):
        self.stage, self.out, self.files, self.clients = stage, out, files, clients
        # A command's stages share its clients: each summary counts its own stage's share.
        self.before = {id(c): c.stats.copy() for c in clients}
        self.describe = describe
        self.show = sys.stderr.isatty() if progress is None else progress
        self.counts = {"done": 0, "failed": 0, "abandoned": 0, "deferred": 0}
        self.stop: list[str] = []
        self.failures: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.writers: dict[str, JsonlWriter] = {}

    def resume(self, items: Sequence[Item]) -> list[Item]:
        """The items still to do; lines of uncommitted items are dropped from the other files."""
        self.out.mkdir(parents=True, exist_ok=True)
        already = done_ids(self.out / self.files[-1])
        for name in self.files[:-1]:
            keep_ids(self.out / name, already)
        (self.out / FAILED).unlink(missing_ok=True)  # failures of earlier runs are tried again
        self.writers = {name: JsonlWriter(self.out / name) for name in (*self.files, FAILED)}
        return [item for item in items if item.id not in already]

    def bar(self, total: int) -> Progress:
        self._bar = Progress(
            TextColumn(f"[bold]{self.stage}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]} items/s  tokens {task.fields[tokens]}  "
                       "failed {task.fields[failed]}"),
            disable=not self.show, transient=False)
        self._task = self._bar.add_task(self.stage, total=total, rate="0.0", tokens=0, failed=0)
        return self._bar

    async def worker(self, queue: asyncio.Queue[Any],
                     work: Callable[[Any], Awaitable[Records]]) -> None:
        while not self.stop:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                records = await work(item)
            except asyncio.CancelledError:
                raise
            except BudgetExhausted as e:
                self.stop.append(str(e))
                self.counts["abandoned"] += 1
                continue
            except Deferred:
                self.counts["deferred"] += 1
                continue
            except Exception as e:  # one item's failure must not stop the run
                self.fail(item, e)
            else:
                for name in self.files:
                    for record in records.get(name, ()):
                        self.writers[name].write(record)
                self.counts["done"] += 1
            self.advance()

    def fail(self, item: Item, e: Exception) -> None:
        failure = {"id": item.id, **self.describe(item), "error": _reason(e),
                   "cause": getattr(e, "cause", type(e).__name__)}
        self.writers[FAILED].write(failure)
        self.failures.append(failure)
        self.counts["failed"] += 1

    def advance(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        finished = self.counts["done"] + self.counts["failed"]
        self._bar.update(self._task, advance=1, failed=self.counts["failed"],
                         rate=f"{finished / elapsed:.2f}",
                         tokens=sum(c.stats.prompt_tokens + c.stats.completion_tokens
                                    for c in self.clients))

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        failed = self.out / FAILED
        if failed.exists() and failed.stat().st_size == 0:
            failed.unlink()

    def summary(self, total: int, todo: int, stopped: str | None, queued: int,
                config: dict[str, Any]) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        stopped = stopped or (self.stop[0] if self.stop else None)
        c = self.counts
        stats = {cl.spec: cl.stats.since(self.before.get(id(cl))) for cl in self.clients}
        return {
            "stage": self.stage, "total": total, "already_done": total - todo,
            "done": c["done"], "failed": c["failed"],
            "failures_by_cause": _by_cause(self.failures),
            "abandoned": c["abandoned"] + (queued if self.stop else 0),
            "deferred": c["deferred"],
            "finished": stopped is None and not c["deferred"],
            "stopped_reason": stopped,
            "wall_seconds": round(elapsed, 3),
            "items_per_second": round((c["done"] + c["failed"]) / elapsed, 3)
            if elapsed > 0 else 0.0,
            "backends": {spec: st.to_dict() for spec, st in stats.items()},
            "requests": sum(st.requests for st in stats.values()),
            "cache_hits": sum(st.cache_hits for st in stats.values()),
            "tokens_in": sum(st.prompt_tokens for st in stats.values()),
            "tokens_out": sum(st.completion_tokens for st in stats.values()),
            "cost_usd": round(sum(st.cost_usd for st in stats.values()), 6),
            "config": config,
        }


def check_settings(out: Path, stage: str, config: dict[str, Any]) -> None:
    """`out` remembers the settings that shaped its data (`settings.json`); a rerun with other
    settings would mix two datasets in one file, so it is refused before anything is written.
    Settings that do not shape the data (concurrency, rate limits, budgets, --limit,
    retries) are not part of `config` and may change freely."""
    path = out / SETTINGS
    known = read_settings(out)
    wanted = json.loads(json.dumps(config))  # as it reads back from JSON
    if stage in known:
        changed = _differences(known[stage], wanted)
        if changed:
            raise CaiError(f"{out} was made with other settings ({'; '.join(changed[:3])}"
                           f"{'; ...' if len(changed) > 3 else ''}); use another --out, "
                           "--overwrite to start again, or put the settings back to resume")
        return
    write_json(path, {**known, stage: wanted})  # one entry per stage that wrote here


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    """`key: old -> new` for each setting that differs, by its dotted path."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _differences(old.get(k), new.get(k), f"{where}.{k}" if where else k)]
    if old == new:
        return []
    return [f"{where or 'settings'}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _reason(e: Exception) -> str:
    if isinstance(e, (CaiError, BackendError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _by_cause(failures: list[dict[str, Any]]) -> dict[str, int]:
    causes: dict[str, int] = {}
    for f in failures:
        causes[f["cause"]] = causes.get(f["cause"], 0) + 1
    return causes
