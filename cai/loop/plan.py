"""What the loop runs: each stage as the `cai` command a user would type, in order.

A stage is a child process running one `cai` command into its own folder of the run, so that
every stage resumes the way the command does (records, cache, checkpoints) and a GPU's memory
is free again when it ends. The few steps that only move files (an iteration's slice of the
prompt pool, the gates) run in the loop itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.loop.config import LoopConfig

ANSWERS = "responses.jsonl"  # what `cai eval policy` writes its model's answers to


@dataclass(frozen=True)
class Stage:
    iteration: int  # 0: before the first iteration
    name: str
    out: Path
    argv: list[str] = field(default_factory=list)  # the `cai` command, or empty: in-process
    action: Callable[[], dict[str, Any]] | None = None  # an in-process step
    budgeted: bool = False  # takes --max-cost, --max-tokens and --deadline
    launcher: tuple[str, ...] = ()  # what runs `-m cai` (default: this Python)
    batch: bool = False  # through the provider batch API (--batch)

    @property
    def key(self) -> str:
        return f"{self.iteration}:{self.name}"


@dataclass
class Run:
    """Where a run is: its folder, settings, and the policies so far."""

    folder: Path
    config: LoopConfig
    base: Path  # the config's folder: paths in the config are relative to it
    limit: int | None = None
    policy: str = ""  # the current policy's spec
    policy_answers: Path | None = None  # its answers to the evaluation suite

    def iter_dir(self, i: int) -> Path:
        return self.folder / f"iter-{i:02d}"

    def path(self, value: str) -> str:
        return str((self.base / value).resolve()) if not Path(value).is_absolute() else value

    @property
    def suite(self) -> str:
        s = self.config.evaluation.suite
        if s == "default":
            from cai.evals.suites import DEFAULT

            return str(DEFAULT)
        return self.path(s)

    @property
    def suite_limit(self) -> int | None:
        limits = [v for v in (self.config.evaluation.limit, self.limit) if v]
        return min(limits) if limits else None

    @property
    def per_iteration(self) -> int:
        return min(self.config.work.prompts, self.limit or self.config.work.prompts)

    @property
    def constitution(self) -> str:
        return str(self.folder / "constitution.yaml")

    @property
    def pool(self) -> Path:
        return self.folder / "prompts" / "pool.jsonl"


def prep_stages(run: Run) -> list[Stage]:
    """Before the first iteration: the prompt pool, and the starting policy evaluated."""
    c = run.config
    folder = run.folder / "prompts"
    stages = []
    source = c.prompts.file and run.path(c.prompts.file)
    if c.prompts.generate:
        n = min(c.prompts.generate, run.limit * c.iterations) if run.limit else c.prompts.generate
        stages.append(Stage(0, "generate", folder / "generated", [
            "data", "prompts", "--n", str(n), "--kind", c.prompts.kind, "--model",
            c.prompts.generator, "--constitution", run.constitution, "--seed", str(c.seed),
            "--out", str(folder / "generated")], budgeted=True,
            batch=batched(run, c.prompts.generator)))
        source = str(folder / "generated" / "prompts.jsonl")
    stages += [
        Stage(0, "dedup", folder, ["data", "dedup", str(source), "--out",
                                   str(folder / "deduplicated.jsonl")]),
        # The evaluation suite is held out: no prompt that overlaps it is ever trained on.
        Stage(0, "decontaminate", folder, [
            "data", "decontaminate", str(folder / "deduplicated.jsonl"), "--against",
            run.suite, "--out", str(run.pool)]),
        Stage(0, "eval-start", run.folder / "eval-start", eval_argv(
            run, ["--model", c.policy], run.folder / "eval-start"), budgeted=True),
    ]
    return stages


def batched(run: Run, *specs: str) -> bool:
    """Whether a stage goes through provider batch APIs: batch mode is on, and every model
    it calls has one."""
    from cai.models.registry import parse_spec

    return run.config.batch and all(parse_spec(s).kind.batch_api for s in specs)


def launcher(run: Run) -> tuple[str, ...]:
    """Training under `accelerate launch` when the config names an accelerate file."""
    accelerate = run.config.training.accelerate
    if accelerate is None:
        return ()
    return ("accelerate", "launch", "--config_file", run.path(accelerate))


def eval_argv(run: Run, what: list[str], out: Path, reference: Path | None = None) -> list[str]:
    c = run.config
    argv = ["eval", "policy", *what, "--evaluator", c.evaluator, "--seed", str(c.seed),
            "--out", str(out)]
    if "--responses" not in what:
        argv += ["--suite", run.suite]
        if run.suite_limit:
            argv += ["--limit", str(run.suite_limit)]
    if reference is not None:
        argv += ["--reference-responses", str(reference)]
    return argv


def iteration_stages(run: Run, i: int, take_prompts: Callable[[], dict[str, Any]],
                     gate: Callable[[], dict[str, Any]]) -> list[Stage]:
    """One iteration: sample, critique and revise, judge, train, evaluate, gate. Only the data
    the training methods read is made: revisions for SFT, judged pairs for DPO (GRPO reads the
    prompts, and its judge rewards as it trains)."""
    c, d = run.config, run.iter_dir(i)
    prompts, seed = str(d / "prompts.jsonl"), str(c.seed + i)
    policy = run.policy
    judges = [a for spec in c.judges for a in ("--judge", spec)]  # several: a panel
    methods = c.training.method.split("+")
    stages = [
        Stage(i, "prompts", d, action=take_prompts),
        Stage(i, "sample", d / "sample", [
            "sample", "--prompts", prompts, "--model", policy, "--n", str(c.work.samples),
            "--seed", seed, "--out", str(d / "sample")], budgeted=True),
        Stage(i, "revise", d / "revise", [
            "revise", "--prompts", prompts, "--model", policy, "--critic-model", c.critic,
            "--rounds", str(c.work.rounds), "--constitution", run.constitution, "--seed", seed,
            "--out", str(d / "revise")], budgeted=True),
        Stage(i, "judge", d / "judge", [
            "judge", "--responses", str(d / "sample" / "responses.jsonl"), *judges,
            "--constitution", run.constitution, "--seed", seed, "--min-margin",
            str(c.training.min_margin), "--out", str(d / "judge")], budgeted=True,
            batch=batched(run, *c.judges)),
    ]
    made_for = {"sample": "dpo", "revise": "sft", "judge": "dpo"}
    stages = [s for s in stages if s.name not in made_for or made_for[s.name] in methods]
    start = policy.split(":", 1)[1] if policy.startswith(("hf:", "vllm:")) else policy
    data = {"sft": ["--data", str(d / "revise/sft.jsonl")],
            "dpo": ["--data", str(d / "judge/prefs.jsonl")],
            "grpo": ["--prompts", prompts, *judges, "--constitution", run.constitution]}
    for kind in methods:
        out = d / f"train-{kind}"
        argv = ["train", kind, *data[kind], "--model", start, "--out", str(out),
                "--config", str(d / "train.yaml")]
        if c.training.lora:
            argv += ["--lora", "--merge"]
        if kind == "dpo":
            argv += ["--min-margin", str(c.training.min_margin)]
        # GRPO calls the judge as it trains: it takes the budget's options too.
        stages.append(Stage(i, f"train-{kind}", out, argv, launcher=launcher(run),
                            budgeted=kind == "grpo"))
        start = str(out)
    candidate = f"{c.generation}:{start}"
    stages.append(Stage(i, "eval", d / "eval", eval_argv(
        run, ["--model", candidate], d / "eval", run.policy_answers), budgeted=True))
    if i > 1:  # in the first iteration the current policy is the start
        stages.append(Stage(i, "eval-vs-start", d / "eval-vs-start", eval_argv(
            run, ["--responses", str(d / "eval" / ANSWERS)], d / "eval-vs-start",
            run.folder / "eval-start" / ANSWERS), budgeted=True,
            batch=batched(run, c.evaluator)))
    stages.append(Stage(i, "gate", d, action=gate))
    return stages
