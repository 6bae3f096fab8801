"""Backends that run no model, for dry runs and plumbing tests.

`fake:echo` answers with the last message it was sent; `fake:fixed:TEXT` always answers TEXT.
"""

from __future__ import annotations

from collections.abc import Sequence

from cai.chat import Completion, Message, Sampling, Usage
from cai.models.backends.base import Backend


class FakeBackend(Backend):
    def __init__(self, mode: str = "echo"):
        self.spec = f"fake:{mode}"
        self.mode = mode
        self.history: list[tuple[list[Message], Sampling]] = []

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        self.history.append((list(messages), sampling))
        if self.mode.startswith("fixed:"):
            text = self.mode.removeprefix("fixed:")
        else:
            text = messages[-1].content if messages else ""
        words = text.split()
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        return Completion(
            text=" ".join(words[: sampling.max_tokens]),
            finish_reason="length" if len(words) > sampling.max_tokens else "stop",
            usage=Usage(prompt_tokens, min(len(words), sampling.max_tokens)),
            model=self.spec,
        )
