"""cai: Constitutional AI and RLAIF, from principles to preference data to training.

The pipeline in a few names, imported on first use, so that `import cai` loads no model
library: load_constitution, Session (its `client(spec)` makes a model client), Reviser and
revise, sample, Judge, Panel (of judges) and judge, eval_judge and evaluate_rewordings,
train (by SFT, DPO, RewardModel or GRPO); make_prompts and build_report (data); run_loop;
review_stats; lint, diff_constitutions and induce (authoring). The stage functions are async
and write the same files as their commands. examples/python_api.py runs revise -> judge end
to end; JudgeReward is cai's judge as a reward for TRL's GRPOTrainer.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any


def _exports() -> dict[str, tuple[str, str]]:
    """name -> (module, attribute), read from the imports under `if TYPE_CHECKING:` at the
    end of this file: that block is the one list of the public API, for type checkers and
    for the lazy lookup alike."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    return {alias.asname or alias.name: (str(node.module), alias.name)
            for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}


_EXPORTS = _exports()
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cai' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
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
    from cai.evals.rewording import evaluate_rewordings
    from cai.inputs import PromptItem, read_prompts
    from cai.loop.run import run_loop
    from cai.models.client import Client
    from cai.models.registry import load_backend
    from cai.models.session import Session
    from cai.records.read import read_jsonl
    from cai.review.stats import review_stats
    from cai.stages.judge import Judge, JudgeSettings
    from cai.stages.pairs import PairSettings, read_candidates
    from cai.stages.pairs import judge_file as judge
    from cai.stages.panel import Panel
    from cai.stages.revise import Reviser, revise, try_prompt
    from cai.stages.sample import sample
    from cai.templates import Templates
    from cai.training.dpo import DPO
    from cai.training.grpo import GRPO
    from cai.training.reward import RewardModel
    from cai.training.rewards import JudgeReward
    from cai.training.sft import SFT
    from cai.training.train import train
