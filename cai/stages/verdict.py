"""From a judge's output to a probability, and from many of those to a soft label.

Pure functions, no I/O. The judge sees two responses labelled A and B and answers with a
letter. Where token log-probabilities are available, P(A better) is the probability mass of
the option tokens at the answer position, normalised over the two options. Otherwise the
letter is parsed from the text, under a strict format:

    a line `Answer: A` or `The answer is B` (any case; brackets, a colon and markdown bold
    allowed), or a whole reply that is the letter alone, e.g. `B` or `(B).`; two such
    lines that disagree are no answer

Anything else is *unparsed*: kept with its raw text and counted, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cai.chat import Completion, TokenLogprob

OPTIONS = ("A", "B")
_ANSWER_LINE = re.compile(r"^\W*(?:the\s+)?answer(?:\s+is)?\W*([AB])\W*$", re.IGNORECASE)
_LONE_LETTER = re.compile(r"^\W*([AB])\W*$")
_ENDS_WITH_ANSWER = re.compile(r"answer(?:\s+is)?[\s*:\-()\[\]]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """One judgement of one ordering: P(the response shown as A is better)."""

    p_first: float | None  # None when unparsed or failed
    status: str  # "logprobs", "text", "unparsed" or "failed"
    raw: str = ""


def option_of(token: str) -> str | None:
    """The option a token names (' A', '(B', 'A.' ...), or None."""
    core = token.strip().strip("()[]*.:\"'").strip()
    return core if core in OPTIONS else None  # case matters: "a" is an article


def parse_text(text: str) -> str | None:
    """The option a reply states in the documented format, or None."""
    text = text.strip()
    if _LONE_LETTER.match(text):
        return _LONE_LETTER.match(text).group(1).upper()  # type: ignore[union-attr]
    found = {m.group(1).upper() for line in text.splitlines()
             if (m := _ANSWER_LINE.match(line.strip().replace("*", "")))}
    return found.pop() if len(found) == 1 else None


def answer_position(tokens: Sequence[TokenLogprob], *, reasoning: bool) -> int | None:
    """Where the generated answer letter stands.

    Without reasoning it is the first letter that opens the reply or follows "Answer:";
    after chain-of-thought it is the last letter that follows "Answer:".
    """
    found = None
    prefix = ""
    for i, t in enumerate(tokens):
        if option_of(t.token) and not _is_article(tokens, i):
            opens = not reasoning and not prefix.strip(" \n\t*()[]:.")
            if opens or _ENDS_WITH_ANSWER.search(prefix):
                if not reasoning:
                    return i
                found = i
        prefix += t.token
    return found


def _is_article(tokens: Sequence[TokenLogprob], i: int) -> bool:
    """Whether an "A" is the article of a sentence ("A good reply...") rather than a letter:
    the next token goes on with a word."""
    if tokens[i].token.strip() != "A" or i + 1 >= len(tokens):
        return False
    following = tokens[i + 1].token
    return following[:1].isspace() and following.strip()[:1].isalpha()


def p_first_from_logprobs(token: TokenLogprob) -> float | None:
    """P(A) at the answer position, normalised over the options.

    If only one option is among the listed alternatives, the other's probability is at most
    that of the least likely listed one: we take that bound, which errs towards less
    confidence rather than certainty. With fewer than two alternatives listed there is no
    such bound, and no verdict: the text is read instead.
    """
    alternatives = dict(token.top)
    alternatives.setdefault(token.token, token.logprob)
    if len(alternatives) < 2:
        return None
    mass = dict.fromkeys(OPTIONS, 0.0)
    for tok, lp in alternatives.items():
        if (opt := option_of(tok)) is not None:
            mass[opt] += math.exp(lp)
    if mass["A"] == 0 and mass["B"] == 0:
        return None
    floor = math.exp(min(alternatives.values()))
    a = mass["A"] or floor
    b = mass["B"] or floor
    return a / (a + b)


def read_verdict(completion: Completion, *, reasoning: bool = False,
                 band: tuple[float, float] | None = None) -> Verdict:
    """Turn one judge completion into a Verdict; `band` clamps chain-of-thought confidence."""
    p = None
    status = "unparsed"
    if completion.logprobs:
        pos = answer_position(completion.logprobs, reasoning=reasoning)
        if pos is not None:
            p = p_first_from_logprobs(completion.logprobs[pos])
            status = "logprobs" if p is not None else status
    if p is None:
        letter = parse_text(completion.text)
        if letter is not None:
            p, status = (1.0 if letter == "A" else 0.0), "text"
    if p is not None and band is not None:
        p = clamp(p, band)
    return Verdict(p, status, completion.text)


def clamp(p: float, band: tuple[float, float]) -> float:
    lo, hi = band
    return min(max(p, lo), hi)


def p_x_from_orders(shown_first: Verdict, shown_second: Verdict) -> float | None:
    """P(x better) from x shown as A, then x shown as B; None unless both parsed."""
    if shown_first.p_first is None or shown_second.p_first is None:
        return None
    return (shown_first.p_first + (1.0 - shown_second.p_first)) / 2


def orders_agree(shown_first: Verdict, shown_second: Verdict) -> bool | None:
    """Did both orders prefer the same response? False is a position flip."""
    if shown_first.p_first is None or shown_second.p_first is None:
        return None
    if shown_first.p_first == 0.5 or shown_second.p_first == 0.5:
        return None  # a tie in either order is neither agreement nor a flip
    return (shown_first.p_first > 0.5) == (shown_second.p_first < 0.5)


def soft_label(per_principle: Sequence[float]) -> float | None:
    """The mean over principles of P(x better), each already averaged over both orders."""
    return sum(per_principle) / len(per_principle) if per_principle else None


def margin(p: float) -> float:
    """How far from a coin flip: |2p - 1|, from 0 (no preference) to 1 (certain)."""
    return abs(2 * p - 1)
