"""The run's memory: `history.jsonl` (every stage's start and end, each gate, how the run
ended), appended and synced line by line, and the lock that keeps one loop per run folder."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.records.read import read_jsonl
from cai.redact import redact_all

LOCK = "loop.lock"
ENDED = ("done", "stopped", "incomplete")  # the events that end a stage's run, with figures
LEDGER_FILE = "spend.jsonl"  # one line per model response a child got (see models/budget.py)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class History:
    """`history.jsonl`: every stage's start and end, each gate, and how the run ended."""

    def __init__(self, path: Path):
        self.path = path
        self.events = list(read_jsonl(path)) if path.exists() else []

    def add(self, **event: Any) -> dict[str, Any]:
        event = {"time": now(), **redact_all(event)}  # commands and child errors may hold URLs
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.events.append(event)
        return event

    def done(self, key: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events)
                     if e.get("event") == "done" and e.get("key") == key), None)

    def seconds(self, name: str, before: int) -> float | None:
        """How long the stage of this name took in the latest iteration before `before`."""
        found = [e for e in self.events if e.get("event") == "done" and e.get("stage") == name
                 and e.get("iteration", 0) < before]
        return found[-1]["seconds"] if found else None

    def spent(self) -> dict[str, float]:
        """What the run spent: by its ledger (every child's responses, killed attempts
        included); cache hits by the stages' summaries."""
        return spending(self.path.parent, self.events)["total"]


def spending(folder: Path, events: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Cost, tokens and requests per stage key and in "total", from the run's ledger."""
    from cai.models.budget import read_ledger

    by_stage = {}
    for key, s in read_ledger(folder / LEDGER_FILE).items():
        by_stage[key] = {"cost_usd": s["cost_usd"], "tokens": s["tokens_in"] + s["tokens_out"],
                         "requests": s["requests"]}
    by_stage["total"]["cache_hits"] = sum(e.get("cache_hits") or 0 for e in events
                                          if e.get("event") in ENDED)
    return by_stage


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One loop per run folder: a second is refused while the first holds the lock."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CaiError(f"{folder} is in use by another `cai loop` (see `cai loop status "
                           f"{folder}`); wait for it, or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        yield
