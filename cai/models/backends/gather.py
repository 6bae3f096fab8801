"""Gathering concurrent requests into batches, for backends that generate many at once.

Callers keep the one async `complete` call; requests that arrive while a batch runs wait and
go together in the next one, so a model on a GPU sees full batches without anyone tuning a
batch timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from cai.chat import Completion, Message, Sampling

Request = tuple[list[Message], Sampling]
RunBatch = Callable[[list[Request]], list[Completion]]


class Batcher:
    def __init__(self, run_batch: RunBatch, *, max_batch: int = 64, name: str = "cai-batch"):
        self.run_batch = run_batch  # runs in one worker thread: the model is not thread-safe
        self.max_batch = max_batch
        self._waiting: list[tuple[Request, asyncio.Future[Completion]]] = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._draining = False

    async def submit(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._waiting.append(((list(messages), sampling), future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                await asyncio.sleep(0)  # let callers scheduled in this tick join the batch
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    results = await loop.run_in_executor(self._worker, self.run_batch,
                                                         [request for request, _ in batch])
                except Exception as e:  # the whole batch failed: each caller hears why
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._draining = False

    def run_in_worker(self, fn: Callable[[], object]) -> object:
        """Run a function on the batch worker thread and wait for it (e.g. to load a model)."""
        return self._worker.submit(fn).result()

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
