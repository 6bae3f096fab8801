"""Where cai finds its shipped files and keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """A folder shipped with cai: `constitutions` or `prompts`.

    An installed wheel carries them inside the package; an editable install (a git checkout)
    uses the top-level folders of the repository, where users edit them.
    """
    inside = _PACKAGE / "_data" / name
    return inside if inside.is_dir() else _PACKAGE.parent / name


def resolve_constitution(name_or_path: str) -> Path:
    """A path as given, or the name of a shipped constitution (`harmless`, `helpful-honest`)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        return path
    return shipped("constitutions") / f"{name_or_path}.yaml"


def cache_dir() -> Path:
    """The user's cache folder for cai, honouring XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cai"
