"""Every page cai draws, rendered from records made of hostile text (tests/hostile.py) and
opened in real headless Chromium: the eval policy report, the data report and dataset card,
the loop's morning report, the constitution diff, and (in test_review.py) the review page.
Nothing runs, nothing is injected, and the text shows as text; the Markdown views too, as a
viewer that renders HTML in Markdown shows them."""

import json
import shlex

import pytest
import yaml

from cai.records.rewrite import write_json, write_jsonl
from cai.reports.render import md_block, md_code, md_text, render
from tests.helpers import cai
from tests.hostile import STRINGS, assert_inert, hostile, open_markdown, open_page

OFFLINE = {"HF_DATASETS_OFFLINE": "1"}


def both_views(browser, folder, markdown_name, shown, tmp_path):
    """The folder's report.html and its Markdown view, each checked."""
    page = open_page(browser, folder / "report.html")
    assert_inert(page, shown)
    page.close()
    page = open_markdown(browser, (folder / markdown_name).read_text(), tmp_path)
    text = assert_inert(page, shown)
    page.close()
    return text


def test_every_html_view_escapes_whatever_its_name():
    """Autoescape is on for every view that is not Markdown: no list of endings to miss."""
    from cai.reports.render import _env

    html = _env(markdown=False)
    assert html.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert render("_head.html.j2").count("Content-Security-Policy") == 1


def test_markdown_values_show_as_text():
    assert md_text("<b>x</b> [a](javascript:y) | `c` &amp; R&D\nnext") == \
        "&lt;b&gt;x&lt;/b&gt; \\[a\\](javascript:y) \\| \\`c\\` &amp;amp; R&D next"
    assert md_code("a ``b`` | c") == "```a ``b`` \\| c```"
    assert md_code("`x`") == "`` `x` ``"
    assert md_block("one\n```\ntwo") == "````text\none\n```\ntwo\n````"


@pytest.fixture
def answers(tmp_path):
    """Answers made elsewhere whose categories, prompts and replies are hostile, in a file
    whose very name is hostile (any character but / may be in a file name)."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "<img src=x onerror=alert(1)> answers.jsonl"
    kinds = ["safe", "unsafe", "helpful", "false-premise"]
    path.write_text("".join(json.dumps({
        "id": f"a{i}", "prompt": hostile(i), "response": hostile(i + 1),
        "kind": kinds[i % 4], "category": hostile(i)}) + "\n" for i in range(len(STRINGS))))
    return path


def test_the_policy_report(answers, tmp_path, browser):
    out = tmp_path / "eval"
    evaluator = f"fake:fixed:{STRINGS[0]}"  # a model spec is text too, and so is its reply
    cai("eval", "policy", "--responses", answers, "--reference-responses", answers,
        "--evaluator", evaluator, "--training-judge", evaluator, "--out", out, env=OFFLINE,
        check=True)
    report = json.loads((out / "report.json").read_text())
    assert STRINGS[0] in report["evaluator_note"]  # the guard quotes the evaluator's name
    shown = [hostile(i) for i in range(len(STRINGS))] + [str(answers)]
    both_views(browser, out, "report.md", shown, tmp_path)


@pytest.fixture
def data_folder(tmp_path):
    """A judge's folder whose prompts, replies, principles, commands and models are hostile."""
    out = tmp_path / "judge <img src=x onerror=\"window.pwned = 'folder'\">"  # no / in a name
    rows = [{"id": f"p{i}", "pair_id": f"p{i}:0-1", "prompt": [
        {"role": "user", "content": hostile(i)}],
        "chosen": [{"role": "assistant", "content": hostile(i + 1) * 3}],
        "rejected": [{"role": "assistant", "content": hostile(i + 2)}],
        "soft_label": 0.9, "margin": 0.8, "orders_agree": i % 2 == 0,
        "principles": [hostile(i)], "chosen_length": 3, "rejected_length": 1,
        "longer_won": True, "length_flag": True} for i in range(len(STRINGS))]
    write_jsonl(out / "prefs.jsonl", rows)
    write_jsonl(out / "command_log.jsonl", [{"command": f"cai judge --responses "
                                             f"'{hostile(i)}'", "cwd": str(tmp_path)}
                                            for i in range(3)])
    write_json(out / "settings.json", {"judge": {"judge_identity": f"fake:fixed:{STRINGS[1]}",
                                                 "templates": {STRINGS[2]: "0" * 64}}})
    constitution = tmp_path / "c.yaml"
    constitution.write_text(yaml.safe_dump({
        "name": "hostile", "version": "1", "description": STRINGS[3],
        "principles": [{"id": "p-one", "critique": STRINGS[4], "revision": STRINGS[5],
                        "judge": f"Which reply? {STRINGS[7]}", "tags": ["t1"]},
                       {"id": "p-two", "critique": STRINGS[8], "revision": STRINGS[9]}]}))
    return out, constitution


def test_the_data_report_and_the_dataset_card(data_folder, tmp_path, browser):
    out, constitution = data_folder
    cai("report", out, "--constitution", constitution, "--name", STRINGS[6],
        "--source", STRINGS[0], env=OFFLINE, check=True)
    shown_html = [f"cai judge --responses '{hostile(i)}'" for i in range(3)] + [
        f"fake:fixed:{STRINGS[1]}", STRINGS[2], out.name]
    page = open_page(browser, out / "report.html")
    assert_inert(page, shown_html)
    page.close()
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    page = open_markdown(browser, card, tmp_path)
    assert_inert(page, [STRINGS[0], STRINGS[3], STRINGS[4], STRINGS[6], STRINGS[8],
                        f"fake:fixed:{STRINGS[1]}", STRINGS[2]])
    page.close()


def test_the_loops_morning_report(tmp_path, browser):
    """A run folder as a loop leaves it, its gate reasons, child errors, models and folder
    made of hostile text."""
    from cai.loop.report import write_loop_report

    run = tmp_path / "run <svg onload=\"window.pwned = 'run'\">"
    figures = {"over_refusal_rate": 0.1, "unsafe_compliance_rate": 0.2, "mean_length": 30,
               "hedge_rate": 0.3, "boilerplate_rate": 0.0, "win_rate": 0.6,
               "win_rate_ci95": [0.4, 0.8], "win_rate_length_controlled": 0.55,
               "evaluator_note": STRINGS[5]}
    write_json(run / "eval-start" / "report.json", figures)
    write_json(run / "iter-01" / "eval" / "report.json", figures)
    judges = [hostile(11), "local"]  # a panel of judges, one named by hostile text
    write_json(run / "iter-01" / "judge" / "summary.json", {"judge": {
        "pairs": 2, "position_flip_rate": 0.5, "longer_won_share": 0.5, "panel": {
            "judges": judges, "comparisons": 2, "split": 1, "decided_by_all": 2,
            "fleiss_kappa": 0.0, "pairwise_agreement": [],
            "per_judge": [{"judge": j, "decided": 2, "left_out": 0, "position_flip_rate": 0.5,
                           "against_majority": None} for j in judges]}}})
    write_jsonl(run / "history.jsonl", [
        {"event": "begin", "iterations": 2, "policy": f"hf:{STRINGS[1]}",
         "config": f"{STRINGS[7]}.yaml"},
        {"event": "start", "key": "1:eval", "iteration": 1, "stage": STRINGS[8],
         "out": str(run / "iter-01" / "eval")},
        {"event": "done", "key": "1:eval", "iteration": 1, "stage": STRINGS[8],
         "out": str(run / "iter-01" / "eval"), "seconds": 3.0},
        {"event": "gate", "iteration": 1, "candidate": f"hf:{STRINGS[2]}", "promoted": True,
         "gates": [{"name": STRINGS[3], "passed": False, "why": STRINGS[4]},
                   {"name": "length", "passed": True, "why": STRINGS[6]}]},
        {"event": "failed", "key": "2:judge", "iteration": 2, "stage": "judge",
         "reason": STRINGS[9]},
        {"event": "end", "finished": False, "reason": STRINGS[0]}])
    write_loop_report(run, live=False)
    resume = shlex.join(["cai", "loop", f"{STRINGS[7]}.yaml", "--out"])  # quoted: pasteable
    shown = [STRINGS[i] for i in (0, 2, 3, 4, 5, 6)] + [resume, judges[0]]
    both_views(browser, run, "report.md", shown, tmp_path)


def test_the_constitution_diff(tmp_path, browser):
    """Old and new constitutions with hostile principles, prompts whose echo is the answer."""
    def constitution(revision):
        return yaml.safe_dump({"name": "c", "version": "1", "description": "d", "principles": [
            {"id": "p-one", "critique": STRINGS[0], "revision": revision,
             "judge": "Which reply is better?"}]})

    (tmp_path / "old.yaml").write_text(constitution(STRINGS[1]))
    (tmp_path / "new.yaml").write_text(constitution(STRINGS[2]))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": hostile(i)}) + "\n" for i in range(3, 7)))
    out = tmp_path / "diff"
    cai("constitution", "diff", tmp_path / "old.yaml", tmp_path / "new.yaml", "--prompts",
        prompts, "--out", out, "--model", "fake:echo", "--evaluator", "fake:fixed:A",
        "--no-cache", env=OFFLINE, check=True)
    report = json.loads((out / "report.json").read_text())
    assert report["most_changed"], "the echoed answers differ under the two constitutions"
    page = open_page(browser, out / "report.html")
    text = assert_inert(page, [STRINGS[i] for i in range(3, 7)])
    assert STRINGS[1].split()[0] in text and STRINGS[2].split()[0] in text  # the word diff
    page.close()
    page = open_markdown(browser, (out / "report.md").read_text(), tmp_path)
    assert_inert(page)
    page.close()


def test_the_judge_calibration_report(tmp_path, browser):
    """`cai eval judge`'s report.md, whose judge is named by hostile text (its Markdown was
    written by hand before it had a template, and printed the name as it came)."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"prompt": hostile(i), "chosen": hostile(i + 1),
                                        "rejected": hostile(i + 2)}) + "\n" for i in range(4)))
    out, judge = tmp_path / "calibration", f"fake:fixed:{STRINGS[0]}"
    cai("eval", "judge", "--data", gold, "--judge", judge, "--out", out, "--no-cache",
        env=OFFLINE, check=True)
    page = open_markdown(browser, (out / "report.md").read_text(), tmp_path)
    assert_inert(page, [f"Judge calibration: {judge}"])
    page.close()


def test_the_rewording_report(tmp_path, browser):
    """`cai eval judge --rewordings`: judge questions and their rewordings are the
    constitution's or a model's text, and the pair ids are the data's."""
    variants = [f"{s} which is better?" for s in STRINGS[:6]]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "name": "c", "version": "1", "description": "d", "principles": [
            {"id": "p-one", "critique": "c", "revision": "r",
             "judge": f"{STRINGS[7]} Which is better?", "judge_question_variants": variants}]}))
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": hostile(i), "prompt": hostile(i),
                                        "chosen": hostile(i + 1), "rejected": hostile(i + 2)})
                            + "\n" for i in range(3)))
    out = tmp_path / "calibration"
    cai("eval", "judge", "--data", gold, "--constitution", tmp_path / "c.yaml", "--judge",
        "fake:fixed:A", "--rewordings", 7, "--reworder", f"fake:fixed:{STRINGS[1]}", "--out",
        out, "--no-cache", env=OFFLINE, check=True)
    report = json.loads((out / "rewording" / "report.json").read_text())
    assert [w["question"] for w in report["principles"][0]["wordings"]][1:] == variants
    assert report["principles"][0]["missing"], "the model's answer is no question"
    both_views(browser, out / "rewording", "report.md", variants, tmp_path)


def test_a_missed_escape_still_cannot_run(answers, tmp_path, browser):
    """The Content-Security-Policy alone: a script put into a report by hand does not run."""
    out = tmp_path / "eval"
    cai("eval", "policy", "--responses", answers, "--out", out, env=OFFLINE, check=True)
    html = (out / "report.html").read_text()
    (out / "report.html").write_text(html.replace(
        "<body>", "<body><script>window.pwned = 'missed'</script>"
        "<img src=x onerror=\"window.pwned = 'img'\">", 1))
    page = open_page(browser, out / "report.html")
    assert page.evaluate("window.pwned") is None
    page.close()
