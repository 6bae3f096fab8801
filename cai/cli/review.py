"""`cai review PATH` and `cai review stats PATH`."""

from __future__ import annotations

import getpass
import json
import warnings
from pathlib import Path

import click

from cai.cli.options import DefaultGroup, console
from cai.errors import CaiWarning


@click.group("review", cls=DefaultGroup)
def review_group() -> None:
    """Label a sample of pairs blind in a local page (`cai review PATH`), then measure the
    judge against people (`cai review stats PATH`)."""


@review_group.command("run")
@click.argument("path", type=click.Path())
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to serve on; anything but loopback (127.0.0.1, localhost, "
              "::1) opens the page to others, and warns.")
@click.option("--no-browser", is_flag=True, help="Do not open a browser.")
@click.option("--reviewer", default=None, help="Your name [default: your user name].")
@click.option("--sample", "n", default=None, type=click.IntRange(1),
              help="Review only N pairs (the same N for every reviewer with one --seed).")
@click.option("--seed", default=0, show_default=True)
@click.option("--unjudged-first", is_flag=True, help="Show the pairs the judge could not "
              "decide first (and take them first into a --sample).")
@click.option("--split-first", is_flag=True, help="Show the pairs a panel of judges split "
              "on first (after the unjudged, with --unjudged-first).")
@click.option("--constitution", default=None, help="The constitution the pairs were judged "
              "under, for its judge questions [default: the shipped one the records name].")
def review_run(path: str, port: int, host: str, no_browser: bool, reviewer: str | None,
               n: int | None, seed: int, unjudged_first: bool, split_first: bool,
               constitution: str | None) -> None:
    """Serve a page to label the pairs of PATH (a folder, or a TRL preference file)."""
    from cai.review.pairs import read_pairs, sample
    from cai.review.server import LOOPBACK, Review, check_port, page_url, serve

    pairs = read_pairs(path)
    check_port(host, port)
    if host not in LOOPBACK:
        warnings.warn(f"serving on {host}: anyone who can reach it can read the pairs and, "
                      "with the page, label them", CaiWarning, stacklevel=1)
    questions, default = _questions(path, constitution)
    review = Review(Path(path), sample(pairs, n, seed, unjudged_first, split_first),
                    reviewer or getpass.getuser(), seed, questions, default)
    url = page_url(host, port)
    console.print(f"review: {len(review.sample)} pairs for {review.reviewer} at {url} "
                  "(Ctrl-C to stop; labels are saved as you go)", highlight=False,
                  markup=False)
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    serve(review, host, port)


def _questions(path: str, given: str | None) -> tuple[dict[str, str], str]:
    """The judge question of each principle, and the generic one."""
    from cai.constitution import load_constitution
    from cai.paths import resolve_constitution
    from cai.records.read import numbered_jsonl
    from cai.review.pairs import paths
    from cai.templates import Templates

    default = Templates().render("judge_question")
    name = given
    if name is None:
        for file in paths(path).pairs:
            for _, r in numbered_jsonl(file):
                if isinstance(r.get("constitution"), dict):
                    name = r["constitution"].get("name")
                break
    if not name:
        return {}, default
    try:
        const = load_constitution(resolve_constitution(name))
    except Exception:  # a constitution not shipped and not given: the generic question
        return {}, default
    return {p.id: p.judge for p in const.principles if p.judge}, default


@review_group.command("stats")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print only JSON.")
def review_stats_command(path: str, as_json: bool) -> None:
    """Agreement with the judge and between reviewers; writes the gold file."""
    from cai.review.stats import review_stats

    s = review_stats(path)
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    ci = s["agreement_with_judge_ci95"]
    who = ", ".join(f"{r} {n}" for r, n in s["reviewers"].items())
    lines = [f"labelled: {s['pairs']} pairs, {s['labels']} labels ({who}; {s['ties']} ties; "
             f"{s['pairs_without_majority']} pairs without a majority)",
             f"agreement with the judge: {s['agreement_with_judge']} over "
             f"{s['judge_decided']} pairs it decided, each pair once by its reviewers' majority"
             + (f" (95% CI {ci[0]}-{ci[1]}), kappa {s['kappa']} over the position chosen"
                if ci else "")]
    for pid, a in s["by_principle"].items():
        lines.append(f"  {pid}: {a['agreement_with_judge']} over {a['pairs']} pairs")
    for b in s["between_reviewers"]:
        lines.append(f"between {b['reviewers'][0]} and {b['reviewers'][1]}: agreement "
                     f"{b['agreement']}, kappa {b['kappa']} over {b['pairs']} pairs")
    lines.append(f"gold: {s['gold_pairs']} pairs ({s['unjudged_in_gold']} the judge could not "
                 f"decide) -> {s['gold']}")
    for line in lines:
        console.print(line, highlight=False, markup=False)
