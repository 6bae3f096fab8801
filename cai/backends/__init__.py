"""Model backends, chosen by a spec string: `local`, `openai:MODEL`, `fake:echo`, ...

Every backend implements `Backend.complete`; `load_backend` turns a spec into one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cai.backends.base import Backend
from cai.errors import CaiError

SPECS = "local, openai:MODEL, fake:echo, fake:fixed:TEXT"


def load_backend(spec: str, *, base_urls: Sequence[str] = (), logprobs: bool = False) -> Backend:
    """Make the backend a model spec names. `logprobs` asks for token log-probabilities."""
    kind, _, model = spec.partition(":")
    if kind == "local":
        from cai.backends.local import LocalBackend

        return LocalBackend(model_path=model or None, logprobs=logprobs)
    if kind == "openai":
        if not model:
            raise CaiError("openai needs a model name: openai:MODEL, e.g. openai:gpt-4o-mini")
        from cai.backends.openai import OpenAIBackend

        return OpenAIBackend(model, base_urls=base_urls)
    if kind == "fake":
        from cai.backends.fake import FakeBackend

        return FakeBackend(model or "echo")
    raise CaiError(f"unknown model '{spec}'; use one of: {SPECS}")


def split_urls(values: Sequence[str]) -> list[str]:
    """`--base-url` may be repeated or comma-separated."""
    return [u.strip() for v in values for u in v.split(",") if u.strip()]


__all__ = ["Backend", "load_backend", "split_urls"]
