"""cai: Constitutional AI and RLAIF, from principles to preference data to training.

The pipeline in a few names, imported on first use, so that `import cai` loads no model
library: load_constitution, Session (its `client(spec)` makes a model client), Reviser and
revise, sample, Judge and judge, eval_judge, train; make_prompts and build_report (data);
run_loop; review_stats; lint, diff_constitutions and induce (authoring). The stage functions
are async and write the same files as their commands. examples/python_api.py runs revise ->
judge end to end; JudgeReward is cai's judge as a reward for TRL's GRPOTrainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the module that defines it
_EXPORTS = {
    "load_constitution": "cai.constitution",
    "Constitution": "cai.constitution",
    "Principle": "cai.constitution",
    "Templates": "cai.templates",
    "read_prompts": "cai.inputs",
    "PromptItem": "cai.inputs",
    "read_jsonl": "cai.records",
    "Message": "cai.chat",
    "Sampling": "cai.chat",
    "Completion": "cai.chat",
    "Session": "cai.models.session",
    "Client": "cai.models.client",
    "load_backend": "cai.models.registry",
    "Reviser": "cai.stages.revise",
    "revise": "cai.stages.revise",
    "try_prompt": "cai.stages.revise",
    "sample": "cai.stages.sample",
    "Judge": "cai.stages.judge",
    "JudgeSettings": "cai.stages.judge",
    "PairSettings": "cai.stages.pairs",
    "read_candidates": "cai.stages.pairs",
    "judge": "cai.stages.pairs:judge_file",
    "read_gold": "cai.evals.calibration",
    "eval_judge": "cai.evals.calibration:judge_gold",
    "train": "cai.training.train",
    "JudgeReward": "cai.training.rewards",
    "Generator": "cai.data.generate",
    "make_prompts": "cai.data.generate",
    "build_report": "cai.data.report",
    "run_loop": "cai.loop.run",
    "review_stats": "cai.review.stats",
    "lint": "cai.authoring.lint",
    "diff_constitutions": "cai.authoring.diff:diff",
    "induce": "cai.authoring.induce",
    "CaiError": "cai.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cai' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # found once, then a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from cai.authoring.diff import diff as diff_constitutions
    from cai.authoring.induce import induce
    from cai.authoring.lint import lint
    from cai.chat import Completion, Message, Sampling
    from cai.constitution import Constitution, Principle, load_constitution
    from cai.data.generate import Generator, make_prompts
    from cai.data.report import build_report
    from cai.errors import CaiError
    from cai.evals.calibration import judge_gold as eval_judge
    from cai.evals.calibration import read_gold
    from cai.inputs import PromptItem, read_prompts
    from cai.loop.run import run_loop
    from cai.models.client import Client
    from cai.models.registry import load_backend
    from cai.models.session import Session
    from cai.records import read_jsonl
    from cai.review.stats import review_stats
    from cai.stages.judge import Judge, JudgeSettings
    from cai.stages.pairs import PairSettings, read_candidates
    from cai.stages.pairs import judge_file as judge
    from cai.stages.revise import Reviser, revise, try_prompt
    from cai.stages.sample import sample
    from cai.templates import Templates
    from cai.training.rewards import JudgeReward
    from cai.training.train import train
