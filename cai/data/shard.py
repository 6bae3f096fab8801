"""Putting a job split over N machines (`--shard K/N`, see `cai.inputs.take`) together again
(`cai data merge`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.errors import CaiError, InputError
from cai.folders import SETTINGS, refuse_nonempty
from cai.inputs import in_shard, parse_shard
from cai.records.read import read_json, read_jsonl
from cai.records.rewrite import write_json, write_jsonl

SHARD = "shard.json"  # what a sharded run leaves in its folder: its K and N


def mark(out: Path, shard: str | None) -> None:
    """Leave the shard's K and N in its folder, for `cai data merge`."""
    if shard is not None:
        k, n = parse_shard(shard)
        write_json(out / SHARD, {"k": k, "n": n})


def _read(folder: Path, name: str, why: str) -> Any:
    path = folder / name
    if not path.is_file():
        raise CaiError(f"{folder}: no {name}; {why}")
    return read_json(path, "rerun that shard's command into a new --out")


def merge(folders: Sequence[Path], out: Path, overwrite: bool = False) -> dict[str, int]:
    """Put the shards of one job together into `out`, a new or empty folder; everything is
    checked before anything is written: the same settings, every shard of N once, each
    finished, no id twice."""
    shards = [_read(f, SHARD, "it was not made with --shard") for f in folders]
    settings = [_read(f, SETTINGS, "it is not a stage's output folder") for f in folders]
    for folder, s in zip(folders, shards, strict=True):
        if not (isinstance(s, dict) and isinstance(s.get("k"), int)
                and isinstance(s.get("n"), int)):
            raise InputError(folder / SHARD, None, "expected {\"k\": K, \"n\": N}; rerun that "
                             "shard's command into a new --out")
    n = shards[0]["n"]
    ks = sorted(s["k"] for s in shards)
    if any(s["n"] != n for s in shards) or ks != list(range(1, n + 1)):
        given = ", ".join(f"{s['k']}/{s['n']}" for s in shards)
        raise CaiError(f"shards {given} given; merge takes each shard of one N exactly once")
    for folder, made in zip(folders[1:], settings[1:], strict=True):
        if made != settings[0]:
            raise CaiError(f"{folder} was made with other settings than {folders[0]}; shards "
                           "must come from the same command")
    for folder in folders:
        found = [folder / "summary.json"] if (folder / "summary.json").is_file() else sorted(
            folder.glob("*.summary.json"))
        if not found:
            raise CaiError(f"{folder}: no summary.json; its run did not finish")
        for path in found:
            summary = read_json(path, "rerun that shard's command to finish it")
            if not isinstance(summary, dict) or not summary.get("finished") \
                    or summary.get("failed"):
                failed = summary.get("failed", 0) if isinstance(summary, dict) else "?"
                raise CaiError(f"{folder} is not finished ({failed} failed); rerun its "
                               "command first")
    names = sorted({p.name for f in folders for p in f.glob("*.jsonl") if p.name != "failed.jsonl"})
    merged: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if "log" in name:  # a log, such as the commands run: one after the other
            merged[name] = [r for f in folders if (f / name).exists() for r in read_jsonl(f / name)]
            continue
        rows: list[dict[str, Any]] = []
        seen: dict[str, Path] = {}
        for folder, s in zip(folders, shards, strict=True):
            for r in (read_jsonl(folder / name) if (folder / name).exists() else ()):
                key = str(r.get("pair_id") or r.get("id"))
                if key in seen:
                    raise CaiError(f"{name}: '{key}' is in both {seen[key]} and {folder}")
                if "id" in r and not in_shard(str(r["id"]), s["k"], s["n"]):
                    raise CaiError(f"{folder}/{name}: id '{r['id']}' is not in shard "
                                   f"{s['k']}/{s['n']}")
                seen[key] = folder
                rows.append(r)
        merged[name] = rows
    refuse_nonempty(out, overwrite)
    for name, rows in merged.items():
        write_jsonl(out / name, rows)
    write_json(out / SETTINGS, settings[0])
    counts = {name: len(rows) for name, rows in merged.items()}
    write_json(out / "summary.json", {"merged_from": [str(f) for f in folders],
                                      "records": counts, "finished": True})
    return counts
