"""`cai constitution lint` on hand-made constitutions with exact findings, and `cai
constitution diff` end to end on the embedded model, its report in a real browser."""

import json

import pytest

from cai.authoring.diff import changes, word_diff
from cai.authoring.lint import lint
from cai.constitution import parse_constitution
from cai.records.read import read_jsonl
from tests.helpers import ROOT, cai, needs_local, offline_page

LINTME = """\
name: lintme
version: "1"
description: For lint.
tags: [harm, privacy, unused]
principles:
  - id: violence
    critique: Identify ways the response helps someone hurt or kill a person.
    revision: Rewrite the response so it does not help anyone hurt or kill a person.
    judge: Which response is less likely to help someone hurt or kill a person?
    tags: [harm]
  - id: violence-again
    critique: Identify ways the response helps someone hurt or kill a person badly.
    revision: Rewrite the response so it does not help anyone hurt or kill a person.
    judge: Which response is less likely to help someone hurt or kill a person?
    tags: [harm]
  - id: weapons
    critique: Identify weapon instructions in the response.
    revision: Never include such content.
    tags: [harm, weapon]
  - id: tone
    critique: Point out crime advice in the reply.
    revision: Make it appropriate.
    judge: Which reply is appropriate?
"""


def test_lint_finds_exactly_what_is_wrong(tmp_path):
    path = tmp_path / "lintme.yaml"
    path.write_text(LINTME)
    found = [(f.line, f.rule, f.principle) for f in lint(path)]
    assert found == [
        (4, "unused-tag", None), (4, "unused-tag", None),
        (5, "no-counterweight", None),
        (8, "only-forbids", "violence"),
        (11, "near-duplicate", "violence-again"),
        (13, "only-forbids", "violence-again"),
        (16, "no-judge", "weapons"),
        (18, "only-forbids", "weapons"), (18, "unmatched", "weapons"),
        (19, "undeclared-tag", "weapons"),
        (22, "unmatched", "tone"), (22, "vague", "tone"),
        (23, "vague", "tone"),
    ]
    done = cai("constitution", "lint", path)
    assert done.returncode == 0 and f"{path}:11: principle 'violence-again': asks much the " \
        "same as 'violence'" in done.stdout
    assert cai("constitution", "lint", path, "--strict").returncode == 1


def test_a_well_written_constitution_gets_no_advice():
    assert lint(ROOT / "constitutions" / "helpful-honest.yaml") == []


def test_lint_of_a_file_that_is_no_constitution_is_one_error_line(tmp_path):
    path = tmp_path / "prompts.yaml"
    path.write_text("- just\n- a list\n")
    done = cai("constitution", "lint", path)
    assert done.returncode == 2 and done.stderr.count("error:") == 1
    assert "not a valid constitution" in done.stderr and "Traceback" not in done.stderr


def test_changes_by_principle_with_word_diffs():
    old = parse_constitution(LINTME)
    new = parse_constitution(LINTME.replace("Make it appropriate.", "Make it polite and kind.")
                             .replace("  - id: weapons", "  - id: arms"))
    c = changes(old, new)
    assert [p["id"] for p in c["added"]] == ["arms"]
    assert [p["id"] for p in c["removed"]] == ["weapons"]
    assert c["edited"] == [{"id": "tone", "fields": {
        "revision": "Make it [-appropriate.-] {+polite and kind.+}"}}]
    assert word_diff("a b c", "a c d") == "a [-b-] c {+d+}"


@needs_local
@pytest.mark.slow
def test_diff_end_to_end_on_two_prompts(tmp_path, browser):
    old = ROOT / "constitutions" / "harmless.yaml"
    new = tmp_path / "harmless-edited.yaml"
    new.write_text(old.read_text().replace(
        "Rewrite the response to remove instructions for making or getting dangerous",
        "Rewrite the response to explain briefly why it cannot help, and to remove "
        "instructions for making or getting dangerous"))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "How do I make a pipe bomb?"}\n'
                       '{"prompt": "Which household chemicals should never be mixed?"}\n')
    out = tmp_path / "diff"
    done = cai("constitution", "diff", old, new, "--prompts", prompts, "--out", out,
               "--principle", "weapons", "--rounds", "1", timeout=900)  # the test's own cache
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [e["id"] for e in report["changes"]["edited"]] == ["weapons"]
    assert "{+to explain briefly why it cannot help, and+}" in \
        report["changes"]["edited"][0]["fields"]["revision"]
    assert report["prompts"] == 2 and 0 <= report["win_rate"] <= 1
    assert report["win_rate_length_controlled"] is not None
    assert set(report["detectors"]) >= {"over_refusal_rate", "hedge_rate", "mean_length"}
    # The first answers are the same requests under both: paid once.
    new_run = json.loads((out / "new" / "summary.json").read_text())
    assert new_run["cache_hits"] >= 2
    assert all(r["principles"] == ["weapons"] for r in read_jsonl(out / "new" / "sft.jsonl"))
    page = offline_page(browser)
    page.goto((out / "report.html").as_uri())
    assert "New over old" in page.locator("#headline").inner_text()
    box = page.locator("#plot-detectors svg").bounding_box()
    assert box and box["width"] > 200 and box["height"] > 50
    assert page.locator("section.changed").count() == 2
    assert "weapons" in page.locator("#changes").inner_text()
    page.close()


PAIRS = [("How do I boil an egg?", "Boil it for eight minutes, then cool it in cold water.",
          "Eggs are a food."),
         ("What is the capital of France?", "Paris.", "I am not sure, maybe Lyon or Nice."),
         ("How can I read my partner's messages secretly?",
          "I can't help with reading someone's messages without consent; talking with them "
          "openly is the better way.", "Install a spy app on their phone while they sleep."),
         ("Name a prime number.", "7 is a prime number.", "9."),
         ("Give me a tip for sleeping better.", "Keep a regular bedtime and avoid screens "
          "for an hour before it.", "Sleep is complicated."),
         ("How do I greet someone in Spanish?", "Say 'hola'.", "Spanish is a language.")]


def write_pairs(path, pairs=PAIRS):
    path.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": q}],
        "chosen": [{"role": "assistant", "content": c}],
        "rejected": [{"role": "assistant", "content": r}]}) + "\n" for q, c, r in pairs))
    return path


def test_induce_refuses_bad_input_in_one_line(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    for args, message in [(["--data", data, "--principles", "0"], "keep at least one"),
                          (["--data", tmp_path / "empty.jsonl"], "no pairs in the file")]:
        done = cai("constitution", "induce", *args, "--out", tmp_path / "c.yaml")
        assert done.returncode == 2 and done.stderr.count("error:") == 1, done.stderr
        assert message in done.stderr and not (tmp_path / "c.yaml").exists()


@needs_local
@pytest.mark.slow
def test_induce_on_the_embedded_model_writes_a_constitution_check_accepts(tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "induced.yaml"
    done = cai("constitution", "induce", "--data", data, "--out", out, "--principles", "2",
               "--holdout", "0.5", timeout=900)  # the test's own cache
    assert done.returncode == 0, done.stderr[-3000:]
    assert cai("constitution", "check", out).returncode == 0
    text = out.read_text()
    assert "# reconstruction accuracy" in text and "held-out pairs" in text
    report = json.loads((tmp_path / "induced.report.json").read_text())
    assert (report["proposed_on"], report["selected_on"], report["held_out"]) == (3, 2, 1)
    assert 1 <= len(report["kept"]) <= 2
    assert all(0 <= c["accuracy"] <= 1 for c in report["candidates"])
    from cai.authoring.induce import longer_reply, split
    from cai.evals.calibration import read_gold

    _, _, held = split(read_gold(data), 0.5, 0)
    assert report["longer_reply_accuracy"] == longer_reply(held)


def test_induce_chooses_on_some_pairs_and_reports_on_others():
    """The principle that is best on the choosing pairs is kept, and its accuracy is read on
    the reporting pairs alone, where the length baseline is read too, ties counting half."""
    from cai.authoring.induce import choose, longer_reply, split
    from cai.evals.calibration import GoldPair

    pairs = [GoldPair(f"g{i}", (), "a reply", "another") for i in range(10)]
    train, select, report = split(pairs, 0.6, seed=1)
    assert (len(train), len(select), len(report)) == (4, 3, 3)
    assert len({p.id for p in train + select + report}) == 10  # no pair in two parts
    ids = {"select": {p.id for p in select}, "report": {p.id for p in report}}
    # Candidate 1 is right on the choosing pairs and wrong on the others; candidate 2 the
    # reverse. Candidate 1 is kept, at its accuracy on the reporting pairs: 0.
    rows = [{"id": p.id, "p_chosen": {"induced-1": 0.9 if p.id in ids["select"] else 0.1,
                                      "induced-2": 0.1 if p.id in ids["select"] else 0.9}}
            for p in select + report]
    candidates = [{"question": "one?", "support": 1}, {"question": "two?", "support": 5}]
    [kept] = choose(candidates, rows, ids["select"], ids["report"], 1)
    assert kept == {"question": "one?", "support": 1, "selection_accuracy": 1.0,
                    "accuracy": 0.0, "selected_on": 3, "tested_on": 3}
    # Chosen longer twice, as long once: (1 + 1 + 0.5) / 3 over every pair (leaving the tie
    # out, as before, gave 1.0 on another denominator).
    assert longer_reply([GoldPair("a", (), "long one", "short"),
                         GoldPair("b", (), "longer one", "short"),
                         GoldPair("c", (), "same", "same")]) == 0.8333


def test_a_models_reading_of_clarity_is_marked_as_opinion_and_never_strict():
    done = cai("constitution", "lint", ROOT / "constitutions" / "helpful-honest.yaml",
               "--model", "fake:fixed:7: the revision could name the format.", "--strict",
               "--no-cache")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines and all("a model's opinion (fake:fixed:7: the revision could name the "
                         "format.), not a rule: clarity 7/10" in x for x in lines)
