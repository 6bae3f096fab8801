"""Commands that make data: revise, try, sample, judge and eval judge."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import click

from cai.cli.options import (
    CONSTITUTION_HELP,
    OVERWRITE,
    SHARD,
    calibration_line,
    console,
    judge_options,
    make_judge,
    model_options,
    panel_line,
    report,
    rewording_line,
    run,
    run_and_report,
)

# ---------------------------------------------------------------- critique and revise


@click.command()
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False),
              help="Prompts: .jsonl (prompt or messages), .csv (prompt column) or .txt.")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--model", default="local", show_default=True, help="The policy that answers.")
@click.option("--critic-model", default=None, help="The model that critiques and revises "
              "[default: --model].")
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 20))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only the first K prompts.")
@click.option("--seed", default=0, show_default=True, help="Seeds principle choice and sampling.")
@click.option("--principle", default=None, help="Use this principle id for every round.")
@SHARD
@OVERWRITE
@model_options
def revise(prompts_file: str, constitution: str, model: str, critic_model: str | None,
           rounds: int, out: str, limit: int | None, seed: int, principle: str | None,
           shard: str | None, overwrite: bool, session: Any, templates: str | None) -> None:
    """Critique and revise answers under a constitution: SFT and preference data."""
    from cai.constitution import load_constitution
    from cai.data.shard import mark
    from cai.folders import claim
    from cai.inputs import read_prompts, take
    from cai.paths import resolve_constitution
    from cai.stages.revise import Reviser, revise
    from cai.templates import Templates

    const = load_constitution(resolve_constitution(constitution))
    if principle:
        const.principle(principle)
    items = take(read_prompts(prompts_file, limit), shard)
    claim(Path(out), "revise", {"--prompts": prompts_file}, overwrite=overwrite,
          dry_run=session.dry_run)
    reviser = Reviser(const, session.client(model), session.client(critic_model or model),
                      Templates(templates), rounds=rounds, seed=seed, principle=principle)
    run_and_report(session, revise(items, reviser, Path(out),
                                   concurrency=session.limits.concurrency, session=session))
    if not session.dry_run:
        mark(Path(out), shard)


@click.command("try")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--prompt", "prompt_texts", required=True, multiple=True,
              help="A prompt to try; give it again for more, run side by side.")
@click.option("--principle", default=None, help="Principle id to apply [default: sampled].")
@click.option("--compare", default=None, type=click.Path(dir_okay=False),
              help="An older constitution file to run side by side on the same prompt and seed.")
@click.option("--model", default="local", show_default=True)
@click.option("--critic-model", default=None)
@click.option("--rounds", default=1, show_default=True, type=click.IntRange(1, 10))
@click.option("--seed", default=0, show_default=True)
@click.option("--watch", is_flag=True, help="Stay, and run again each time the constitution "
              "or a --templates file is saved; Ctrl-C to stop.")
@model_options
def try_(constitution: str, prompt_texts: tuple[str, ...], principle: str | None,
         compare: str | None, model: str, critic_model: str | None, rounds: int, seed: int,
         watch: bool, session: Any, templates: str | None) -> None:
    """Show the initial answer, critique and revision for a prompt or a few, in seconds."""
    from cai.cli.views import show_try
    from cai.constitution import load_constitution
    from cai.stages.revise import try_prompt
    from cai.templates import Templates

    versions = [("new" if compare else None, constitution)]
    if compare:
        versions.insert(0, ("old", compare))
    policy, critic = session.client(model), session.client(critic_model or model)

    async def once() -> None:
        import asyncio

        loaded = [(label, load_constitution(c)) for label, c in versions]
        runs = await asyncio.gather(*(try_prompt(
            text, [c for _, c in loaded], policy, critic, Templates(templates), rounds=rounds,
            seed=seed, principle=principle) for text in prompt_texts))
        for text, traces in zip(prompt_texts, runs, strict=True):
            show_try(console, text, loaded, traces, policy.spec, critic.spec, seed)

    if not watch:
        return run(session, once())
    try:
        run(session, watch_files(once, [c for _, c in versions], templates))
    except KeyboardInterrupt:
        console.print("stopped watching")


async def watch_files(job: Any, constitutions: list[str], templates: str | None) -> None:
    """Run `job` now and again whenever one of the files changes, the model loaded and the
    response cache warm between runs (the first answer is the same request each time, so
    only the critique and revision are made again). A constitution or template saved with a
    mistake is one error line, and the watch goes on."""
    import asyncio

    from cai.cli.options import show_error
    from cai.errors import CaiError
    from cai.paths import resolve_constitution

    files = [resolve_constitution(c) for c in constitutions]
    if templates:
        files += sorted(Path(templates).glob("*.j2"))

    def stamps() -> list[tuple[int, int] | None]:
        found: list[tuple[int, int] | None] = []
        for f in files:
            try:
                s = f.stat()
                found.append((s.st_mtime_ns, s.st_size))
            except OSError:  # an editor between writing and renaming
                found.append(None)
        return found

    seen = None
    while True:
        if (now := stamps()) != seen:
            seen = now
            try:
                await job()
            except CaiError as e:
                show_error(e)
            console.print(f"[dim]watching {', '.join(map(str, files))}: save to run again, "
                          "Ctrl-C to stop[/]", highlight=False)
        await asyncio.sleep(0.25)


# ---------------------------------------------------------------- sampling and judging


@click.command()
@click.option("--prompts", "prompts_file", required=True, type=click.Path(dir_okay=False))
@click.option("--model", default="local", show_default=True, help="The policy to sample.")
@click.option("--n", "n", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Responses per prompt.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--temperature", default=None, type=click.FloatRange(0, 2),
              help="0 to 2 [default: the model's own]")
@click.option("--seed", default=0, show_default=True)
@click.option("--limit", default=None, type=click.IntRange(1))
@SHARD
@OVERWRITE
@model_options
def sample(prompts_file: str, model: str, n: int, out: str, temperature: float | None,
           seed: int, limit: int | None, shard: str | None, overwrite: bool, session: Any,
           templates: str | None) -> None:
    """Sample K responses per prompt into responses.jsonl, for the judge."""
    from cai.data.shard import mark
    from cai.folders import claim
    from cai.inputs import read_prompts, take
    from cai.stages.sample import sample as sample_stage
    from cai.templates import Templates

    items = take(read_prompts(prompts_file, limit), shard)
    claim(Path(out), "sample", {"--prompts": prompts_file}, overwrite=overwrite,
          dry_run=session.dry_run)
    run_and_report(session, sample_stage(
        items, session.client(model), Templates(templates), Path(out), n=n, seed=seed,
        temperature=temperature, concurrency=session.limits.concurrency, session=session))
    if not session.dry_run:
        mark(Path(out), shard)


@click.command()
@click.option("--responses", "responses_file", required=True, type=click.Path(dir_okay=False),
              help="responses.jsonl from `cai sample`, or a preference file (prompt, chosen, "
              "rejected) such as prefs.jsonl from `cai revise`.")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--pairs", type=click.Choice(["all", "best-worst"]), default="all",
              show_default=True, help="With more than two responses: every pair, or the best "
              "against the worst by mean win probability.")
@click.option("--min-margin", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Pairs with |2p-1| below this go to low_margin.jsonl, not prefs.jsonl.")
@click.option("--length-ratio", default=1.5, show_default=True, type=click.FloatRange(1),
              help="Flag pairs whose chosen response is this many times longer.")
@click.option("--calibrate", default=None, type=click.Path(dir_okay=False),
              help="Human-labelled pairs to calibrate the judge on first.")
@click.option("--limit", default=None, type=click.IntRange(1))
@SHARD
@OVERWRITE
@judge_options
def judge(responses_file: str, constitution: str, out: str, pairs: str, min_margin: float,
          length_ratio: float, calibrate: str | None, limit: int | None, shard: str | None,
          overwrite: bool, **options: Any) -> None:
    """Judge responses pairwise under principles: preference pairs with soft labels."""
    from cai.constitution import load_constitution
    from cai.data.shard import mark
    from cai.evals.calibration import judge_gold, read_gold
    from cai.folders import claim
    from cai.inputs import take
    from cai.paths import resolve_constitution
    from cai.stages.pairs import PairSettings, judge_file, read_candidates
    from cai.stages.stage import StageResult

    items = take(read_candidates(Path(responses_file))[:limit], shard)
    if calibrate:
        read_gold(Path(calibrate))  # checked before any model loads
    const = load_constitution(resolve_constitution(constitution))
    session = options["session"]
    claim(Path(out), "judge", {"--responses": responses_file, "--calibrate": calibrate},
          overwrite=overwrite, dry_run=session.dry_run)
    j = make_judge(constitution=const, **options)

    async def judging() -> StageResult:
        calibration = None
        if calibrate:  # the judge measured on human-labelled pairs first, into calibration/
            calibration = (await judge_gold(read_gold(Path(calibrate)), j,
                                            Path(out) / "calibration", session=session,
                                            concurrency=session.limits.concurrency)).report
        return await judge_file(items, j, Path(out), session=session,
                                pairs=PairSettings(pairs, min_margin, length_ratio),
                                concurrency=session.limits.concurrency, calibration=calibration)

    result = run_and_report(session, judging())
    s = result.summary
    if "dry_run" in s:
        return
    mark(Path(out), shard)
    if s.get("calibration"):
        calibration_line(s["calibration"], str(calibrate), Path(out) / "calibration")
    s = s["judge"]
    console.print(f"pairs {s['pairs']} (low margin and unjudged in their own files), "
                  f"position flips {s['position_flip_rate']}, longer won {s['longer_won_share']}, "
                  f"unparsed orders {s['unparsed_orders']}, failed orders {s['failed_orders']}")
    if s.get("panel"):
        panel_line(s["panel"])


@click.group("eval")
def eval_group() -> None:
    """Evaluations: judge calibration against human labels."""


@eval_group.command("judge")
@click.option("--data", required=True, type=click.Path(dir_okay=False),
              help="Human-labelled pairs: TRL preference JSONL or HH transcripts.")
@click.option("--constitution", default=None,
              help="Judge under these principles [default: one helpful-honest-harmless question].")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--limit", default=None, type=click.IntRange(1))
@click.option("--rewordings", default=0, show_default=True, type=click.IntRange(0, 20),
              help="Also judge every pair under K rewordings of each judge question (the "
              "constitution's judge_question_variants first, then --reworder's) and report "
              "how often the verdict changes with the wording, into OUT/rewording/.")
@click.option("--reworder", default=None, help="The model that writes the rewordings the "
              "constitution does not list [default: --judge].")
@OVERWRITE
@judge_options
def eval_judge(data: str, constitution: str | None, out: str, limit: int | None,
               rewordings: int, reworder: str | None, overwrite: bool, **options: Any) -> None:
    """Measure a judge against human labels: accuracy, kappa, flips, length bias, ECE."""
    from cai.constitution import load_constitution
    from cai.errors import CaiError
    from cai.evals.calibration import judge_gold, read_gold
    from cai.evals.rewording import evaluate_rewordings
    from cai.folders import claim
    from cai.paths import resolve_constitution
    from cai.stages.stage import StageResult

    session = options["session"]
    if rewordings and session.batch:
        raise CaiError("--rewordings does not go with --batch: each pair is judged under "
                       "wordings a model writes first, which cannot wait for a batch. Run "
                       "`cai eval judge --batch` first, then the same command with "
                       "--rewordings and without --batch (what the batch answered comes from "
                       "the cache)")
    gold = read_gold(Path(data))[:limit]
    const = load_constitution(resolve_constitution(constitution)) if constitution else None
    claim(Path(out), "eval judge", {"--data": data}, overwrite=overwrite,
          dry_run=session.dry_run)
    j = make_judge(constitution=const, **options)
    reworded: list[StageResult] = []

    async def evaluate() -> StageResult:
        result = await judge_gold(gold, j, Path(out), concurrency=session.limits.concurrency,
                                  session=session)
        # Each judge of a panel under the same wordings, written once into rewording/ (by
        # --reworder, or the first judge); its original questions come from the cache.
        writer = session.client(reworder) if reworder else j.lead.client
        folder = Path(out) / "rewording"
        try:
            for k, judge in enumerate(j.judges if rewordings else ()):
                reworded.append(await evaluate_rewordings(
                    gold, judge, folder / f"judge-{k + 1}" if j.is_panel else folder,
                    k=rewordings, reworder=writer, concurrency=session.limits.concurrency,
                    session=session, wordings_at=folder))
        finally:
            if session.dry_run:
                shutil.rmtree(session.target(folder), ignore_errors=True)
        return result

    result = run_and_report(session, evaluate())
    if result.report and not session.dry_run:  # a dry run's verdicts are no measurement
        from cai.reports.render import render

        console.print(render("calibration.md.j2", r=result.report) + "\n", markup=False,
                      highlight=False, soft_wrap=True)
        if "panel" in result.report:
            console.print(f"panel weights (each judge's accuracy) -> "
                          f"{Path(out) / 'panel_weights.json'}", highlight=False, markup=False)
    for r in reworded:
        report(r)
        if r.report and "dry_run" not in r.summary:
            rewording_line(r.report, r.out)


@eval_group.command("policy")
@click.option("--model", default="local", show_default=True, help="The policy to evaluate.")
@click.option("--suite", "suites", multiple=True, type=click.Path(dir_okay=False),
              help="Prompt file with kind (safe, unsafe, helpful, false-premise) and category "
              "columns; repeat for several [default: the shipped suite].")
@click.option("--responses", "responses_file", default=None, type=click.Path(dir_okay=False),
              help="Evaluate answers made elsewhere: {id, prompt, response} or TRL "
              "prompt/completion rows. Nothing is generated.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--reference", default=None, help="A model whose answers to the same prompts "
              "are the baseline for the win rate.")
@click.option("--reference-responses", default=None, type=click.Path(dir_okay=False),
              help="The reference's answers, made elsewhere.")
@click.option("--evaluator", default=None, help="A model that reads refusals and false "
              "premises and judges the win rate [default: none, detectors only].")
@click.option("--training-judge", default=None, help="The judge that labelled the policy's "
              "training data [default: read from the checkpoint's provenance].")
@click.option("--allow-same-evaluator", is_flag=True, help="Let the training judge grade with "
              "the same template.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Only K prompts, taken in "
              "turn from each kind.")
@click.option("--seed", default=0, show_default=True)
@SHARD
@OVERWRITE
@model_options
def eval_policy(model: str, suites: tuple[str, ...], responses_file: str | None, out: str,
                reference: str | None, reference_responses: str | None, evaluator: str | None,
                training_judge: str | None, allow_same_evaluator: bool, limit: int | None,
                seed: int, shard: str | None, overwrite: bool, session: Any,
                templates: str | None) -> None:
    """Evaluate a policy independently of its training judge: over-refusal, unsafe
    compliance, false-premise agreement, hedging, boilerplate, length, win rate."""
    from cai.cli.views import show_policy_report
    from cai.data.shard import mark
    from cai.errors import CaiError
    from cai.evals.policy import eval_policy as run_eval
    from cai.evals.policy import read_answers
    from cai.evals.policy import training_judge as find_training_judge
    from cai.evals.suites import read_suites
    from cai.folders import claim
    from cai.inputs import parse_shard, take
    from cai.templates import Templates

    if reference and reference_responses:
        raise CaiError("give --reference or --reference-responses, not both")
    t = Templates(templates)
    if shard is not None:
        parse_shard(shard)  # checked before anything runs
    items = None if responses_file else take(read_suites(suites, limit), shard)
    for given in (responses_file, reference_responses):
        if given:
            read_answers(Path(given))  # checked before any model loads
    claim(Path(out), "eval policy", {"--suite": list(suites), "--responses": responses_file,
                                     "--reference-responses": reference_responses},
          overwrite=overwrite, dry_run=session.dry_run)
    report = run(session, run_eval(
        Path(out), session=session, templates=t, suite=items,
        model=None if responses_file else model,
        responses=Path(responses_file) if responses_file else None, reference=reference,
        reference_responses=Path(reference_responses) if reference_responses else None,
        evaluator=evaluator, training=find_training_judge(
            None if responses_file else model, training_judge, t,
            Path(responses_file) if responses_file else None),
        allow_same_evaluator=allow_same_evaluator, seed=seed, shard=shard))
    if "dry_run" in report:
        console.print_json(data=report)
        return
    mark(Path(out), shard)
    show_policy_report(console, report, Path(out))
