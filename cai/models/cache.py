"""The response cache: identical requests are answered from disk and cost nothing.

SQLite in WAL mode, keyed by a hash of the model's identity (its spec, plus the fingerprint of
its weights or the servers it is deployed on: see identity.py), messages and sampling (seed
included). It lives in the user's cache folder (XDG_CACHE_HOME is honoured) unless a path is
given. Provider batch results are written here too, which is how a rerun of a stage picks
them up. API keys are never part of a key or a value.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage
from cai.paths import cache_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    completion TEXT,          -- JSON of a Completion, or NULL for a recorded error
    error TEXT,               -- a provider's non-retryable error, e.g. from a batch
    created REAL DEFAULT (julianday('now'))
)
"""


LOCK_WAIT = 30.0  # seconds a process waits for another that holds the cache


def default_path() -> Path:
    return cache_dir() / "responses.sqlite"


def request_key(identity: str, messages: Sequence[Message], sampling: Sampling) -> str:
    """The cache key of a request: what would make a model answer differently. `identity`
    names the model's weights or deployment (`Backend.identity`), not only its spec."""
    blob = json.dumps({"spec": identity, "messages": [m.to_dict() for m in messages],
                       "sampling": sampling.to_dict()}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def completion_to_json(c: Completion) -> str:
    return json.dumps(asdict(c), ensure_ascii=False)


def completion_from_json(text: str) -> Completion:
    d = json.loads(text)
    logprobs = None
    if d.get("logprobs") is not None:
        logprobs = tuple(TokenLogprob(t["token"], t["logprob"], t.get("top") or {})
                         for t in d["logprobs"])
    return Completion(d["text"], d["finish_reason"], Usage(**d["usage"]), d["model"], logprobs)


class ResponseCache:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection used from the event loop's thread only; autocommit, WAL so that
        # several runs can share the cache and a kill never corrupts it.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=LOCK_WAIT)
        # Processes opening a new cache at once (the ranks of a launch, two commands) race to
        # switch it to WAL, and SQLite answers the loser "locked" at once, without waiting
        # out the timeout: wait here instead.
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(SCHEMA)
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def get(self, key: str) -> Completion | str | None:
        """The cached completion, a recorded error message, or None."""
        row = self._db.execute("SELECT completion, error FROM responses WHERE key = ?",
                               (key,)).fetchone()
        if row is None:
            return None
        completion, error = row
        return completion_from_json(completion) if completion is not None else error

    def put(self, key: str, spec: str, completion: Completion) -> None:
        self._db.execute("INSERT OR REPLACE INTO responses (key, spec, completion, error) "
                         "VALUES (?, ?, ?, NULL)", (key, spec, completion_to_json(completion)))

    def put_error(self, key: str, spec: str, error: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO responses (key, spec, completion, error) "
                         "VALUES (?, ?, NULL, ?)", (key, spec, error))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
