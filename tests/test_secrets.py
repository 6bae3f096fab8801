"""No file cai writes holds a credential: a `--base-url` with a user and password and a key in
its query goes through stages, the dataset card and a loop run, and is found in no file."""

from pathlib import Path

import pytest
import yaml

from cai.redact import redact_urls
from tests.helpers import ROOT, cai

SECRETS = ("hunter2", "sk-SECRET-1", "tok-SECRET-2")
URL = "https://me:hunter2@llm.example:8000/v1?api_key=sk-SECRET-1&model=m&access_token=tok-SECRET-2"


@pytest.mark.parametrize(("text", "hidden"), [
    (URL, "https://***@llm.example:8000/v1?api_key=***&model=m&access_token=***"),
    ("cai judge --base-url 'http://u:p@h/v1?x=1&X-Amz-Signature=abc#top' --out b",
     "cai judge --base-url 'http://***@h/v1?x=1&X-Amz-Signature=***#top' --out b"),
    ("see http://token@h:1/a?password=pw&sig=s and https://h/v1?key=", "see http://***@h:1/a?"
     "password=***&sig=*** and https://h/v1?key="),
    ("http://127.0.0.1:8000/v1 https://api.openai.com/v1?model=gpt",  # nothing to hide
     "http://127.0.0.1:8000/v1 https://api.openai.com/v1?model=gpt"),
    ("no URL here: user:pass@host", "no URL here: user:pass@host"),
])
def test_credentials_in_urls_are_hidden_and_the_rest_kept(text, hidden):
    assert redact_urls(text) == hidden


OFFLINE = {"HF_DATASETS_OFFLINE": "1"}


def files_holding(folder: Path, secrets: tuple[str, ...], skip: set[Path]) -> list[str]:
    return [f"{p}: {s}" for p in sorted(folder.rglob("*")) if p.is_file() and p not in skip
            for s in secrets if s.encode() in p.read_bytes()]


def test_a_url_with_credentials_is_in_no_file(tmp_path):
    (tmp_path / "p.txt").write_text("How do I boil an egg?\nName a colour.\n")
    cai("revise", "--prompts", "p.txt", "--model", "fake:echo", "--rounds", "1", "--out", "a",
        "--base-url", URL, cwd=tmp_path, env=OFFLINE, check=True)
    cai("judge", "--responses", "a/prefs.jsonl", "--judge", "fake:fixed:A", "--out", "b",
        "--base-url", URL, cwd=tmp_path, env=OFFLINE, check=True)
    cai("report", "b", cwd=tmp_path, env=OFFLINE, check=True)
    card = (tmp_path / "b" / "README.md").read_text()
    assert "--base-url 'https://***@llm.example:8000/v1?api_key=***&model=m&access_token=***'" \
        in card
    # A loop whose config names the URL: its history, loop.log, copies of the config and its
    # report. Its policy is no model that trains, so the run fails at training, and says so.
    config = tmp_path / "loop.yaml"
    config.write_text(yaml.safe_dump({
        "policy": "fake:echo", "critic": "fake:echo", "judge": "fake:fixed:A",
        "evaluator": "fake:fixed:A", "base_urls": [URL],
        "prompts": {"file": str(ROOT / "examples" / "prompts.jsonl")}, "iterations": 1,
        "work": {"prompts": 2, "samples": 2, "rounds": 1},
        "evaluation": {"suite": "default", "limit": 2}}))
    done = cai("loop", config, "--out", "run", cwd=tmp_path, env=OFFLINE)
    assert done.returncode == 2 and "train-sft failed" in done.stderr, done.stderr[-2000:]
    log = (tmp_path / "run" / "loop.log").read_text()
    assert "--base-url 'https://***@llm.example:8000/v1?api_key=***" in log
    assert (tmp_path / "run" / "report.html").exists()
    assert files_holding(tmp_path, SECRETS, skip={config}) == []
