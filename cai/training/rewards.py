"""The AI judge as GRPO's reward (online RLAIF), with guards against hacking it.

TRL's GRPOTrainer takes reward functions and ships no judge; cai's judge brings principles,
both orders, soft labels, the response cache, retries, rate limits and budgets, all through
one `Client`. The reward is our own code because no library joins the two.

Three modes:

- `pairwise`: each completion against the others of its group, in both orders, under a
  principle drawn per comparison; its reward is its mean soft win probability. This fits
  GRPO's advantage, which only compares completions within a group.
- `reference`: each completion against a reference answer (a field of the prompt file, or
  the starting policy's answer); its reward is its soft win probability.
- `score`: a pointwise score from 1 to 10 (the direct-RLAIF recipe), the expected value over
  the score tokens' probabilities, or the number in the reply as a fallback; scaled to 0-1.

Each call logs the guards: the judge's position-flip rate, the correlation of reward with
length, an optional length penalty, and the evaluation detectors on a sample.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.chat import Message, messages_from_dicts, reply_text
from cai.errors import CaiError
from cai.evals.detectors import detect
from cai.inputs import prompt_id
from cai.models.budget import BudgetExhausted
from cai.records.append import append_shared
from cai.stages.judge import Judge, fenced, make_fence
from cai.stages.panel import Panel, as_panel

MODES = ("pairwise", "reference", "score")
SCORES = tuple(str(n) for n in range(1, 11))
DETECT_SAMPLE = 8  # completions per call read by the detectors
_NUMBER = re.compile(r"\b(10|[1-9])\b")


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The correlation of two series; 0 where either does not vary."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / (sx * sy)


def expected_score(completion: Any, fallback: bool) -> float | None:
    """The expected score over the first token's probabilities of "1" to "10", or the first
    number in the text. Where a tokenizer splits "10" into "1" and "0", the first token cannot
    tell 1 from 10: such judges are better asked through the text fallback or pairwise."""
    logprobs = getattr(completion, "logprobs", None) or []
    if logprobs:
        top = {t.strip(): math.exp(lp) for t, lp in logprobs[0].top.items()}
        mass = {s: top[s] for s in SCORES if s in top}
        total = sum(mass.values())
        if total > 0:
            return sum(int(s) * p for s, p in mass.items()) / total
    if fallback:
        found = _NUMBER.search(completion.text)
        return float(found.group(1)) if found else None
    return None


@dataclass
class JudgeReward:
    """GRPO's reward function: async, over cai's `Client`.

    TRL runs async reward functions on an event loop of its own, in a thread of its own: the
    one place where cai code runs under a loop that the CLI did not start. The client's
    asyncio objects are made on first use, so they belong to that loop."""

    judge: Judge | Panel  # a panel's reward is the (weighted) mean of its judges'
    mode: str = "pairwise"
    num_generations: int = 2
    length_penalty: float = 0.0  # subtracted per completion token, over max_completion_length
    max_completion_length: int = 256
    text_fallback: bool = True
    references: dict[str, str] = field(default_factory=dict)  # prompt key -> reference answer
    steps: list[dict[str, float]] = field(default_factory=list)
    log: str | Path | None = None  # each completion and its reward appended (completions.jsonl)
    stopped_reason: str | None = None  # the budget or deadline that ended the judging

    async def __call__(self, prompts: list[Any], completions: list[Any],
                       completion_ids: list[list[int]] | None = None,
                       log_metric: Any = None, trainer_state: Any = None,
                       **columns: Any) -> list[float]:
        texts = [reply_text(c) for c in completions]
        try:
            if self.mode == "pairwise":
                raw, flips = await self._pairwise(prompts, texts)
            elif self.mode == "reference":
                raw, flips = await self._reference(prompts, texts)
            else:
                raw, flips = await self._score(prompts, texts), []
        except BudgetExhausted as e:
            # The budget or the deadline is reached: equal rewards give every completion an
            # advantage of 0, so this step learns nothing, and training stops as it ends
            # (see stopping.py) with a checkpoint to resume from.
            self.stopped_reason = str(e)
            return [0.0] * len(texts)
        lengths = [len(ids) for ids in completion_ids] if completion_ids else [
            len(t.split()) for t in texts]
        rewards = [r - self.length_penalty * n / self.max_completion_length
                   for r, n in zip(raw, lengths, strict=True)]
        guards = self._guards(texts, rewards, lengths, flips)
        if log_metric is not None:
            for name, value in guards.items():
                log_metric(f"judge/{name}", value)
        self.steps.append(guards)
        if self.log is not None:  # every process of a launch appends its own completions
            step = trainer_state.global_step + 1 if trainer_state is not None else None
            ids = columns.get("id") or [None] * len(texts)
            process = int(os.environ.get("RANK", "0"))  # set by accelerate and torchrun
            append_shared(self.log, [{"step": step, "process": process, "id": ids[n],
                                      "prompt": prompts[n], "completion": text,
                                      "reward": rewards[n], "judge_reward": raw[n],
                                      "length": lengths[n]} for n, text in enumerate(texts)])
        return rewards

    async def _pairwise(self, prompts: list[Any], texts: list[str]) -> tuple[list[float],
                                                                             list[bool]]:
        import asyncio

        g = self.num_generations
        wins = [0.0] * len(texts)
        flips: list[bool] = []
        for start in range(0, len(texts), g):
            conversation = _conversation(prompts[start])
            _one_prompt(prompts, start, g)
            pairs = [(i, j) for i in range(start, start + g) for j in range(i + 1, start + g)]
            results = await asyncio.gather(*(self.judge.compare(
                conversation, texts[i], texts[j], _key(conversation, texts[i], texts[j]))
                for i, j in pairs))
            for (i, j), comparison in zip(pairs, results, strict=True):
                p = 0.5 if comparison.p_x is None else comparison.p_x
                wins[i] += p / (g - 1)
                wins[j] += (1 - p) / (g - 1)
                flips += [not j.agree for j in comparison.judgements if j.agree is not None]
        return wins, flips

    async def _reference(self, prompts: list[Any], texts: list[str]) -> tuple[list[float],
                                                                              list[bool]]:
        import asyncio

        conversations = [_conversation(p) for p in prompts]
        refs = [self.references[_prompt_key(c)] for c in conversations]
        results = await asyncio.gather(*(self.judge.compare(c, t, r, _key(c, t, r))
                                         for c, t, r in zip(conversations, texts, refs,
                                                            strict=True)))
        flips = [not j.agree for c in results for j in c.judgements if j.agree is not None]
        return [0.5 if c.p_x is None else c.p_x for c in results], flips

    @property
    def clients(self) -> list[Any]:
        return as_panel(self.judge).clients

    async def _score(self, prompts: list[Any], texts: list[str]) -> list[float]:
        import asyncio

        panel = as_panel(self.judge)

        async def scored(judge: Judge, prompt: Any, text: str) -> float | None:
            conversation = _conversation(prompt)
            key = _key(conversation, text, "")
            [principle] = judge.principles_for(key)[:1] or [None]
            fence = make_fence(f"{judge.settings.seed}:{key}")
            question = principle.judge if principle and principle.judge else \
                judge.templates.render("judge_question")
            message = judge.templates.render(
                "judge_score", conversation=[Message(m.role, fenced(m.content, fence))
                                             for m in conversation if m.role != "system"],
                response=fenced(text, fence), question=question, fence=fence)
            client = judge.client
            sampling = client.sampling(temperature=0.0, seed=judge.settings.seed,
                                       repeat_penalty=None, max_tokens=4,
                                       top_logprobs=client.max_top_logprobs
                                       if client.supports_logprobs else 0)
            completion = await client.complete([Message("user", message)], sampling)
            score = expected_score(completion, self.text_fallback)
            return None if score is None else (score - 1) / 9

        async def one(prompt: Any, text: str) -> float:
            # Each judge of a panel scores; the mean (weighted) of those that gave a score.
            scores = await asyncio.gather(*(scored(j, prompt, text) for j in panel.judges))
            given = [(w, s) for w, s in zip(panel.weights, scores, strict=True)
                     if s is not None]
            total = sum(w for w, _ in given)
            return sum(w * s for w, s in given) / total if given and total > 0 else 0.5

        return list(await asyncio.gather(*(one(p, t) for p, t in zip(prompts, texts,
                                                                      strict=True))))

    def _guards(self, texts: list[str], rewards: list[float], lengths: list[int],
                flips: list[bool]) -> dict[str, float]:
        sample = [detect(t) for t in texts[:DETECT_SAMPLE]]
        n = max(1, len(sample))
        return {
            "flip_rate": round(sum(flips) / len(flips), 4) if flips else 0.0,
            "length_corr": round(pearson([float(x) for x in lengths], rewards), 4),
            "mean_length": round(sum(lengths) / max(1, len(lengths)), 2),
            "refusal_rate": round(sum(d.refusal != "none" for d in sample) / n, 4),
            "hedge_rate": round(sum(d.hedges > 0 for d in sample) / n, 4),
            "boilerplate_rate": round(sum(bool(d.boilerplate) for d in sample) / n, 4),
        }


def _one_prompt(prompts: list[Any], start: int, g: int) -> None:
    """A pairwise reward compares the completions of one prompt: completions start to
    start + g must be a whole group of one prompt, as TRL's sampler makes them."""
    group = prompts[start:start + g]
    if len(group) != g or any(p != group[0] for p in group):
        raise CaiError(f"the pairwise reward got completions {start}-{start + len(group) - 1} "
                       f"as one group, but they answer {len({repr(p) for p in group})} "
                       f"prompts{'' if len(group) == g else f' and number {len(group)}'}: each "
                       f"batch must hold whole groups of num_generations = {g} completions of "
                       "one prompt (set the reward's num_generations to the trainer's)")


def _conversation(prompt: Any) -> list[Message]:
    if isinstance(prompt, str):
        return [Message("user", prompt)]
    return list(messages_from_dicts(prompt))


def _prompt_key(conversation: Sequence[Message]) -> str:
    """A key from the prompt's content (the id cai gives a prompt file's rows that bring
    none), with any system prompt left out."""
    return prompt_id(tuple(m for m in conversation if m.role != "system"))


def _key(conversation: Sequence[Message], x: str, y: str) -> str:
    """A comparison's key, from its content: the same comparison, the same principle and
    requests, whatever the step (so the cache answers repeats)."""
    blob = "\x00".join([_prompt_key(conversation), x, y])
    return "grpo:" + hashlib.sha256(blob.encode()).hexdigest()[:16]
