"""`cai report DIR`: what a folder of data holds and how good it is, before anyone trains on it.

Over any output folder (revise, judge, sample, data prompts, or merged shards) it finds the
data files, and measures:

- diversity: distinct-n of the prompts and replies, the near-duplicate rate (with `cai data
  dedup`'s machinery), and which principles and tags of the constitution the data covers;
- the judge's calibration, where the pairs were judged: position-flip rate, margins, and
  how often the longer reply won;
- reward-hacking signals in the pairs, with the evaluation detectors: how often the chosen
  reply is longer, hedges more, refuses more or repeats boilerplate than the rejected one,
  with a warning in plain words when a signal is strong.

The figures go to report.json, and from it to report.html (offline, plots inline) and to
README.md, a dataset card in the hub's format whose `configs:` let `datasets.load_dataset`
load the folder as named.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from cai.chat import reply_text
from cai.constitution import Constitution
from cai.data.dedup import find_duplicates
from cai.data.rows import Row
from cai.errors import CaiError, InputError
from cai.folders import MADE_BY, read_settings
from cai.records.read import numbered_jsonl
from cai.schema import PROMPT, Prompt, Reply, check_row, checked_jsonl
from cai.schema import Row as Schema
from cai.stages.pairs import pair_figures
from cai.stages.panel import panel_figures

# The data files a folder may hold, the config each goes in, and its split there. Files of
# one config share their columns: the hub's loader reads a config as one table.
DATA_FILES = {
    "prefs.jsonl": ("prefs", "train"), "low_margin.jsonl": ("prefs", "low_margin"),
    "sft.jsonl": ("sft", "train"), "unjudged.jsonl": ("unjudged", "train"),
    "responses.jsonl": ("responses", "train"), "prompts.jsonl": ("prompts", "train"),
}
DEFAULT_ORDER = ("prefs", "sft", "prompts", "responses", "unjudged")
STRONG = 0.7  # a signal in more than this share of pairs gets a warning
NEAR_DUPLICATE = 0.8
REFUSAL_LEVEL = {"none": 0, "partial": 1, "full": 2}


class DataRow(Schema):
    """A record of a data file the card describes: the fields it reads from each."""

    prompt: Prompt | None = Field(None, description=PROMPT)
    completion: Reply | None = Field(None, description=PROMPT)
    chosen: Reply | None = Field(None, description=PROMPT)
    rejected: Reply | None = Field(None, description=PROMPT)
    responses: list[Reply] | None = Field(None, description="a list of replies")


def data_files(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The data files in `folder` that hold rows, read and checked."""
    found = {name: [r for line, r in numbered_jsonl(path)
                    if check_row(path, line, r, DataRow)]
             for name in DATA_FILES if (path := folder / name).is_file()}
    found = {name: rows for name, rows in found.items() if rows}
    if not found:
        names = ", ".join(DATA_FILES)
        raise CaiError(f"{folder}: no data to report on; a folder of cai output holds one of "
                       f"{names}")
    return found


def configs(files: Sequence[str]) -> list[dict[str, Any]]:
    """The card's `configs:` entries: one config per kind of file, the main one the default."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for name in files:
        config, split = DATA_FILES[name]
        grouped.setdefault(config, []).append({"split": split, "path": name})
    default = next(c for c in DEFAULT_ORDER if c in grouped)
    return [{"config_name": c, "data_files": grouped[c], **({"default": True}
                                                             if c == default else {})}
            for c in sorted(grouped, key=DEFAULT_ORDER.index)]


def prompt_text(row: dict[str, Any]) -> str:
    prompt = row.get("prompt")
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
    return str(prompt or "")


def replies(files: dict[str, list[dict[str, Any]]]) -> list[str]:
    texts = []
    for rows in files.values():
        for r in rows:
            for key in ("completion", "chosen", "rejected"):
                if key in r:
                    texts.append(reply_text(r[key]))
            texts.extend(str(t) for t in (*r.get("responses", ()), *r.get("replies", ())))
    return texts


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams of the texts (Li et al., 2016)."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.lower().split()]
             for i in range(len(w) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else None


def diversity(files: dict[str, list[dict[str, Any]]],
              constitution: Constitution | None) -> dict[str, Any]:
    prompts = list({prompt_text(r): None for rows in files.values() for r in rows})
    rows = [Row(i + 1, str(i), t, {}) for i, t in enumerate(prompts)]
    near = find_duplicates(rows, NEAR_DUPLICATE) if rows else []
    # A prompt's records in several files (its sft and prefs rows) count once.
    records = {r.get("pair_id") or r.get("id"): r for rows in files.values() for r in rows}
    used = Counter(p for r in records.values() for p in principles_of(r))
    report: dict[str, Any] = {
        "prompts": len(prompts),
        "distinct_1": distinct_n(prompts, 1), "distinct_2": distinct_n(prompts, 2),
        "reply_distinct_1": distinct_n(replies(files), 1),
        "reply_distinct_2": distinct_n(replies(files), 2),
        "near_duplicate_rate": round(len(near) / len(prompts), 4) if prompts else None,
        "principles_used": dict(used.most_common()),
    }
    if constitution is not None:
        known = [p.id for p in constitution.principles]
        tags = sorted({t for p in constitution.principles for t in p.tags})
        covered = {t for p in constitution.principles if used[p.id] for t in p.tags}
        report.update({
            "principle_coverage": round(sum(1 for p in known if used[p]) / len(known), 4),
            "principles_missing": [p for p in known if not used[p]],
            "tag_coverage": round(len(covered) / len(tags), 4) if tags else None,
            "tags_missing": [t for t in tags if t not in covered]})
    return report


def principles_of(row: dict[str, Any]) -> list[str]:
    """The principles a record was made or judged under."""
    if isinstance(row.get("principle"), str):
        return [row["principle"]]
    return [p for p in row.get("principles") or () if isinstance(p, str)]


def pairs_of(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [r for name in ("prefs.jsonl", "low_margin.jsonl") for r in files.get(name, ())]


def calibration(pairs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The judge's figures, from the labels on its pairs (None for unjudged pairs)."""
    judged = [p for p in pairs if "margin" in p]
    if not judged:
        return None
    figures = pair_figures(judged)
    return {
        "pairs": len(judged),
        "flip_rate": round(sum(not p["orders_agree"] for p in judged) / len(judged), 4),
        "mean_margin": figures["mean_margin"],
        "margin_histogram": {"bins": [k / 10 for k in range(11)], "counts": figures["histogram"]},
        "longer_won": figures["longer_won"],
        "length_flagged": figures["length_flagged"],
        **({"panel": panel} if (panel := panel_figures([_seats(p) for p in judged])) else {}),
    }


def _seats(pair: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A judged pair's panel, as `panel_figures` reads it (P(chosen better) per judge)."""
    if "panel" not in pair:
        return None
    return [{"judge": s["judge"], "p": s["p_chosen"], "left_out": s["left_out"],
             "agree": s["orders_agree"]} for s in pair["panel"]]


def signals(pairs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """How often chosen exceeds rejected on what a reward can be gamed with, and warnings."""
    from cai.evals.detectors import detect, recurring, recurring_in

    if not pairs:
        return None
    texts = [(reply_text(p["chosen"]), reply_text(p["rejected"])) for p in pairs]
    common = recurring([t for pair in texts for t in pair])

    def measures(text: str) -> dict[str, int]:
        d = detect(text)
        return {"longer": d.words, "hedges_more": d.hedges,
                "refuses_more": REFUSAL_LEVEL[d.refusal],
                "more_boilerplate": len(d.boilerplate) + len(recurring_in(text, common))}

    compared = [(measures(c), measures(r)) for c, r in texts]
    found: dict[str, Any] = {}
    for name in ("longer", "hedges_more", "refuses_more", "more_boilerplate"):
        more = sum(c[name] > r[name] for c, r in compared)
        less = sum(c[name] < r[name] for c, r in compared)
        found[name] = {"chosen_more": round(more / len(compared), 4),
                       "chosen_less": round(less / len(compared), 4),
                       "same": round(1 - (more + less) / len(compared), 4)}
    return {"pairs": len(compared), "signals": found, "warnings": warnings(found)}


WARNINGS = {
    "longer": "The chosen reply is longer in {share} of pairs: training on these pairs will "
              "teach length for its own sake. Judge with --length-control, or drop the "
              "length-flagged pairs.",
    "hedges_more": "The chosen reply hedges more in {share} of pairs: the model will learn "
                   "to qualify everything.",
    "refuses_more": "The chosen reply refuses more in {share} of pairs: the model will learn "
                    "to refuse. Mix in helpful prompts (cai data prompts --kind helpful).",
    "more_boilerplate": "The chosen reply repeats stock phrases more in {share} of pairs: "
                        "the model will learn boilerplate.",
}


def warnings(found: dict[str, dict[str, float]]) -> list[str]:
    return [WARNINGS[name].format(share=f"{100 * s['chosen_more']:.0f}%")
            for name, s in found.items() if s["chosen_more"] > STRONG]


FLIPS = 0.3  # a judge that changes its verdict with the order this often is mostly bias


def judge_warnings(c: dict[str, Any] | None) -> list[str]:
    found = []
    if c and c["flip_rate"] > FLIPS:
        found.append(f"The judge changed its verdict when the order was swapped in "
                     f"{100 * c['flip_rate']:.0f}% of pairs: its labels are mostly position "
                     "bias. Use a stronger judge, or keep only pairs whose orders agree.")
    if c and c["longer_won"] is not None and c["longer_won"] > STRONG:
        found.append(f"The longer reply won in {100 * c['longer_won']:.0f}% of judged pairs: "
                     "the judge may reward length. Try --length-control.")
    return found


def provenance(folder: Path) -> dict[str, Any]:
    """What made the folder: its stages' settings, and the commands run in it."""
    settings = {k: v for k, v in read_settings(folder).items() if k != MADE_BY}  # stages' own
    return {"stages": settings, "commands": command_history(folder),
            "models": _models(settings),
            "templates": _templates(settings),
            "constitutions": list({json.dumps(c, sort_keys=True): c for c in _found(
                settings, ("constitution",), dicts=True)}.values())}


class CommandRow(Schema):
    """A line of command_log.jsonl, which every command appends to its folder."""

    fix: ClassVar[str] = "command_log.jsonl is written by cai; restore or remove that line"
    command: str = Field(description="the command line, as text")
    cwd: str | None = Field(None, description="a folder, as text")


def command_history(folder: Path, seen: set[Path] | None = None) -> list[str]:
    """The commands run in `folder`, each once, after those of the folders its inputs came
    from: any path in a command line that lies in another folder with a command log (a judge
    folder's card thus starts with the `data prompts` and `revise` that fed it). Credentials
    in URLs are hidden here too, for logs written before cai hid them when it logged."""
    import shlex

    from cai.redact import redact_urls

    seen = seen if seen is not None else set()
    seen.add(folder.resolve())
    log = folder / "command_log.jsonl"
    commands: list[str] = []
    for _, record in checked_jsonl(log, CommandRow) if log.is_file() else []:
        where = Path(record.cwd or ".")
        try:
            words = shlex.split(record.command)[1:]
        except ValueError as e:  # an unclosed quote
            raise InputError(log, None, f"command: {e} in {record.command[:60]!r}; "
                             f"{CommandRow.fix}") from None
        for word in words:
            path = where / word
            source = (path if path.is_dir() else path.parent).resolve()
            if path.exists() and source not in seen and (source / log.name).is_file():
                commands += command_history(source, seen)
        commands.append(redact_urls(record.command))
    return list(dict.fromkeys(commands))


def _found(value: Any, words: tuple[str, ...], dicts: bool = False) -> list[Any]:
    """Values in nested settings under a key that contains one of `words`."""
    hits: list[Any] = []
    if isinstance(value, dict):
        for k, v in value.items():
            wanted = any(w in str(k) for w in words) and (
                isinstance(v, dict) if dicts else isinstance(v, str))
            hits.extend([v] if wanted else _found(v, words, dicts))
    return hits


def _models(settings: dict[str, Any]) -> list[str]:
    """Each model once, by its identity (spec and weights) where one was recorded."""
    names = set(_found(settings, ("model", "identity")))
    return sorted(n for n in names if not any(o.startswith(n + ":") for o in names))


def _templates(settings: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for config in settings.values():
        for block in _found(config, ("templates",), dicts=True):
            found.update({k: v for k, v in block.items() if isinstance(v, str)})
    return found


def build_report(folder: Path, constitution: Constitution | None = None) -> dict[str, Any]:
    files = data_files(folder)
    pairs = pairs_of(files)
    judge, hacking = calibration(pairs), signals(pairs)
    return {
        "folder": str(folder),
        "counts": {name: len(rows) for name, rows in files.items()},
        "configs": configs(list(files)),
        "provenance": provenance(folder),
        "constitution": None if constitution is None else {
            **constitution.provenance, "description": constitution.description,
            "principles": [{"id": p.id, "critique": p.critique, "tags": list(p.tags),
                            "weight": p.weight} for p in constitution.principles]},
        "diversity": diversity(files, constitution),
        "calibration": judge,
        "reward_hacking": hacking,
        "warnings": judge_warnings(judge) + (hacking["warnings"] if hacking else []),
    }


def write_report(folder: Path, report: dict[str, Any], card: dict[str, Any]) -> None:
    """report.json, report.html and README.md (the dataset card) into `folder`."""
    from cai.reports import dataset as views
    from cai.reports.render import write

    write(folder, "dataset", report, views.plots, md="README.md", **views.card(report, **card))
