"""What identifies a model's answers: the weights it runs, or the deployment it is served by.

A cache key and every record name a model by its identity, not only by its spec, so that an
answer is never served for other weights or another server:

- a local GGUF file or checkpoint folder: a fingerprint of its content (weights and config),
  so that retraining into the same folder makes new keys;
- an OpenAI-compatible server: the list of its `--base-url` replicas (one deployment);
- OpenAI's and Anthropic's own APIs: the model name.

Hashing gigabytes of weights takes a while, so each file's fingerprint is computed once and
kept by path, size and modification time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from cai.paths import cache_dir
from cai.records.rewrite import write_json

# The files of a checkpoint folder that decide what it answers.
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.bin", "*.model", "*.gguf", "*.txt")
CHUNK = 1 << 20


def _store() -> Path:
    return cache_dir() / "fingerprints.json"


def file_fingerprint(path: Path) -> str:
    """The sha256 of a file's content, cached by its resolved path, size and mtime."""
    path = path.resolve()
    stat = path.stat()
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        known = json.loads(_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return str(known[key])
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    known = {k: v for k, v in known.items() if not k.startswith(f"{path}:")}  # stale entries
    known[key] = digest.hexdigest()
    with contextlib.suppress(OSError):  # only a cache: the next call hashes the file again
        write_json(_store(), known)
    return digest.hexdigest()


def folder_fingerprint(folder: Path, also: Iterable[str] = ()) -> str:
    """A fingerprint of a checkpoint folder's weights and config files (and of `also`: the
    fingerprints of what it builds on, such as a LoRA adapter's base)."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in CHECKPOINT_FILES for p in folder.glob(pattern)
                    if p.is_file()})
    for p in files:
        digest.update(f"{p.name}:{file_fingerprint(p)}\n".encode())
    for extra in also:
        digest.update(f"base:{extra}\n".encode())
    return digest.hexdigest()


def deployment(urls: Sequence[str]) -> str:
    """One id for a list of replicas: the same servers in any order are one deployment."""
    canonical = sorted({u.rstrip("/") for u in urls})
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()[:16]
