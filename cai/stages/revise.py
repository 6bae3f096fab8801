"""Critique and revise: the supervised half of Constitutional AI.

For each prompt the policy answers; then, for each round, a principle is drawn from the
constitution, the critic critiques the latest answer under it and revises the answer. The
final revision becomes SFT data; (initial, final) becomes a preference pair.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import Completion, Message, Sampling, assistant, messages_to_dicts, step_seed
from cai.constitution import Constitution, Example, Principle
from cai.errors import CaiError
from cai.inputs import PromptItem, prompt_id
from cai.models.client import Client
from cai.stages.stage import StageResult, run_stage
from cai.templates import Templates

if TYPE_CHECKING:
    from cai.models.session import Session

TEMPLATES = ("system", "critique", "revision")
FILES = ("trace.jsonl", "prefs.jsonl", "sft.jsonl")  # sft.jsonl last: it commits the prompt


def choose_principles(constitution: Constitution, seed: int, item_id: str, rounds: int,
                      fixed: str | None = None) -> list[Principle]:
    """The principle for each round: seeded per prompt, weights respected."""
    if fixed:
        return [constitution.principle(fixed)] * rounds
    rng = random.Random(f"{seed}:{item_id}")
    return [constitution.sample(rng) for _ in range(rounds)]


def initial_messages(templates: Templates, constitution: Constitution,
                     conversation: tuple[Message, ...]) -> list[Message]:
    """What the policy sees for its first answer: the system prompt, then the conversation."""
    if conversation and conversation[0].role == "system":
        return list(conversation)
    system = templates.render("system", system_prompt=constitution.system_prompt)
    return [Message("system", system), *conversation]


def critique_messages(templates: Templates, constitution: Constitution,
                      conversation: tuple[Message, ...], response: str,
                      principle: Principle) -> list[Message]:
    """What the critic sees to critique `response`: few-shot examples, then the request."""
    shots: list[Message] = []
    for ex in constitution.examples:
        shots += [
            Message("user", templates.render("critique", conversation=_ex_turns(ex),
                                             response=ex.response,
                                             principle=_ex_principle(constitution, ex, principle))),
            Message("assistant", ex.critique),
        ]
    request = templates.render("critique", conversation=_user_turns(conversation),
                               response=response, principle=principle)
    return [*shots, Message("user", request)]


def revision_messages(templates: Templates, constitution: Constitution,
                      conversation: tuple[Message, ...], response: str, critique: str,
                      principle: Principle) -> list[Message]:
    """What the critic sees to revise `response` in the light of `critique`."""
    shots: list[Message] = []
    for ex in constitution.examples:
        shots += [
            Message("user", templates.render("revision", conversation=_ex_turns(ex),
                                             response=ex.response, critique=ex.critique,
                                             principle=_ex_principle(constitution, ex, principle))),
            Message("assistant", ex.revision),
        ]
    request = templates.render("revision", conversation=_user_turns(conversation),
                               response=response, critique=critique, principle=principle)
    return [*shots, Message("user", request)]


def _user_turns(conversation: tuple[Message, ...]) -> list[Message]:
    return [m for m in conversation if m.role != "system"]


def _ex_turns(ex: Example) -> list[Message]:
    return [Message("user", ex.prompt)]


def _ex_principle(constitution: Constitution, ex: Example, current: Principle) -> Principle:
    return constitution.principle(ex.principle) if ex.principle else current


@dataclass(frozen=True)
class Reviser:
    """Everything one critique-and-revise run needs, shared by all its prompts."""

    constitution: Constitution
    policy: Client
    critic: Client
    templates: Templates
    rounds: int = 2
    seed: int = 0
    principle: str | None = None  # fix every round to this principle id

    def provenance(self) -> dict[str, Any]:
        return {
            "constitution": self.constitution.provenance,
            "model": self.policy.spec,
            "critic_model": self.critic.spec,
            "model_identity": self.policy.identity,
            "critic_identity": self.critic.identity,
            "seed": self.seed,
        }

    async def _call(self, client: Client, messages: list[Message], item: PromptItem, step: str,
                    steps: list[dict[str, Any]], **fields: Any) -> Completion:
        sampling: Sampling = client.sampling(seed=step_seed(self.seed, item.id, step))
        completion = await client.complete(messages, sampling)
        steps.append({
            "step": step.split(":")[0], **fields, "text": completion.text,
            "model": client.spec, "model_name": completion.model,
            "finish_reason": completion.finish_reason, "sampling": client.sent(sampling),
            "usage": {"prompt_tokens": completion.usage.prompt_tokens,
                      "completion_tokens": completion.usage.completion_tokens},
        })
        if not completion.text.strip():
            raise CaiError(f"the {step.split(':')[0]} came back empty")
        return completion

    async def run_one(self, item: PromptItem) -> dict[str, list[dict[str, Any]]]:
        """Critique and revise one prompt; return its records for each output file."""
        steps: list[dict[str, Any]] = []
        c = self.constitution
        first = await self._call(self.policy, initial_messages(self.templates, c, item.messages),
                                 item, "initial", steps, round=0)
        answer = first.text
        principles = choose_principles(c, self.seed, item.id, self.rounds, self.principle)
        for n, principle in enumerate(principles, start=1):
            critique = await self._call(
                self.critic,
                critique_messages(self.templates, c, item.messages, answer, principle),
                item, f"critique:{n}", steps, round=n, principle=principle.id)
            revision = await self._call(
                self.critic,
                revision_messages(self.templates, c, item.messages, answer, critique.text,
                                  principle),
                item, f"revision:{n}", steps, round=n, principle=principle.id)
            answer = revision.text
        return self.records(item, first.text, answer, [p.id for p in principles], steps)

    def records(self, item: PromptItem, initial: str, final: str, principle_ids: list[str],
                steps: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        prompt = messages_to_dicts(list(item.messages))
        provenance = {**self.provenance(), "principles": principle_ids, "rounds": self.rounds,
                      "sampling": steps[-1]["sampling"]}
        sft = {"id": item.id, "prompt": prompt, "completion": assistant(final), **provenance}
        prefs = []
        if final.strip() != initial.strip():  # an unchanged answer is no preference
            prefs.append({"id": item.id, "prompt": prompt, "chosen": assistant(final),
                          "rejected": assistant(initial), **provenance})
        trace = {"id": item.id, "prompt": prompt, "steps": steps, **provenance,
                 "templates": self.templates.hashes(*TEMPLATES)}
        return {"trace.jsonl": [trace], "prefs.jsonl": prefs, "sft.jsonl": [sft]}


async def revise(items: list[PromptItem], reviser: Reviser, out: Path, *, concurrency: int = 8,
                 progress: bool | None = None, session: Session | None = None) -> StageResult:
    """Run critique-and-revise over prompts into `out`, skipping those already done there."""
    config = {**reviser.provenance(), "rounds": reviser.rounds, "principle": reviser.principle,
              "templates": reviser.templates.hashes(*TEMPLATES),
              "policy_sampling": reviser.policy.sent(reviser.policy.sampling()),
              "critic_sampling": reviser.critic.sent(reviser.critic.sampling())}
    return await run_stage(
        "revise", items, reviser.run_one, out=out, files=FILES,
        clients=[reviser.policy, reviser.critic], concurrency=concurrency, config=config,
        describe=lambda item: {"prompt": messages_to_dicts(list(item.messages))},
        progress=progress, session=session,
    )


async def try_prompt(prompt: str, constitutions: Sequence[Constitution], policy: Client,
                     critic: Client, templates: Templates, *, rounds: int = 1, seed: int = 0,
                     principle: str | None = None) -> list[list[dict[str, Any]]]:
    """Critique and revise one prompt under each constitution, on the same seed; return each
    run's steps (initial answer, then each critique and revision), for `cai try`."""
    conversation = (Message("user", prompt),)
    item = PromptItem(prompt_id(conversation), conversation, 0)
    traces = []
    for c in constitutions:
        if principle:
            c.principle(principle)  # an unknown id is an error naming the known ones
        reviser = Reviser(c, policy, critic, templates, rounds=rounds, seed=seed,
                          principle=principle)
        traces.append((await reviser.run_one(item))["trace.jsonl"][0]["steps"])
    return traces
