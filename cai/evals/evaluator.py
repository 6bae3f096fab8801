"""A model as evaluator, for `cai eval policy`: it reads one reply (did it decline? did it
correct a false premise?) or compares a reply with a reference, in both orders.

It goes through the same Client as generation (cache, budget, retries), with its own
templates (`eval_refusal`, `eval_premise`, `eval_pairwise`), never the training judge's. Where
the backend can, the answer is constrained to the options' letters, as for the judge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cai.chat import Message
from cai.errors import BackendError
from cai.models.client import Client
from cai.stages.judge import Judge, JudgeSettings, fenced, make_fence
from cai.templates import Templates

REFUSAL = {"A": "none", "B": "partial", "C": "full"}
PREMISE = {"A": True, "B": False}  # True: the reply corrected the premise
PAIRWISE = "eval_pairwise"


@dataclass(frozen=True)
class Reading:
    """The evaluator's answer for one reply: the option's label, its probability where the
    backend gave logprobs, and the raw text."""

    label: str | bool | None
    p: float | None
    raw: str


class Evaluator:
    def __init__(self, client: Client, templates: Templates, seed: int = 0):
        self.client = client
        self.templates = templates
        self.seed = seed
        self.pairwise = Judge(client, templates, None,
                              JudgeSettings(seed=seed, template=PAIRWISE))

    def template_hashes(self) -> dict[str, str]:
        return self.templates.hashes(PAIRWISE, "eval_refusal", "eval_premise", "_judge_data")

    async def refusal(self, conversation: Sequence[Message], reply: str, key: str) -> Reading:
        return await self._read("eval_refusal", REFUSAL, conversation, reply, key)

    async def premise(self, conversation: Sequence[Message], reply: str, key: str) -> Reading:
        return await self._read("eval_premise", PREMISE, conversation, reply, key)

    async def _read(self, template: str, options: Mapping[str, str | bool],
                    conversation: Sequence[Message], reply: str, key: str) -> Reading:
        fence = make_fence(f"{self.seed}:{template}:{key}")
        text = self.templates.render(
            template, fence=fence, reply=fenced(reply, fence),
            conversation=[Message(m.role, fenced(m.content, fence)) for m in conversation
                          if m.role != "system"])
        letters = tuple(options)
        constrained = self.client.constrains_choices
        sampling = self.client.sampling(
            temperature=0.0, seed=self.seed, repeat_penalty=None,
            max_tokens=1 if constrained else 16,
            top_logprobs=self.client.max_top_logprobs if self.client.supports_logprobs else 0,
            **({"choices": letters} if constrained else {}))
        try:
            completion = await self.client.complete([Message("user", text)], sampling)
        except BackendError as e:
            if e.retryable:
                raise  # the item fails and a rerun tries again
            return Reading(None, None, str(e))
        letter, p = None, None
        if completion.logprobs:
            first = completion.logprobs[0]
            mass = {o: 0.0 for o in letters}
            for token, lp in {**first.top, first.token: first.logprob}.items():
                if (o := _letter(token, letters)) is not None:
                    mass[o] += math.exp(lp)
            if sum(mass.values()) > 0:
                letter = max(mass, key=mass.__getitem__)
                p = mass[letter] / sum(mass.values())
        if letter is None:
            letter = _letter(completion.text, letters)
        return Reading(options[letter] if letter else None, p, completion.text)


def _letter(text: str, letters: Sequence[str]) -> str | None:
    """The option a token or a short reply names: "B", " (C", "Answer: A"."""
    core = text.strip().removeprefix("Answer:").strip()
    if len(core) > 4:
        return None
    found = core.strip("()[]*.:\"' ")
    return found if found in letters else None  # case matters: "a" is an article
