"""`cai eval policy`: did the policy get better, or did it learn to please the judge?

Three steps, each a resumable stage:
1. answer: the policy answers every prompt of a suite (or answers made elsewhere are read);
   a reference model's answers go to `reference/`, so that each file holds each id once;
2. grade: the detectors read every answer; an optional evaluator model (never the training
   judge with its own template) classifies refusals, checks false premises and compares each
   answer with the reference's in both orders;
3. report: report.json of numbers, and report.md and report.html rendered from it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from cai.chat import Message, conversation_of, messages_to_dicts, reply_text, step_seed
from cai.errors import CaiError, CaiWarning, InputError
from cai.evals import detectors, metrics
from cai.evals.evaluator import Evaluator
from cai.evals.suites import KINDS
from cai.inputs import PromptItem, prompt_id
from cai.models.client import Client
from cai.models.session import Session
from cai.records.read import read_json, read_jsonl
from cai.records.rewrite import write_jsonl
from cai.schema import ID, PROMPT, TEXT, Id, Prompt, Reply, Row, checked_jsonl
from cai.stages.sample import policy_messages
from cai.stages.stage import StageResult, run_stage
from cai.templates import Templates

ANSWERS, JUDGEMENTS, REFERENCE = "responses.jsonl", "judgements.jsonl", "reference"


@dataclass(frozen=True)
class Answer:
    """One answer to grade: the prompt, the reply, and what the suite expects of it."""

    id: str
    messages: tuple[Message, ...]
    response: str
    kind: str = "helpful"
    category: str | None = None


class AnswerRow(Row):
    """A line of answers made elsewhere: {id, prompt, response} or TRL prompt/completion."""

    fix: ClassVar[str] = "give {id, prompt, response} or TRL prompt/completion fields"
    prompt: Prompt = Field(description=PROMPT)
    response: Reply | None = Field(None, description=PROMPT)
    completion: Reply | None = Field(None, description=PROMPT)
    id: Id | None = Field(None, description=ID)
    kind: Literal[KINDS] | None = None  # type: ignore[valid-type]
    category: str | None = Field(None, description=TEXT)

    @model_validator(mode="after")
    def has_reply(self) -> AnswerRow:
        if self.response is None and self.completion is None:
            raise ValueError("no 'response' or 'completion'")
        return self


def read_answers(path: Path) -> list[Answer]:
    """Rows of {id, prompt, response} or TRL prompt/completion, each kept: ids are unique,
    prompts may repeat (several models' answers to one prompt)."""
    answers: list[Answer] = []
    seen: dict[str, int] = {}
    for line, r in checked_jsonl(path, AnswerRow):
        messages = conversation_of(r.prompt)
        response = reply_text(r.response if r.response is not None else r.completion)
        rid = r.id or f"{prompt_id(messages)}-{line}"
        if rid in seen:
            raise InputError(path, line, f"id '{rid}' was already used on line {seen[rid]}; "
                             "give each answer its own id")
        seen[rid] = line
        answers.append(Answer(rid, messages, response, r.kind or "helpful", r.category))
    if not answers:
        raise InputError(path, None, "no answers in the file")
    return answers


async def answer(items: list[PromptItem], client: Client, templates: Templates, out: Path, *,
                 seed: int = 0, step: str = "answer", session: Session | None = None,
                 concurrency: int = 8, progress: bool | None = None) -> StageResult:
    """The policy's answer to every prompt, into `out/responses.jsonl`. The reference answers
    with another `step`, so that the same model as reference samples other answers."""

    async def work(item: PromptItem) -> dict[str, list[dict[str, Any]]]:
        sampling = client.sampling(seed=step_seed(seed, item.id, step))
        c = await client.complete(policy_messages(templates, item.messages), sampling)
        return {ANSWERS: [{
            "id": item.id, "prompt": messages_to_dicts(list(item.messages)),
            "response": c.text, "kind": item.kind or "helpful", "category": item.category,
            "model": client.spec, "model_identity": client.identity,
            "finish_reason": c.finish_reason, "sampling": client.sent(sampling),
            "templates": templates.hashes("system")}]}

    config = {"model": client.spec, "model_identity": client.identity, "seed": seed,
              "step": step,
              "sampling": client.sent(client.sampling()), "templates": templates.hashes("system")}
    return await run_stage("eval-answer", items, work, out=out, files=(ANSWERS,),
                           clients=[client], concurrency=concurrency, config=config,
                           progress=progress, session=session,
                           summary_file="answer.summary.json")


async def grade(answers: list[Answer], out: Path, *, evaluator: Evaluator | None = None,
                reference: dict[str, Answer] | None = None, session: Session | None = None,
                concurrency: int = 8, progress: bool | None = None) -> StageResult:
    """Detectors, and the evaluator where given, on every answer, into judgements.jsonl."""
    common = detectors.recurring([a.response for a in answers])

    async def work(a: Answer) -> dict[str, list[dict[str, Any]]]:
        d = detectors.detect(a.response)
        row: dict[str, Any] = {
            "id": a.id, "kind": a.kind, "category": a.category, "refusal": d.refusal,
            "refusal_detector": d.refusal, "length": d.words, "chars": len(a.response),
            "hedges": d.hedges, "hedge_density": d.hedge_density, "hedged": d.hedged,
            "boilerplate": list(d.boilerplate + detectors.recurring_in(a.response, common)),
            "premise_corrected": d.premise_corrected}
        if evaluator is not None:
            await _evaluate(evaluator, a, row, reference)
        return {JUDGEMENTS: [row]}

    config = {"evaluator": evaluator.client.spec if evaluator else None,
              "evaluator_identity": evaluator.client.identity if evaluator else None,
              "templates": evaluator.template_hashes() if evaluator else None,
              "reference": len(reference) if reference else 0}
    clients = [evaluator.client] if evaluator else []
    return await run_stage("eval-grade", answers, work, out=out, files=(JUDGEMENTS,),
                           clients=clients, concurrency=concurrency, config=config,
                           progress=progress, session=session,
                           summary_file="grade.summary.json")


async def _evaluate(evaluator: Evaluator, a: Answer, row: dict[str, Any],
                    reference: dict[str, Answer] | None) -> None:
    """The evaluator's readings of one answer, added to its row."""
    refusal = await evaluator.refusal(a.messages, a.response, a.id)
    row["evaluator_refusal"] = refusal.label
    if refusal.label is not None:
        row["refusal"] = refusal.label  # a capable model reads refusals better than phrases
    if a.kind == "false-premise":
        premise = await evaluator.premise(a.messages, a.response, a.id)
        row["evaluator_premise_corrected"] = premise.label
        if premise.label is not None:
            row["premise_corrected"] = premise.label
    other = (reference or {}).get(a.id)
    if other is not None:
        c = await evaluator.pairwise.compare(a.messages, a.response, other.response,
                                             f"win:{a.id}")
        row["win"] = c.p_x  # P(the policy's answer is better than the reference's)
        row["reference_length"] = detectors.words(other.response)
        row["win_orders"] = [o.verdict.p_first for j in c.judgements
                             for o in (j.x_first, j.x_second)]


def answers_in(path: Path) -> list[Answer]:
    """The answers a stage wrote (responses.jsonl), in the form `grade` takes."""
    return [Answer(r["id"], conversation_of(r["prompt"]), r["response"], r.get("kind") or
                   "helpful", r.get("category")) for r in read_jsonl(path)]


def by_prompt(answers: list[Answer]) -> dict[str, Answer]:
    """Reference answers by id, and also by the hash of their prompt, for answers made
    elsewhere whose ids differ."""
    found = {a.id: a for a in answers}
    for a in answers:
        found.setdefault(prompt_id(a.messages), a)
    return found


def match(answers: list[Answer], reference: dict[str, Answer]) -> dict[str, Answer]:
    """For each answer's id, its reference answer (same id, else same prompt). An answer whose
    reference of the same id answered another prompt is an error: they cannot be compared."""
    found = {}
    for a in answers:
        r = reference.get(a.id) or reference.get(prompt_id(a.messages))
        if r is None:
            continue
        if prompt_id(r.messages) != prompt_id(a.messages):
            raise CaiError(f"answer '{a.id}' and the reference answer with that id have "
                           "different prompts, so the win rate would compare answers to two "
                           "questions; give each prompt one id in both files (or no ids: "
                           "answers are then matched by their prompt)")
        found[a.id] = r
    return found


def build_report(out: Path, info: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """The report's figures from the judgements in `out` (and `out/reference/`)."""
    rows = list(read_jsonl(out / JUDGEMENTS))
    ref_path = out / REFERENCE / JUDGEMENTS
    ref_rows = list(read_jsonl(ref_path)) if ref_path.exists() else []
    # A comparison the evaluator could not decide counts as a tie, as in `cai eval judge`:
    # dropping it would let the hard prompts fall out of the figure.
    compared = [r for r in rows if "win" in r]
    won = [(0.5 if r["win"] is None else r["win"], r["length"], r["reference_length"])
           for r in compared]
    unjudged = sum(1 for r in compared if r["win"] is None)
    report = {
        **metrics.rates(rows), **(metrics.win_rates(won, seed=seed) if won else {}),
        "by_category": metrics.by_category(rows),
        "length_histogram": {"bins": list(metrics.LENGTH_BINS),
                             "policy": metrics.histogram([r["length"] for r in rows]),
                             "reference": metrics.histogram([r["length"] for r in ref_rows])
                             if ref_rows else None},
        "reference": ({**metrics.rates(ref_rows), "by_category": metrics.by_category(ref_rows)}
                      if ref_rows else None),
        "unjudged_wins": unjudged,
        "decided_wins": len(compared) - unjudged,
        "win_coverage": round(1 - unjudged / len(compared), 4) if compared else None,
        **info,
    }
    return report


WEIGHTS = ("local:", "hf:", "vllm:")  # identities that end in a fingerprint of the weights


def same_model(a: str, b: str) -> bool:
    """Whether two model identities name one model: equal, or the same weights behind two
    backends (a checkpoint through transformers and through vLLM; the embedded GGUF as
    `local` and as `hf:local`)."""
    if a == b:
        return True
    prints = [x.rpartition("@")[2] for x in (a, b) if x.startswith(WEIGHTS) and "@" in x]
    return len(prints) == 2 and prints[0] == prints[1]


def warn_if_same_judge(evaluator: Evaluator, training: dict[str, Any] | None,
                       allow: bool) -> str | None:
    """The independence guard: the model and template that labelled the training data (or,
    in GRPO, gave the reward) must not also grade the policy trained on it. Models are
    compared by identity, whatever their backends; by spec where the identity is not known.
    Returns the report's note, if any."""
    if training is None:
        return None
    match = next(((spec, known) for spec, known in _judges(training)
                  if spec == evaluator.client.spec
                  or (known and same_model(known, evaluator.client.identity))), None)
    if match is None:
        return None
    spec, known = match

    def main(hashes: dict[str, str]) -> set[str]:  # partials such as _judge_data are shared
        return {h for name, h in hashes.items() if not name.startswith("_")}

    judge = spec + (f" ({known})" if known and known != spec else "")
    what = "gave the reward this policy was trained on" if training.get("reward") else \
        "labelled this policy's training data"
    if main(evaluator.template_hashes()) & main(training.get("templates") or {}):
        if not allow:
            raise CaiError(f"the evaluator {evaluator.client.spec} with the same template "
                           f"{what} (it is the training judge {judge}), so it would grade "
                           "what it rewarded; use another --evaluator, or "
                           "--allow-same-evaluator")
        return "the evaluator is the training judge with the same template (allowed by " \
               "--allow-same-evaluator): its figures can reward what it taught"
    note = (f"the evaluator {evaluator.client.spec} is also the training judge, with its own "
            f"templates ({judge} {what}): an independent model would be a better yardstick")
    warnings.warn(note, CaiWarning, stacklevel=2)
    return note


def _judges(training: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(spec, identity) of the training judge, or of each judge of a training panel."""
    specs, identities = training.get("judge"), training.get("identity")
    if isinstance(specs, list):
        known = identities if isinstance(identities, list) else [None] * len(specs)
        return list(zip(specs, known, strict=False))
    return [(str(specs), identities)]


def training_judge(model: str | None, given: str | None, templates: Templates,
                   responses: Path | None = None) -> dict[str, Any] | None:
    """The judge that labelled a policy's training data, or gave GRPO its reward:
    `--training-judge`, or read from the provenance of a checkpoint `cai train` wrote (its
    data records name their judge; GRPO's summary its reward's), whichever backend loads it.
    For answers made elsewhere, the checkpoint their records name as their model."""
    if given:
        return {"judge": given, "templates": templates.hashes("judge", "_judge_data")}
    if model is None and responses is not None:
        model = next((r.get("model") for r in read_jsonl(responses)), None)
    if not isinstance(model, str) or not model.startswith(("hf:", "vllm:")):
        return None
    summary = Path(model.split(":", 1)[1].split(",", 1)[0]).expanduser() / "train_summary.json"
    if not summary.is_file():
        return None
    trained = read_json(summary, "train the checkpoint again")
    grpo = trained.get("grpo")
    if grpo and grpo.get("judge"):  # older summaries: the judge's default template
        return {"judge": grpo["judge"], "identity": grpo.get("judge_identity"), "reward": True,
                "templates": grpo.get("templates") or templates.hashes("judge", "_judge_data")}
    for data in trained.get("data", []):
        path = Path(data.get("path", ""))
        if path.is_file():
            for record in read_jsonl(path):
                if record.get("judge"):
                    return {"judge": record["judge"], "identity": record.get("judge_identity"),
                            "templates": record.get("templates")}
                break
    return None


async def eval_policy(out: Path, *, session: Session, templates: Templates,
                      suite: list[PromptItem] | None = None, model: str | None = None,
                      responses: Path | None = None, reference: str | None = None,
                      reference_responses: Path | None = None, evaluator: str | None = None,
                      training: dict[str, Any] | None = None, allow_same_evaluator: bool = False,
                      seed: int = 0, progress: bool | None = None,
                      shard: str | None = None) -> dict[str, Any]:
    """The whole evaluation into `out`; returns the report (or, for a dry run, which writes
    nothing, the estimate of each stage: answering, and the evaluator's grading)."""
    run: dict[str, Any] = {"session": session, "concurrency": session.limits.concurrency,
                           "progress": progress}
    judge = Evaluator(session.client(evaluator, logprobs=True), templates, seed) \
        if evaluator else None
    note = warn_if_same_judge(judge, training, allow_same_evaluator) if judge else None
    dry = session.dry_run  # estimates only: nothing is kept in `out`
    stages = []
    answers: list[Answer] = []
    if responses is not None:
        from cai.inputs import take

        answers = take(read_answers(responses), shard)
        if not dry:
            _keep(out / ANSWERS, answers)
    else:
        if suite is None or model is None:
            raise CaiError("give a model and a suite to answer, or --responses FILE")
        client = session.client(model)
        stages.append(await answer(suite, client, templates, out, seed=seed, **run))
        answers = _longest(suite, client) if dry else answers_in(out / ANSWERS)
    ref: list[Answer] | None = None
    if reference_responses is not None:
        ref = read_answers(reference_responses)
        if not dry:
            _keep(out / REFERENCE / ANSWERS, ref)
    elif reference is not None:
        prompts = suite if suite is not None else _prompts_of(answers)
        client = session.client(reference)
        stages.append(await answer(prompts, client, templates, out / REFERENCE, seed=seed,
                                   step="reference", **run))
        ref = _longest(prompts, client) if dry else answers_in(out / REFERENCE / ANSWERS)
    if ref is None and not dry and (out / REFERENCE / ANSWERS).exists():
        ref = answers_in(out / REFERENCE / ANSWERS)
    matched = match(answers, by_prompt(ref)) if ref and judge else None
    if judge or not dry:  # a dry run without an evaluator has nothing more to estimate
        stages.append(await grade(answers, out, evaluator=judge, reference=matched, **run))
        if ref:
            stages.append(await grade(ref, out / REFERENCE, evaluator=judge, **run))
    if dry:
        return {"dry_run": _estimate(stages)}
    info = {"model": model or str(responses), "reference_model": reference or (
        str(reference_responses) if reference_responses else None),
        "evaluator": evaluator, "evaluator_note": note, "training_judge": training,
        # where the refusal figures come from the rules alone, their measured error band
        "detector_accuracy": None if evaluator else detectors.measured_accuracy(),
        "finished": all(s.summary["finished"] for s in stages),
        "stages": {s.summary["stage"] + ("-reference" if s.out.name == REFERENCE else ""):
                   {k: s.summary[k] for k in ("done", "failed", "requests", "cache_hits",
                                              "wall_seconds", "stopped_reason")}
                   for s in stages}}
    from cai.reports import policy as views
    from cai.reports.render import write

    report = build_report(out, info, seed)
    write(out, "policy", report, views.plots)
    return report


def _longest(items: list[PromptItem], client: Client) -> list[Answer]:
    """For a dry run, the answers the dry-run backend stands for: each at its max_tokens
    bound, so that the evaluator's requests are estimated on the high side too."""
    n = client.sampling().max_tokens
    text = ("word " * n)[: 4 * n]
    return [Answer(i.id, i.messages, text, i.kind or "helpful", i.category) for i in items]


def _estimate(stages: list[StageResult]) -> list[dict[str, Any]]:
    """Each stage's dry-run estimate by name, and their total."""
    found = [{"stage": s.summary["stage"] + ("-reference" if s.out.name == REFERENCE else ""),
              **s.summary["dry_run"]} for s in stages]
    total = {k: sum(e[k] for e in found) for k in ("requests", "tokens_in", "tokens_out")}
    return [*found, {"stage": "total", **total,
                     "cost_usd": round(sum(e["cost_usd"] for e in found), 6)}]


def _prompts_of(answers: list[Answer]) -> list[PromptItem]:
    """Each prompt of answers made elsewhere once, for a reference model to answer."""
    unique = {prompt_id(a.messages): a for a in reversed(answers)}
    return [PromptItem(pid, a.messages, 0, a.kind, a.category) for pid, a in unique.items()]


def _keep(path: Path, answers: list[Answer]) -> None:
    """Answers made elsewhere, written into the evaluation's folder as it would have."""
    write_jsonl(path, [{"id": a.id, "prompt": messages_to_dicts(list(a.messages)),
                        "response": a.response, "kind": a.kind, "category": a.category}
                       for a in answers])
