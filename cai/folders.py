"""Output folders that never mix two runs' files.

A folder remembers, in its settings.json, the command that made it and the content of the
input files it read (their sha256: a file edited under the same name is another input). A run
of another command into it, or of the same command on other inputs, is refused before
anything is read from a model or written, with the way out: another `--out`, or `--overwrite`,
which clears the folder first. A rerun with the same inputs goes on where the last one stopped.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cai.errors import CaiError, InputError
from cai.records.read import STATE_FIX, read_json
from cai.records.rewrite import write_json

SETTINGS = "settings.json"  # beside each stage's settings, `made_by` says what made the folder
MADE_BY = "made_by"
CHUNK = 1 << 20

Inputs = Mapping[str, str | Path | Sequence[str | Path] | None]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def made_by(command: str, inputs: Inputs, settings: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
    """What a folder records of the run that made it: the command, the sha256 of each input
    file by its option, and settings that shape the output but belong to no stage."""
    hashes: dict[str, list[str]] = {}
    for option, given in inputs.items():
        files = [given] if isinstance(given, (str, Path)) else list(given or [])
        if files:
            hashes[option] = [file_sha256(f) for f in files]
    return {"command": command, "inputs": hashes, **({"settings": dict(settings)}
                                                     if settings else {})}


def claim(out: Path, command: str, inputs: Inputs | None = None, *,
          settings: Mapping[str, Any] | None = None, overwrite: bool | None = False,
          dry_run: bool = False) -> None:
    """Make `out` this run's folder: new, empty, or made by this command from these inputs
    (a rerun, which resumes); anything else is refused. A dry run checks, and writes nothing.
    `overwrite` None: the command has no --overwrite to offer."""
    wanted = made_by(command, inputs or {}, settings)
    if out.exists() and not out.is_dir():
        raise CaiError(f"{out} is a file, not a folder; give a folder to --out")
    way_out = "use another --out" + ("" if overwrite is None else
                                     ", or --overwrite to clear it and start again")
    known = _known(out, bool(overwrite))
    if overwrite and known is not None:
        if dry_run:
            return
        shutil.rmtree(out)
        known = None
    if known is not None and known.get(MADE_BY) is not None:
        _same(out, known[MADE_BY], wanted, way_out)
        return
    if dry_run:
        return
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        # A folder of an older cai has its stages' settings and no `made_by`: adopted.
        write_json(out / SETTINGS, {**(known or {}), MADE_BY: wanted})
    except OSError:
        if fresh:
            shutil.rmtree(out, ignore_errors=True)  # nothing partial: the folder goes again
        raise


def refuse_nonempty(out: Path, overwrite: bool) -> None:
    """For a command whose output is written whole at once (`cai data merge`): `out` must be
    new or empty, or cleared by --overwrite."""
    if out.exists() and not out.is_dir():
        raise CaiError(f"{out} is a file, not a folder; give a folder to --out")
    if _known(out, overwrite) is not None:
        if not overwrite:
            raise CaiError(f"{out} is not empty; give a new or empty --out, or --overwrite to "
                           "clear it first")
        shutil.rmtree(out)


def _known(out: Path, overwrite: bool) -> dict[str, Any] | None:
    """The settings of a folder that holds anything (None if it is new or empty); a folder
    without them was not made by cai, and is never cleared."""
    if not out.is_dir() or not any(out.iterdir()):
        return None
    path = out / SETTINGS
    if not path.is_file():
        raise CaiError(f"{out} holds files that cai did not write (it has no {SETTINGS}); give "
                       "a new or empty --out" + ("" if not overwrite else
                                                 " (--overwrite clears only cai's own folders)"))
    return {} if overwrite else read_settings(out)  # with --overwrite, read or not, it goes


def read_settings(out: Path) -> dict[str, Any]:
    """A folder's settings.json, {} where there is none; one cut short or changed by hand is
    one error naming it, with the way out."""
    path = out / SETTINGS
    if not path.is_file():
        return {}
    known = read_json(path, STATE_FIX)
    if not isinstance(known, dict):
        raise InputError(path, None, f"cannot be read (not an object); {STATE_FIX}")
    return known


def _same(out: Path, made: Any, wanted: dict[str, Any], way_out: str) -> None:
    """Refuse a run that is not a rerun of the one that made `out`."""
    if not isinstance(made, dict) or made.get("command") != wanted["command"]:
        other = made.get("command") if isinstance(made, dict) else None
        raise CaiError(f"{out} was made by `cai {other}`; `cai {wanted['command']}` would mix "
                       f"its files with those; {way_out}")
    changed = []
    for part in ("inputs", "settings"):
        old, new = made.get(part) or {}, wanted.get(part) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changed.append(f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
    if changed:
        raise CaiError(f"{out} was made from other inputs ({'; '.join(changed[:3])}); "
                       f"{way_out}, or give the same inputs to resume")


def _short(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(f"sha256 {v[:12]}" for v in value) or "none"
    return "none" if value is None else str(value)
