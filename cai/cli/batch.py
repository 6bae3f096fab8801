"""Commands that follow and collect provider batches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.markup import escape

from cai.cli.options import (
    console,
    err,
)

# ---------------------------------------------------------------- provider batches


@click.group("batch")
def batch_group() -> None:
    """Provider batch APIs (half price): follow and collect the batches of a --batch run.

    A stage run with --batch queues its cache misses as batches. When they are done,
    `cai batch collect` writes the results into the response cache, and rerunning the same
    stage command with --batch goes on from there, until nothing is left deferred.
    """


BASE_URL = click.option("--base-url", "base_urls", multiple=True, help="The server's URL, "
                        "where it holds credentials (cai records it with them hidden).")


@batch_group.command("status")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The output folder of the stage that was run with --batch.")
@BASE_URL
def batch_status(out: str, base_urls: tuple[str, ...]) -> None:
    """Show each batch's state, refreshed from its provider."""
    from cai.models.provider_batch import status

    for b in asyncio.run(status(Path(out), base_urls)):  # one line each, ids whole for copying
        counts = ", ".join(f"{k} {v}" for k, v in (b.get("counts") or {}).items() if v)
        collected = f"collected {b['collected_at']}" if b["collected"] else "not collected"
        console.print(f"{b['id']}  {b['model']}  {b['requests']} requests  {b['status']} "
                      f"({counts})  submitted {b['submitted']}  {collected}",
                      highlight=False, markup=False, soft_wrap=True)


@batch_group.command("collect")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The output folder of the stage that was run with --batch.")
@click.option("--cache", "cache_path", default=None, type=click.Path(dir_okay=False),
              help="Response cache to write into [default: the one the stage ran with].")
@BASE_URL
def batch_collect(out: str, cache_path: str | None, base_urls: tuple[str, ...]) -> None:
    """Download finished batches' results into the response cache."""
    from cai.models.cache import ResponseCache
    from cai.models.provider_batch import collect

    cache = ResponseCache(cache_path) if cache_path else None
    try:
        t = asyncio.run(collect(Path(out), cache, base_urls))
    finally:
        if cache is not None:
            cache.close()
    console.print(
        f"collected {t['collected']} batch(es), {t['running']} still running: "
        f"{t['succeeded']} succeeded, {t['errored']} errored (kept with their reason), "
        f"{t['requeued']} to be queued again; {t['tokens_in']} tokens in, {t['tokens_out']} "
        f"out, ${t['cost_usd']:.4f} at batch prices", highlight=False)
    for problem in t["problems"]:
        err.print(f"[yellow]batch failed[/] {escape(problem)}", soft_wrap=True)
    if t["collected"]:
        console.print("next: rerun the stage command with --batch; it takes these results "
                      "from the cache and queues what is left", highlight=False)
