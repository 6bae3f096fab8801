"""The judge stage (`cai judge`): every pair of a prompt's responses judged in both orders,
written as TRL preference pairs with soft labels, with the judge's own figures beside them."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, model_validator

from cai.chat import Message, assistant, conversation_of, messages_to_dicts, reply_text
from cai.errors import InputError
from cai.inputs import prompt_id
from cai.records.read import read_jsonl
from cai.schema import ID, PROMPT, Id, Prompt, Reply, Row, checked_jsonl
from cai.stages.judge import Comparison, Judge, PrincipleJudgement
from cai.stages.panel import (
    NO_VERDICT,
    Panel,
    PanelComparison,
    as_panel,
    judgements_of,
    panel_figures,
    seats_of,
)
from cai.stages.stage import StageResult, run_stage
from cai.stages.verdict import margin

if TYPE_CHECKING:
    from cai.models.session import Session


def pair_indices(n: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(n), 2))


def pair_record(base: dict[str, Any], x: str, y: str,
                comparison: Comparison | PanelComparison, length_ratio: float) -> dict[str, Any]:
    """The TRL preference row for one judged pair, with its provenance beside it; for a
    panel, each judge's say as well."""
    p_x = comparison.p_x
    if p_x is None:
        raise ValueError("an unjudged comparison makes no preference pair")
    x_wins = p_x >= 0.5
    chosen, rejected = (x, y) if x_wins else (y, x)
    p_chosen = p_x if x_wins else 1 - p_x
    judgements = comparison.judgements
    longer_chars = max(len(chosen), len(rejected))
    shorter_chars = max(1, min(len(chosen), len(rejected)))
    row = {
        **base,
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
        "soft_label": round(p_chosen, 6),
        "margin": round(margin(p_x), 6),
        "single_order": [single_orders(j, x_wins) for j in judgements],
        "orders_agree": all(j.agree for j in judgements if j.agree is not None),
        "principles": list(dict.fromkeys(j.principle for j in judgements)),  # once a panel
        "chosen_length": len(chosen),
        "rejected_length": len(rejected),
        "longer_won": len(chosen) > len(rejected),
        "length_flag": len(chosen) > len(rejected)
        and longer_chars / shorter_chars >= length_ratio,
    }
    if isinstance(comparison, PanelComparison):
        row["single_order"] = [{"judge": s.judge, **single_orders(j, x_wins)}
                               for s in comparison.seats if s.comparison
                               for j in s.comparison.judgements]
        row["panel"] = [{"judge": s.judge, "judge_identity": s.identity, "weight": s.weight,
                         "p_chosen": None if s.p_x is None
                         else round(s.p_x if x_wins else 1 - s.p_x, 6),
                         "orders_agree": [j.agree for j in s.comparison.judgements]
                         if s.comparison else [],
                         "left_out": s.left_out} for s in comparison.seats]
        row["panel_split"] = comparison.split
    return row


def single_orders(j: PrincipleJudgement, x_wins: bool) -> dict[str, Any]:
    """P(chosen better) as judged with the chosen response shown first, then second."""
    xy, yx = j.x_first.verdict.p_first, j.x_second.verdict.p_first
    p_x_shown_first = xy
    p_x_shown_second = None if yx is None else 1 - yx
    if x_wins:
        first, second = p_x_shown_first, p_x_shown_second
    else:
        first = None if p_x_shown_second is None else 1 - p_x_shown_second
        second = None if p_x_shown_first is None else 1 - p_x_shown_first
    return {"principle": j.principle, "chosen_first": first, "chosen_second": second}


Judged = tuple[tuple[int, int], Comparison | PanelComparison]


@dataclass(frozen=True)
class Candidates:
    """One prompt and the responses to rank; `source_chosen` is the index a pair file preferred."""

    id: str
    messages: tuple[Message, ...]
    responses: tuple[str, ...]
    source_chosen: int | None = None


class CandidateRow(Row):
    """A line of `cai judge --responses`: a prompt with its responses, or a preference pair."""

    fix: ClassVar[str] = ("give 'prompt' with a list of 'responses' (from cai sample), or "
                          "'chosen' and 'rejected' (a preference file)")
    prompt: Prompt = Field(description=PROMPT)
    responses: list[Reply] | None = Field(None, description="a list of replies")
    chosen: Reply | None = Field(None, description=PROMPT)
    rejected: Reply | None = Field(None, description=PROMPT)
    id: Id | None = Field(None, description=ID)

    @model_validator(mode="after")
    def has_replies(self) -> CandidateRow:
        if self.responses is None and (self.chosen is None or self.rejected is None):
            raise ValueError("no 'responses', and no 'chosen' and 'rejected'")
        return self


def read_candidates(path: Path) -> list[Candidates]:
    """Read `cai sample` output (prompt, responses) or preference pairs (prompt, chosen,
    rejected), e.g. the (revision, initial) pairs of `cai revise`."""
    items = []
    for _, r in checked_jsonl(path, CandidateRow):
        messages = conversation_of(r.prompt)
        if r.responses is not None:
            responses, source = tuple(reply_text(x) for x in r.responses), None
        else:
            responses, source = (reply_text(r.chosen), reply_text(r.rejected)), 0
        items.append(Candidates(r.id or prompt_id(messages), messages, responses, source))
    if not items:
        raise InputError(path, None, "no records in the file")
    return items


@dataclass(frozen=True)
class PairSettings:
    pairs: str = "all"  # "all": every pair; "best-worst": the best against the worst
    min_margin: float = 0.1
    length_ratio: float = 1.5  # flag a chosen response this many times longer


FILES = ("prefs.jsonl", "low_margin.jsonl", "unjudged.jsonl", "comparisons.jsonl")


async def judge_one(judge: Panel, item: Candidates, pairs: PairSettings) -> dict[str, list]:
    """Judge one prompt's responses; return its records for each output file."""
    comparisons: list[Judged] = []
    for i, j in pair_indices(len(item.responses)):
        if item.responses[i].strip() == item.responses[j].strip():
            continue  # identical responses are no preference
        c = await judge.compare(item.messages, item.responses[i], item.responses[j],
                                f"{item.id}:{i}-{j}")
        comparisons.append(((i, j), c))
    chosen_pairs = comparisons
    if pairs.pairs == "best-worst" and len(item.responses) > 2:
        chosen_pairs = _best_worst(comparisons, len(item.responses))
    base = {"id": item.id, "prompt": messages_to_dicts(list(item.messages)),
            **judge.provenance(),
            "constitution": judge.constitution.provenance if judge.constitution else None,
            "templates": judge.templates.hashes(judge.template, "_judge_data")}
    out: dict[str, list] = {name: [] for name in FILES}
    for (i, j), c in chosen_pairs:
        if c.p_x is None:
            # The two replies go with it, so that people can label what the judge could not.
            said = c.to_dict()
            out["unjudged.jsonl"].append({
                **base, "pair_id": f"{item.id}:{i}-{j}", "pair": [i, j],
                "replies": [item.responses[i], item.responses[j]],
                "reason": "no judge of the panel decided" if "panel" in said else NO_VERDICT,
                **{k: said[k] for k in ("judgements", "panel") if k in said}})
            continue
        row = pair_record({**base, "pair_id": f"{item.id}:{i}-{j}"}, item.responses[i],
                          item.responses[j], c, pairs.length_ratio)
        if item.source_chosen is not None:
            row["agrees_with_source"] = (c.p_x >= 0.5) == (item.source_chosen == i)
        target = "prefs.jsonl" if row["margin"] >= pairs.min_margin else "low_margin.jsonl"
        out[target].append(row)
    out["comparisons.jsonl"].append({**base, "comparisons": [
        {"pair": [i, j], **c.to_dict()} for (i, j), c in comparisons]})
    return out


def _best_worst(comparisons: list[Judged], n: int) -> list[Judged]:
    """Keep the comparison of the best- against the worst-scoring response, by mean P(win)."""
    wins: dict[int, list[float]] = {k: [] for k in range(n)}
    for (i, j), c in comparisons:
        if c.p_x is not None:
            wins[i].append(c.p_x)
            wins[j].append(1 - c.p_x)
    scores = {k: sum(v) / len(v) for k, v in wins.items() if v}
    if len(scores) < 2:
        return []
    best, worst = max(scores, key=scores.get), min(scores, key=scores.get)  # type: ignore[arg-type]
    return [(pair, c) for pair, c in comparisons if set(pair) == {best, worst}]


def judge_stats(out: Path) -> dict[str, Any]:
    """The judge's own figures over everything in `out`, resumed runs included."""
    orders = flips = agreements = unparsed = failed = 0
    comparisons = [c for record in read_jsonl(out / "comparisons.jsonl")
                   for c in record["comparisons"]]
    for c in comparisons:
        for j in judgements_of(c):
                for order in (j["x_first"], j["x_second"]):
                    orders += 1
                    unparsed += order["status"] == "unparsed"
                    failed += order["status"] == "failed"
                if j["agree"] is not None:
                    agreements += 1
                    flips += not j["agree"]
    rows = [r for name in ("prefs.jsonl", "low_margin.jsonl") if (out / name).exists()
            for r in read_jsonl(out / name)]
    figures = pair_figures(rows)
    sourced = [r["agrees_with_source"] for r in rows if "agrees_with_source" in r]
    panel = panel_figures([seats_of(c) for c in comparisons])
    return {
        "pairs": len(rows),
        "orders_judged": orders,
        "unparsed_orders": unparsed,
        "failed_orders": failed,
        "position_flip_rate": round(flips / agreements, 4) if agreements else None,
        "longer_won_share": figures["longer_won"],
        "length_flagged": figures["length_flagged"],
        "margin_histogram": {f"{k / 10:.1f}-{(k + 1) / 10:.1f}": n
                             for k, n in enumerate(figures["histogram"])},
        "agreement_with_source": round(sum(sourced) / len(sourced), 4) if sourced else None,
        **({"panel": panel} if panel else {}),
    }


def pair_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What judged pairs say of their judge: margins in tenths, the mean margin, the share of
    pairs of unequal length the longer reply won, and how many were flagged for length."""
    histogram = [0] * 10
    for r in rows:
        histogram[min(int(r["margin"] * 10), 9)] += 1
    unequal = [r for r in rows if r["chosen_length"] != r["rejected_length"]]
    return {
        "histogram": histogram,
        "mean_margin": round(sum(r["margin"] for r in rows) / len(rows), 4) if rows else None,
        "longer_won": round(sum(r["longer_won"] for r in unequal) / len(unequal), 4)
        if unequal else None,
        "length_flagged": sum(bool(r.get("length_flag")) for r in rows),
    }


async def judge_file(items: list[Candidates], judge: Judge | Panel, out: Path, *,
                     pairs: PairSettings = PairSettings(), concurrency: int = 8,
                     progress: bool | None = None, session: Session | None = None,
                     calibration: dict[str, Any] | None = None) -> StageResult:
    """Judge every prompt's responses into `out`, skipping prompts already done there.

    `calibration`: the judge's figures on human-labelled pairs, measured by the caller
    beforehand (`cai.evals.calibration.judge_gold`), kept in the summary.
    """
    panel = as_panel(judge)
    config = {**panel.provenance(), "settings": asdict(panel.settings),
              "pairs": asdict(pairs), "template": panel.template,
              "templates": panel.templates.hashes(panel.template, "_judge_data"),
              "verdict_path": panel.verdict_path,
              "constitution": panel.constitution.provenance if panel.constitution else None}

    async def work(item: Candidates) -> dict[str, list]:
        return await judge_one(panel, item, pairs)

    def summarize(folder: Path) -> dict[str, Any]:
        return {"judge": judge_stats(folder), "calibration": calibration}

    return await run_stage("judge", items, work, out=out, files=FILES, clients=panel.clients,
                           concurrency=concurrency, config=config, progress=progress,
                           summarize=summarize, session=session)
