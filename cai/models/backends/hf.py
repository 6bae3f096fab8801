"""`hf:FOLDER`: a transformers checkpoint run in-process, such as one `cai train` wrote.

The folder may hold a full model or a LoRA adapter (loaded onto its base and merged);
`hf:local` is the embedded SmolLM2 converted by `cai.models.checkpoints.local_checkpoint`.

Requests that arrive together are answered together (`cai.models.backends.gather`): whatever is
waiting each time the model is free runs as left-padded `generate` batches, one per sampling
setting, in a single worker thread, so many concurrent callers cost little more than one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cai.chat import Completion, Message, Sampling, TokenLogprob, Usage, messages_to_dicts
from cai.errors import BackendError, CaiError
from cai.models.backends.base import Backend
from cai.models.backends.gather import Batcher, Request
from cai.models.checkpoints import (
    checkpoint_fingerprint,
    from_embedded,
    load_causal_lm,
    load_tokenizer,
    local_checkpoint,
    need_training_extra,
    resolve_model,
)
from cai.models.embedded import LOCAL_SAMPLING, MODEL_NAME, gguf_path
from cai.models.identity import file_fingerprint

MAX_BATCH = 32


def batch_key(sampling: Sampling) -> Sampling:
    """Requests that may share one `generate` call: the same sampling but for seed and stop.

    Stop strings are cut per answer afterwards; the batch takes its first request's seed.
    """
    return sampling.with_(seed=None, stop=())


def generate_kwargs(sampling: Sampling) -> dict[str, Any]:
    """`generate` arguments for our sampling parameters; temperature 0 means greedy."""
    kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens,
                              "do_sample": sampling.temperature > 0}
    if sampling.temperature > 0:
        # top_k=0 turns off transformers' default top-k of 50, which other backends lack.
        kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
    if sampling.repeat_penalty:
        kwargs["repetition_penalty"] = sampling.repeat_penalty
    return kwargs


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The text up to the first stop string, and whether one was found."""
    ends = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[:min(ends)], True) if ends else (text, False)


class HFBackend(Backend):
    """A checkpoint folder, loaded on first use on the GPU in bf16 if there is one, else CPU fp32.

    A batch is seeded once, with its first request's seed (torch.manual_seed), so a seeded
    answer can depend on what it was batched with; for answers reproducible one by one, send
    requests one at a time.
    """

    supports_logprobs = False
    sends = frozenset(("temperature", "top_p", "max_tokens", "seed", "repeat_penalty", "stop",
                       "choices"))

    def __init__(self, model: str, *, max_batch: int = MAX_BATCH):
        need_training_extra()
        if not model:
            raise CaiError("hf needs a checkpoint folder: hf:FOLDER, or hf:local for the "
                           "embedded model")
        self.spec = f"hf:{model}"
        self.is_local = model == "local"
        # The embedded model is converted on first use (about half a minute), not here.
        self.folder: Path | None = None if self.is_local else resolve_model(model)
        # The embedded model and models trained from it share its failings (repetition loops
        # at low temperature), so they share its defaults.
        embedded = self.folder is None or from_embedded(self.folder)
        self.default_sampling = LOCAL_SAMPLING if embedded else Sampling()
        self.max_batch = max_batch
        self.model_name = MODEL_NAME if self.is_local else Path(model).name
        self._loaded: tuple[Any, Any] | None = None
        self._identity: str | None = None
        self._batcher = Batcher(self._run, max_batch=max_batch, name="cai-hf")

    @property
    def identity(self) -> str:
        """The checkpoint by a fingerprint of its weights and config (and its bases', for an
        adapter); `hf:local` by the embedded GGUF it is converted from."""
        if self._identity is None:
            if self.folder is None:
                fingerprint = file_fingerprint(gguf_path())
            else:
                fingerprint = checkpoint_fingerprint(self.folder)
            self._identity = f"{self.spec}@{fingerprint[:16]}"
        return self._identity

    async def complete(self, messages: Sequence[Message], sampling: Sampling) -> Completion:
        return await self._batcher.submit(messages, sampling)

    def generate_all(self, requests: list[Request]) -> list[Completion]:
        """Answer requests without an event loop, in the batches `complete` would make of
        them all arriving at once; for code that runs outside one, such as training."""
        return [c for start in range(0, len(requests), self.max_batch)
                for c in self._run(requests[start:start + self.max_batch])]

    def _run(self, batch: list[Request]) -> list[Completion]:
        """Answer a gathered batch: one `generate` call per sampling setting, in order."""
        groups: dict[Sampling, list[int]] = {}
        for i, (_, sampling) in enumerate(batch):
            groups.setdefault(batch_key(sampling), []).append(i)
        answers: list[Completion | None] = [None] * len(batch)
        for indices in groups.values():
            try:
                done = self._generate([batch[i] for i in indices])
            except CaiError:
                raise
            except Exception as e:  # every caller in the batch must hear of it
                raise BackendError(f"{self.spec}: generation failed: {e}") from None
            for i, answer in zip(indices, done, strict=True):
                answers[i] = answer
        return [a for a in answers if a is not None]

    def _model(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch

            folder = self.folder or local_checkpoint()
            _check_generative(folder)
            gpu = torch.cuda.is_available()
            model = load_causal_lm(folder, torch.bfloat16 if gpu else torch.float32)
            model.to("cuda" if gpu else "cpu").eval()
            tokenizer = load_tokenizer(folder)
            tokenizer.padding_side = "left"  # generation continues from the right edge
            self._loaded = (tokenizer, model)
        return self._loaded

    def load(self) -> None:
        """Load the model now rather than on the first request."""
        self._batcher.run_in_worker(self._model)

    def _generate(self, batch: list[Request]) -> list[Completion]:
        import torch

        tokenizer, model = self._model()
        sampling = batch[0][1]
        inputs = self._inputs(batch)
        if sampling.choices:
            return self._choose(inputs, sampling.choices)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = model.generate(**inputs, **generate_kwargs(sampling),
                                 pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[:, inputs["input_ids"].shape[1]:].tolist()
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        stop_ids = _stop_ids(model, tokenizer)
        return [self._completion(tokenizer, ids, n, s, stop_ids)
                for ids, n, (_, s) in zip(new_tokens, prompt_tokens, batch, strict=True)]

    def _inputs(self, batch: list[Request]) -> Any:
        """The batch's prompts, chat template applied, left-padded, on the model's device."""
        tokenizer, model = self._model()
        texts = [tokenizer.apply_chat_template(messages_to_dicts(messages), tokenize=False,
                                               add_generation_prompt=True)
                 for messages, _ in batch]
        # The chat template already writes the special tokens the model expects.
        return tokenizer(texts, return_tensors="pt", padding=True,
                         add_special_tokens=False).to(model.device)

    def _choose(self, inputs: Any, options: Sequence[str]) -> list[Completion]:
        """Score each option as the first token of each reply, in one forward pass."""
        import torch

        tokenizer, model = self._model()
        with torch.inference_mode():
            logits = model(**inputs).logits[:, -1, :].float()  # left padding: last is real
        logprobs = torch.log_softmax(logits, dim=-1)
        # Each option with and without a leading space, whichever the tokenizer prefers.
        ids = {o: sorted({tokenizer.encode(v, add_special_tokens=False)[0]
                          for v in (o, " " + o)}) for o in options}
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        answers = []
        for row, n in zip(logprobs, prompt_tokens, strict=True):
            scores = {o: float(torch.logsumexp(row[ids[o]], dim=0)) for o in options}
            best = max(scores, key=scores.__getitem__)
            answers.append(Completion(best, "stop", Usage(int(n), 1), self.model_name,
                                      (TokenLogprob(best, scores[best], scores),)))
        return answers

    def _completion(self, tokenizer: Any, ids: list[int], prompt_tokens: int,
                    sampling: Sampling, stop_ids: set[int]) -> Completion:
        # Rows that finished early are padded; the answer ends at its first end-of-turn token.
        end = next((i for i, t in enumerate(ids) if t in stop_ids), None)
        generated = ids if end is None else ids[:end + 1]
        text, stopped = cut_at_stop(tokenizer.decode(generated, skip_special_tokens=True),
                                    sampling.stop)
        finished = end is not None or stopped or len(generated) < sampling.max_tokens
        return Completion(text=text.strip(), finish_reason="stop" if finished else "length",
                          usage=Usage(int(prompt_tokens), len(generated)),
                          model=self.model_name)

    def close(self) -> None:
        self._batcher.close()
        self._loaded = None

    async def aclose(self) -> None:
        self.close()


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _check_generative(folder: Path) -> None:
    import json

    config, adapter = folder / "config.json", folder / "adapter_config.json"
    if adapter.is_file():
        scores = json.loads(adapter.read_text(encoding="utf-8")).get("task_type") == "SEQ_CLS"
    elif config.is_file():
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        scores = any(a.endswith("ForSequenceClassification") for a in architectures)
    else:
        scores = False
    if scores:
        raise CaiError(f"{folder} is a reward model: it scores answers, it does not write "
                           "them; use it as a reward model, not as hf:")
