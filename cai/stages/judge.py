"""The AI judge: preference pairs in place of human rankings (RLAIF).

Every comparison of two responses x and y is judged in both orders (x as A, then x as B) to
cancel the judge's preference for a position, under one principle drawn per comparison or
under all of them (`principles="all"`). The responses are fenced as data with a marker made
per request and removed from their text, so they cannot instruct the judge.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cai.chat import Message
from cai.constitution import Constitution, Principle
from cai.errors import BackendError, CaiError
from cai.models.client import Client
from cai.stages.verdict import (
    OPTIONS,
    Verdict,
    orders_agree,
    p_x_from_orders,
    read_verdict,
    soft_label,
)
from cai.templates import Templates

DEFAULT_BAND = (0.4, 0.6)  # chain-of-thought verdicts are over-confident; the CAI paper's band


def make_fence(key: str) -> str:
    """A marker for one request, fixed by its key so reruns send identical requests."""
    return "@@" + hashlib.sha256(key.encode()).hexdigest()[:16] + "@@"


def fenced(text: str, fence: str) -> str:
    """The text with any copy of the fence, or of its core, made harmless."""
    core = fence.strip("@")
    return text.replace(fence, "[fence removed]").replace(core, "[fence removed]")


def render_judge(templates: Templates, name: str, constitution: Constitution | None,
                 principle: Principle | None, conversation: Sequence[Message], first: str,
                 second: str, *, fence: str = "@@0000000000000000@@",
                 length_control: bool = False) -> list[Message]:
    """The judge's messages for one ordering of one comparison."""
    question = principle.judge if principle and principle.judge else templates.render(
        "judge_question")
    text = templates.render(
        name, conversation=[Message(m.role, fenced(m.content, fence)) for m in conversation
                            if m.role != "system"],
        first=fenced(first, fence), second=fenced(second, fence), question=question,
        fence=fence, length_control=length_control)
    return [Message("user", text)]


@dataclass(frozen=True)
class JudgeSettings:
    principles: str = "sample"  # "sample": one drawn per comparison; "all": the ensemble
    verdict: str = "auto"  # "auto": logprobs where the backend has them; "text": always parse
    reasoning: bool = False  # chain of thought before the verdict
    band: tuple[float, float] = DEFAULT_BAND
    length_control: bool = False
    seed: int = 0
    template: str | None = None  # another comparison template (the evaluator's), not the judge's


@dataclass(frozen=True)
class OrderVerdict:
    """One order of one comparison: the verdict, the fence it was sent with, and the path
    actually used to read it ("logprobs", or "text" where logprobs were off or refused)."""

    verdict: Verdict
    fence: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        v = self.verdict
        return {"p_first": v.p_first, "status": v.status, "raw": v.raw, "fence": self.fence,
                "path": self.path}


@dataclass(frozen=True)
class PrincipleJudgement:
    """A comparison under one principle, in both orders."""

    principle: str | None
    x_first: OrderVerdict
    x_second: OrderVerdict

    @property
    def p_x(self) -> float | None:
        return p_x_from_orders(self.x_first.verdict, self.x_second.verdict)

    @property
    def agree(self) -> bool | None:
        return orders_agree(self.x_first.verdict, self.x_second.verdict)

    def to_dict(self) -> dict[str, Any]:
        return {"principle": self.principle, "x_first": self.x_first.to_dict(),
                "x_second": self.x_second.to_dict(), "p_x": self.p_x, "agree": self.agree}


@dataclass(frozen=True)
class Comparison:
    """x against y under each principle drawn for it; p_x is the soft label for x."""

    key: str
    judgements: tuple[PrincipleJudgement, ...]

    @property
    def p_x(self) -> float | None:
        return soft_label([j.p_x for j in self.judgements if j.p_x is not None])

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "p_x": self.p_x,
                "judgements": [j.to_dict() for j in self.judgements]}


class Judge:
    def __init__(self, client: Client, templates: Templates, constitution: Constitution | None,
                 settings: JudgeSettings = JudgeSettings()):
        self.client = client
        self.templates = templates
        self.constitution = constitution
        self.settings = settings
        # Decided once: "constrained" where the backend can limit the answer to A or B (so
        # every order yields P(A) and P(B)), else "logprobs" where offered, else "text". A
        # server that refuses logprobs anyway moves every later order to the text path; each
        # order records the path it used.
        if settings.verdict == "text":
            self.verdict_path = "text"
        elif client.constrains_choices and not settings.reasoning:
            self.verdict_path = "constrained"
        else:
            self.verdict_path = "logprobs" if client.supports_logprobs else "text"
        self._logprobs_refused = False
        if constitution is not None and not any(p.judge for p in constitution.principles):
            raise CaiError(f"{constitution.path}: no principle has a 'judge' question; add "
                           "'judge: Which response ...?' to the principles the judge should use")

    @property
    def template(self) -> str:
        if self.settings.template:
            return self.settings.template
        return "judge_cot" if self.settings.reasoning else "judge"

    def principles_for(self, key: str) -> list[Principle | None]:
        """The principles one comparison is judged under: one drawn by its key, or all."""
        if self.constitution is None:
            return [None]
        pool = [p for p in self.constitution.principles if p.judge]
        if self.settings.principles == "all":
            return list(pool)
        rng = random.Random(f"{self.settings.seed}:{key}")
        return [self.constitution.sample(rng, judging=True)]

    async def one_order(self, conversation: Sequence[Message], first: str, second: str,
                        principle: Principle | None, key: str) -> OrderVerdict:
        fence = make_fence(f"{self.settings.seed}:{key}")
        messages = render_judge(self.templates, self.template, self.constitution, principle,
                                conversation, first, second, fence=fence,
                                length_control=self.settings.length_control)
        path = "text" if self._logprobs_refused else self.verdict_path
        sampling = self.client.sampling(
            temperature=0.0, seed=self.settings.seed, repeat_penalty=None,
            max_tokens=1 if path == "constrained" else 400 if self.settings.reasoning
            else 16,  # room for "The answer is: A"
            top_logprobs=self.client.max_top_logprobs if path != "text" else 0,
            **({"choices": OPTIONS} if path == "constrained" else {}))
        try:
            completion = await self.client.complete(messages, sampling)
        except BackendError as e:
            if e.retryable:
                # Transient, and the client's retries are spent: the whole item fails, goes to
                # failed.jsonl, and a rerun tries it again. Never recorded as unjudged.
                raise
            if path != "text" and "logprob" in str(e).lower():
                self._logprobs_refused = True  # this model or server has none after all
                return await self.one_order(conversation, first, second, principle, key)
            # Permanent (a 400, a refusal): recorded with its reason; the pair is unjudged.
            return OrderVerdict(Verdict(None, "failed", str(e)), fence, path)
        band = self.settings.band if self.settings.reasoning else None
        return OrderVerdict(read_verdict(completion, reasoning=self.settings.reasoning,
                                         band=band), fence, path)

    async def compare(self, conversation: Sequence[Message], x: str, y: str,
                      key: str) -> Comparison:
        """Judge x against y under each principle, in both orders."""
        judgements = []
        for principle in self.principles_for(key):
            pid = principle.id if principle else None
            x_first = await self.one_order(conversation, x, y, principle, f"{key}:{pid}:xy")
            x_second = await self.one_order(conversation, y, x, principle, f"{key}:{pid}:yx")
            judgements.append(PrincipleJudgement(pid, x_first, x_second))
        return Comparison(key, tuple(judgements))
