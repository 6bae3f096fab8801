"""GRPO with cai's judge as the reward (`cai train grpo`): online RLAIF.

The policy samples a group of completions per prompt as it trains, the judge rewards them
(see rewards.py), and TRL's GRPOTrainer turns the rewards into group-relative advantages.
Everything that can be wrong with the input is checked here before any model loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cai.chat import messages_to_dicts
from cai.errors import CaiError, InputError
from cai.inputs import read_prompts
from cai.training.data import Split, datasets
from cai.training.rewards import MODES, JudgeReward, _conversation, _prompt_key

if TYPE_CHECKING:
    from cai.models.budget import Budget
    from cai.models.session import Session
    from cai.templates import Templates

# Groups of 4 completions, short ones, no KL term (TRL's default), a log every step.
DEFAULTS = {"num_generations": 4, "max_completion_length": 128,
            "per_device_train_batch_size": 4}
COLUMNS = ("prompt", "id")


@dataclass(frozen=True)
class RewardSettings:
    judge: str | tuple[str, ...] = "local"  # several: a panel, its reward their mean
    constitution: str | None = "harmless"
    mode: str = "pairwise"
    length_penalty: float = 0.0
    text_fallback: bool = True
    reference_model: str | None = None  # answers the prompts that bring no `reference`
    panel_weights: str | None = None  # a panel's weights, as `cai eval judge` wrote them

    @property
    def judges(self) -> tuple[str, ...]:
        return (self.judge,) if isinstance(self.judge, str) else self.judge

    @property
    def shown(self) -> str | list[str]:
        """The judge as records name it: its spec, or the panel's specs."""
        return self.judge if isinstance(self.judge, str) else list(self.judge)


def read_prompt_rows(path: Path) -> list[dict[str, Any]]:
    """GRPO's rows: each prompt of a prompt file in TRL's conversational form, with its
    `reference` answer where the file gives one (a `reference` field or CSV column)."""
    return [{"id": item.id, "prompt": messages_to_dicts(list(item.messages)),
             "reference": item.reference, "line": item.line} for item in read_prompts(path)]


def check(settings: RewardSettings, rows: list[dict[str, Any]], path: Path,
          trl: dict[str, Any]) -> None:
    """The bad inputs `cai train grpo` refuses before loading any model."""
    from cai.models.registry import parse_spec

    if settings.mode not in MODES:
        raise CaiError(f"--reward {settings.mode}: use one of {', '.join(MODES)}")
    if settings.mode == "reference" and settings.reference_model is None:
        missing = [r for r in rows if not isinstance(r["reference"], str) or not r["reference"]]
        if missing:
            raise InputError(path, missing[0]["line"], f"{len(missing)} prompts have no "
                             "'reference' answer; add a `reference` field to each, or pass "
                             "--reference-model SPEC to answer them with the starting policy")
    for judge in settings.judges:
        if settings.mode == "score" and not settings.text_fallback and \
                not parse_spec(judge).kind.backend_class().supports_logprobs:
            raise CaiError(f"--reward score reads the score from logprobs, and {judge} gives "
                           "none; use a judge with logprobs, or leave the text fallback on")
    settings_ = {**DEFAULTS, **trl}
    generations = settings_["num_generations"]
    batch = settings_["per_device_train_batch_size"] * settings_.get(
        "gradient_accumulation_steps", 1)
    if batch % generations:
        raise CaiError(f"trl: per_device_train_batch_size x gradient_accumulation_steps = "
                       f"{batch} does not divide by num_generations = {generations}: each "
                       "batch must hold whole groups; change one of them")
    if generations < 2 and settings.mode == "pairwise":
        raise CaiError("--reward pairwise compares the completions of a group: set "
                       "trl: num_generations to 2 or more")


def make_reward(settings: RewardSettings, session: Any, templates: Any,
                rows: Sequence[dict[str, Any]], trl: dict[str, Any],
                log: Path | None = None) -> JudgeReward:
    from cai.constitution import load_constitution
    from cai.paths import resolve_constitution
    from cai.stages.judge import Judge, JudgeSettings
    from cai.stages.panel import Panel, read_weights

    constitution = load_constitution(resolve_constitution(settings.constitution)) \
        if settings.constitution else None
    judges = [Judge(session.client(spec, logprobs=True), templates, constitution,
                    JudgeSettings()) for spec in settings.judges]
    weights = read_weights(Path(settings.panel_weights), [j.client.spec for j in judges]) \
        if settings.panel_weights else None
    merged = {**DEFAULTS, **trl}
    references = {_prompt_key(_conversation(r["prompt"])): r["reference"] for r in rows
                  if r.get("reference")}
    return JudgeReward(judges[0] if len(judges) == 1 else Panel(judges, weights),
                       mode=settings.mode, num_generations=merged["num_generations"],
                       length_penalty=settings.length_penalty,
                       max_completion_length=merged["max_completion_length"],
                       text_fallback=settings.text_fallback, references=references, log=log)


SAMPLED = 16  # prompts whose judge requests a dry run makes, to scale to the whole run


async def estimate(reward: JudgeReward, rows: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """What a run would ask of the judge, with no model loaded and nothing sent: one group of
    completions at their longest for each of a few prompts, through the judge's dry-run
    client, scaled to the groups the run's steps hold (one process; held-out prompts left
    out, as training leaves them)."""
    import math

    from cai.chat import assistant

    g, length = reward.num_generations, reward.max_completion_length
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    steps = args.max_steps if args.max_steps > 0 else math.ceil(
        args.num_train_epochs * len(rows) * g / per_step)
    groups = steps * per_step // g
    text = ("word " * length)[: 4 * length]  # the dry-run backend's measure: 4 characters a token
    sampled = rows[:SAMPLED]
    for row in sampled:
        await reward(prompts=[row["prompt"]] * g,
                     completions=[assistant(f"{k} {text}") for k in range(g)],
                     completion_ids=[[0] * length] * g)
    clients = reward.clients
    scale = groups / len(sampled)

    def scaled(key: str, digits: int = 0) -> float:
        return round(sum(getattr(c.stats, key) for c in clients) * scale, digits or None)

    return {"dry_run": True, "steps": steps, "groups": groups, "completions": groups * g,
            "judge": clients[0].spec if len(clients) == 1 else [c.spec for c in clients],
            "reward": reward.mode, "requests": scaled("requests"),
            "tokens_in": scaled("prompt_tokens"), "tokens_out": scaled("completion_tokens"),
            "cost_usd": scaled("cost_usd", 4),
            "note": f"from {len(sampled)} prompts' groups of completions at their longest "
                    f"({length} tokens); tokens estimated at 4 characters each"}


def completions_log(out: Path, resumed: str | None) -> Path:
    """`completions.jsonl`, where the reward appends every completion it judged (from every
    process): emptied for a new run, cut back to the checkpoint's steps for a resumed one."""
    from cai.records.append import repair
    from cai.records.read import read_jsonl
    from cai.records.rewrite import write_jsonl

    log = out / "completions.jsonl"
    if log.exists():
        repair(log)  # a line a killed run left half written
        kept = int(Path(resumed).name.rpartition("-")[2]) if resumed else 0
        write_jsonl(log, [r for r in read_jsonl(log) if (r.get("step") or 0) <= kept])
    return log


def steps(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One entry per logged step: the reward and the judge's guards, numbers only."""
    found = []
    for entry in log_history:
        if "reward" not in entry:
            continue
        row = {"step": entry.get("step"), "reward": entry["reward"],
               "reward_std": entry.get("reward_std", 0.0)}
        row.update({k.removeprefix("judge/"): v for k, v in entry.items()
                    if k.startswith("judge/")})
        found.append({k: float(v) if k != "step" else int(v) for k, v in row.items()
                      if isinstance(v, (int, float))})
    return found


async def answer_references(rows: list[dict[str, Any]], client: Any) -> None:
    """The starting policy's answers, as references for the prompts that bring none."""
    import asyncio

    from cai.chat import messages_from_dicts

    todo = [r for r in rows if not r.get("reference")]
    answers = await asyncio.gather(*(client.complete(
        list(messages_from_dicts(r["prompt"])), client.sampling(seed=0)) for r in todo))
    for row, answer in zip(todo, answers, strict=True):
        row["reference"] = answer.text


@dataclass
class GRPO:
    """GRPO with the judge as the reward: the reward's settings, the session its judge's
    client lives in (and whose budget stops training), the templates, and the prompts, read
    and checked by the command before any model loads. One run's: its reward is made as its
    trainer is."""

    settings: RewardSettings
    session: Session
    templates: Templates
    prompts: list[dict[str, Any]]
    reward: Any = field(default=None, init=False, repr=False)
    kind: ClassVar[str] = "grpo"
    description: ClassVar[str] = ("GRPO with the AI judge as the reward (online RLAIF) on "
                                  "the prompts")
    generates: ClassVar[bool] = True
    learning_rates: ClassVar[dict[bool, float]] = {False: 1e-6, True: 1e-5}
    trl_defaults: ClassVar[dict[str, Any]] = DEFAULTS
    heldout_metric: ClassVar[str] = "eval_reward"
    min_margin: ClassVar[float] = 0.0  # prompts have no margin: none is left out

    @staticmethod
    def config_class() -> type:
        from trl import GRPOConfig

        return GRPOConfig

    def budget(self, deadline: float | None) -> Budget:
        return self.session.budget  # the judge spends from it; it holds the deadline too

    def rows(self, data: Sequence[Path]) -> tuple[list[dict[str, Any]], int]:
        return self.prompts, 0

    def trainer(self, common: dict[str, Any], split: Split) -> Any:
        from trl import GRPOTrainer

        self.reward = self.judge_reward(common["args"])
        return GRPOTrainer(reward_funcs=[self.reward], **common, **datasets(split, COLUMNS))

    def judge_reward(self, args: Any) -> Any:
        """The judge as the reward, each completion it judged logged to completions.jsonl."""
        from cai.training.stopping import last_checkpoint

        out = Path(args.output_dir)
        # Process 0 cuts the log back to the checkpoint before any other appends to it.
        with args.main_process_first(desc="preparing the completions log"):
            log = completions_log(out, last_checkpoint(args)) if args.process_index == 0 \
                else out / "completions.jsonl"
        trl = {"num_generations": args.num_generations,
               "max_completion_length": args.max_completion_length}
        return make_reward(self.settings, self.session, self.templates, self.prompts, trl, log)

    def example(self, row: dict[str, Any], tokenizer: Any) -> dict[str, str]:
        return {"prompt": str(row["prompt"])}  # the policy writes the completions as it trains

    def summary(self, trainer: Any, split: Split, heldout: dict[str, Any]) -> dict[str, Any]:
        # The judge's connections belong to TRL's event loop: closed there, now that training
        # and evaluation are done.
        loop = getattr(trainer, "async_loop", None)
        if loop is not None:
            import asyncio

            for client in self.reward.clients:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()
        history = list(trainer.state.log_history)
        return {"log_history": history, "grpo": reward_summary(self.settings, self.reward,
                                                               history)}


def reward_summary(s: RewardSettings, reward: JudgeReward,
                   log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """The reward's part of a GRPO run's summary: its judge (or panel), settings, calls and
    steps."""
    from cai.stages.panel import as_panel

    panel = as_panel(reward.judge)
    identities = [c.identity for c in panel.clients]
    return {"reward": s.mode, "judge": s.shown,
            "judge_identity": identities[0] if len(identities) == 1 else identities,
            "constitution": s.constitution, "length_penalty": s.length_penalty,
            "text_fallback": s.text_fallback, "reference_model": s.reference_model,
            "judge_requests": sum(c.stats.requests for c in panel.clients),
            "judge_cache_hits": sum(c.stats.cache_hits for c in panel.clients),
            "steps": steps(log_history),
            # what the independence guard compares the evaluator's templates with
            "templates": panel.templates.hashes(
                "judge_score" if s.mode == "score" else panel.template, "_judge_data")}
