"""A training config file: its `trl:` mapping goes straight into the method's TRL config
(SFTConfig, DPOConfig, RewardConfig, GRPOConfig) over cai's few defaults, and its `lora:`
mapping into peft's LoraConfig. Keys are checked against those classes when read, with the
file and line of a wrong one."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from cai.errors import InputError
from cai.schema import kind as kind_of
from cai.yamlfile import read_yaml

if TYPE_CHECKING:
    from cai.training.method import Method

LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
SECTIONS = {"trl": "TRL's config for the command", "lora": "peft's LoraConfig"}


# Ranges for the settings people change most; a value outside one fails late, or trains on
# nonsense (a negative learning rate ascends the loss). Types come from TRL's and peft's own
# dataclasses.
RANGES: dict[str, dict[str, Any]] = {
    "learning_rate": {"gt": 0, "le": 1}, "num_train_epochs": {"gt": 0}, "max_steps": {"ge": -1},
    "per_device_train_batch_size": {"ge": 1}, "per_device_eval_batch_size": {"ge": 1},
    "gradient_accumulation_steps": {"ge": 1}, "warmup_ratio": {"ge": 0, "le": 1},
    "warmup_steps": {"ge": 0}, "weight_decay": {"ge": 0}, "max_grad_norm": {"ge": 0},
    "logging_steps": {"gt": 0}, "save_steps": {"gt": 0}, "eval_steps": {"gt": 0},
    "beta": {"ge": 0}, "max_length": {"ge": 1}, "max_prompt_length": {"ge": 1},
    "max_completion_length": {"ge": 1}, "num_generations": {"ge": 2}, "temperature": {"ge": 0},
    "r": {"ge": 1}, "lora_alpha": {"gt": 0}, "lora_dropout": {"ge": 0, "lt": 1},
}


@dataclass(frozen=True)
class TrainConfig:
    """The `trl:` and `lora:` mappings of a training config file, and where each key is."""

    trl: dict[str, Any] = field(default_factory=dict)
    lora: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def check(self, section: str, target: type) -> None:
        """Reject a key the dataclass `target` does not take, or a value of another type or
        out of range, naming the file, line and key."""
        where = self.path or "config"
        model = _schema(target)
        values = getattr(self, section)
        for key in values:
            if key not in model.model_fields:
                raise InputError(where, self.lines.get((section, key)),
                                 f"{section}: unknown key '{key}': {target.__name__} has no "
                                 "such field")
        try:
            model.model_validate(values)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            key = str(err["loc"][0])
            raise InputError(where, self.lines.get((section, key)),
                             f"{section}: {key}: {err['msg'][0].lower()}{err['msg'][1:]}, found "
                             f"{kind_of(values.get(key))}") from None


@cache
def _schema(target: type) -> type[BaseModel]:
    """A strict pydantic model of a config dataclass: each field's own type, and its range."""
    hints = typing.get_type_hints(target)
    fields: dict[str, Any] = {
        f.name: (Annotated[hints.get(f.name, Any), Field(**RANGES.get(f.name, {}))], None)
        for f in dataclasses.fields(target)}
    return create_model(target.__name__, __config__=ConfigDict(
        strict=True, extra="forbid", arbitrary_types_allowed=True), **fields)


def read_config(path: Path | None) -> TrainConfig:
    if path is None:
        return TrainConfig()
    data, root = read_yaml(path)
    if data is None:
        raise InputError(path, None, "the file is empty; give `trl:` and `lora:` settings, or "
                         "leave --config out")
    if not isinstance(data, dict):
        raise InputError(path, None, "expected a mapping with `trl:` and `lora:`")
    lines = key_lines(root)
    for key, value in data.items():
        if key not in SECTIONS:
            known = "; ".join(f"`{k}:` ({v})" for k, v in SECTIONS.items())
            raise InputError(path, lines.get((key,)), f"unknown key '{key}'; use {known}")
        if value is not None and not isinstance(value, dict):
            raise InputError(path, lines.get((key,)), f"`{key}:` must be a mapping of settings")
    return TrainConfig(dict(data.get("trl") or {}), dict(data.get("lora") or {}), path, lines)


def key_lines(root: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """The line of each key in the top two levels of a YAML mapping."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            lines[(key.value,)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


def default_settings(method: Method, out: Path, lora: bool, gpu: bool) -> dict[str, Any]:
    """What cai sets in TRL's config before the user's `trl:` mapping."""
    return {
        "output_dir": str(out), "report_to": "none", "seed": 0, "logging_steps": 1,
        "save_strategy": "no",  # the result is saved once, into --out itself
        "learning_rate": method.learning_rates[lora],
        # TRL's configs default to bf16 and gradient checkpointing, which a CPU refuses or
        # does not need; on a GPU bf16 autocast runs the matmuls over float32 master weights.
        "bf16": gpu, "fp16": False, "gradient_checkpointing": gpu, "dataloader_pin_memory": gpu,
        "prediction_loss_only": True,  # held-out evaluation wants the loss and metrics only
        # Launched as several processes (accelerate, torchrun) on a machine without CUDA,
        # transformers takes each process for a lone run unless told it is on the CPU: no
        # gradients are shared, and every process believes itself the main one.
        "use_cpu": not gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1,
        **method.trl_defaults,
    }


def check_config(trl_classes: Sequence[type], config: TrainConfig) -> None:
    """Check a config's `trl:` and `lora:` settings against TRL's config classes and peft's,
    without building either: at the edge, before any model loads."""
    from peft import LoraConfig

    for cls in trl_classes:
        config.check("trl", cls)
    config.check("lora", LoraConfig)


def trl_args(method: Method, out: Path, lora: bool, config: TrainConfig) -> tuple[Any, dict]:
    """TRL's config for the method: our defaults, then the file's `trl:` mapping as it stands."""
    import torch

    cls = method.config_class()
    config.check("trl", cls)
    if "output_dir" in config.trl:  # the model, card and summary must land in one folder
        raise InputError(config.path or "config", config.lines.get(("trl", "output_dir")),
                         "trl: output_dir is set by --out; remove it here")
    defaults = default_settings(method, out, lora, torch.cuda.is_available())
    checkpointing = {"gradient_checkpointing", "activation_checkpointing"}
    if checkpointing & config.trl.keys():  # the file's choice, under either name, stands
        defaults.pop("gradient_checkpointing")
    elif "activation_checkpointing" in _schema(cls).model_fields:  # transformers 5.2x's name
        # (the old one warns)
        defaults["activation_checkpointing"] = defaults.pop("gradient_checkpointing")
    settings = {**defaults, **config.trl}
    if settings.get("use_liger_kernel") and importlib.util.find_spec("liger_kernel") is None:
        raise InputError(config.path or "config", config.lines.get(("trl", "use_liger_kernel")),
                         "trl: use_liger_kernel needs liger-kernel, which is not installed: "
                         "pip install 'cai-toolkit[gpu]' on a CUDA machine, or remove this line")
    try:
        return cls(**settings), settings
    except (TypeError, ValueError) as e:
        raise InputError(config.path or "config", None, f"trl: {e}") from None


def lora_config(generates: bool, config: TrainConfig) -> tuple[Any, dict]:
    """peft's LoraConfig: our defaults, then the file's `lora:` mapping."""
    from peft import LoraConfig

    config.check("lora", LoraConfig)
    # A reward model's score head is new, so SEQ_CLS trains it in full beside the adapters.
    task = "CAUSAL_LM" if generates else "SEQ_CLS"
    settings = {**LORA_DEFAULTS, "task_type": task, **config.lora}
    try:
        return LoraConfig(**settings), settings
    except (TypeError, ValueError) as e:
        raise InputError(config.path or "config", None, f"lora: {e}") from None
