"""Calibration statistics with exact numbers, and the gold-pair readers."""

import json

import pytest

from cai.chat import Message
from cai.errors import InputError
from cai.evals.calibration import GoldPair, agreement_report, read_gold, reliability, split_hh
from cai.stats import cohen_kappa, wilson


def test_kappa_exact():
    # 4 agree out of 6; judge says yes 3/6, humans 4/6: expected 0.5*0.667+0.5*0.333 = 0.5.
    labels = [(1, 1), (1, 1), (1, 0), (0, 1), (0, 0), (0, 1)]
    assert cohen_kappa(labels) == pytest.approx((3 / 6 - 0.5) / 0.5)
    assert cohen_kappa([(1, 1), (0, 0)]) == 1.0
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # no variation: undefined
    assert cohen_kappa([]) is None


def test_wilson_interval():
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)


def test_reliability_and_ece():
    p = [0.9, 0.9, 0.1, 0.1, 0.55]
    y = [1, 0, 0, 0, 1]
    table = reliability(p, y)
    assert table == [
        {"bin": "0.1-0.2", "count": 2, "mean_p": 0.1, "observed": 0.0},
        {"bin": "0.5-0.6", "count": 1, "mean_p": 0.55, "observed": 1.0},
        {"bin": "0.9-1.0", "count": 2, "mean_p": 0.9, "observed": 0.5},
    ]
    rows = [{"p_x": pi, "human_x": yi, "x_length": 10, "y_length": 5,
             "judgements": [{"agree": True}]} for pi, yi in zip(p, y, strict=True)]
    report = agreement_report(rows)
    assert report["n"] == 5
    assert report["accuracy"] == pytest.approx(4 / 5)  # 0.9/0, 0.9/1, 0.1/0, 0.1/0, 0.55/1
    assert report["ece"] == pytest.approx((2 * 0.1 + 1 * 0.45 + 2 * 0.4) / 5, abs=1e-4)
    assert report["position_flip_rate"] == 0.0
    assert report["length_bias"]["judge_picked_longer"] == pytest.approx(0.6)
    assert report["length_bias"]["humans_picked_longer"] == pytest.approx(0.4)
    assert set(report) >= {"n", "accuracy", "kappa", "position_flip_rate", "length_bias", "ece"}


def test_ties_count_half_in_accuracy_and_are_left_out_of_kappa():
    rows = [{"p_x": 0.5, "human_x": 1, "x_length": 1, "y_length": 1, "judgements": []},
            {"p_x": 0.8, "human_x": 1, "x_length": 1, "y_length": 1, "judgements": []},
            {"p_x": None, "human_x": 0, "x_length": 1, "y_length": 1, "judgements": []}]
    r = agreement_report(rows)
    assert r["n"] == 3 and r["judged"] == 2 and r["unjudged"] == 1 and r["ties"] == 1
    assert r["coverage"] == round(2 / 3, 4)
    assert r["accuracy_judged"] == 0.75
    assert r["accuracy"] == round((0.5 + 1 + 0.5) / 3, 4)  # the unjudged pair counts 0.5


def test_split_hh_at_the_last_assistant_turn():
    t = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this"
    messages, reply = split_hh(t)
    assert [(m.role, m.content) for m in messages] == [
        ("user", "hi"), ("assistant", "hello"), ("user", "how?")]
    assert reply == "like this"


def test_read_gold_both_formats(tmp_path):
    hh = tmp_path / "hh.jsonl"
    hh.write_text(json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: good",
                              "rejected": "\n\nHuman: q\n\nAssistant: bad"}) + "\n")
    trl = tmp_path / "trl.jsonl"
    trl.write_text(json.dumps({"prompt": "q", "chosen": "good", "rejected": "bad"}) + "\n")
    for path in (hh, trl):
        [pair] = read_gold(path)
        assert (pair.messages[0].content, pair.chosen, pair.rejected) == ("q", "good", "bad")


def test_mismatched_hh_transcripts_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"chosen": "\n\nHuman: q\n\nAssistant: a",
                               "rejected": "\n\nHuman: other\n\nAssistant: b"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: .*differ before the last reply"):
        read_gold(bad)


def test_every_gold_pair_counts_and_the_summary_says_how_many_were_judged(tmp_path):
    """An unjudged pair stays in n, counts 0.5 in accuracy, and shows in coverage."""
    import asyncio

    from cai.evals.calibration import judge_gold
    from cai.models.backends.fake import FakeBackend
    from cai.models.client import Client
    from cai.stages.judge import Judge
    from cai.templates import Templates

    gold = [GoldPair(f"g{i}", (Message("user", f"Q{i}?"),), f"good {i}", f"bad {i}")
            for i in range(3)]
    # "fake:fixed:maybe" never states a letter: no pair gets a verdict.
    judge = Judge(Client(FakeBackend("fixed:maybe")), Templates(), None)
    result = asyncio.run(judge_gold(gold, judge, tmp_path / "e", progress=False))
    s = json.loads((tmp_path / "e" / "summary.json").read_text())
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    for figures in (s, s["report"], report, result.report):
        assert figures["n"] == 3 and figures["judged"] == 0 and figures["unjudged"] == 3
        assert figures["coverage"] == 0.0 and figures["accuracy"] == 0.5
        assert figures["accuracy_judged"] is None
