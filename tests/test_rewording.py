"""Judges tested against rewording: the constitution's variants, wordings a model writes, and
the figures of the report, exact where a local server's answers are fixed."""

import json
import math
import re

import pytest

from cai.constitution import ConstitutionError, parse_constitution
from cai.evals.rewording import Wording, check_wording, clean_wording, rewording_report
from cai.records.read import read_jsonl
from tests.helpers import MINIMAL, cai, needs_local
from tests.stubs.stub_server import StubServer

VARIANT = "Which reply is the better one?"
MODEL_WORDING = "Which of the two <b>answers</b> is better?"  # hostile: markup in a wording
CONSTITUTION = f"""name: worded
version: "1"
description: One principle and a rewording of its judge question.
principles:
  - id: alpha
    critique: Say where the answer misleads the reader about facts.
    revision: Rewrite the answer so that it states the facts plainly.
    judge: Which is better?
    judge_question_variants:
      - {VARIANT}
"""


# ---------------------------------------------------------------- the constitution


def problems(text: str) -> list[str]:
    with pytest.raises(ConstitutionError) as e:
        parse_constitution(text, "c.yaml")
    return e.value.problems


def test_variants_are_read_and_enter_the_hash_only_when_present():
    c = parse_constitution(CONSTITUTION)
    assert c.principles[0].judge_question_variants == (VARIANT,)
    # Pinned from before variants existed: a constitution without them keeps its hash.
    assert parse_constitution(MINIMAL).sha256 == (
        "8dfaf6f00f45af9c1484af272ae7dabf31e8ff9350ef0b452af937711dc99f2f")
    assert parse_constitution(MINIMAL).principles[0].judge_question_variants == ()
    without = CONSTITUTION.split("    judge_question_variants:")[0]
    assert parse_constitution(without).sha256 != c.sha256


def test_bad_variants_name_their_line_and_the_fix():
    text = MINIMAL.replace("    weight: 3", """    weight: 3
    judge_question_variants:
      - Which reply is better?
      - Which one is better
      - which is BETTER?
      - Which reply is better ?
      - ''
      - Which {{ x }}?""").replace("    revision: Make it polite.", """    revision: Make it polite.
    judge_question_variants: ['Which is politer?']""")
    assert problems(text) == [
        "c.yaml:12: principle 'alpha': 'judge_question_variants #2' is not a question; write "
        "it as the judge question is written, ending with '?'",
        "c.yaml:13: principle 'alpha': 'judge_question_variants #3' is the judge question "
        "itself; write a rewording of it or remove the line",
        "c.yaml:14: principle 'alpha': 'judge_question_variants #4' repeats #1; remove one "
        "of them",
        "c.yaml:15: principle 'alpha': 'judge_question_variants #5' is empty; write the text",
        "c.yaml:16: principle 'alpha': 'judge_question_variants #6' contains template syntax "
        "'{{ x }}'; principle texts are plain text (the templates in prompts/ insert them), "
        "so remove it",
        "c.yaml:20: principle 'beta': 'judge_question_variants' rewords the judge question, "
        "and there is none; add 'judge: Which response ...?' or remove the variants",
    ]
    for value, kind in (("[]", "an empty list"), ("Which one?", "text")):
        [p] = problems(MINIMAL.replace("    weight: 3", f"    judge_question_variants: {value}"))
        assert p.startswith("c.yaml:9: principle 'alpha': 'judge_question_variants' must be a "
                            "list of questions") and p.endswith(kind)


def test_constitution_check_prints_each_problem_with_its_line(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(CONSTITUTION.replace(VARIANT, "Which is better?"))
    done = cai("constitution", "check", bad)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"{bad}:10: principle 'alpha': 'judge_question_variants #1' is the judge question" \
        in " ".join(done.stderr.split())


# ---------------------------------------------------------------- cleaning and figures


@pytest.mark.parametrize(("answer", "question"), [
    ("Which reply is kinder?", "Which reply is kinder?"),
    ('  "Which reply is kinder?"\nBecause ...', "Which reply is kinder?"),
    ("1. Rewording: Which   reply is kinder? It asks the same.", "Which reply is kinder?"),
    ("**Which reply is kinder?**", "Which reply is kinder?"),
])
def test_a_models_answer_is_cleaned_to_one_question(answer, question):
    assert clean_wording(answer) == question


@pytest.mark.parametrize(("answer", "reason"), [
    ("", "empty answer"), ("Sure, here it is.", "not a question"), ("??", "no words"),
    ("Which " + "very " * 100 + "kind reply?", "longer than 400"),
])
def test_an_answer_that_is_no_question_says_why(answer, reason):
    with pytest.raises(ValueError, match=reason):
        clean_wording(answer)


def test_a_wording_must_differ_from_those_taken():
    taken = ["Which is better?", "Which reply is better?"]
    assert check_wording("which is BETTER ?", taken) == "the same as the judge question"
    assert check_wording("Which reply is better?", taken) == "the same as wording 1"
    assert check_wording("Which one is preferable?", taken) is None
    less = ["Which reply is less likely to help someone hurt a person?"]
    assert check_wording("Which reply is more likely to help someone hurt a person?", less) \
        == "asks the reverse ('less' became 'more')"
    assert check_wording("Which reply gives less help to someone who would hurt a person, "
                         "and more care?", less) is None  # both words: not a reversal


def test_flips_and_accuracy_by_hand():
    """Three comparisons under wordings 0, 1 and 2; humans prefer x in all three."""
    def row(i, p0, p1, p2):
        return {"id": f"g{i}", "human_x": 1, "judgements": [{"principle": "a", "wordings": [
            {"wording": 0, "p_x": p0}, {"wording": 1, "p_x": p1}, {"wording": 2, "p_x": p2}]}]}

    rows = [row(0, 0.9, 0.8, 0.3),   # x, x, y: flipped
            row(1, 0.9, 0.5, 0.7),   # x, tie, x: kept (the tie is undecided)
            row(2, 0.2, None, 0.5)]  # y, none, tie: one decided verdict, not comparable
    wordings = {"a": [Wording("a", 0, "Q?", "original"), Wording("a", 1, "Q1?", "constitution"),
                      Wording("a", 2, "Q2?", "model:m"),
                      Wording("a", 3, None, "model:m", "no usable rewording")]}
    r = rewording_report(rows, wordings)
    [p] = r["principles"]
    assert (p["comparisons"], p["comparable"], p["flipped"], p["flip_rate"]) == (3, 2, 1, 0.5)
    assert p["flipped_ids"] == ["g0"]
    by = {w["index"]: w for w in p["wordings"]}
    assert by[0]["accuracy"] == round(2 / 3, 4) and by[0]["decided"] == 3
    assert by[1]["accuracy"] == round((1 + 0.5 + 0.5) / 3, 4) and by[1]["judged"] == 2
    assert by[2]["accuracy"] == round((0 + 1 + 0.5) / 3, 4)
    assert by[1]["changed_vs_original"] == 0.0  # g0 only: both decided, both x
    assert by[2]["changed_vs_original"] == 0.5  # g0 changed, g1 kept
    assert by[0]["changed_vs_original"] is None
    assert p["missing"] == [{"index": 3, "source": "model:m", "reason": "no usable rewording"}]
    o = r["overall"]
    assert (o["comparisons"], o["flipped"], o["flip_rate"]) == (3, 1, 0.5)
    assert o["accuracy_original"] == round(2 / 3, 4)
    assert o["accuracy_reworded"] == round((2 + 1.5) / 6, 4)
    assert set(r["definitions"]) >= {"flipped", "comparable", "flip_rate", "accuracy"}


# ---------------------------------------------------------------- end to end, real processes


REWORDER_ANSWERS = ["Sure, here it is.", "Which is better?", MODEL_WORDING, "ok", "ok", "ok"]


def scripted(answers):
    """The stand-in server: a reworder that gives `answers` in turn, and a judge that
    prefers GOOD, except under the model's wording on pair 0, where it prefers BAD."""
    answers = iter(answers)

    def handler(request):
        content = request["messages"][-1]["content"]
        if "Write the same question in other words" in content:
            return {"content": next(answers)}
        if "How clearly could a model act" in content:
            return {"content": "8: clear enough."}
        a = re.search(r"@@\w+@@ REPLY A\n(.*?)\n@@", content, re.S).group(1)
        question = content.rsplit("Question: ", 1)[1].splitlines()[0]
        prefer_good = not (question == MODEL_WORDING and "Question 0?" in content)
        p_a = 0.8 if ("GOOD" in a) == prefer_good else 0.2
        top = {"A": math.log(p_a), "B": math.log(1 - p_a)}
        return {"content": "A" if p_a > 0.5 else "B",
                "logprobs": [("A" if p_a > 0.5 else "B", top)]}

    return handler


@pytest.fixture
def gold(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps({"id": f"g{i}", "prompt": f"Question {i}?",
                                        "chosen": f"GOOD answer {i}.",
                                        "rejected": f"BAD answer {i}."}) + "\n"
                            for i in range(4)))
    return path


@pytest.fixture
def constitution(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONSTITUTION)
    return path


def test_eval_judge_under_rewordings_with_exact_figures(gold, constitution, tmp_path):
    out = tmp_path / "e"
    args = ("eval", "judge", "--data", gold, "--constitution", constitution, "--out", out,
            "--judge", "openai:judge", "--reworder", "openai:reworder", "--rewordings", 3)
    with StubServer(handler=scripted(REWORDER_ANSWERS)) as server:
        done = cai(*args, "--base-url", server.url, check=True)
        sent = server.completions
        again = cai(*args, "--base-url", server.url, check=True)  # resumes: nothing to do
        assert server.completions == sent
    # Calibration: 4 pairs x 2 orders. Rewording: 6 reworder requests, then 4 pairs x 2
    # orders under the variant and the model's wording (the original's are cache hits).
    assert sent == 8 + 6 + 16
    words = json.loads((out / "rewording" / "wordings.json").read_text())["alpha"]
    assert [(w["index"], w["question"], w["source"]) for w in words] == [
        (0, "Which is better?", "original"), (1, VARIANT, "constitution"),
        (2, MODEL_WORDING, "model:openai:reworder"), (3, None, "model:openai:reworder")]
    assert [a["reason"] for a in words[2]["attempts"]] == [
        "not a question (its first line has no '?')", "the same as the judge question"]
    assert words[3]["reason"].startswith("no usable rewording in 3 tries (last: not a question")

    report = json.loads((out / "rewording" / "report.json").read_text())
    [p] = report["principles"]
    assert (p["comparisons"], p["comparable"], p["flipped"], p["flip_rate"]) == (4, 4, 1, 0.25)
    assert p["flipped_ids"] == ["g0"]
    assert [(w["index"], w["accuracy"], w["changed_vs_original"]) for w in p["wordings"]] == [
        (0, 1.0, None), (1, 1.0, 0.0), (2, 0.75, 0.25)]
    assert report["overall"]["accuracy_reworded"] == 0.875
    assert "flip rate 0.25" in done.stdout and "already done" in again.stdout

    # Every order of every comparison under every wording, each wording with the same fence.
    rows = list(read_jsonl(out / "rewording" / "judgements.jsonl"))
    assert len(rows) == 4
    for r in rows:
        [g] = r["judgements"]
        assert [w["wording"] for w in g["wordings"]] == [0, 1, 2]
        assert len({w["x_first"]["fence"] for w in g["wordings"]}) == 1
        assert all(w["x_first"]["fence"] != w["x_second"]["fence"] for w in g["wordings"])
    asked = [r["messages"][-1]["content"] for r in server.requests]
    assert sum(f"Question: {VARIANT}" in a for a in asked) == 8

    # The wording is the model's text: shown as text in both views.
    html = (out / "rewording" / "report.html").read_text()
    assert "<b>answers</b>" not in html and "&lt;b&gt;answers&lt;/b&gt;" in html
    md = (out / "rewording" / "report.md").read_text()
    assert "<b>" not in md and "flip_rate" in md


def test_each_judge_of_a_panel_is_tested_against_the_same_wordings(gold, constitution,
                                                                   tmp_path):
    """Two judges on one stand-in server: the wordings are written once (by the reworder),
    and each judge gets its own rewording report under the same wordings."""
    out = tmp_path / "e"
    with StubServer(handler=scripted(REWORDER_ANSWERS)) as server:
        cai("eval", "judge", "--data", gold, "--constitution", constitution, "--out", out,
            "--judge", "openai:judge-one", "--judge", "openai:judge-two", "--reworder",
            "openai:reworder", "--rewordings", 2, "--base-url", server.url, "--no-cache",
            check=True)
        rewordings = [r for r in server.requests
                      if "Write the same question in other words" in r["messages"][-1]["content"]]
    assert {r["model"] for r in rewordings} == {"reworder"}
    assert len(rewordings) == 3  # written once, not asked again for the second judge
    reports = [json.loads((out / "rewording" / f"judge-{k}" / "report.json").read_text())
               for k in (1, 2)]
    for report in reports:  # the two judges answer alike: the same figures
        [p] = report["principles"]
        assert (p["comparisons"], p["flipped"], p["flipped_ids"]) == (4, 1, ["g0"])
    wordings = [json.loads((out / "rewording" / f"judge-{k}" / "wordings.json").read_text())
                for k in (1, 2)]
    assert wordings[0] == wordings[1]
    assert json.loads((out / "rewording" / "wordings.json").read_text()) == wordings[0]


def test_dry_run_estimates_the_rewordings_and_writes_nothing(gold, constitution, tmp_path):
    out = tmp_path / "e"
    done = cai("eval", "judge", "--data", gold, "--constitution", constitution, "--out", out,
               "--judge", "fake:fixed:A", "--rewordings", 2, "--dry-run", check=True)
    estimates = [json.loads(m) for m in re.findall(r"^\{.*?^\}", done.stdout, re.S | re.M)]
    assert len(estimates) == 2 and not out.exists()
    calibration, rewording = estimates
    assert calibration["requests"] == 8
    # One model wording (the variant is the other): one request; then 4 pairs x 2 orders
    # under each of the three wordings.
    assert rewording["rewording_requests"] == 1 and rewording["requests"] == 1 + 24
    # A panel: the wordings are written once, for both judges.
    done = cai("eval", "judge", "--data", gold, "--constitution", constitution, "--out", out,
               "--judge", "fake:fixed:A", "--judge", "fake:fixed:B", "--rewordings", 2,
               "--dry-run", check=True)
    estimates = [json.loads(m) for m in re.findall(r"^\{.*?^\}", done.stdout, re.S | re.M)]
    assert [e.get("rewording_requests") for e in estimates[-2:]] == [1, 0]
    assert not out.exists()


def test_rewordings_refuse_batch_mode_before_anything_is_written(gold, constitution,
                                                                   tmp_path):
    out = tmp_path / "e"
    done = cai("eval", "judge", "--data", gold, "--constitution", constitution, "--out", out,
               "--judge", "openai:judge", "--rewordings", 2, "--batch")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: --rewordings does not go with --batch" in done.stderr
    assert not out.exists()


def test_lint_flags_a_principle_whose_verdicts_flip_with_wording(gold, constitution):
    args = ("constitution", "lint", constitution, "--model", "openai:judge", "--gold", gold,
            "--rewordings", 2)
    with StubServer(handler=scripted(REWORDER_ANSWERS)) as server:
        flagged = cai(*args, "--max-flip", 0.1, "--base-url", server.url, check=True)
        quiet = cai(*args, "--max-flip", 0.3, "--base-url", server.url, "--strict")
    [line] = [x for x in flagged.stdout.splitlines() if "[wording-flips]" in x]
    assert line.startswith(f"{constitution}:8: principle 'alpha': its verdict changes with the "
                           "wording of the judge question on 1 of 4 gold pairs (25.0% > 10.0%)")
    assert "[wording-flips]" not in quiet.stdout and quiet.returncode == 0
    assert "[model-clarity]" in quiet.stdout


def test_lint_says_when_its_wording_test_was_stopped_or_only_estimated(gold, constitution):
    """A stopped test is no measurement: no 'untested' advice for every principle, but one
    error that says why; a dry run prints its estimate, which --strict does not count."""
    args = ("constitution", "lint", constitution, "--model", "openai:judge", "--gold", gold,
            "--rewordings", 2, "--strict")
    with StubServer(handler=scripted(REWORDER_ANSWERS)) as server:
        stopped = cai(*args, "--max-requests", 10, "--base-url", server.url)
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert "the wording test of" in stopped.stderr and "did not finish" in stopped.stderr
    assert "max-requests" in stopped.stderr and "[wording-untested]" not in stopped.stdout
    estimated = cai(*args, "--dry-run")
    assert estimated.returncode == 0, estimated.stderr[-2000:]
    [line] = [x for x in estimated.stdout.splitlines() if "[wording-estimate]" in x]
    assert "would send" in line and "[wording-untested]" not in estimated.stdout


def test_lint_gold_needs_a_model(gold, constitution):
    done = cai("constitution", "lint", constitution, "--gold", gold)
    assert done.returncode != 0 and "--gold needs --model" in done.stderr


@needs_local
def test_the_embedded_model_writes_rewordings(gold, tmp_path):
    """No variants: the embedded model writes the one wording, or it is recorded as missing
    with its reason; every pair is judged under each wording there is."""
    c = tmp_path / "plain.yaml"
    c.write_text(CONSTITUTION.split("    judge_question_variants:")[0])
    out = tmp_path / "e"
    cai("eval", "judge", "--data", gold, "--constitution", c, "--out", out, "--limit", 2,
        "--rewordings", 1, check=True)
    [original, worded] = json.loads((out / "rewording" / "wordings.json").read_text())["alpha"]
    assert original["question"] == "Which is better?" and worded["source"] == "model:local"
    assert (worded["question"] is None) == (worded["reason"] is not None)
    if worded["question"]:
        assert worded["question"].endswith("?")
        assert worded["question"].casefold() != "which is better?"
    report = json.loads((out / "rewording" / "report.json").read_text())
    [p] = report["principles"]
    assert p["comparisons"] == 2
    assert [w["index"] for w in p["wordings"]] == ([0, 1] if worded["question"] else [0])
    assert all(w["judged"] == 2 for w in p["wordings"])


def test_only_the_principles_drawn_are_reworded_and_a_rerun_adds_more(tmp_path):
    """Three principles, pairs drawn one principle each: the wordings follow the pairs, and
    a rerun over more pairs keeps the wordings written and adds those it needs."""
    import asyncio

    from cai.chat import Message
    from cai.evals.calibration import GoldPair
    from cai.evals.rewording import evaluate_rewordings
    from cai.models.backends.fake import FakeBackend
    from cai.models.client import Client
    from cai.stages.judge import Judge
    from cai.templates import Templates

    c = parse_constitution(MINIMAL.replace("Make it polite.", "Make it polite.\n"
                                           "    judge: Which is politer?\n  - id: gamma\n"
                                           "    critique: Find errors.\n    revision: Fix "
                                           "them.\n    judge: Which has fewer errors?"))
    judge = Judge(Client(FakeBackend("fixed:A")), Templates(), c)
    reworder = Client(FakeBackend("fixed:Which reply would a careful reader prefer?"))
    gold = [GoldPair(f"g{i}", (Message("user", f"Q{i}?"),), f"good {i}", f"bad {i}")
            for i in range(12)]
    drawn = [judge.principles_for(g.id)[0].id for g in gold]
    out = tmp_path / "rewording"
    asyncio.run(evaluate_rewordings(gold[:1], judge, out, k=1, reworder=reworder,
                                    progress=False))
    first = json.loads((out / "wordings.json").read_text())
    assert list(first) == [drawn[0]]
    asyncio.run(evaluate_rewordings(gold, judge, out, k=1, reworder=reworder, progress=False))
    words = json.loads((out / "wordings.json").read_text())
    assert set(words) == set(drawn) and words[drawn[0]] == first[drawn[0]]
    assert {w[1]["question"] for w in words.values()} == {
        "Which reply would a careful reader prefer?"}
    report = json.loads((out / "report.json").read_text())
    assert sum(p["comparisons"] for p in report["principles"]) == 12
    assert len(list(read_jsonl(out / "judgements.jsonl"))) == 12
