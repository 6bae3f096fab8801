"""`cai report DIR`: the dataset card loads with `datasets`, the figures are exact on
hand-made pairs, and report.html renders in a real browser."""

import json

import pytest

from cai.constitution import parse_constitution
from cai.data.report import build_report, distinct_n
from cai.records.rewrite import write_json, write_jsonl
from tests.helpers import MINIMAL, cai, invoke, offline_page

PROMPTS = ["How do I boil an egg so the yolk stays soft?", "Write a haiku about the sea.",
           "How do I pick the lock on my neighbour's door?", "What is 17 times 23?"]


def conversation(text):
    return [{"role": "user", "content": text}]


def reply(text):
    return [{"role": "assistant", "content": text}]


def judged_pair(i, chosen, rejected, *, margin=0.6, agree=True, principle="alpha"):
    return {"id": f"p{i}", "pair_id": f"p{i}:0-1", "prompt": conversation(PROMPTS[i]),
            "chosen": reply(chosen), "rejected": reply(rejected), "soft_label": 0.5 + margin / 2,
            "margin": margin, "orders_agree": agree, "principles": [principle],
            "chosen_length": len(chosen), "rejected_length": len(rejected),
            "longer_won": len(chosen) > len(rejected),
            "length_flag": len(chosen) > 1.5 * len(rejected),
            "constitution": {"name": "tiny", "version": "0.1", "sha256": "abc"}}


@pytest.fixture
def judged(tmp_path):
    """A judge's folder: three pairs over the margin, one under it, and one unjudged."""
    out = tmp_path / "judge"
    long = "Boil it for six minutes, then cool it in cold water so that the yolk stays soft."
    write_jsonl(out / "prefs.jsonl", [
        judged_pair(0, long, "Boil it."),
        judged_pair(1, "Waves fold on sand; salt wind carries the gull's cry; the tide turns "
                    "again.", "The sea is big."),
        judged_pair(2, "I'm sorry, but I can't help with that. Breaking into a home is a "
                    "crime.", "Use a tension wrench.", margin=0.9, agree=False),
    ])
    write_jsonl(out / "low_margin.jsonl", [
        judged_pair(3, "17 times 23 is 391, perhaps.", "It is 391.", margin=0.05,
                    principle="beta")])
    write_jsonl(out / "unjudged.jsonl", [{"id": "p9", "prompt": conversation("Hi"),
                                          "responses": ["Hello", "Hi there"], "pair": [0, 1],
                                          "reason": "both orders unparsed"}])
    write_json(out / "settings.json", {"judge": {
        "judge": "fake:fixed:A", "judge_identity": "fake:fixed:A",
        "constitution": {"name": "tiny", "version": "0.1", "sha256": "abc"},
        "templates": {"judge": "0" * 64}}})
    return out


def test_figures_on_hand_made_pairs(judged):
    report = build_report(judged, parse_constitution(MINIMAL))
    assert report["counts"] == {"prefs.jsonl": 3, "low_margin.jsonl": 1, "unjudged.jsonl": 1}
    c = report["calibration"]
    assert (c["pairs"], c["flip_rate"], c["longer_won"], c["length_flagged"]) == (4, 0.25, 1.0, 4)
    assert c["margin_histogram"]["counts"] == [1, 0, 0, 0, 0, 0, 2, 0, 0, 1]
    s = report["reward_hacking"]["signals"]
    assert s["longer"] == {"chosen_more": 1.0, "chosen_less": 0.0, "same": 0.0}
    assert s["refuses_more"]["chosen_more"] == 0.25
    assert s["hedges_more"]["chosen_more"] == 0.25  # "perhaps"
    [warning] = report["reward_hacking"]["warnings"]
    assert warning.startswith("The chosen reply is longer in 100% of pairs")
    assert report["warnings"][0].startswith("The longer reply won in 100% of judged pairs")
    d = report["diversity"]
    assert d["prompts"] == 5 and d["near_duplicate_rate"] == 0.0
    assert d["principles_used"] == {"alpha": 3, "beta": 1}
    assert d["principle_coverage"] == 1.0
    assert report["provenance"]["models"] == ["fake:fixed:A"]


def test_distinct_n():
    assert distinct_n(["a b a b", "a b"], 1) == 0.3333  # 2 distinct of 6 words
    assert distinct_n(["a b a b", "a b"], 2) == 0.5  # (a b), (b a) of 4 bigrams
    assert distinct_n([], 2) is None


def test_the_card_loads_with_datasets_as_it_says(judged, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    result = invoke("report", judged, "--license", "cc-by-4.0",
                    "--source", "hand-written test prompts (CC0)")
    assert result.exit_code == 0, result.output
    card = (judged / "README.md").read_text()
    assert card.startswith("---\n") and "license: cc-by-4.0" in card
    assert "- Input: hand-written test prompts (CC0)" in card
    assert "hf upload" in card and "provider's terms" in card
    default = datasets.load_dataset(str(judged))
    assert sorted(default) == ["low_margin", "train"]
    assert (default["train"].num_rows, default["low_margin"].num_rows) == (3, 1)
    assert default["train"][0]["chosen"][0]["role"] == "assistant"
    assert datasets.load_dataset(str(judged), "unjudged")["train"].num_rows == 1
    assert json.loads((judged / "report.json").read_text())["configs"][0]["default"] is True


def test_a_folder_without_data_is_one_error_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("report", tmp_path / "empty", catch=True)
    assert "no data to report on" in str(result.exception)
    assert not (tmp_path / "empty" / "README.md").exists()


def test_report_html_in_a_browser(judged, browser):
    assert invoke("report", judged).exit_code == 0
    page = offline_page(browser)
    page.goto((judged / "report.html").as_uri())
    for plot in ("#plot-margins", "#plot-signals", "#plot-principles"):
        box = page.locator(f"{plot} svg").bounding_box()
        assert box and box["width"] > 200 and box["height"] > 50, plot
    assert "longer in 100% of pairs" in page.locator("#warnings").inner_text()
    assert "prefs.jsonl\t3" in page.locator("#counts").inner_text()
    page.close()


def test_the_card_lists_the_commands_that_fed_the_folder(tmp_path):
    """A judge folder's card starts with the `revise` that made its pairs: found through the
    paths in its own command line, relative ones read from where they were typed."""
    (tmp_path / "p.txt").write_text("How do I boil an egg?\nName a colour.\n")
    revise = "cai revise --prompts p.txt --model fake:echo --rounds 1 --out a"
    judge = "cai judge --responses a/prefs.jsonl --judge fake:fixed:A --out b"
    for command in (revise, judge):
        cai(*command.split()[1:], cwd=tmp_path, check=True)
    cai("report", tmp_path / "b", check=True)  # from another folder
    card = (tmp_path / "b" / "README.md").read_text()
    assert f"```shell\n{revise}\n{judge}\n```" in card
    assert json.loads((tmp_path / "b" / "report.json").read_text())["provenance"][
        "commands"] == [revise, judge]


def test_a_category_with_a_line_break_is_one_tick_label():
    from cai.reports.policy import _label

    assert _label("self\nharm") == "self harm"
    assert _label("x" * 50) == "x" * 39 + "…"
