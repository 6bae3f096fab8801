"""The openai backend against a real OpenAI-compatible server: llama.cpp's own server
(`python -m llama_cpp.server`) running the embedded model on 127.0.0.1."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from cai.records.read import read_jsonl
from tests.helpers import cai, free_port, has, needs_local

pytestmark = [pytest.mark.slow, needs_local,
              pytest.mark.skipif(not has("llama_cpp.server") or not has("uvicorn"),
                                 reason="needs llama-cpp-python[server]")]


@pytest.fixture(scope="module")
def server():
    from cai.models.embedded import gguf_path

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--logits_all", "true",
         "--model_alias", "smollm2", "--n_threads", str(os.cpu_count())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("llama_cpp.server did not start")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(10)


def test_revise_through_the_openai_sdk(server, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is the capital of France?\nName a colour.\n")
    # The same server twice: requests are spread over --base-url replicas.
    cai("revise", "--prompts", prompts, "--model", "openai:smollm2", "--base-url",
        f"{server},{server}", "--rounds", "1", "--out", tmp_path / "o", check=True)
    sft = list(read_jsonl(tmp_path / "o" / "sft.jsonl"))
    assert len(sft) == 2 and sft[0]["model"] == "openai:smollm2"
    steps = next(read_jsonl(tmp_path / "o" / "trace.jsonl"))["steps"]
    assert all(s["model_name"] == "smollm2" and s["usage"]["prompt_tokens"] > 0 for s in steps)


def test_judge_reads_logprobs_from_the_server(server, tmp_path):
    responses = tmp_path / "r.jsonl"
    responses.write_text(json.dumps({"prompt": "Say hello.", "responses": ["Hello!", "No."]})
                         + "\n")
    cai("judge", "--responses", responses, "--judge", "openai:smollm2", "--base-url", server,
        "--out", tmp_path / "j", "--min-margin", "0", check=True)
    [record] = list(read_jsonl(tmp_path / "j" / "comparisons.jsonl"))
    orders = [o for j in record["comparisons"][0]["judgements"]
              for o in (j["x_first"], j["x_second"])]
    assert len(orders) == 2
    assert {o["status"] for o in orders} <= {"logprobs", "text", "unparsed"}
    summary = json.loads((tmp_path / "j" / "summary.json").read_text())
    assert summary["backends"]["openai:smollm2"]["requests"] == 2


def test_judge_constrained_by_the_servers_grammar_always_answers(server, tmp_path):
    responses = tmp_path / "r.jsonl"
    rows = [("Say hello.", "Hello!", "No."), ("Name a colour.", "Blue.", "I refuse to say.")]
    responses.write_text("".join(json.dumps({"prompt": q, "responses": [a, b]}) + "\n"
                                 for q, a, b in rows))
    cai("judge", "--responses", responses, "--judge", "openai:smollm2", "--base-url", server,
        "--judge-constrain", "grammar", "--out", tmp_path / "j", "--min-margin", "0", check=True)
    orders = [o for r in read_jsonl(tmp_path / "j" / "comparisons.jsonl")
              for c in r["comparisons"] for j in c["judgements"]
              for o in (j["x_first"], j["x_second"])]
    assert len(orders) == 4
    assert all(o["path"] == "constrained" and o["raw"] in ("A", "B") for o in orders)
    assert all(o["status"] == "logprobs" for o in orders)
