"""Budgets and prices: stop a long run cleanly at a limit, and say what it cost.

Prices are US dollars per million tokens, input and output, as the providers listed them when
this table was written; they change, so check them and extend or override the table with
`--prices FILE` (YAML or JSON: `{model: {input: X, output: Y}}`). Batch APIs cost half.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cai.errors import CaiError, InputError
from cai.models.registry import parse_spec
from cai.records.append import append_shared
from cai.records.read import read_text
from cai.yamlfile import read_yaml

# model name -> (input, output) USD per 1M tokens; a prefix matches dated versions too.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def load_prices(path: str | Path | None) -> dict[str, tuple[float, float]]:
    """The shipped table, extended by a user's file."""
    table = dict(PRICES)
    if path is None:
        return table
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(read_text(path))
        except (ValueError, RecursionError) as e:
            raise InputError(path, None, f"cannot read the price table ({e})") from None
    else:
        data = read_yaml(path)[0]
    if not isinstance(data, dict):
        raise InputError(path, 1, "expected a mapping of model: {input: X, output: Y}")
    for model, p in data.items():
        if not (isinstance(p, dict) and {"input", "output"} <= set(p)
                and all(isinstance(p[k], (int, float)) and not isinstance(p[k], bool)
                        and 0 <= p[k] < 1e6 for k in ("input", "output"))):
            raise InputError(path, None, f"model '{model}': give input and output prices in "
                             "USD per million tokens, e.g. {input: 0.15, output: 0.6}")
        table[str(model)] = (float(p["input"]), float(p["output"]))
    return table


def price_of(spec: str, table: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for a model spec; None when unknown."""
    parsed = parse_spec(spec)
    if parsed.kind.free:
        return (0.0, 0.0)
    model = parsed.model
    for name in sorted(table, key=len, reverse=True):  # the most specific name first
        if model == name or model.startswith(name + "-") or model.startswith(name + "@"):
            return table[name]
    return None


# `cai loop` names its run's spend ledger, and the stage a child runs for, in these; every
# model response a child gets is appended there as it comes, so that what a killed attempt, an
# earlier batch pass or a trainer's judge spent is counted too.
LEDGER, LEDGER_STAGE = "CAI_LEDGER", "CAI_LOOP_STAGE"
SPENT = ("requests", "tokens_in", "tokens_out", "cost_usd")


def record_spend(spec: str, tokens_in: int, tokens_out: int, cost: float,
                 requests: int = 1) -> None:
    """One line in the run's ledger, when this process runs under `cai loop`."""
    path = os.environ.get(LEDGER)
    if path:
        append_shared(path, [{"stage": os.environ.get(LEDGER_STAGE), "model": spec,
                              "requests": requests, "tokens_in": tokens_in,
                              "tokens_out": tokens_out, "cost_usd": cost, "pid": os.getpid()}])


def read_ledger(path: Path) -> dict[str, dict[str, float]]:
    """What each stage spent by the ledger, and "total": the whole run."""
    spent: dict[str, dict[str, float]] = {"total": dict.fromkeys(SPENT, 0)}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line a kill cut short: its response was never used
                continue
            stage = spent.setdefault(str(entry.get("stage")), dict.fromkeys(SPENT, 0))
            for key in SPENT:
                stage[key] += entry.get(key) or 0
                spent["total"][key] += entry.get(key) or 0
    for stage in spent.values():
        stage["cost_usd"] = round(stage["cost_usd"], 6)
    return spent


@dataclass
class Budget:
    """Limits for one run; None means no limit."""

    max_requests: int | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    deadline: float | None = None  # time.time() after which no new request starts
    spent_requests: int = 0
    spent_tokens: int = 0
    spent_cost: float = 0.0
    reason: str | None = field(default=None)

    def exhausted(self) -> str | None:
        """Why no new request may start, or None."""
        if self.max_requests is not None and self.spent_requests >= self.max_requests:
            self.reason = f"max-requests {self.max_requests} reached"
        elif self.max_tokens is not None and self.spent_tokens >= self.max_tokens:
            self.reason = f"max-tokens {self.max_tokens} reached"
        elif self.max_cost is not None and self.spent_cost >= self.max_cost:
            self.reason = f"max-cost ${self.max_cost:g} reached"
        elif self.deadline is not None and time.time() >= self.deadline:
            self.reason = "deadline reached"
        return self.reason


    def reserve(self, tokens: int, cost: float) -> None:
        """Count a request queued for a provider batch, at its estimated size, before it is
        sent; raise BudgetExhausted if it would pass a limit, so that no batch is submitted
        that could spend more than the budget allows."""
        if (reason := self.exhausted()) is not None:
            raise BudgetExhausted(reason)
        if self.max_tokens is not None and self.spent_tokens + tokens > self.max_tokens:
            self.reason = f"max-tokens {self.max_tokens} reached (estimated, batch mode)"
        elif self.max_cost is not None and self.spent_cost + cost > self.max_cost:
            self.reason = f"max-cost ${self.max_cost:g} reached (estimated, batch mode)"
        if self.reason is not None:
            raise BudgetExhausted(self.reason)
        self.spent_requests += 1
        self.spent_tokens += tokens
        self.spent_cost += cost


class BudgetExhausted(CaiError):
    """Raised instead of sending a request once a budget is spent; the item is left undone."""


def parse_deadline(text: str | None) -> float | None:
    """`--deadline` as a duration (90s, 45m, 8h) or a clock time today/tomorrow (06:30)."""
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return time.time() + float(text[:-1]) * units[text[-1]]
    try:
        hours, minutes = (int(v) for v in text.split(":"))
        now = time.localtime()
        target = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, hours, minutes, 0, 0, 0,
                              -1))
        return target if target > time.time() else target + 86400
    except ValueError:
        raise CaiError(f"--deadline {text!r}: give a duration such as 45m or 8h, or a clock "
                       "time such as 06:30") from None
