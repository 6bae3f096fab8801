"""The CLI's own behaviour: exit codes, messages, and that --help stays light."""

import subprocess
import sys

from tests.helpers import MINIMAL, cai
from tests.helpers import invoke as run


def test_help_does_not_import_torch():
    code = "import sys; from cai.cli import cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_every_name_import_cai_gives_resolves_without_torch():
    code = ("import sys, cai; missing = [n for n in cai.__all__ if getattr(cai, n) is None]; "
            "print(missing, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[] False", out.stderr  # found, and torch not loaded


def test_constitution_check_reports_every_file(write):
    good = write("good.yaml", MINIMAL)
    bad = write("bad.yaml", MINIMAL.replace("weight: 3", "weight: -2"))
    result = run("constitution", "check", good, bad)
    assert result.exit_code == 1
    assert "good.yaml: ok: 'tiny' 0.1, 2 principles (1 with a judge question)" in result.output
    assert f"{bad}:9: principle 'alpha': 'weight' is -2" in result.output
    assert run("constitution", "check", good).exit_code == 0


def test_shipped_constitutions_by_name():
    result = run("constitution", "check", "harmless", "helpful-honest")
    assert result.exit_code == 0, result.output
    assert "over-refusal" in run("constitution", "show", "harmless").output


def test_prompts_render_shows_the_exact_messages():
    result = run("prompts", "render", "critique", "--principle", "privacy", "--prompt", "Q?",
                 "--response", "R.")
    assert result.exit_code == 0
    assert "Critique request: " in result.output and "Assistant: R." in result.output
    judge = run("prompts", "render", "judge", "--response", "first", "--critique", "second")
    assert "REPLY A" in judge.output and "Answer with the single letter" in judge.output


def test_try_compare_shows_both_versions_side_by_side(write):
    old = write("old.yaml", MINIMAL)
    new = write("new.yaml", MINIMAL.replace("Say what is wrong.", "Name the worst flaw.")
                .replace('"0.1"', '"0.2"'))
    result = run("try", "--constitution", new, "--compare", old, "--prompt", "Hello there",
                 "--principle", "alpha", "--model", "fake:echo", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "old: tiny 0.1" in result.output and "new: tiny 0.2" in result.output
    assert "Name the worst flaw." in result.output and "Say what is wrong." in result.output


def test_try_takes_several_prompts_each_in_its_own_table(write):
    constitution = write("c.yaml", MINIMAL)
    result = run("try", "--constitution", constitution, "--prompt", "Name a colour.",
                 "--prompt", "Name a fruit.", "--principle", "alpha", "--model", "fake:echo",
                 "--no-cache")
    assert result.exit_code == 0, result.output
    shown = result.output
    assert shown.index("prompt: Name a colour.") < shown.index("prompt: Name a fruit.")
    assert shown.count("model fake:echo, critic fake:echo") == 2  # a table each


def test_unknown_model_is_a_clear_error(write):
    prompts = write("p.txt", "hi\n")
    out = cai("sample", "--prompts", prompts, "--model", "gpt5", "--out", prompts.parent / "o")
    assert out.returncode == 2 and "unknown model 'gpt5'" in out.stderr


def test_try_watch_runs_again_on_each_save_and_survives_a_broken_one(tmp_path):
    """`cai try --watch`: a run at start, another after each save; a constitution saved with a
    mistake is one error line with its line number, and the watch goes on; Ctrl-C ends it."""
    import os
    import shutil
    import signal
    import threading
    import time

    from cai.paths import shipped

    constitution = tmp_path / "c.yaml"
    shutil.copy(shipped("constitutions") / "harmless.yaml", constitution)
    original = constitution.read_text()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cai", "try", "--constitution", str(constitution), "--prompt",
         "Name a colour.", "--principle", "over-refusal", "--model", "fake:echo", "--watch"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={
            **os.environ, "COLUMNS": "200"})  # and the test's own cache, from conftest
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()

    def runs(n):  # wait until the watch has finished n runs
        deadline = time.time() + 60
        while sum("watching" in line for line in lines) < n:
            assert time.time() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.1)

    def save(text):
        time.sleep(0.05)  # a new modification time even on coarse clocks
        constitution.write_text(text)

    try:
        runs(1)
        save(original.replace("fully answer the safe request", "ANSWER THE SAFE REQUEST"))
        runs(2)
        save(original + "name: [broken\n")
        runs(3)
        save(original)
        runs(4)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=30)  # stdout is the reader's alone, to its end
        stderr = proc.stderr.read()
    out = "".join(lines)
    assert proc.returncode == 0 and "stopped watching" in out
    assert out.count("prompt: Name a colour.") == 3  # the broken save did not run
    assert "ANSWER THE SAFE REQUEST" in out
    broken = original.count("\n") + 1  # the line the unclosed bracket opens on
    assert f"{constitution}:{broken}: invalid YAML" in " ".join(stderr.split())
