"""A panel of judges: every comparison to every judge, the soft label their (weighted) mean, and
what the panel says of itself.

The judges here are OpenAI-compatible stand-in servers on 127.0.0.1 (tests.stubs.stub_server:
real HTTP, scripted logprobs, so the figures are exact), and the embedded model itself.
"""

import asyncio
import json
import math
import re

import pytest

from cai.constitution import parse_constitution
from cai.models.backends.openai import OpenAIBackend
from cai.models.cache import ResponseCache
from cai.models.client import Client
from cai.records.read import read_jsonl
from cai.review.pairs import Pair, read_pairs, sample
from cai.stages.judge import Judge, JudgeSettings
from cai.stages.pairs import judge_file, read_candidates
from cai.stages.panel import Panel, panel_figures, read_weights
from cai.stats import fleiss_kappa
from cai.templates import Templates
from tests.helpers import MINIMAL, cai, in_process
from tests.stubs.stub_server import StubServer

# ---------------------------------------------------------------- Fleiss' kappa, by hand


def test_fleiss_kappa_against_hand_worked_values():
    # Two raters, three items: agree, agree, split. P_i = 1, 1, 0; mean 2/3. Both categories
    # half the ratings: P_e = 1/2. kappa = (2/3 - 1/2) / (1/2) = 1/3.
    assert fleiss_kappa([[2, 0], [0, 2], [1, 1]]) == pytest.approx(1 / 3)
    # Three raters leaning one way: P_i = 1, 1, 1/3 (mean 7/9); shares 8/9 and 1/9, so
    # P_e = 65/81; kappa = (63/81 - 65/81) / (16/81) = -1/8.
    assert fleiss_kappa([[3, 0], [3, 0], [2, 1]]) == pytest.approx(-0.125)
    # Fleiss (1971)'s worked example as it is usually retold: 10 items, 14 raters, 5 categories.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
             [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
             [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_fleiss_kappa_is_undefined_without_variety_and_refuses_uneven_raters():
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[2, 0], [2, 0]]) is None  # every rating one category
    with pytest.raises(ValueError):
        fleiss_kappa([[2, 0], [1, 2]])


# ---------------------------------------------------------------- judges as scripted servers


def shown_as(content: str, label: str) -> str:
    m = re.search(rf"@@\w+@@ REPLY {label}\n(.*?)\n@@\w+@@", content, re.S)
    assert m, content
    return m.group(1)


def scripted(p_a_when_good_first: float, p_a_when_bad_first: float):
    """A judge whose P(A) depends only on which reply is shown first."""
    def handler(request):
        good_first = "GOOD" in shown_as(request["messages"][-1]["content"], "A")
        p_a = p_a_when_good_first if good_first else p_a_when_bad_first
        top = {"A": math.log(p_a), "B": math.log(1 - p_a)}
        letter = "A" if p_a > 0.5 else "B"
        return {"content": letter, "logprobs": [(letter, top)]}
    return handler


# P(GOOD better), order-averaged: fair 0.7 (prefers GOOD, and the first position a little);
# contrary 0.2 (prefers BAD); sure 0.9.
FAIR, CONTRARY, SURE = scripted(0.8, 0.4), scripted(0.3, 0.9), scripted(0.9, 0.1)


@pytest.fixture
def responses(tmp_path):
    path = tmp_path / "responses.jsonl"
    rows = [{"id": f"p{i}", "prompt": [{"role": "user", "content": f"Question {i}?"}],
             "responses": [f"GOOD answer {i}.", f"BAD answer {i}, longer."]} for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def judge_with_panel(servers, responses, out, weights=None, cache=None):
    clients = [Client(OpenAIBackend(f"judge-{k}", base_urls=[s.url]), backoff=0.001,
                      cache=cache) for k, s in enumerate(servers)]
    constitution = parse_constitution(MINIMAL)
    panel = Panel([Judge(c, Templates(), constitution, JudgeSettings()) for c in clients],
                  weights)

    async def go():
        try:
            return await judge_file(read_candidates(responses), panel, out, progress=False)
        finally:
            for c in clients:
                await c.aclose()

    return asyncio.run(go())


def test_the_soft_label_is_the_mean_of_the_judges_and_the_panel_reports_itself(responses,
                                                                                  tmp_path):
    with StubServer(handler=FAIR) as a, StubServer(handler=CONTRARY) as b, \
            StubServer(handler=SURE) as c:
        result = judge_with_panel([a, b, c], responses, tmp_path / "j")
        # Every judge saw every comparison, in both orders, under the same principle.
        assert a.completions == b.completions == c.completions == 4
        questions = {tuple(sorted(r["messages"][-1]["content"] for r in s.requests))
                     for s in (a, b, c)}
        assert len(questions) == 1  # the very same requests, fences and principle included
    prefs = list(read_jsonl(tmp_path / "j" / "prefs.jsonl"))
    assert len(prefs) == 2
    for row in prefs:
        assert row["chosen"][0]["content"].startswith("GOOD")
        assert row["soft_label"] == pytest.approx((0.7 + 0.2 + 0.9) / 3)
        assert row["judge"] == ["openai:judge-0", "openai:judge-1", "openai:judge-2"]
        assert len(row["judge_identity"]) == 3 and row["panel_weights"] == [1.0, 1.0, 1.0]
        assert [s["p_chosen"] for s in row["panel"]] == pytest.approx([0.7, 0.2, 0.9])
        assert [s["left_out"] for s in row["panel"]] == [None, None, None]
        assert row["panel_split"] is True
        assert {o["judge"] for o in row["single_order"]} == set(row["judge"])
        assert len(row["principles"]) == 1  # the one drawn, not once per judge
    panel = result.summary["judge"]["panel"]
    # Votes per pair: GOOD, BAD, GOOD. Each pair [2 for GOOD, 1 for BAD] of 3 raters:
    # P_i = 1/3; shares 2/3 and 1/3, P_e = 5/9; kappa = (1/3 - 5/9) / (4/9) = -1/2.
    assert panel["fleiss_kappa"] == pytest.approx(-0.5)
    assert panel["comparisons"] == 2 and panel["split"] == 2 and panel["decided_by_all"] == 2
    assert [p["agreement"] for p in panel["pairwise_agreement"]] == [0.0, 1.0, 0.0]
    assert [j["against_majority"] for j in panel["per_judge"]] == [0.0, 1.0, 0.0]
    assert [j["position_flip_rate"] for j in panel["per_judge"]] == [0.0, 0.0, 0.0]
    assert [j["left_out"] for j in panel["per_judge"]] == [0, 0, 0]
    # Review: the split pairs come first with --split-first.
    pairs = read_pairs(tmp_path / "j")
    assert all(p.split for p in pairs)


def test_weights_shift_the_mean(responses, tmp_path):
    with StubServer(handler=FAIR) as a, StubServer(handler=CONTRARY) as b:
        judge_with_panel([a, b], responses, tmp_path / "even")
        judge_with_panel([a, b], responses, tmp_path / "weighted", weights=[3.0, 1.0])
    even = next(read_jsonl(tmp_path / "even" / "prefs.jsonl"))
    weighted = next(read_jsonl(tmp_path / "weighted" / "prefs.jsonl"))
    assert even["chosen"][0]["content"].startswith("BAD")  # (0.7 + 0.2) / 2 = 0.45 for GOOD
    assert even["soft_label"] == pytest.approx(0.55)
    assert weighted["chosen"][0]["content"].startswith("GOOD")
    assert weighted["soft_label"] == pytest.approx((3 * 0.7 + 0.2) / 4)
    assert weighted["panel_weights"] == [3.0, 1.0]


def refuses(request):
    raise ValueError("this model does not judge such things")  # the stub answers 400


def test_a_judge_that_refuses_is_left_out_of_the_pair_and_the_record_says_so(responses,
                                                                            tmp_path):
    with StubServer(handler=FAIR) as a, StubServer(handler=refuses) as no:
        result = judge_with_panel([a, no], responses, tmp_path / "j")
    assert result.summary["done"] == 2 and result.summary["failed"] == 0
    prefs = list(read_jsonl(tmp_path / "j" / "prefs.jsonl"))
    assert len(prefs) == 2
    for row in prefs:
        assert row["soft_label"] == pytest.approx(0.7)  # the judge that answered, alone
        fair, failed = row["panel"]
        assert fair["left_out"] is None and failed["p_chosen"] is None
        assert failed["left_out"].startswith("failed:")
        assert "does not judge such things" in failed["left_out"]
        assert row["panel_split"] is False
    per_judge = result.summary["judge"]["panel"]["per_judge"]
    assert [j["left_out"] for j in per_judge] == [0, 2]
    assert result.summary["judge"]["panel"]["decided_by_all"] == 0
    assert result.summary["judge"]["panel"]["fleiss_kappa"] is None


def test_a_judge_down_fails_the_prompt_and_a_rerun_asks_only_it_again(responses, tmp_path):
    """An outage of one provider never leaves pairs labelled by the others alone: the prompt
    fails, as with one judge, and the rerun pays only for the judge that was down."""
    cache = ResponseCache(tmp_path / "cache.sqlite")
    out = tmp_path / "j"
    with StubServer(handler=FAIR) as a, StubServer(fault_rate=1.0, faults=("503",)) as down:
        first = judge_with_panel([a, down], responses, out, cache=cache)
        assert a.completions == 4  # each of its requests awaited to the end, and cached
        assert first.summary["done"] == 0 and first.summary["failed"] == 2
        assert not list(read_jsonl(out / "prefs.jsonl"))
        assert "503" in next(read_jsonl(out / "failed.jsonl"))["error"]
        down.fault_rate, down.handler, asked = 0.0, CONTRARY, len(down.requests)
        again = judge_with_panel([a, down], responses, out, cache=cache)
        assert a.completions == 4 and len(down.requests) == asked + 4
    assert again.summary["done"] == 2 and again.summary["failed"] == 0
    for row in read_jsonl(out / "prefs.jsonl"):
        assert [s["left_out"] for s in row["panel"]] == [None, None]
        assert row["soft_label"] == pytest.approx(0.55)


def test_a_pair_no_judge_decided_is_unjudged_with_each_judges_reason(responses, tmp_path):
    def mumbles(request):
        return {"content": "I cannot say."}

    with StubServer(handler=mumbles) as a, StubServer(handler=refuses) as no:
        judge_with_panel([a, no], responses, tmp_path / "j")
    assert not list(read_jsonl(tmp_path / "j" / "prefs.jsonl"))
    unjudged = list(read_jsonl(tmp_path / "j" / "unjudged.jsonl"))
    assert len(unjudged) == 2
    assert unjudged[0]["reason"] == "no judge of the panel decided"
    reasons = [s["left_out"] for s in unjudged[0]["panel"]]
    assert reasons[0] == "no principle had both orders parsed" and reasons[1].startswith("failed")


def test_panel_figures_count_only_pairs_every_judge_decided():
    def seat(judge, p, agree=(True,)):
        return {"judge": judge, "p": p, "left_out": None if p is not None else "failed: x",
                "agree": list(agree)}

    figures = panel_figures([
        [seat("a", 0.9), seat("b", 0.8)],
        [seat("a", 0.9), seat("b", 0.1, agree=(False,))],
        [seat("a", 0.5), seat("b", 0.7)],  # a tie is no vote
        [seat("a", None), seat("b", 0.7)],
        None,  # a single judge's comparison
    ])
    assert figures["comparisons"] == 4 and figures["decided_by_all"] == 2
    # [2, 0] and [1, 1]: P_i 1 and 0; shares 3/4, 1/4; P_e = 5/8; kappa = (1/2 - 5/8)/(3/8).
    assert figures["fleiss_kappa"] == pytest.approx(-1 / 3, abs=1e-4)
    assert figures["pairwise_agreement"] == [{"judges": ["a", "b"], "pairs": 2,
                                              "agreement": 0.5}]
    a, b = figures["per_judge"]
    assert (a["decided"], a["left_out"], b["decided"]) == (2, 1, 4)
    assert b["position_flip_rate"] == 0.25 and figures["split"] == 1
    assert panel_figures([None, None]) is None


def test_review_split_first_orders_the_pairs_the_judges_split_on_first():
    def pair(i, split=False, unjudged=False):
        return Pair(f"p{i}", [], "x", "y", None, (), "f", unjudged=unjudged, split=split)

    pairs = [pair(0), pair(1, split=True), pair(2), pair(3, split=True), pair(4, unjudged=True)]
    order = [p.id for p in sample(pairs, None, seed=0, split_first=True)]
    assert set(order[:2]) == {"p1", "p3"}
    both = [p.id for p in sample(pairs, None, seed=0, unjudged_first=True, split_first=True)]
    assert both[0] == "p4" and set(both[1:3]) == {"p1", "p3"}
    assert [p.id for p in sample(pairs, 2, seed=0, split_first=True)] == order[:2]


# ---------------------------------------------------------------- weights files


def test_weights_files_are_checked_with_a_fix(tmp_path):
    path = tmp_path / "panel_weights.json"
    path.write_text(json.dumps({"weights": {"local": 0.6, "openai:x": 0.8}}))
    assert read_weights(path, ["openai:x", "local"]) == [0.8, 0.6]
    with pytest.raises(Exception, match="the judge openai:y has no weight"):
        read_weights(path, ["local", "openai:y"])
    path.write_text(json.dumps({"weights": {"local": 0, "openai:x": 0.8}}))
    with pytest.raises(Exception, match="weight 0, not a positive number"):
        read_weights(path, ["local", "openai:x"])
    for number in ("NaN", "Infinity"):  # Python's json reads both
        path.write_text('{"weights": {"local": ' + number + "}}")
        with pytest.raises(Exception, match="not a positive number"):
            read_weights(path, ["local"])
    path.write_text("[1, 2]")
    with pytest.raises(Exception, match="panel_weights.json that `cai eval judge` wrote"):
        read_weights(path, ["local"])
    judges = [Judge(Client(OpenAIBackend(f"j{k}", base_urls=["http://127.0.0.1:9/v1"])),
                    Templates(), None, JudgeSettings()) for k in range(2)]
    with pytest.raises(Exception, match="each must be a positive number"):
        Panel(judges, [1.0, -0.5])


def test_panel_options_are_refused_clearly(responses, tmp_path, capsys):
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"weights": {"local": 1}}))
    code, err = in_process(["judge", "--responses", str(responses), "--out",
                            str(tmp_path / "j"), "--panel-weights", str(weights)], capsys)
    assert code == 2 and "give --judge twice or more" in err and "Traceback" not in err
    code, err = in_process(["judge", "--responses", str(responses), "--out",
                            str(tmp_path / "k"), "--judge", "local", "--judge", "local"], capsys)
    assert code == 2 and "the judge local is given twice" in err


# ---------------------------------------------------------------- real processes end to end


GOLD = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
         "chosen": [{"role": "assistant", "content": f"GOOD answer {i}."}],
         "rejected": [{"role": "assistant", "content": f"BAD answer {i}, longer."}]}
        for i in range(4)]


@pytest.mark.local
def test_a_panel_of_the_embedded_model_and_a_server_from_calibration_to_weighted_pairs(
        responses, tmp_path):
    """`cai eval judge` with a panel writes each judge's figures and the weights; `cai judge
    --panel-weights` then weighs the same panel by them; `cai report` shows the panel."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in GOLD))
    with StubServer(handler=SURE) as server:
        panel = ["--judge", "local", "--judge", "openai:stand-in", "--base-url", server.url]
        cai("eval", "judge", "--data", gold, "--out", tmp_path / "cal", *panel, check=True)
        report = json.loads((tmp_path / "cal" / "report.json").read_text())
        side = {j["judge"]: j for j in report["panel"]["side_by_side"]}
        assert set(side) == {"local", "openai:stand-in"}
        assert side["openai:stand-in"]["accuracy"] == 1.0  # it always prefers GOOD
        assert side["openai:stand-in"]["requests"] == 8  # 4 pairs in both orders
        weights = json.loads((tmp_path / "cal" / "panel_weights.json").read_text())["weights"]
        assert weights == {spec: side[spec]["accuracy"] for spec in side}
        assert "a panel of local, openai:stand-in" in (tmp_path / "cal" / "report.md").read_text()

        cai("judge", "--responses", responses, "--out", tmp_path / "j", *panel,
            "--panel-weights", tmp_path / "cal" / "panel_weights.json", check=True)
    rows = [r for name in ("prefs.jsonl", "low_margin.jsonl")
            for r in read_jsonl(tmp_path / "j" / name)]
    assert len(rows) == 2
    for row in rows:
        assert row["panel_weights"] == [weights["local"], weights["openai:stand-in"]]
        p_local, p_server = (s["p_chosen"] for s in row["panel"])
        w = row["panel_weights"]
        # The pair's label is the weighted mean of the two judges' P(chosen better).
        assert row["soft_label"] == pytest.approx((w[0] * p_local + w[1] * p_server) / sum(w),
                                                  abs=1e-5)
        assert row["judge_identity"][0].startswith("local:SmolLM2-135M-Instruct@")
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert summary["judge"]["panel"]["judges"] == ["local", "openai:stand-in"]
    cai("report", tmp_path / "j", check=True)
    card = json.loads((tmp_path / "j" / "report.json").read_text())
    assert card["calibration"]["panel"]["comparisons"] == 2


def test_a_dry_run_estimates_each_judge_of_the_panel(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in GOLD))
    done = cai("eval", "judge", "--data", gold, "--out", tmp_path / "cal", "--judge",
               "fake:fixed:A", "--judge", "fake:fixed:B", "--dry-run", check=True)
    estimate = json.loads(done.stdout)
    assert set(estimate["by_model"]) == {"fake:fixed:A", "fake:fixed:B"}
    assert [m["requests"] for m in estimate["by_model"].values()] == [8, 8]  # 4 pairs, 2 orders
    assert estimate["requests"] == 16 and not (tmp_path / "cal").exists()


def test_a_panel_is_one_set_of_settings_and_one_weight_a_judge():
    from cai.errors import CaiError
    from cai.models.backends.fake import FakeBackend

    def judge(spec, **settings):
        return Judge(Client(FakeBackend(spec)), Templates(), None, JudgeSettings(**settings))

    with pytest.raises(CaiError, match="share their constitution and settings"):
        Panel([judge("fixed:A"), judge("fixed:B", seed=1)])
    with pytest.raises(CaiError, match="1 weights for 2 judges"):
        Panel([judge("fixed:A"), judge("fixed:B")], [1.0])
    assert Panel([judge("fixed:A"), judge("fixed:B")], [1.0, 2.0]).weights == (1.0, 2.0)
