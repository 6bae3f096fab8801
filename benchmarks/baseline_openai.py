"""The plain baseline: the openai SDK's AsyncOpenAI under one asyncio semaphore.

This is how the published CAI recipes fan out requests: one semaphore, `asyncio.gather` over
every prompt, one short user message each, the answers written to a JSONL file at the end.

    python benchmarks/baseline_openai.py --base-url URL --prompts FILE --out FILE --concurrency 64

It prints one JSON line: requests sent, answers kept, and the seconds spent inside the process
(the benchmark also times the whole process, start-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI


async def fan_out(base_url: str, prompts: list[dict[str, Any]], concurrency: int,
                  model: str, max_tokens: int) -> list[dict[str, Any]]:
    """Every prompt through one chat completion, at most `concurrency` in flight."""
    client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(p: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            r = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": p["prompt"]}],
                temperature=0.7, max_tokens=max_tokens)
        return {"id": p["id"], "prompt": p["prompt"], "response": r.choices[0].message.content,
                "finish_reason": r.choices[0].finish_reason}

    try:
        return await asyncio.gather(*(one(p) for p in prompts))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--prompts", required=True, help="JSONL with id and prompt per line")
    parser.add_argument("--out", required=True, help="JSONL file for the answers")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--model", default="bench")
    parser.add_argument("--max-tokens", type=int, default=256)
    a = parser.parse_args()
    lines = Path(a.prompts).read_text(encoding="utf-8").splitlines()
    prompts = [json.loads(line) for line in lines if line.strip()]
    started = time.perf_counter()
    results = asyncio.run(fan_out(a.base_url, prompts, a.concurrency, a.model, a.max_tokens))
    with open(a.out, "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    seconds = time.perf_counter() - started
    print(json.dumps({"requests": len(prompts), "written": len(results),
                      "in_process_seconds": round(seconds, 3)}))


if __name__ == "__main__":
    main()
