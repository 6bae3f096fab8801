"""Calibrating a judge on human-labelled pairs before a big job (`cai eval judge`).

Reads TRL preference JSONL or Anthropic's HH transcripts, shows each pair to the judge in a
seeded random orientation (so that "the human's choice" is not always the same slot), and
reports agreement, Cohen's kappa, the position-flip rate, length bias and calibration.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from cai.chat import Message, conversation_of, messages_to_dicts, reply_text
from cai.errors import InputError
from cai.inputs import prompt_id
from cai.records.read import read_jsonl
from cai.records.rewrite import write_json
from cai.schema import ID, PROMPT, Id, Prompt, Reply, Row, checked_jsonl
from cai.stages.judge import Judge
from cai.stages.panel import Panel, as_panel, judgements_of, panel_figures, seats_of
from cai.stages.stage import StageResult, run_stage
from cai.stats import bootstrap_kappa, cohen_kappa, wilson

HH_TURN = re.compile(r"\n\n(Human|Assistant):")
FILES = ("judgements.jsonl",)
# The figures that summary.json repeats from report.json.
SUMMARY_KEYS = ("n", "judged", "unjudged", "coverage", "accuracy", "accuracy_judged", "kappa",
                "ece")

if TYPE_CHECKING:
    from cai.models.session import Session


@dataclass(frozen=True)
class GoldPair:
    id: str
    messages: tuple[Message, ...]
    chosen: str  # the response the humans preferred
    rejected: str


def split_hh(transcript: str) -> tuple[tuple[Message, ...], str]:
    """Split an HH transcript at its last `\\n\\nAssistant:` into (conversation, reply)."""
    cut = transcript.rfind("\n\nAssistant:")
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn")
    head, reply = transcript[:cut], transcript[cut + len("\n\nAssistant:"):]
    parts = HH_TURN.split(head)
    turns = [Message("user" if role == "Human" else "assistant", text.strip())
             for role, text in zip(parts[1::2], parts[2::2], strict=True)]
    if not turns or turns[-1].role != "user":
        raise ValueError("the conversation before the last reply must end with a Human turn")
    return tuple(turns), reply.strip()


class GoldRow(Row):
    """A line of human-labelled pairs: TRL's prompt/chosen/rejected, or HH transcripts (the
    whole conversation in each of chosen and rejected, and no prompt)."""

    fix: ClassVar[str] = ("give TRL preference fields (prompt, chosen, rejected) or HH "
                          "transcripts (chosen, rejected)")
    prompt: Prompt | None = Field(None, description=PROMPT)
    chosen: Reply = Field(description=PROMPT)
    rejected: Reply = Field(description=PROMPT)
    id: Id | None = Field(None, description=ID)


def read_gold(path: Path) -> list[GoldPair]:
    """Human-labelled pairs from TRL preference JSONL or the HH transcript format."""
    pairs = []
    for line, r in checked_jsonl(path, GoldRow):
        try:
            if r.prompt is not None:
                messages = conversation_of(r.prompt)
                chosen, rejected = reply_text(r.chosen), reply_text(r.rejected)
            elif isinstance(r.chosen, str) and isinstance(r.rejected, str):
                messages, chosen = split_hh(r.chosen)
                other, rejected = split_hh(r.rejected)
                if other != messages:
                    raise ValueError("'chosen' and 'rejected' differ before the last reply")
            else:
                raise ValueError("HH transcripts are text")
        except ValueError as e:
            raise InputError(path, line, f"{e}; {GoldRow.fix}") from None
        pairs.append(GoldPair(r.id or f"{prompt_id(messages)}-{line}", messages, chosen,
                              rejected))
    if not pairs:
        raise InputError(path, None, "no pairs in the file")
    return pairs


async def judge_gold(pairs: list[GoldPair], judge: Judge | Panel, out: Path, *,
                     concurrency: int = 8, progress: bool | None = None,
                     session: Session | None = None) -> StageResult:
    """Judge each gold pair in both orders into `out/judgements.jsonl`, then report into
    report.json and report.md; the report is also the result's `report`. A panel is
    reported judge by judge beside the panel, and its weights (each judge's accuracy) are
    written to panel_weights.json for `cai judge --panel-weights`."""
    panel = as_panel(judge)

    async def work(pair: GoldPair) -> dict[str, list[dict[str, Any]]]:
        chosen_is_x = random.Random(f"{panel.settings.seed}:{pair.id}").random() < 0.5
        x, y = (pair.chosen, pair.rejected) if chosen_is_x else (pair.rejected, pair.chosen)
        c = (await panel.compare(pair.messages, x, y, pair.id)).to_dict()
        return {"judgements.jsonl": [{
            "id": pair.id, "prompt": messages_to_dicts(list(pair.messages)),
            "human_x": int(chosen_is_x), "p_x": c["p_x"], "x_length": len(x),
            "y_length": len(y), **{k: c[k] for k in ("judgements", "panel", "split") if k in c}}]}

    config = {**panel.provenance(), "template": panel.template,
              "templates": panel.templates.hashes(panel.template, "_judge_data"),
              "constitution": panel.constitution.provenance if panel.constitution else None,
              "verdict_path": panel.verdict_path}
    report: dict[str, Any] = {}
    spent_before = {c.spec: c.stats.copy() for c in panel.clients}

    def summarize(folder: Path) -> dict[str, Any]:
        from cai.reports.render import write

        rows = list(read_jsonl(folder / "judgements.jsonl"))
        seed = panel.settings.seed
        report.update(agreement_report(rows, seed=seed), judge=config["judge"], config=config)
        if panel.is_panel:
            spent = {c.spec: c.stats.since(spent_before[c.spec]) for c in panel.clients}
            report["panel"] = {
                **(panel_figures([seats_of(r) for r in rows]) or {}),
                "side_by_side": [{"judge": spec, **_figures(agreement_report(
                    seat_rows(rows, k), seed=seed)), "requests": spent[spec].requests,
                    "cost_usd": round(spent[spec].cost_usd, 6)}
                    for k, spec in enumerate(config["judge"])]}
            write_json(folder / "panel_weights.json", panel_weights(report, str(folder)))
        write(folder, "calibration", report)
        figures = {k: report[k] for k in SUMMARY_KEYS}
        return {**figures, "report": figures}

    result = await run_stage("eval-judge", pairs, work, out=out, files=FILES,
                             clients=panel.clients, concurrency=concurrency, config=config,
                             progress=progress, summarize=summarize, session=session)
    result.report = report or None
    return result


def seat_rows(rows: Sequence[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """A panel's gold judgements as its k-th judge alone gave them."""
    return [{**r, "p_x": r["panel"][k]["p_x"], "judgements": r["panel"][k]["judgements"]}
            for r in rows]


SIDE_BY_SIDE = ("judged", "coverage", "accuracy", "accuracy_ci95", "accuracy_judged", "kappa",
                "position_flip_rate", "ece")


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in SIDE_BY_SIDE}


def panel_weights(report: dict[str, Any], source: str) -> dict[str, Any]:
    """Each judge's weight in the panel: its accuracy against the people on the gold pairs
    (a pair it did not decide counts as a coin flip), so that a judge that agrees with
    people more counts more."""
    return {"weights": {j["judge"]: j["accuracy"] for j in report["panel"]["side_by_side"]},
            "by": "accuracy on the gold pairs", "source": source, "n": report["n"]}


# ---------------------------------------------------------------- the statistics


def agreement_report(rows: Sequence[dict[str, Any]], *, seed: int = 0,
                     bins: int = 10) -> dict[str, Any]:
    """Agreement with the humans, position flips, length bias and calibration."""
    judged = [r for r in rows if r["p_x"] is not None]
    n = len(judged)  # judged pairs; `n` in the report counts every gold pair
    p = [r["p_x"] for r in judged]
    y = [r["human_x"] for r in judged]
    hits = [0.5 if pi == 0.5 else float((pi > 0.5) == bool(yi)) for pi, yi in zip(p, y,
                                                                                   strict=True)]
    accuracy = sum(hits) / n if n else None
    unjudged = len(rows) - n
    # A pair the judge gave no verdict on counts as a coin flip: a judge cannot look better
    # by failing on the hard pairs.
    overall = (sum(hits) + 0.5 * unjudged) / len(rows) if rows else None
    decided = [(int(pi > 0.5), yi) for pi, yi in zip(p, y, strict=True) if pi != 0.5]
    kappa = cohen_kappa(decided)
    flips = [not j["agree"] for r in judged for j in judgements_of(r)
             if j["agree"] is not None]
    longer_x = [(r, r["x_length"] > r["y_length"]) for r in judged
                if r["x_length"] != r["y_length"] and r["p_x"] != 0.5]
    table = reliability(p, y, bins)
    return {
        "n": len(rows),
        "judged": n,
        "unjudged": unjudged,
        "coverage": _round(n / len(rows)) if rows else None,
        "ties": n - len(decided),
        "accuracy": _round(overall),
        "accuracy_ci95": [_round(v) for v in wilson(sum(hits) + 0.5 * unjudged, len(rows))]
        if rows else None,
        "accuracy_judged": _round(accuracy),
        "kappa": _round(kappa),
        "kappa_ci95": bootstrap_kappa(decided, seed=seed),
        "position_flip_rate": _round(sum(flips) / len(flips)) if flips else None,
        "length_bias": {
            "judge_picked_longer": _round(sum((r["p_x"] > 0.5) == lx for r, lx in longer_x)
                                          / len(longer_x)) if longer_x else None,
            "humans_picked_longer": _round(sum(bool(r["human_x"]) == lx for r, lx in longer_x)
                                           / len(longer_x)) if longer_x else None,
            "pairs": len(longer_x),
        },
        "ece": _round(sum(b["count"] * abs(b["observed"] - b["mean_p"]) for b in table) / n)
        if n else None,
        "reliability": table,
    }


def reliability(p: Sequence[float], y: Sequence[int], bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins of predicted P(x better) against how often x really was better."""
    table = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(pi, yi) for pi, yi in zip(p, y, strict=True)
                   if lo <= pi < hi or (b == bins - 1 and pi == 1.0)]
        if members:
            table.append({"bin": f"{lo:.1f}-{hi:.1f}", "count": len(members),
                          "mean_p": _round(sum(m[0] for m in members) / len(members)),
                          "observed": _round(sum(m[1] for m in members) / len(members))})
    return table


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)
