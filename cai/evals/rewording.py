"""Is a judge's verdict about the principle, or about its wording? (`cai eval judge --rewordings K`)

Each principle's judge question gets K rewordings that keep its meaning: first those the
constitution lists under `judge_question_variants:`, then ones a model writes from
`prompts/reword_judge.j2`, one per request, seeded. Every gold comparison is then judged under
the original question and under each rewording, in both orders, with the same fences, the same
orientation and the same principles drawn as `cai eval judge` uses, so that the question's
wording is the only thing that changes between them. A comparison "flips" when its decided
verdicts under the wordings are not all the same. A judge that flips often on meaning-preserving
rewordings makes preference pairs that encode the wording, not the principle.

Everything is written under one folder (`rewording/` of an eval folder): wordings.json (each
wording and who wrote it, or why the model's is missing), judgements.jsonl (every order of
every comparison under every wording; resumable), report.json, report.md and report.html.
A panel measures each of its judges by calling `evaluate_rewordings` once per judge, each
into a folder of its own, under wordings written once into `rewording/wordings.json`.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import Message, step_seed
from cai.constitution import Principle, wording_key
from cai.errors import BackendError, CaiError
from cai.evals.calibration import GoldPair
from cai.models.client import Client
from cai.records.read import read_json, read_jsonl
from cai.records.rewrite import write_json
from cai.stages.judge import Judge, PrincipleJudgement
from cai.stages.stage import StageResult, check_settings, run_stage
from cai.stats import wilson

if TYPE_CHECKING:
    from cai.models.session import Session

ATTEMPTS = 3  # requests per missing wording before it is recorded as not written
MAX_TOKENS = 80
TEMPERATURE = 0.7  # a reworder at 0 would answer every seeded request alike
MAX_LENGTH = 400  # characters; a longer "question" is an essay, not a rewording
DEFAULT_ID = "judge_question"  # the shipped question, where no constitution is given
WORDINGS = "wordings.json"
FILES = ("judgements.jsonl",)
SUMMARY_KEYS = ("comparisons", "comparable", "flipped", "flip_rate", "accuracy_original",
                "accuracy_reworded")
DEFINITIONS = {
    "comparison": "one gold pair judged under one principle (with --principles sample, one "
                  "principle is drawn per pair, so comparisons and pairs are the same)",
    "decided": "a wording decided a comparison when its order-averaged P(x better) is not "
               "0.5 and not missing; its verdict is then x or y",
    "comparable": "comparisons decided under at least two of their wordings",
    "flipped": "comparable comparisons whose decided verdicts are not all the same; a "
               "wording that left a comparison undecided (a tie, a failed or unparsed answer) "
               "neither flips it nor keeps it",
    "flip_rate": "flipped / comparable",
    "changed_vs_original": "for one rewording: of the comparisons decided under both it and "
                           "the original question, the share where the two verdicts differ",
    "accuracy": "agreement with the humans under one wording, over all its comparisons, a "
                "tie or an undecided comparison counting as half right (as in `cai eval "
                "judge`)",
}
# Opposite comparatives: a wording that trades one for the other most likely asks the reverse
# question (the embedded model turned "less likely to help someone hurt" into "more likely").
OPPOSITES = (("less", "more"), ("fewer", "more"), ("least", "most"), ("better", "worse"),
             ("best", "worst"), ("lower", "higher"), ("safer", "riskier"))
_BULLET = re.compile(r"^\s*(?:[-*\u2022>]+|\d+[.)])\s*")
_LABEL = re.compile(r"^(?:new |reworded |the )?(?:question|rewording|answer|wording)\s*\d*\s*:\s*",
                    re.I)


@dataclass(frozen=True)
class Wording:
    """One wording of one principle's judge question; index 0 is the original."""

    principle: str
    index: int
    question: str | None  # None: the model did not produce one
    source: str  # "original", "constitution", or "model:SPEC"
    reason: str | None = None  # why it is missing
    attempts: tuple[dict[str, Any], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"principle": self.principle, "index": self.index, "question": self.question,
                "source": self.source, "reason": self.reason, "attempts": list(self.attempts)}


# ---------------------------------------------------------------- writing the wordings


def clean_wording(text: str) -> str:
    """A model's answer as one question on one line; ValueError says why it is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty answer")
    line = _LABEL.sub("", _BULLET.sub("", lines[0])).strip().strip("\"'`*\u201c\u201d ")
    if "?" not in line:
        raise ValueError("not a question (its first line has no '?')")
    question = " ".join(line[: line.index("?") + 1].split()).strip("\"'`*\u201c\u201d ")
    if len(question) > MAX_LENGTH:
        raise ValueError(f"longer than {MAX_LENGTH} characters")
    if not re.search(r"\w", question[:-1]):
        raise ValueError("no words before the '?'")
    return question


def check_wording(question: str, taken: Sequence[str]) -> str | None:
    """Why `question` cannot be used beside the wordings `taken` (the original first)."""
    key = wording_key(question)
    for i, t in enumerate(taken):
        if wording_key(t) == key:
            return "the same as the judge question" if i == 0 else f"the same as wording {i}"
    old, new = set(wording_key(taken[0]).split()), set(key.split())
    for a, b in OPPOSITES + tuple((b, a) for a, b in OPPOSITES):
        if a in old and b not in old and b in new and a not in new:
            return f"asks the reverse ('{a}' became '{b}')"
    return None


async def write_wordings(questions: dict[str, str], variants: dict[str, tuple[str, ...]],
                         k: int, reworder: Client | None, judge: Judge, *,
                         dry_run: bool = False) -> dict[str, list[Wording]]:
    """K wordings besides the original for each principle: the constitution's variants
    first, then the reworder's. A wording the model fails to give is kept with its reason."""

    async def one(pid: str) -> list[Wording]:
        original = questions[pid]
        out = [Wording(pid, 0, original, "original")]
        out += [Wording(pid, i, v, "constitution")
                for i, v in enumerate(variants.get(pid, ())[:k], start=1)]
        while len(out) <= k:
            out.append(await _model_wording(pid, len(out), [w.question for w in out
                                                            if w.question], reworder, judge,
                                            dry_run))
        return out

    ids = list(questions)
    return dict(zip(ids, await asyncio.gather(*(one(pid) for pid in ids)), strict=True))


async def _model_wording(pid: str, index: int, taken: list[str], reworder: Client | None,
                         judge: Judge, dry_run: bool) -> Wording:
    if reworder is None:
        return Wording(pid, index, None, "none", "no reworder model, and the constitution "
                       "lists too few judge_question_variants")
    source = f"model:{reworder.spec}"
    text = judge.templates.render("reword_judge", question=taken[0], taken=taken)
    attempts: list[dict[str, Any]] = []
    for attempt in range(ATTEMPTS):
        sampling = reworder.sampling(temperature=TEMPERATURE, max_tokens=MAX_TOKENS,
                                     seed=step_seed(judge.settings.seed, pid,
                                                    f"reword:{index}:{attempt}"))
        try:
            answer = await reworder.complete([Message("user", text)], sampling)
        except BackendError as e:
            if e.retryable:  # the client's retries are spent: try the whole run again later
                raise CaiError(f"the reworder {reworder.spec} failed ({e}); nothing was "
                               "judged under the rewordings. Rerun the same command to go "
                               "on") from None
            attempts.append({"raw": None, "reason": f"request failed: {e}"})
            continue
        if dry_run:  # the estimator's answer is no question; count the judging as if it were
            return Wording(pid, index, f"{taken[0]} ({index})", source)
        try:
            question = clean_wording(answer.text)
            reason = check_wording(question, taken)
        except ValueError as e:
            reason = str(e)
        if reason is None:
            return Wording(pid, index, question, source, attempts=tuple(attempts))
        attempts.append({"raw": answer.text[:500], "reason": reason})
    return Wording(pid, index, None, source, f"no usable rewording in {ATTEMPTS} tries "
                   f"(last: {attempts[-1]['reason']})", tuple(attempts))


# ---------------------------------------------------------------- judging under each wording


def judged_questions(judge: Judge) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The judge questions to reword, by principle id, and the constitution's variants."""
    if judge.constitution is None:
        return {DEFAULT_ID: judge.templates.render("judge_question")}, {}
    ps = [p for p in judge.constitution.principles if p.judge]
    return ({p.id: p.judge or "" for p in ps},
            {p.id: p.judge_question_variants for p in ps})


async def evaluate_rewordings(pairs: Sequence[GoldPair], judge: Judge, out: Path, *, k: int,
                              reworder: Client | None = None, concurrency: int = 8,
                              progress: bool | None = None, session: Session | None = None,
                              wordings_at: Path | None = None) -> StageResult:
    """One judge on the gold pairs under each principle's original question and K
    rewordings (written by `reworder`, the judge's own model if None) into `out`; the
    report is the result's `report`. The wordings are kept in `wordings_at` (`out` if None):
    a panel calls this once per judge with one folder for them all, so that every judge is
    tested under the very same wordings, written once. (In a dry run that folder is
    `session.target(wordings_at)`, a scratch folder the caller removes after the last judge.)"""
    reworder = reworder or judge.client
    kept = wordings_at or out
    target = session.target(kept) if session is not None else kept
    questions, variants = judged_questions(judge)
    settings = {"k": k, "reworder": reworder.identity, "seed": judge.settings.seed,
                "questions": questions, "variants": variants,
                "template": judge.templates.sha256("reword_judge")}
    target.mkdir(parents=True, exist_ok=True)
    check_settings(target, "rewording-wordings", settings)
    dry_run = session is not None and session.dry_run
    before = reworder.stats.copy()
    # Only the principles these pairs are judged under: with a few pairs, a few principles.
    # wordings.json grows when a rerun with more pairs (a larger --limit) needs more.
    needed = {p.id if p else DEFAULT_ID for pair in pairs
              for p in judge.principles_for(pair.id)}
    known: dict[str, list[Wording]] = {}
    if (target / WORDINGS).exists():  # written by an earlier run with these settings
        known = {pid: [Wording(**{**w, "attempts": tuple(w["attempts"])}) for w in ws]
                 for pid, ws in read_json(target / WORDINGS).items()}
    todo = {pid: q for pid, q in questions.items() if pid in needed and pid not in known}
    if todo:
        known.update(await write_wordings(todo, variants, k, reworder, judge, dry_run=dry_run))
        write_json(target / WORDINGS, {pid: [w.to_dict() for w in known[pid]]
                                       for pid in questions if pid in known})
    wordings = {pid: known[pid] for pid in questions if pid in needed}
    if kept != out:  # beside each judge's figures, the wordings it was judged under
        write_json((session.target(out) if session is not None else out) / WORDINGS,
                   {pid: [w.to_dict() for w in ws] for pid, ws in wordings.items()})
    spent = reworder.stats.since(before)
    result = await _judge(pairs, judge, wordings, out, concurrency, progress, session)
    if dry_run and "dry_run" in result.summary:
        estimate = result.summary["dry_run"]  # and what writing the wordings would send
        estimate["requests"] += spent.requests
        estimate["tokens_in"] += spent.prompt_tokens
        estimate["tokens_out"] += spent.completion_tokens
        estimate["cost_usd"] = round(estimate["cost_usd"] + spent.cost_usd, 6)
        estimate["rewording_requests"] = spent.requests
    return result


async def _judge(pairs: Sequence[GoldPair], judge: Judge, wordings: dict[str, list[Wording]],
                 out: Path, concurrency: int, progress: bool | None,
                 session: Session | None) -> StageResult:
    async def work(pair: GoldPair) -> dict[str, list[dict[str, Any]]]:
        # The orientation, principles and fences of `cai eval judge`: under the original
        # question these are its very requests (answered from the cache after it).
        chosen_is_x = random.Random(f"{judge.settings.seed}:{pair.id}").random() < 0.5
        x, y = (pair.chosen, pair.rejected) if chosen_is_x else (pair.rejected, pair.chosen)
        groups = []
        for principle in judge.principles_for(pair.id):
            pid = principle.id if principle else None
            under = []
            for w in wordings[pid or DEFAULT_ID]:
                if w.question is None:
                    continue
                p = _worded(principle, w)
                j = PrincipleJudgement(
                    pid, await judge.one_order(pair.messages, x, y, p, f"{pair.id}:{pid}:xy"),
                    await judge.one_order(pair.messages, y, x, p, f"{pair.id}:{pid}:yx"))
                under.append({"wording": w.index, **j.to_dict()})
            groups.append({"principle": pid or DEFAULT_ID, "wordings": under})
        return {"judgements.jsonl": [{"id": pair.id, "human_x": int(chosen_is_x),
                                      "judgements": groups}]}

    config = {"judge": judge.client.spec, "judge_identity": judge.client.identity,
              "template": judge.template,
              "templates": judge.templates.hashes(judge.template, "_judge_data"),
              "constitution": judge.constitution.provenance if judge.constitution else None,
              "principles": judge.settings.principles, "seed": judge.settings.seed,
              "verdict_path": judge.verdict_path}  # the wordings: rewording-wordings' settings
    report: dict[str, Any] = {}

    def summarize(folder: Path) -> dict[str, Any]:
        from cai.reports.render import write

        report.update(rewording_report(list(read_jsonl(folder / "judgements.jsonl")),
                                       wordings), judge=judge.client.spec, config=config,
                      pairs=len(pairs))
        write(folder, "rewording", report)
        figures = {k: report["overall"][k] for k in SUMMARY_KEYS}
        return {**figures, "report": figures}

    result = await run_stage("eval-rewording", pairs, work, out=out, files=FILES,
                             clients=[judge.client], concurrency=concurrency, config=config,
                             progress=progress, summarize=summarize, session=session)
    result.report = report or None
    return result


def _worded(principle: Principle | None, w: Wording) -> Principle | None:
    if w.index == 0:
        return principle  # the original request, unchanged
    if principle is None:
        return Principle(DEFAULT_ID, "", "", judge=w.question)
    return replace(principle, judge=w.question)


# ---------------------------------------------------------------- the figures


def verdict(p_x: float | None) -> str | None:
    """x or y where the judge decided; None for a tie or no verdict."""
    return None if p_x is None or p_x == 0.5 else "x" if p_x > 0.5 else "y"


def rewording_report(rows: Sequence[dict[str, Any]],
                     wordings: dict[str, list[Wording]]) -> dict[str, Any]:
    """Per principle: comparisons, flips across wordings, and accuracy under each wording."""
    by_principle: dict[str, list[tuple[int, str, dict[int, float | None]]]] = {}
    for r in rows:
        for g in r["judgements"]:
            by_principle.setdefault(g["principle"], []).append(
                (r["human_x"], r["id"], {w["wording"]: w["p_x"] for w in g["wordings"]}))
    principles = [_principle(pid, by_principle.get(pid, []), ws)
                  for pid, ws in wordings.items()]
    everything = [c for cs in by_principle.values() for c in cs]
    flips = _flips(everything)
    originals = [(h, u[0]) for h, _, u in everything if 0 in u]
    reworded = [(h, p) for h, _, u in everything for i, p in u.items() if i > 0]
    return {"definitions": DEFINITIONS,
            "overall": {"comparisons": len(everything), **flips,
                        "accuracy_original": _accuracy(originals)[0],
                        "accuracy_reworded": _accuracy(reworded)[0]},
            "principles": principles}


def _principle(pid: str, comparisons: list[tuple[int, str, dict[int, float | None]]],
               wordings: list[Wording]) -> dict[str, Any]:
    under = []
    for w in wordings:
        if w.question is None:
            continue
        judged = [(h, u[w.index]) for h, _, u in comparisons if w.index in u]
        accuracy, ci = _accuracy(judged)
        both = [(verdict(u[0]), verdict(u[w.index])) for _, _, u in comparisons
                if w.index in u and 0 in u and verdict(u[0]) and verdict(u[w.index])]
        under.append({"index": w.index, "question": w.question, "source": w.source,
                      "judged": sum(p is not None for _, p in judged),
                      "decided": sum(verdict(p) is not None for _, p in judged),
                      "accuracy": accuracy, "accuracy_ci95": ci,
                      "changed_vs_original": _share(sum(a != b for a, b in both), len(both))
                      if w.index else None})
    flips = _flips(comparisons)
    return {"id": pid, "comparisons": len(comparisons), **flips, "wordings": under,
            "missing": [{"index": w.index, "source": w.source, "reason": w.reason}
                        for w in wordings if w.question is None]}


def _flips(comparisons: list[tuple[int, str, dict[int, float | None]]]) -> dict[str, Any]:
    comparable = flipped = 0
    ids = []
    for _, cid, under in comparisons:
        decided = [v for v in map(verdict, under.values()) if v]
        if len(decided) >= 2:
            comparable += 1
            if len(set(decided)) > 1:
                flipped += 1
                ids.append(cid)
    return {"comparable": comparable, "flipped": flipped,
            "flip_rate": _share(flipped, comparable),
            "flip_rate_ci95": [round(v, 4) for v in wilson(flipped, comparable)]
            if comparable else None,
            "flipped_ids": ids[:20]}


def _accuracy(judged: list[tuple[int, float | None]]) -> tuple[float | None, list[float] | None]:
    if not judged:
        return None, None
    hits = sum(0.5 if verdict(p) is None else float((verdict(p) == "x") == bool(h))
               for h, p in judged)
    return _share(hits, len(judged)), [round(v, 4) for v in wilson(hits, len(judged))]


def _share(part: float, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
