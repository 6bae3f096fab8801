"""Prompts made from a constitution (`cai data prompts`), as the Constitutional AI paper made
most of its red-team set.

Each request asks a model for a few user messages: red-team requests take one principle,
drawn by weight, and ask for messages that would tempt an assistant to break it; helpful
requests take one topic and ask for ordinary, safe tasks, so that the data does not drift into
refusal. The replies are kept whole in `requests.jsonl`, a stage file like any other (cached,
resumable, budgeted). The prompts are then read from them in request order, and duplicates,
exact or near, are dropped with `cai data dedup`'s machinery. Requests go on in rounds until
N distinct prompts are made or the cap on requests is reached.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cai.chat import Message, step_seed
from cai.constitution import Constitution, Principle
from cai.data.dedup import find_duplicates
from cai.data.rows import Row
from cai.errors import CaiError
from cai.inputs import prompt_id
from cai.models.client import Client
from cai.records.read import read_jsonl, read_text
from cai.records.rewrite import write_json, write_jsonl
from cai.stages.stage import SUMMARY, StageResult, run_stage
from cai.templates import Templates

if TYPE_CHECKING:
    from cai.models.session import Session

KINDS = ("red-team", "helpful", "both")
TEMPLATES = {"red-team": "make_redteam", "helpful": "make_helpful"}
FILES = ("requests.jsonl",)
OUTPUT = "prompts.jsonl"
DEFAULT_TOPICS = Path(__file__).with_name("topics.txt")
MIN_WORDS, MAX_WORDS = 3, 200  # a line outside these is not a user message
_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*")
_QUOTES = "\"'“”‘’"


@dataclass(frozen=True)
class Request:
    """One request to the generator: red-team under a principle, or helpful on a topic."""

    id: str
    kind: str
    principle: Principle | None = None
    topic: str | None = None


def read_topics(path: str | Path | None) -> list[str]:
    """Topics for helpful requests, one a line ('#' starts a comment)."""
    source = Path(path) if path else DEFAULT_TOPICS
    topics = [t.split("#")[0].strip() for t in read_text(source).splitlines()]
    topics = [t for t in topics if t]
    if not topics:
        raise CaiError(f"{source}: no topics; write one topic a line")
    return topics


def plan(constitution: Constitution, kind: str, topics: Sequence[str], seed: int,
         count: int) -> list[Request]:
    """The first `count` requests. Each is fixed by the seed and its number alone, so a
    resumed or extended run asks the same things; under `both` the kinds alternate."""
    requests = []
    for i in range(count):
        rid = f"request-{i + 1:05d}"
        rng = random.Random(f"{seed}:{rid}")
        this = kind if kind != "both" else ("red-team", "helpful")[i % 2]
        if this == "red-team":
            requests.append(Request(rid, this, principle=constitution.sample(rng)))
        else:
            requests.append(Request(rid, this, topic=rng.choice(list(topics))))
    return requests


def parse_prompts(text: str) -> list[str]:
    """The user messages in a reply: one a line, numbering, bullets and quotes taken off."""
    found = []
    for line in text.splitlines():
        if not _NUMBERED.match(line):
            continue  # a preamble or a closing remark, not one of the list
        message = _NUMBERED.sub("", line).strip().strip(_QUOTES).strip()
        if MIN_WORDS <= len(message.split()) <= MAX_WORDS and not message.endswith(":"):
            found.append(message)
    return found


@dataclass
class Generator:
    """Everything one `cai data prompts` run needs, shared by all its requests."""

    constitution: Constitution
    client: Client
    templates: Templates
    kind: str = "both"
    topics: tuple[str, ...] = ()
    seed: int = 0
    per_request: int = 5
    temperature: float = 1.0

    def template(self, request: Request) -> str:
        return TEMPLATES[request.kind]

    def config(self) -> dict[str, Any]:
        """The settings that shape the prompts; a rerun with others is refused."""
        return {"model": self.client.spec, "model_identity": self.client.identity,
                "constitution": self.constitution.provenance, "kind": self.kind,
                "topics": list(self.topics), "seed": self.seed,
                "per_request": self.per_request,
                "templates": self.templates.hashes(*TEMPLATES.values()),
                "sampling": self.client.sent(self.client.sampling(
                    temperature=self.temperature))}

    def render(self, request: Request) -> str:
        if request.kind == "red-team":
            return self.templates.render(TEMPLATES["red-team"], constitution=self.constitution,
                                         principle=request.principle, count=self.per_request)
        return self.templates.render(TEMPLATES["helpful"], topic=request.topic,
                                     count=self.per_request)

    async def run_one(self, request: Request) -> dict[str, list[dict[str, Any]]]:
        sampling = self.client.sampling(seed=step_seed(self.seed, request.id, "prompts"),
                                        temperature=self.temperature)
        completion = await self.client.complete([Message("user", self.render(request))],
                                                sampling)
        found = parse_prompts(completion.text)
        if not found:
            raise CaiError("no numbered prompts could be read from the reply")
        template = self.template(request)
        return {"requests.jsonl": [{
            "id": request.id, "kind": request.kind,
            "principle": request.principle.id if request.principle else None,
            "tags": list(request.principle.tags) if request.principle else [],
            "topic": request.topic, "prompts": found, "text": completion.text,
            "model": self.client.spec, "model_identity": self.client.identity,
            "model_name": completion.model, "sampling": self.client.sent(sampling),
            "template": template, "template_sha256": self.templates.sha256(template)}]}


def collect(requests: list[dict[str, Any]], n: int,
            threshold: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The first `n` distinct prompts in request order, and the duplicates dropped."""
    requests = sorted(requests, key=lambda r: r["id"])
    rows = []
    for r in requests:
        for k, text in enumerate(r["prompts"]):
            tags = [r["kind"], *(r["tags"] or []), *([r["topic"]] if r["topic"] else [])]
            record = {"id": prompt_id((Message("user", text),)), "prompt": text,
                      "kind": r["kind"], "principle": r["principle"], "tags": tags,
                      "generator": {"model": r["model"], "model_identity": r["model_identity"],
                                    "request": r["id"], "template": r["template"],
                                    "template_sha256": r["template_sha256"]}}
            rows.append(Row(k + 1, record["id"], text, record))
    # One-line prompts share no template frame: nothing to strip before comparing.
    found = find_duplicates(rows, threshold, strip_shared=False)
    dropped = {id(d.row) for d in found}
    kept = [r.record for r in rows if id(r) not in dropped][:n]
    removed = [{**d.row.record, "duplicate_of": d.of.id, "similarity": d.similarity}
               for d in found]
    return kept, removed


async def make_prompts(generator: Generator, out: Path, n: int, *, max_requests: int,
                       threshold: float = 0.8, concurrency: int = 8,
                       progress: bool | None = None,
                       session: Session | None = None) -> StageResult:
    """Ask for prompts in rounds until `out/prompts.jsonl` holds `n` distinct ones, or
    `max_requests` requests have been made; the summary says how many and why it stopped."""
    asked = 0
    kept: list[dict[str, Any]] = []
    rounds: list[StageResult] = []
    while True:
        # Prompts per request so far (the asked-for count at first): a poor generator gets a
        # larger next round.
        per_request = len(kept) / asked if asked and kept else generator.per_request
        asked = min(max_requests, asked + max(1, math.ceil(
            1.25 * (n - len(kept)) / max(per_request, 0.5))))
        rounds.append(await run_stage(
            "prompts", plan(generator.constitution, generator.kind, generator.topics,
                            generator.seed, asked),
            generator.run_one, out=out, files=FILES, clients=[generator.client],
            concurrency=concurrency, config=generator.config(), progress=progress,
            session=session, describe=lambda r: {"kind": r.kind, "topic": r.topic,
                                                 "principle": r.principle and r.principle.id}))
        if session is not None and session.dry_run:
            return rounds[0]  # one round's estimate; nothing was made
        requests = list(read_jsonl(out / FILES[0])) if (out / FILES[0]).exists() else []
        kept, removed = collect(requests, n, threshold)
        if len(kept) >= n or asked >= max_requests or not rounds[-1].summary["finished"]:
            break
    write_jsonl(out / OUTPUT, kept)
    write_jsonl(out / "prompts.removed.jsonl", removed)
    result = rounds[-1]
    result.summary.update(_totals([r.summary for r in rounds]))
    result.summary.update({
        "prompts": len(kept), "wanted": n, "attempts": asked, "requests_made": len(requests),
        "duplicates": len(removed), "short_by": n - len(kept),
        "by_kind": {k: sum(r["kind"] == k for r in kept) for k in ("red-team", "helpful")}})
    write_json(out / SUMMARY, result.summary)
    return result


def _totals(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary for all rounds: items and time added up, what was done before the first
    round kept. (Requests, tokens and cost are the client's, counted over all rounds already.)"""
    totals = {k: round(sum(s[k] for s in summaries), 3) for k in ("done", "wall_seconds")}
    return {**totals, "already_done": summaries[0]["already_done"], "rounds": len(summaries)}
