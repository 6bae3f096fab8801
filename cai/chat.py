"""The few value types every part of cai speaks: messages in, completions out.

Provider response objects never leave a backend; they are turned into these first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def messages_from_dicts(items: list[dict[str, Any]]) -> list[Message]:
    """Turn TRL-style `[{"role": ..., "content": ...}]` into messages."""
    return [Message(str(m["role"]), str(m["content"])) for m in items]


def messages_to_dicts(messages: list[Message]) -> list[dict[str, str]]:
    return [m.to_dict() for m in messages]


def assistant(text: str) -> list[dict[str, str]]:
    """A reply in TRL's conversational form: `[{"role": "assistant", "content": text}]`."""
    return [{"role": "assistant", "content": text}]


def prompt_hash(prompt: Any) -> str:
    """The sha256 of a prompt's content (TRL messages, or text): the same prompt, the same hash,
    whatever the file order. Prompt ids are its first 16 characters."""
    blob = json.dumps(prompt, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def conversation_of(prompt: Any) -> tuple[Message, ...]:
    """A prompt given as text or as TRL's messages, as messages."""
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(messages_from_dicts(prompt))


def reply_text(value: Any) -> str:
    """A response given as text or as TRL's conversational `[{"role": "assistant", ...}]`."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1]["content"])
    raise ValueError(f"a response must be text or a list of messages, not {value!r:.60}")


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. Fields left as None fall back to the backend's own default."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    repeat_penalty: float | None = None  # llama.cpp only; others ignore it
    stop: tuple[str, ...] = ()
    top_logprobs: int = 0  # alternatives wanted per generated token; 0 for none
    # Constrain the reply to one of these options: the answer is the likeliest, and the first
    # token's logprobs list every option (the judge's A or B). Backends that can say so.
    choices: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> Sampling:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        d["choices"] = list(self.choices)
        return d


def step_seed(seed: int, item_id: str, step: str) -> int:
    """A seed per request, fixed by the run's seed, the prompt and the step.

    Independent of the order prompts finish in, so a rerun sends identical requests.
    """
    digest = hashlib.sha256(f"{seed}:{item_id}:{step}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability, and the most likely alternatives at its place."""

    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop", "length", ...
    usage: Usage
    model: str
    logprobs: tuple[TokenLogprob, ...] | None = None
