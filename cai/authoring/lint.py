"""`cai constitution lint`: advice on how principles are written, beyond `check`'s errors.

Each rule is a heuristic that points at a line; none is a verdict. Where they come from:

- near-duplicate principles: two principles that ask the same thing double its weight and
  waste comparisons (the near-duplicate check of `cai data dedup`, on the principle texts);
- only forbidding: principles that state the behaviour to aim for ("explain briefly and offer
  a safe alternative") are reported to track human judgement better than prohibitions;
- vague words: "appropriate", "good", "bad" carry no instruction a model can act on when they
  are the whole of the requirement (the CAI paper's principles name concrete harms);
- a revision that does not take up its critique: the critique finds problems the revision
  must fix, so they should talk about the same thing;
- missing judge questions: the judge then falls back to a generic question;
- no counterweight: a constitution of harms only teaches refusal (what XSTest, Röttger et
  al. 2024, measures); add principles against refusing safe requests and lecturing;
- declared tags no principle uses (and tags used but not declared).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cai.constitution import Constitution, Principle, load_constitution
from cai.data.dedup import find_duplicates
from cai.data.rows import Row
from cai.errors import CaiError

NEAR_DUPLICATE = 0.5  # word 3-gram Jaccard of two principles' texts
VAGUE = ("appropriate", "inappropriate", "good", "bad", "proper", "suitable", "acceptable",
         "unacceptable", "nice", "reasonable", "correct", "right", "wrong", "ok", "okay")
CONCRETE_ENOUGH = 6  # content words besides the vague ones, below which a vague word is it
NEGATIVE = re.compile(r"\b(not|never|no longer|avoid|don't|do not|refuse|remove|without|"
                      r"stop|must not|nothing|neither|nor)\b")
NEGATED = re.compile(r"\b(not|never|no longer|avoid|don't|refuse|remove|without|stop|"
                     r"nothing|neither|nor)\b[^,.;:]*?(?=[,.;:]|\bbut\b|\band\b|$)")
POSITIVE = re.compile(r"\b(?:(?:give|offer|explain|provide|answer|help|keep|add|include|"
                      r"suggest|point|show|tell|say|state|name|describe|correct|admit|"
                      r"treat|respond|acknowledge|direct|use|stay|remain)\w*|be|make it|"
                      r"so that it (?!no longer))\b")
BACK_REFERENCE = re.compile(r"\b(the (problems?|issues?|critique|points?)|those|these|that "
                            r"critique|what (the|you) found|it no longer|fix|address)\b")
HARM_WORDS = re.compile(r"\b(harm|hurt|kill|violen|weapon|illegal|crime|danger|abuse|drug|"
                        r"hate|harass|self-harm|suicide|exploit|attack)")
COUNTERWEIGHT = re.compile(r"\b(refus|over-refusal|helpful|useful|lectur|moralis|moraliz|"
                           r"preach|over-?cautious|evasive|vague)")
STOP = {"a", "an", "the", "of", "to", "in", "on", "for", "and", "or", "but", "with", "by",
        "as", "at", "it", "its", "is", "are", "be", "that", "this", "which", "what", "any",
        "all", "your", "you", "their", "them", "his", "her", "from", "into", "than", "then",
        "so", "if"}
_WORD = re.compile(r"[a-z']+")


# What --strict does not count: a model's opinion, and a dry run's estimate.
ADVICE_ONLY = ("model-clarity", "wording-estimate")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    message: str
    principle: str | None = None

    def __str__(self) -> str:
        who = f"principle '{self.principle}': " if self.principle else ""
        return f"{self.path}:{self.line}: {who}{self.message} [{self.rule}]"


def _lines(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per principle id, the line of each of its keys ("id" for the item); the top keys'."""
    root = yaml.compose(path.read_text(encoding="utf-8"))
    top: dict[str, int] = {}
    found: dict[str, dict[str, int]] = {}
    if not isinstance(root, yaml.MappingNode):
        return found, top
    for key, value in root.value:
        top[key.value] = key.start_mark.line + 1
        if key.value == "principles" and isinstance(value, yaml.SequenceNode):
            for item in value.value:
                if isinstance(item, yaml.MappingNode):
                    keys = {k.value: k.start_mark.line + 1 for k, _ in item.value}
                    pid = next((v.value for k, v in item.value if k.value == "id"), None)
                    if pid is not None:
                        found[str(pid)] = {**keys, "id": item.start_mark.line + 1}
    return found, top


def _content(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP and len(w) > 2}


def lint(path: str | Path) -> list[Finding]:
    path = Path(path)
    const = load_constitution(path)
    lines, top = _lines(path)

    def at(p: Principle, key: str = "id") -> int:
        return lines.get(p.id, {}).get(key) or lines.get(p.id, {}).get("id") or 1

    def finding(p: Principle | None, key: str, rule: str, message: str) -> Finding:
        line = at(p, key) if p is not None else top.get(key, 1)
        return Finding(str(path), line, rule, message, p.id if p else None)

    found: list[Finding] = []
    found += _near_duplicates(const, finding)
    for p in const.principles:
        found += _principle(p, finding)
    found += _counterweight(const, finding)
    found += _tags(const, finding)
    return sorted(found, key=lambda f: (f.line, f.rule))


def _near_duplicates(const: Constitution, finding: Any) -> list[Finding]:
    rows = [Row(i, p.id, f"{p.critique} {p.revision} {p.judge or ''}", {})
            for i, p in enumerate(const.principles)]
    by_id = {p.id: p for p in const.principles}
    return [finding(by_id[d.row.id], "id", "near-duplicate",
                    f"asks much the same as '{d.of.id}' (similarity {d.similarity:.2f}); "
                    "merge them, or make each ask something of its own")
            for d in find_duplicates(rows, NEAR_DUPLICATE, strip_shared=False)]


def _principle(p: Principle, finding: Any) -> list[Finding]:
    found = []
    aim = p.revision.lower()
    # What the revision asks for once its negated clauses ("not help anyone ...") are gone.
    asked = NEGATED.sub(" ", aim)
    if NEGATIVE.search(aim) and not POSITIVE.search(asked):
        found.append(finding(p, "revision", "only-forbids",
                             "the revision only says what not to do; say what the answer "
                             "should do instead (e.g. 'explain why briefly and offer a safe "
                             "alternative')"))
    for key, text in (("critique", p.critique), ("revision", p.revision), ("judge", p.judge)):
        for sentence in re.split(r"(?<=[.?!])\s+", text or ""):
            words = _WORD.findall(sentence.lower())
            vague = [w for w in words if w in VAGUE]
            concrete = [w for w in words if w not in STOP and w not in VAGUE and len(w) > 3]
            if vague and len(concrete) < CONCRETE_ENOUGH:
                found.append(finding(p, key, "vague", f"'{vague[0]}' carries the meaning of "
                                     f"{sentence.strip()!r}; name the behaviour it stands for"))
                break
    shared = _content(p.critique) & _content(p.revision)
    if not shared and not BACK_REFERENCE.search(p.revision.lower()):
        found.append(finding(p, "revision", "unmatched", "the revision does not take up the "
                             "critique (no words in common, no reference back to what it "
                             "found); make it fix what the critique asks about"))
    if not p.judge:
        found.append(finding(p, "id", "no-judge", "no judge question; the judge will use a "
                             "generic one. Add 'judge: Which response ...?'"))
    return found


def _counterweight(const: Constitution, finding: Any) -> list[Finding]:
    harms = [p for p in const.principles
             if HARM_WORDS.search(f"{p.critique} {' '.join(p.tags)}".lower())]
    balanced = any(COUNTERWEIGHT.search(f"{p.critique} {p.revision} {' '.join(p.tags)}".lower())
                   for p in const.principles)
    if len(harms) >= 3 and not balanced:
        return [finding(None, "principles", "no-counterweight",
                        f"{len(harms)} principles are about harm and none pushes back against "
                        "refusing safe requests, lecturing or vagueness; add one, or the data "
                        "will teach refusal")]
    return []


def _tags(const: Constitution, finding: Any) -> list[Finding]:
    if not const.tags:
        return []
    used = {t for p in const.principles for t in p.tags}
    found = [finding(None, "tags", "unused-tag", f"tag '{t}' is declared but no principle "
                     "uses it; remove it or tag a principle with it")
             for t in const.tags if t not in used]
    declared = set(const.tags)
    found += [finding(p, "tags", "undeclared-tag", f"tag '{t}' is not in the declared 'tags:' "
                      "list; add it there or fix its spelling")
              for p in const.principles for t in p.tags if t not in declared]
    return found


async def clarity(path: str | Path, client: Any, templates: Any) -> list[Finding]:
    """A model's reading of each principle's clarity: an opinion, marked as one."""
    import asyncio

    from cai.chat import Message

    const = load_constitution(path)
    lines, _ = _lines(Path(path))

    async def one(p: Principle) -> Finding:
        text = templates.render("lint_clarity", principle=p)
        reply = await client.complete([Message("user", text)],
                                      client.sampling(seed=0, temperature=0.0, max_tokens=80))
        found = re.search(r"\b(10|[1-9])\b", reply.text)
        score = f"clarity {found.group(1)}/10" if found else "no score given"
        said = " ".join(reply.text.split())[:200]
        return Finding(str(path), lines.get(p.id, {}).get("id", 1), "model-clarity",
                       f"a model's opinion ({client.spec}), not a rule: {score}; {said!r}",
                       p.id)

    return list(await asyncio.gather(*(one(p) for p in const.principles)))


async def wording_flips(path: str | Path, judge: Any, gold: Path, out: Path, *, k: int,
                        max_flip: float, session: Any = None) -> list[Finding]:
    """Principles whose verdicts on the gold pairs change with the wording of their judge
    question more often than `max_flip`: measured (`cai eval judge --rewordings`), each
    finding with its figure."""
    from cai.evals.calibration import read_gold
    from cai.evals.rewording import evaluate_rewordings

    lines, _ = _lines(Path(path))
    result = await evaluate_rewordings(read_gold(gold), judge, out, k=k, session=session,
                                       progress=False)
    s = result.summary
    if "dry_run" in s:  # an estimate's answers measure nothing
        e = s["dry_run"]
        return [Finding(str(path), 1, "wording-estimate", f"a dry run: testing the wordings "
                        f"{where_of(gold, judge, k)} would send {e['requests']} requests, "
                        f"{e['tokens_in']} tokens in, at most {e['tokens_out']} out")]
    if not s["finished"] or s["failed"]:
        why = s["stopped_reason"] or f"{s['failed']} of {s['total']} gold pairs failed"
        raise CaiError(f"the wording test of {path} did not finish ({why}), so its figures "
                       "would say more than was measured; rerun the same command to go on "
                       "(what was answered comes from the response cache)")
    found = []
    for p in (result.report or {}).get("principles", []):
        line = lines.get(p["id"], {}).get("judge") or lines.get(p["id"], {}).get("id", 1)
        where = where_of(gold, judge, k)
        if p["flip_rate"] is None:
            found.append(Finding(str(path), line, "wording-untested", "no gold pair was "
                                 f"decided under two of its wordings {where}, so whether its "
                                 "verdicts depend on the wording is unknown; use more pairs",
                                 p["id"]))
        elif p["flip_rate"] > max_flip:
            found.append(Finding(str(path), line, "wording-flips", f"its verdict changes with "
                                 f"the wording of the judge question on {p['flipped']} of "
                                 f"{p['comparable']} gold pairs ({p['flip_rate']:.1%} > "
                                 f"{max_flip:.1%}) {where}; make the question more precise, "
                                 "so that its rewordings ask the same thing", p["id"]))
    return found


def where_of(gold: Path, judge: Any, k: int) -> str:
    return f"on {gold.name} with {judge.client.spec} and {k} rewording(s)"


async def model_findings(path: str | Path, client: Any, templates: Any, judge_client: Any,
                         gold: str | None, k: int, max_flip: float,
                         session: Any = None) -> list[Finding]:
    """What `--model` adds: the model's clarity opinions, and with `gold` the principles
    whose verdicts flip with the wording (measured in a folder of its own, gone after; the
    response cache keeps the answers for a rerun)."""
    import tempfile

    from cai.stages.judge import Judge, JudgeSettings

    found = await clarity(path, client, templates)
    if gold:
        judge = Judge(judge_client, templates, load_constitution(path), JudgeSettings())
        with tempfile.TemporaryDirectory(prefix="cai-lint-") as scratch:
            found += await wording_flips(path, judge, Path(gold), Path(scratch) / "rewording",
                                         k=k, max_flip=max_flip, session=session)
    return found
