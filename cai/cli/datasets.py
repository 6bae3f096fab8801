"""`cai data`: prompt and record files cleaned for training."""

from __future__ import annotations

from pathlib import Path

import click

from cai.cli.options import console

FIELD_HELP = "The field (or CSV column) to compare; a conversation compares its messages."


@click.group("data")
def data_group() -> None:
    """Clean prompt and record files: duplicates, overlap with evaluation sets."""


def removed_path(out: Path) -> Path:
    """Where the removed rows go: beside OUT (`clean.jsonl` -> `clean.removed.jsonl`)."""
    return out.with_name(f"{out.stem}.removed{out.suffix or '.jsonl'}")


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
    from cai.records import write_jsonl

    rows = read_rows(source, field)
    found = find_duplicates(rows, threshold)
    gone = {id(d.row) for d in found}
    target = Path(out)
    write_jsonl(removed_path(target), [
        {**d.row.record, "duplicate_of": d.of.id, "duplicate_of_line": d.of.line,
         "similarity": d.similarity, "exact": d.exact} for d in found])
    write_jsonl(target, [r.record for r in rows if id(r) not in gone])
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
    from cai.records import write_jsonl

    rows = read_rows(source, field)
    evaluation = [r for path in against for r in read_rows(path, field)]  # all read first
    found = find_contaminated(rows, evaluation, ngram)
    gone = {id(c.row) for c in found}
    target = Path(out)
    write_jsonl(removed_path(target), [
        {**c.row.record, "matches": c.match.record, "shared": c.ngram} for c in found])
    write_jsonl(target, [r.record for r in rows if id(r) not in gone])
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
    from cai.records import write_jsonl

    rows = mix_rows(parts, n, seed, field)
    write_jsonl(Path(out), rows)
    counts = {p: sum(r["source"] == p for r in rows) for p in dict.fromkeys(
        r["source"] for r in rows)}
    console.print(f"mix: {len(rows)} rows ({', '.join(f'{c} from {p}' for p, c in counts.items())})"
                  f" -> {out}", highlight=False)


@data_group.command("merge")
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
def merge(folders: tuple[str, ...], out: str) -> None:
    """Put together the output folders of one command run with --shard 1/N ... N/N."""
    from cai.data.shard import merge as merge_shards

    counts = merge_shards([Path(f) for f in folders], Path(out))
    console.print(f"merge: {len(folders)} shards -> {out}: "
                  + ", ".join(f"{n} in {name}" for name, n in counts.items()), highlight=False)
