"""No process outlives a loop run: its processes are marked with the run folder at every
depth, die in cascade when the loop is killed, are ended whole when a stage ends, and a new
loop refuses to start beside any left over. Real processes, each in a session of its own as
torchrun starts its workers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cai.errors import CaiError
from cai.loop.processes import MARK, child_env, end_all, marked, refuse_leftovers
from tests.helpers import ROOT, cai, needs_local

# A `cai` process at some depth under a loop: asks to die with its parent, as cai's entry
# point does, starts the next one in a new session (as torchrun does), and waits.
LINK = """
import subprocess, sys, time
from cai.loop.processes import die_with_parent
die_with_parent()
depth = int(sys.argv[1])
if depth < 3:
    subprocess.Popen([sys.executable, "-c", sys.argv[2], str(depth + 1), sys.argv[2]],
                     start_new_session=True)
time.sleep(300)
"""

# The loop: marks its child and starts it, then waits to be killed.
LOOP = """
import os, subprocess, sys, time
from cai.loop.processes import child_env
from pathlib import Path
subprocess.Popen([sys.executable, "-c", sys.argv[2], "1", sys.argv[2]],
                 env={**os.environ, **child_env(Path(sys.argv[1]))}, start_new_session=True)
time.sleep(300)
"""


def wait_for(check, seconds: float) -> bool:
    end = time.time() + seconds
    while time.time() < end:
        if check():
            return True
        time.sleep(0.1)
    return check()


def test_a_kill_9_of_the_loop_takes_every_depth_down_within_seconds(tmp_path):
    run = tmp_path.resolve()
    loop = subprocess.Popen([sys.executable, "-c", LOOP, str(run), LINK], cwd=ROOT)
    try:
        assert wait_for(lambda: len(marked(run)) == 3, 60), marked(run)
        sessions = {os.getsid(pid) for pid, _ in marked(run)}
        assert len(sessions) == 3  # each in a session of its own: no group holds them all
        loop.send_signal(signal.SIGKILL)
        loop.wait()
        started = time.time()
        assert wait_for(lambda: not marked(run), 10), f"left after 10 s: {marked(run)}"
        print(f"every process gone {time.time() - started:.1f}s after the kill")
    finally:
        end_all(run)


def test_leftovers_are_named_and_refused_then_ended(tmp_path):
    run = tmp_path.resolve()
    # A process of the run that does not die with its parent (no `cai`, new session).
    stray = subprocess.Popen(["sleep", "300"], env={**os.environ, **child_env(run)},
                             start_new_session=True)
    try:
        assert wait_for(lambda: [p for p, _ in marked(run)] == [stray.pid], 10)
        assert marked(tmp_path / "other") == []
        with pytest.raises(CaiError, match=rf"pid {stray.pid}: sleep 300"):
            refuse_leftovers(run)
        end_all(run)
        assert marked(run) == [] and stray.wait(5) == -signal.SIGKILL
    finally:
        stray.kill()


def test_a_new_loop_refuses_beside_a_leftover_and_status_names_it(tmp_path):
    run = (tmp_path / "run").resolve()
    run.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "policy": "local", "critic": "local", "judge": "local", "evaluator": "local",
        "prompts": {"file": str(ROOT / "examples" / "prompts.jsonl")}, "iterations": 1}))
    (run / "history.jsonl").write_text(json.dumps({
        "time": "2026-01-01T00:00:00+00:00", "event": "begin", "iterations": 1,
        "policy": "local", "config": str(config), "limit": None, "pid": 1}) + "\n")
    (run / "run.json").write_text("{}")
    stray = subprocess.Popen(["sleep", "300"], env={**os.environ, MARK: str(run)},
                             start_new_session=True)
    try:
        assert wait_for(lambda: marked(run), 10)
        done = cai("loop", config, "--out", run, timeout=120)
        assert done.returncode == 2 and f"pid {stray.pid}: sleep 300" in done.stderr, done
        assert "Traceback" not in done.stderr
        shown = cai("loop", "status", run, "--json", timeout=120)
        assert json.loads(shown.stdout)["processes"] == [{"pid": stray.pid,
                                                          "command": "sleep 300"}]
        said = cai("loop", "status", run, timeout=120).stdout
        assert f"still running: pid {stray.pid}: sleep 300" in said
    finally:
        stray.kill()
        stray.wait()


ACCELERATE = {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU",
              "num_machines": 1, "num_processes": 2, "machine_rank": 0, "mixed_precision": "no",
              "rdzv_backend": "static", "same_network": True, "use_cpu": False}


@needs_local
@pytest.mark.slow
def test_kill_9_while_training_under_accelerate_leaves_nothing_and_resumes(tmp_path):
    """`accelerate launch` with two CPU processes (torchrun's workers, each in a session of
    its own) killed with the loop mid-training: nothing of the run is left within 10 s, and
    the rerun finishes with every record once."""
    from cai.records.read import read_jsonl
    from tests.helpers import children_of, lines, loop_cai, status, write_config
    from tests.stubs.stub_server import StubServer

    (tmp_path / "acc.yaml").write_text(yaml.safe_dump(ACCELERATE))
    # The test's own cache (conftest), the converted model the session's.
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": "stand-in",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # `accelerate`
    run = (tmp_path / "run").resolve()
    it = run / "iter-01"
    with StubServer() as server:
        config = write_config(
            tmp_path / "c.yaml", iterations=1, critic="openai:stand-in",
            judge="openai:stand-in", evaluator="openai:stand-in", base_urls=[server.url],
            work={"prompts": 3, "samples": 2, "rounds": 1},
            training={"method": "sft", "lora": True, "save_steps": 1, "accelerate": "acc.yaml",
                      "trl": {"max_steps": 4, "per_device_train_batch_size": 1}})
        loop = subprocess.Popen([sys.executable, "-m", "cai", "loop", str(config), "--out",
                                 str(run)], env=env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "loop.err", "w"))  # noqa: SIM115
        workers = []
        try:
            def training() -> bool:
                assert loop.poll() is None, (tmp_path / "loop.err").read_text()
                workers[:] = [p for p, c in marked(run) if "-m cai train sft" in c]
                return len(workers) >= 3 and any(
                    (it / "train-sft").glob("checkpoint-*/trainer_state.json"))
            assert wait_for(training, 900)
            loop.send_signal(signal.SIGKILL)
            loop.wait()
            killed = time.time()
            assert wait_for(lambda: not marked(run) and not children_of(run), 10), \
                f"left 10 s after the kill: {marked(run)}"
            print(f"{len(workers)} training processes (accelerate and its workers) gone "
                  f"{time.time() - killed:.1f}s after the kill")
        finally:
            end_all(run)
        assert status(run, env)["processes"] == []
        loop_cai("loop", config, "--out", run, env=env)
        assert status(run, env)["finished"] is True
    keys = [e["key"] for e in read_jsonl(run / "history.jsonl") if e["event"] == "done"]
    assert len(keys) == len(set(keys)) and "1:gate" in keys
    ids = [r["id"] for r in read_jsonl(it / "revise" / "sft.jsonl")]
    assert len(ids) == len(set(ids)) == lines(it / "revise" / "sft.jsonl") == 3
    summary = json.loads((it / "train-sft" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert summary["resumed_from"].startswith("checkpoint-")


# The loop, stopped (SIGTERM) just as it forks a stage: the signal is sent from one of the
# fork's after-fork hooks, the moment Python runs them (where a `kill` can land).
STOPPED_AS_IT_FORKS = """
import os, signal, sys
from pathlib import Path
from cai.loop.plan import Stage
from cai.loop.run import Loop, _interrupt
loop = Loop(Path(sys.argv[1]), Path(sys.argv[2]), echo=print)
loop.run.folder.mkdir()
signal.signal(signal.SIGTERM, _interrupt)  # as Loop.go does
armed = [True]
def stop():
    if armed:
        armed.pop()
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(after_in_parent=stop)
# A stage that would take 10 s.
stage = Stage(1, "slow", Path(sys.argv[2]) / "slow", [],
              launcher=(sys.executable, "-c", "import time; time.sleep(10)"))
try:
    loop.child_process(stage)
    print("went on")
except KeyboardInterrupt:
    print("stopped")
"""


def test_a_stop_signal_as_a_stage_starts_stops_the_loop(tmp_path):
    """A SIGTERM that came while the loop forked a stage was raised inside Python's
    after-fork hooks, which drop exceptions ("Exception ignored"): the loop went on as if
    never told to stop. Now it stops, and the stage is ended."""
    from tests.helpers import write_config

    config, run = write_config(tmp_path / "c.yaml"), tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", STOPPED_AS_IT_FORKS, str(config), str(run)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "stopped", done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert marked(run.resolve()) == []
