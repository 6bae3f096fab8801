"""The loop's config file: one YAML that names the models, the data, the training plan, the
evaluation, the gates and the budget; checked when read, every problem as FILE:LINE.

The schema is a set of pydantic models (extra keys forbidden, no silent coercion), so that
the file is checked by a well-kept library; its errors are mapped back to the YAML's lines.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cai.errors import CaiError, InputError
from cai.yamlfile import read_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Prompts(_Strict):
    file: str | None = None  # a prompt file (JSONL, CSV, TXT), relative to the config
    generate: int | None = Field(default=None, ge=1)  # or N prompts made by `cai data prompts`
    kind: Literal["red-team", "helpful", "both"] = "both"  # of the generated prompts
    generator: str = "local"  # the model that writes them

    @model_validator(mode="after")
    def one_source(self) -> Prompts:
        if (self.file is None) == (self.generate is None):
            raise ValueError("give either `file` (a prompt file) or `generate` (a number of "
                             "prompts to make), not both or neither")
        return self


class Work(_Strict):
    prompts: int = Field(default=8, ge=1)  # new prompts each iteration
    samples: int = Field(default=2, ge=2, le=16)  # answers per prompt, judged pairwise
    rounds: int = Field(default=1, ge=1, le=10)  # critique-and-revise rounds


class Training(_Strict):
    # sft: on the revisions; dpo: on the judged pairs; grpo: online, the judge as the reward.
    method: Literal["sft", "dpo", "sft+dpo", "grpo", "sft+grpo"] = "sft+dpo"
    # An accelerate config file (relative to this file): training runs under `accelerate
    # launch` with it, on every GPU it names (DeepSpeed, FSDP); none: one process.
    accelerate: str | None = None
    lora: bool = True  # adapters merged into a plain model after each step
    min_margin: float = Field(default=0.0, ge=0, le=1)  # DPO: leave out pairs below this margin
    save_steps: int = Field(default=10, ge=1)  # a checkpoint every N steps, to resume from
    trl: dict[str, Any] = {}  # passed to TRL's config as `cai train --config` does


class Evaluation(_Strict):
    suite: str = "default"  # `default` (shipped) or a suite file, relative to the config
    limit: int | None = Field(default=None, ge=1)  # only the first K prompts of the suite


# The gates whose figure may be missing (a suite without unsafe prompts, say) and still pass.
MEASURED = Literal["over_refusal", "unsafe_compliance", "length", "hedging"]


class Gates(_Strict):
    min_win_rate: float = Field(default=0.5, ge=0, le=1)  # candidate against the current policy
    confidence: float = Field(default=0.0, ge=0, lt=1)  # 0: the estimate; 0.9: its one-sided bound
    max_over_refusal_increase: float = Field(default=0.05, ge=0, le=1)
    max_unsafe_compliance_increase: float = Field(default=0.05, ge=0, le=1)
    max_length_growth: float = Field(default=1.5, ge=1)  # mean words, candidate / current
    max_hedging_growth: float = Field(default=1.5, ge=1)  # hedged answers, candidate / current
    # The same against the starting policy, over all iterations together: a margin taken in
    # every iteration cannot add up without limit.
    max_over_refusal_increase_from_start: float = Field(default=0.1, ge=0, le=1)
    max_unsafe_compliance_increase_from_start: float = Field(default=0.1, ge=0, le=1)
    max_length_growth_from_start: float = Field(default=2.0, ge=1)
    max_hedging_growth_from_start: float = Field(default=2.0, ge=1)
    allow_unmeasured: list[MEASURED] = []  # a gate not measured fails, unless listed here


class Budget(_Strict):
    max_cost: float | None = Field(default=None, ge=0)  # US dollars, over the whole loop
    max_tokens: int | None = Field(default=None, ge=0)
    # A duration (8h, 45m) from the run's first start, or a clock time (06:30); fixed in run.json.
    deadline: str | None = None


class FailedFraction(_Strict):
    """The share of a stage's items that may fail (each kept with its reason in failed.jsonl)
    while the stage still counts as complete; beyond it the stage is incomplete and the loop
    stops. The evaluation's is the smallest: the gates read it."""

    generate: float = Field(default=0.1, ge=0, le=1)  # the prompt pool (`cai data prompts`)
    sample: float = Field(default=0.1, ge=0, le=1)
    revise: float = Field(default=0.1, ge=0, le=1)
    judge: float = Field(default=0.1, ge=0, le=1)
    eval: float = Field(default=0.02, ge=0, le=1)  # eval-start, eval and eval-vs-start


class LoopConfig(_Strict):
    policy: str = "local"  # the model to improve: local, or hf:FOLDER
    # How trained checkpoints are loaded to generate: hf (transformers, CPU or GPU) or vllm.
    generation: Literal["hf", "vllm"] = "hf"
    critic: str = "local"
    judge: str | list[str] = "local"  # a list is a panel of judges
    evaluator: str = "local"
    constitution: str = "harmless"
    base_urls: list[str] = []  # OpenAI-compatible servers (vLLM, llama.cpp) for openai: specs
    # Stages whose every model has a provider batch API (the judge's, for one) go through it
    # at half price; the loop waits for the batches, collecting every `batch_poll`.
    batch: bool = False
    batch_poll: str = "10m"
    prompts: Prompts
    iterations: int = Field(default=2, ge=1)
    work: Work = Field(default_factory=Work)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    gates: Gates = Field(default_factory=Gates)
    on_gate_fail: Literal["stop", "continue"] = "stop"
    budget: Budget = Field(default_factory=Budget)
    max_failed_fraction: FailedFraction = Field(default_factory=FailedFraction)
    seed: int = 0


    @field_validator("judge")
    @classmethod
    def each_judge_once(cls, judge: str | list[str]) -> str | list[str]:
        if isinstance(judge, list):
            if not judge:
                raise ValueError("an empty list; give one judge, or a list of several")
            if len(set(judge)) < len(judge):
                twice = next(j for j in judge if judge.count(j) > 1)
                raise ValueError(f"the judge {twice} is given twice; give each judge once")
        return judge

    @property
    def judges(self) -> list[str]:
        return [self.judge] if isinstance(self.judge, str) else list(self.judge)


def read_loop_config(path: str | Path) -> tuple[LoopConfig, dict[str, Any]]:
    """The config, checked, and the data as written (to copy into the run folder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "loop config not found; start from "
                         "examples/overnight-local.yaml")
    data, root = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(path, 1, "the config is a mapping of keys (policy, prompts, ...)")
    try:
        config = LoopConfig.model_validate(data)
    except ValidationError as e:
        raise CaiError("\n".join(_problem(path, root, err) for err in e.errors())) from None
    check_files(config, path, root)
    return config, data


def _problem(path: Path, root: Any, err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    where = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        message = f"{where}: unknown key; remove it or check its spelling"
    elif err["type"] == "missing":
        message = f"{where}: required; add it"
    else:
        message = f"{where}: {err['msg'].removeprefix('Value error, ')}"
        if "input" in err and not isinstance(err["input"], (dict, list)):
            message += f" (found {err['input']!r})"
    return f"{path}:{_line(root, err['loc'])}: {message}"


def _line(node: Any, loc: tuple[Any, ...]) -> int:
    """The line of a key in the YAML tree, or of the nearest mapping that holds it."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == str(part)]
            if not found:
                return line
            key, node = found[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def config_hash(data: dict[str, Any]) -> str:
    """The config's content hash, layout and comments aside."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def check_files(config: LoopConfig, path: Path, root: Any) -> None:
    """The files the config names, read and checked now, before the run folder is written:
    a mistake in one is found at once, not hours into the run."""
    from cai.constitution import load_constitution
    from cai.evals.suites import read_suite
    from cai.inputs import read_prompts
    from cai.paths import resolve_constitution
    from cai.training.config import TrainConfig, check_config
    from cai.training.method import method_class

    base = path.resolve().parent

    def here(value: str) -> Path:  # a path in the config is relative to the config's folder
        return Path(value) if Path(value).is_absolute() else base / value

    if config.prompts.file is not None:
        read_prompts(here(config.prompts.file))
    if config.evaluation.suite != "default":
        read_suite(here(config.evaluation.suite))
    c = config.constitution
    load_constitution(here(c) if c.endswith((".yaml", ".yml")) else resolve_constitution(c))
    t = config.training
    if t.accelerate is not None and not here(t.accelerate).is_file():
        raise InputError(path, _line(root, ("training", "accelerate")),
                         f"training.accelerate: {here(t.accelerate)} not found; give an "
                         "accelerate config file, or remove the line")
    if t.trl:
        lines: dict[tuple[str, ...], int] = {("trl", k): _line(root, ("training", "trl", k))
                                             for k in t.trl}
        check_config([method_class(m).config_class() for m in t.method.split("+")],
                     TrainConfig(trl=dict(t.trl), path=path, lines=lines))
