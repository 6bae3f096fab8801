"""The AI judge: preference pairs in place of human rankings (RLAIF).

Every comparison of two responses x and y is judged in both orders (x as A, then x as B) to
cancel the judge's preference for a position, under one principle drawn per comparison or
under all of them (`principles="all"`). The responses are fenced as data with a marker made
per request and removed from their text, so they cannot instruct the judge.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cai.chat import Message, messages_from_dicts, messages_to_dicts
from cai.client import Client
from cai.constitution import Constitution, Principle
from cai.errors import BackendError, CaiError, InputError
from cai.inputs import prompt_id
from cai.records import read_jsonl, write_json
from cai.runner import SUMMARY, StageResult, run_stage
from cai.templates import Templates
from cai.verdict import Verdict, margin, orders_agree, p_x_from_orders, read_verdict, soft_label

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


class Judge:
    def __init__(self, client: Client, templates: Templates, constitution: Constitution | None,
                 settings: JudgeSettings = JudgeSettings()):
        self.client = client
        self.templates = templates
        self.constitution = constitution
        self.settings = settings
        self.use_logprobs = settings.verdict != "text" and client.backend.supports_logprobs
        if constitution is not None and not any(p.judge for p in constitution.principles):
            raise CaiError(f"{constitution.path}: no principle has a 'judge' question; add "
                           "'judge: Which response ...?' to the principles the judge should use")

    @property
    def template(self) -> str:
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
                        principle: Principle | None, key: str) -> dict[str, Any]:
        fence = make_fence(f"{self.settings.seed}:{key}")
        messages = render_judge(self.templates, self.template, self.constitution, principle,
                                conversation, first, second, fence=fence,
                                length_control=self.settings.length_control)
        sampling = self.client.sampling(
            temperature=0.0, seed=self.settings.seed, repeat_penalty=None,
            max_tokens=400 if self.settings.reasoning else 16,  # room for "The answer is: A"
            top_logprobs=self.client.backend.max_top_logprobs if self.use_logprobs else 0)
        try:
            completion = await self.client.complete(messages, sampling)
        except BackendError as e:
            if sampling.top_logprobs and "logprob" in str(e).lower() and not e.retryable:
                self.use_logprobs = False  # this model or server has none: use the text path
                return await self.one_order(conversation, first, second, principle, key)
            verdict = Verdict(None, "failed", str(e))
        else:
            band = self.settings.band if self.settings.reasoning else None
            verdict = read_verdict(completion, reasoning=self.settings.reasoning, band=band)
        return {"p_first": verdict.p_first, "status": verdict.status, "raw": verdict.raw,
                "fence": fence}

    async def compare(self, conversation: Sequence[Message], x: str, y: str,
                      key: str) -> dict[str, Any]:
        """Judge x against y under each principle, in both orders; return the comparison."""
        per_principle: list[dict[str, Any]] = []
        for principle in self.principles_for(key):
            pid = principle.id if principle else None
            x_first = await self.one_order(conversation, x, y, principle, f"{key}:{pid}:xy")
            x_second = await self.one_order(conversation, y, x, principle, f"{key}:{pid}:yx")
            a = Verdict(x_first["p_first"], x_first["status"])
            b = Verdict(x_second["p_first"], x_second["status"])
            per_principle.append({"principle": pid, "x_first": x_first, "x_second": x_second,
                                  "p_x": p_x_from_orders(a, b), "agree": orders_agree(a, b)})
        usable: list[float] = [c["p_x"] for c in per_principle if c["p_x"] is not None]
        return {"key": key, "p_x": soft_label(usable), "judgements": per_principle}


def pair_indices(n: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(n), 2))


def pair_record(base: dict[str, Any], x: str, y: str, comparison: dict[str, Any],
                length_ratio: float) -> dict[str, Any]:
    """The TRL preference row for one judged pair, with its provenance beside it."""
    p_x = comparison["p_x"]
    x_wins = p_x >= 0.5
    chosen, rejected = (x, y) if x_wins else (y, x)
    p_chosen = p_x if x_wins else 1 - p_x
    judgements = comparison["judgements"]

    def single_orders(j: dict[str, Any]) -> dict[str, Any]:
        """P(chosen better) as judged with the chosen response shown first, then second."""
        xy, yx = j["x_first"]["p_first"], j["x_second"]["p_first"]
        p_x_shown_first = xy
        p_x_shown_second = None if yx is None else 1 - yx
        if x_wins:
            first, second = p_x_shown_first, p_x_shown_second
        else:
            first = None if p_x_shown_second is None else 1 - p_x_shown_second
            second = None if p_x_shown_first is None else 1 - p_x_shown_first
        return {"principle": j["principle"], "chosen_first": first, "chosen_second": second}

    longer_chars = max(len(chosen), len(rejected))
    shorter_chars = max(1, min(len(chosen), len(rejected)))
    return {
        **base,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "soft_label": round(p_chosen, 6),
        "margin": round(margin(p_x), 6),
        "single_order": [single_orders(j) for j in judgements],
        "orders_agree": all(j["agree"] for j in judgements if j["agree"] is not None),
        "principles": [j["principle"] for j in judgements],
        "chosen_length": len(chosen),
        "rejected_length": len(rejected),
        "longer_won": len(chosen) > len(rejected),
        "length_flag": len(chosen) > len(rejected)
        and longer_chars / shorter_chars >= length_ratio,
    }


# ---------------------------------------------------------------- the judge stage


@dataclass(frozen=True)
class Candidates:
    """One prompt and the responses to rank; `source_chosen` is the index a pair file preferred."""

    id: str
    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    source_chosen: int | None = None


def read_candidates(path: Path) -> list[Candidates]:
    """Read `cai sample` output (prompt, responses) or preference pairs (prompt, chosen,
    rejected), e.g. the (revision, initial) pairs of `cai revise`."""
    items = []
    for line, r in enumerate(read_jsonl(path), start=1):
        try:
            messages = conversation_of(r["prompt"])
            if "responses" in r:
                responses = tuple(reply_text(x) for x in r["responses"])
                source = None
            else:
                responses = (reply_text(r["chosen"]), reply_text(r["rejected"]))
                source = 0
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(path, line, f"expected 'prompt' with 'responses' (from cai sample) "
                             f"or 'chosen' and 'rejected' (a preference file); {e}") from None
        rid = str(r.get("id") or prompt_id(messages))
        items.append(Candidates(rid, messages, responses, source))
    if not items:
        raise InputError(path, None, "no records in the file")
    return items


def conversation_of(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(messages_from_dicts(prompt))


def reply_text(value: Any) -> str:
    """A response given as text or as TRL's conversational `[{"role": "assistant", ...}]`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1]["content"])
    raise ValueError(f"a response must be text or a list of messages, not {value!r:.60}")


@dataclass(frozen=True)
class PairSettings:
    pairs: str = "all"  # "all": every pair; "best-worst": the best against the worst
    min_margin: float = 0.1
    length_ratio: float = 1.5  # flag a chosen response this many times longer


FILES = ("prefs.jsonl", "low_margin.jsonl", "unjudged.jsonl", "comparisons.jsonl")


async def judge_one(judge: Judge, item: Candidates, pairs: PairSettings) -> dict[str, list]:
    """Judge one prompt's responses; return its records for each output file."""
    comparisons = []
    for i, j in pair_indices(len(item.responses)):
        if item.responses[i].strip() == item.responses[j].strip():
            continue  # identical responses are no preference
        c = await judge.compare(item.messages, item.responses[i], item.responses[j],
                                f"{item.id}:{i}-{j}")
        comparisons.append({"pair": [i, j], **c})
    chosen_pairs = comparisons
    if pairs.pairs == "best-worst" and len(item.responses) > 2:
        chosen_pairs = _best_worst(comparisons, len(item.responses))
    base = {"id": item.id, "prompt": messages_to_dicts(list(item.messages)),
            "judge": judge.client.spec,
            "constitution": judge.constitution.provenance if judge.constitution else None}
    out: dict[str, list] = {name: [] for name in FILES}
    for c in chosen_pairs:
        i, j = c["pair"]
        if c["p_x"] is None:
            out["unjudged.jsonl"].append({**base, "pair": [i, j],
                                          "reason": "no principle had both orders parsed",
                                          "judgements": c["judgements"]})
            continue
        row = pair_record({**base, "pair_id": f"{item.id}:{i}-{j}"}, item.responses[i],
                          item.responses[j], c, pairs.length_ratio)
        if item.source_chosen is not None:
            row["agrees_with_source"] = (c["p_x"] >= 0.5) == (item.source_chosen == i)
        target = "prefs.jsonl" if row["margin"] >= pairs.min_margin else "low_margin.jsonl"
        out[target].append(row)
    out["comparisons.jsonl"].append({**base, "comparisons": comparisons})
    return out


def _best_worst(comparisons: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Keep the comparison of the best- against the worst-scoring response, by mean P(win)."""
    wins: dict[int, list[float]] = {k: [] for k in range(n)}
    for c in comparisons:
        if c["p_x"] is not None:
            i, j = c["pair"]
            wins[i].append(c["p_x"])
            wins[j].append(1 - c["p_x"])
    scores = {k: sum(v) / len(v) for k, v in wins.items() if v}
    if len(scores) < 2:
        return []
    best, worst = max(scores, key=scores.get), min(scores, key=scores.get)  # type: ignore[arg-type]
    return [c for c in comparisons if set(c["pair"]) == {best, worst}]


def judge_stats(out: Path) -> dict[str, Any]:
    """The judge's own figures over everything in `out`, resumed runs included."""
    orders = flips = agreements = unparsed = failed = 0
    for record in read_jsonl(out / "comparisons.jsonl"):
        for c in record["comparisons"]:
            for j in c["judgements"]:
                for order in (j["x_first"], j["x_second"]):
                    orders += 1
                    unparsed += order["status"] == "unparsed"
                    failed += order["status"] == "failed"
                if j["agree"] is not None:
                    agreements += 1
                    flips += not j["agree"]
    rows = [r for name in ("prefs.jsonl", "low_margin.jsonl") if (out / name).exists()
            for r in read_jsonl(out / name)]
    unequal = [r for r in rows if r["chosen_length"] != r["rejected_length"]]
    histogram = [0] * 10
    for r in rows:
        histogram[min(int(r["margin"] * 10), 9)] += 1
    sourced = [r["agrees_with_source"] for r in rows if "agrees_with_source" in r]
    return {
        "pairs": len(rows),
        "orders_judged": orders,
        "unparsed_orders": unparsed,
        "failed_orders": failed,
        "position_flip_rate": round(flips / agreements, 4) if agreements else None,
        "longer_won_share": round(sum(r["longer_won"] for r in unequal) / len(unequal), 4)
        if unequal else None,
        "length_flagged": sum(r["length_flag"] for r in rows),
        "margin_histogram": {f"{k / 10:.1f}-{(k + 1) / 10:.1f}": n
                             for k, n in enumerate(histogram)},
        "agreement_with_source": round(sum(sourced) / len(sourced), 4) if sourced else None,
    }


async def judge_file(items: list[Candidates], judge: Judge, out: Path, *,
                     pairs: PairSettings = PairSettings(), concurrency: int = 8,
                     progress: bool | None = None) -> StageResult:
    """Judge every prompt's responses into `out`, skipping prompts already done there."""
    config = {"judge": judge.client.spec, "settings": asdict(judge.settings),
              "pairs": asdict(pairs), "template": judge.template,
              "templates": judge.templates.hashes(judge.template, "_judge_data"),
              "verdict_path": "logprobs" if judge.use_logprobs else "text",
              "constitution": judge.constitution.provenance if judge.constitution else None}

    async def work(item: Candidates) -> dict[str, list]:
        return await judge_one(judge, item, pairs)

    result = await run_stage("judge", items, work, out=out, files=FILES, clients=[judge.client],
                             concurrency=concurrency, config=config, progress=progress)
    result.summary["judge"] = judge_stats(out)
    write_json(out / SUMMARY, result.summary)
    return result
