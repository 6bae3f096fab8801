"""Sampling: K responses per prompt from a policy, the raw material for the judge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import Message, messages_to_dicts, step_seed
from cai.inputs import PromptItem
from cai.models.client import Client
from cai.stages.stage import StageResult, run_stage
from cai.templates import Templates

if TYPE_CHECKING:
    from cai.models.session import Session

FILES = ("responses.jsonl",)


def policy_messages(templates: Templates, conversation: tuple[Message, ...]) -> list[Message]:
    """The conversation, after the shipped system prompt unless it brings its own."""
    if conversation and conversation[0].role == "system":
        return list(conversation)
    return [Message("system", templates.render("system", system_prompt=None)), *conversation]


async def sample_one(client: Client, templates: Templates, item: PromptItem, n: int,
                     seed: int, temperature: float | None) -> dict[str, list[dict[str, Any]]]:
    messages = policy_messages(templates, item.messages)
    changes = {} if temperature is None else {"temperature": temperature}
    samplings = [client.sampling(seed=step_seed(seed, item.id, f"sample:{k}"), **changes)
                 for k in range(n)]
    # All K at once: a batch pass queues them together, and a server sees them in parallel.
    completions = await asyncio.gather(*(client.complete(messages, s) for s in samplings))
    record = {"id": item.id, "prompt": messages_to_dicts(list(item.messages)),
              "responses": [c.text for c in completions], "model": client.spec,
              "model_identity": client.identity,
              "model_names": sorted({c.model for c in completions}),
              "sampling": {**client.sent(samplings[0]), "seed": None},
              "seeds": [s.seed for s in samplings],
              "finish_reasons": [c.finish_reason for c in completions],
              "templates": templates.hashes("system")}
    return {"responses.jsonl": [record]}


async def sample(items: list[PromptItem], client: Client, templates: Templates, out: Path, *,
                 n: int = 2, seed: int = 0, temperature: float | None = None,
                 concurrency: int = 8, progress: bool | None = None,
                 session: Session | None = None) -> StageResult:
    """K responses for each prompt into `out/responses.jsonl`, skipping prompts done there."""

    async def work(item: PromptItem) -> dict[str, list[dict[str, Any]]]:
        return await sample_one(client, templates, item, n, seed, temperature)

    config = {"model": client.spec, "model_identity": client.identity, "n": n, "seed": seed,
              "templates": templates.hashes("system"),
              "sampling": client.sent(client.sampling(
                  **({"temperature": temperature} if temperature is not None else {})))}
    return await run_stage("sample", items, work, out=out, files=FILES, clients=[client],
                           concurrency=concurrency, config=config, progress=progress,
                           session=session)
