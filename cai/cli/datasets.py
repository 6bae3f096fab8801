"""`cai data`: prompt and record files cleaned for training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cai.cli.options import (
    CONSTITUTION_HELP,
    OVERWRITE,
    console,
    err,
    log_command,
    model_options,
    run_and_report,
)
from cai.errors import CaiError

FIELD_HELP = "The field (or CSV column) to compare; a conversation compares its messages."


@click.group("data")
def data_group() -> None:
    """Clean prompt and record files: duplicates, overlap with evaluation sets."""


def removed_path(out: Path) -> Path:
    """Where the removed rows go: beside OUT (`clean.jsonl` -> `clean.removed.jsonl`)."""
    return out.with_name(f"{out.stem}.removed{out.suffix or '.jsonl'}")


@data_group.command("prompts")
@click.option("--constitution", default="harmless", show_default=True, help=CONSTITUTION_HELP)
@click.option("--n", "n", required=True, type=click.IntRange(1),
              help="Distinct prompts to write.")
@click.option("--model", default="local", show_default=True, help="The model that writes them.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--kind", type=click.Choice(["red-team", "helpful", "both"]), default="both",
              show_default=True, help="Prompts that test the principles, ordinary safe "
              "requests, or both in turn.")
@click.option("--topics", default=None, type=click.Path(dir_okay=False),
              help="Topics for helpful prompts, one a line [default: a shipped list].")
@click.option("--per-request", default=5, show_default=True, type=click.IntRange(1, 20),
              help="Prompts asked for in each request.")
@click.option("--max-attempts", default=None, type=click.IntRange(1),
              help="Requests at most [default: three times what N needs].")
@click.option("--threshold", default=0.8, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Similarity at which a prompt is a near duplicate of an earlier one.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--seed", default=0, show_default=True)
@OVERWRITE
@model_options
def prompts(constitution: str, n: int, model: str, out: str, kind: str, topics: str | None,
            per_request: int, max_attempts: int | None, threshold: float, temperature: float,
            seed: int, overwrite: bool, session: Any, templates: str | None) -> None:
    """Write N distinct user prompts from a constitution: red-team and helpful."""
    from cai.constitution import load_constitution
    from cai.data.generate import Generator, make_prompts, read_topics
    from cai.folders import claim
    from cai.paths import resolve_constitution
    from cai.templates import Templates

    const = load_constitution(resolve_constitution(constitution))
    subjects = tuple(read_topics(topics)) if kind != "red-team" else ()
    claim(Path(out), "data prompts", {"--topics": topics}, overwrite=overwrite,
          dry_run=session.dry_run)
    generator = Generator(const, session.client(model), Templates(templates), kind=kind,
                          topics=subjects, seed=seed, per_request=per_request,
                          temperature=temperature)
    cap = max_attempts or max(3, 3 * -(-n // per_request))
    result = run_and_report(session, make_prompts(
        generator, Path(out), n, max_requests=cap, threshold=threshold,
        concurrency=session.limits.concurrency, session=session))
    s = result.summary
    if "prompts" not in s:
        return
    line = (f"prompts: {s['prompts']} distinct ({s['by_kind']['red-team']} red-team, "
            f"{s['by_kind']['helpful']} helpful) from {s['requests_made']} requests; "
            f"{s['duplicates']} duplicates dropped -> {Path(out) / 'prompts.jsonl'}")
    console.print(line, highlight=False, markup=False)
    if s["short_by"] > 0:
        capped = " (the cap, --max-attempts)" if s["attempts"] >= cap else ""
        err.print(f"[yellow]stopped short: {s['prompts']} of {n} prompts after "
                  f"{s['attempts']} requests{capped}. Rerun with a larger --max-attempts "
                  "or budget to go on, or try another --model or more --topics.[/]",
                  highlight=False)


@data_group.command("dedup")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The rows kept, as JSONL; the removed ones go beside it.")
@click.option("--threshold", default=0.8, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Jaccard similarity of word 3-grams at which rows are near duplicates.")
@click.option("--field", default="prompt", show_default=True, help=FIELD_HELP)
def dedup(source: str, out: str, threshold: float, field: str) -> None:
    """Remove exact and near-duplicate rows, keeping the first of each."""
    from cai.data.dedup import find_duplicates
    from cai.data.rows import read_rows
    from cai.records.rewrite import write_jsonl_files

    rows = read_rows(source, field)
    found = find_duplicates(rows, threshold)
    gone = {id(d.row) for d in found}
    target = Path(out)
    write_jsonl_files({removed_path(target): [
        {**d.row.record, "duplicate_of": d.of.id, "duplicate_of_line": d.of.line,
         "similarity": d.similarity, "exact": d.exact} for d in found],
        target: [r.record for r in rows if id(r) not in gone]})
    exact = sum(d.exact for d in found)
    console.print(f"dedup: kept {len(rows) - len(found)} of {len(rows)} rows; removed {exact} "
                  f"exact and {len(found) - exact} near duplicates -> {target}, "
                  f"{removed_path(target)}", highlight=False)


@data_group.command("decontaminate")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option("--against", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="An evaluation set (prompt file, CSV or TRL file); repeat for several.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The rows kept, as JSONL; the removed ones go beside it.")
@click.option("--ngram", default=13, show_default=True, type=click.IntRange(1),
              help="Words in a shared run that makes a row contaminated.")
@click.option("--field", default="prompt", show_default=True, help=FIELD_HELP)
def decontaminate(source: str, against: tuple[str, ...], out: str, ngram: int,
                  field: str) -> None:
    """Remove rows that overlap an evaluation set."""
    from cai.data.contamination import find_contaminated
    from cai.data.rows import read_rows
    from cai.records.rewrite import write_jsonl_files

    rows = read_rows(source, field)
    evaluation = [r for path in against for r in read_rows(path, field)]  # all read first
    found = find_contaminated(rows, evaluation, ngram)
    gone = {id(c.row) for c in found}
    target = Path(out)
    write_jsonl_files({removed_path(target): [
        {**c.row.record, "matches": c.match.record, "shared": c.ngram} for c in found],
        target: [r.record for r in rows if id(r) not in gone]})
    console.print(f"decontaminate: kept {len(rows) - len(found)} of {len(rows)} rows; removed "
                  f"{len(found)} that overlap {len(evaluation)} evaluation rows -> {target}, "
                  f"{removed_path(target)}", highlight=False)


@data_group.command("mix")
@click.argument("parts", nargs=-1, required=True)
@click.option("--n", "n", required=True, type=click.IntRange(1), help="Rows in the mix.")
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--seed", default=0, show_default=True)
@click.option("--field", default="prompt", show_default=True, help=FIELD_HELP)
def mix(parts: tuple[str, ...], n: int, out: str, seed: int, field: str) -> None:
    """Mix files by ratio, FILE:RATIO ... (the ratios add up to 1); each row names its source."""
    from cai.data.mix import mix as mix_rows
    from cai.records.rewrite import write_jsonl

    rows = mix_rows(parts, n, seed, field)
    write_jsonl(Path(out), rows)
    counts = {p: sum(r["source"] == p for r in rows) for p in dict.fromkeys(
        r["source"] for r in rows)}
    console.print(f"mix: {len(rows)} rows ({', '.join(f'{c} from {p}' for p, c in counts.items())})"
                  f" -> {out}", highlight=False)


@data_group.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@OVERWRITE
def merge(folders: tuple[str, ...], out: str, overwrite: bool) -> None:
    """Put together the output folders of one command run with --shard 1/N ... N/N."""
    from cai.data.shard import merge as merge_shards

    counts = merge_shards([Path(f) for f in folders], Path(out), overwrite=overwrite)
    log_command(Path(out))
    console.print(f"merge: {len(folders)} shards -> {out}: "
                  + ", ".join(f"{n} in {name}" for name, n in counts.items()), highlight=False)


@click.command("report")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--constitution", default=None, help="The constitution the data was made under, "
              "to list its principles and measure coverage [default: the shipped one the "
              "folder names, if its sha256 matches].")
@click.option("--license", "license_", default="unknown", show_default=True,
              help="The dataset's licence, as a hub licence id (cc-by-4.0, mit, other, ...).")
@click.option("--language", default="en", show_default=True)
@click.option("--name", default="", help="The dataset's name in the card.")
@click.option("--source", "sources", multiple=True, help="Where inputs came from and their "
              "licence, e.g. 'XSTest prompts (CC-BY-4.0)'; repeat for several.")
def report_command(folder: str, constitution: str | None, license_: str, language: str,
                   name: str, sources: tuple[str, ...]) -> None:
    """Write a dataset card (README.md), report.html and report.json over an output folder."""
    from cai.data.report import build_report, provenance, write_report

    path = Path(folder)
    if not path.is_dir():
        raise CaiError(f"{folder}: no such folder; give an output folder of cai")
    const = _constitution(constitution, provenance(path)["constitutions"])
    report = build_report(path, const)
    write_report(path, report, {"license": license_, "language": language, "name": name,
                                "sources": sources})
    for warning in report["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"report: {', '.join(f'{n} {f}' for f, n in report['counts'].items())} -> "
                  f"{path / 'README.md'}, {path / 'report.html'}, {path / 'report.json'}",
                  highlight=False, markup=False)


def _constitution(given: str | None, named: list[dict[str, Any]]) -> Any:
    """The constitution given, or the shipped one the folder names if it is the same text."""
    from cai.constitution import load_constitution
    from cai.paths import resolve_constitution

    if given:
        return load_constitution(resolve_constitution(given))
    if len(named) != 1:
        return None
    try:
        const = load_constitution(resolve_constitution(named[0]["name"]))
    except CaiError:
        return None
    return const if const.sha256 == named[0].get("sha256") else None
