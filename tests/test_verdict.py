"""The judge's maths, with exact expected numbers, and the text-verdict parser."""

import math

import pytest

from cai.chat import Completion, TokenLogprob, Usage
from cai.stages.verdict import (
    Verdict,
    answer_position,
    clamp,
    margin,
    orders_agree,
    p_first_from_logprobs,
    p_x_from_orders,
    parse_text,
    read_verdict,
    soft_label,
)


def tok(text, **top):
    return TokenLogprob(text, top.get(text.strip(), -0.1), {k: v for k, v in top.items()})


def completion(text, tokens=None):
    return Completion(text, "stop", Usage(), "m", tuple(tokens) if tokens else None)


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("A", "A"),
        ("(B)", "B"),
        ("B.", "B"),
        ("Answer: A", "A"),
        ("answer: b", "B"),
        ("**Answer:** (A)", "A"),
        ("Answer: A.", "A"),
        ("Reply B is clearer and safer.\nAnswer: B", "B"),
        ("Both are similar, but A explains more.\n\nAnswer: (A)", "A"),
        ("Answer: A\nAnswer: A", "A"),
        ("Answer: A\nAnswer: B", None),  # contradicts itself
        ("Response A is better.", None),  # not the documented format
        ("The answer is B", "B"),
        ("The answer is: (A).", "A"),
        ("I think the answer is B because it is kind.", None),
        ("Answer: C", None),
        ("Answer: A or B", None),
        ("I cannot decide between these.", None),
        ("", None),
        ("a", None),
    ],
)
def test_text_verdicts(text, letter):
    assert parse_text(text) == letter


def test_p_first_normalises_over_option_tokens():
    t = TokenLogprob("A", math.log(0.6), {"A": math.log(0.6), " B": math.log(0.2),
                                          "The": math.log(0.1), "(A": math.log(0.05)})
    assert p_first_from_logprobs(t) == pytest.approx(0.65 / 0.85)


def test_missing_option_takes_the_least_likely_listed_as_its_bound():
    t = TokenLogprob("A", math.log(0.9), {"A": math.log(0.9), "I": math.log(0.05),
                                          "x": math.log(0.01)})
    assert p_first_from_logprobs(t) == pytest.approx(0.9 / 0.91)


def test_no_option_at_all_is_none():
    assert p_first_from_logprobs(TokenLogprob("The", -0.1, {"The": -0.1, "I": -2.0})) is None


def test_answer_position_plain_and_reasoning():
    plain = [TokenLogprob(" B", -0.1), TokenLogprob(".", -0.1)]
    assert answer_position(plain, reasoning=False) == 0
    # "A" as an article is not the answer; the letter after "Answer:" is.
    cot = [TokenLogprob(t, -0.1) for t in ["A", " good", " reply", ".", "\nAnswer", ":", " B"]]
    assert answer_position(cot, reasoning=True) == 6
    assert answer_position(cot[:4], reasoning=True) is None


def test_read_verdict_prefers_logprobs_then_text_then_unparsed():
    tokens = [TokenLogprob("A", math.log(0.7), {"A": math.log(0.7), "B": math.log(0.3)})]
    assert read_verdict(completion("A", tokens)) == Verdict(pytest.approx(0.7), "logprobs", "A")
    assert read_verdict(completion("Answer: B")) == Verdict(0.0, "text", "Answer: B")
    assert read_verdict(completion("hmm")) == Verdict(None, "unparsed", "hmm")


def test_reasoning_verdict_is_clamped_to_the_band():
    v = read_verdict(completion("A is kind.\nAnswer: A"), reasoning=True, band=(0.4, 0.6))
    assert v.p_first == 0.6 and v.status == "text"
    assert clamp(0.1, (0.4, 0.6)) == 0.4 and clamp(0.5, (0.4, 0.6)) == 0.5


def test_both_orders_average_and_cancel_position_bias():
    # A judge that always says "A" with 0.8 has no opinion about x once orders are averaged.
    assert p_x_from_orders(Verdict(0.8, "logprobs"), Verdict(0.8, "logprobs")) == 0.5
    assert orders_agree(Verdict(0.8, "logprobs"), Verdict(0.8, "logprobs")) is False
    # x shown first wins with 0.9; shown second, it still wins (A, i.e. y, gets 0.3).
    assert p_x_from_orders(Verdict(0.9, "logprobs"), Verdict(0.3, "logprobs")) == 0.8
    assert orders_agree(Verdict(0.9, "logprobs"), Verdict(0.3, "logprobs")) is True
    assert p_x_from_orders(Verdict(0.9, "logprobs"), Verdict(None, "unparsed")) is None


def test_ensemble_soft_label_and_margin():
    assert soft_label([0.8, 0.6, 0.7]) == pytest.approx(0.7)
    assert soft_label([]) is None
    assert margin(0.7) == pytest.approx(0.4)
    assert margin(0.25) == 0.5
    assert margin(0.5) == 0.0


def test_a_reply_opening_with_the_article_a_is_not_answer_a():
    article = [TokenLogprob(t, -0.1, {"A": -0.1, "B": -3.0}) for t in ["A", " good", " reply"]]
    assert answer_position(article, reasoning=False) is None
    assert read_verdict(completion("A good reply", article)).status == "unparsed"
    letter = [TokenLogprob("A", -0.1, {"A": -0.1, "B": -3.0}), TokenLogprob("\n", -0.1)]
    assert answer_position(letter, reasoning=False) == 0


def test_a_verdict_with_one_alternative_listed_is_not_a_clean_one():
    lone = [TokenLogprob("B", -0.01, {"B": -0.01})]
    assert p_first_from_logprobs(lone[0]) is None
    # no logprob verdict: the text is read instead, and says so
    assert read_verdict(completion("B", lone)) == Verdict(0.0, "text", "B")
