"""Where the client CPU goes in the CPU-bound scenario, for cai and for the plain baseline.

    .venv/bin/python -m benchmarks.cpu_profile --py-spy /tmp/pyspy/bin/py-spy

py-spy is not a dependency of cai: install it anywhere (`pip install py-spy` into a scratch
venv) and pass its path. Both contenders run under `py-spy record --format raw` against one
stub server (0.1 s latency, concurrency 256, 2,000 requests, as in `benchmarks.run`), and every
sample is put in the first bucket below whose marker frame is on its stack, so the buckets add
up to 100%. Per-request milliseconds split the client CPU that `getrusage` measured in the same
proportions (the target's own CPU, from wait4, without py-spy's); py-spy samples threads that
are runnable as well as running, so on a loaded machine the shares mean more than the counts.

Writes benchmarks/results/profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.report import write_readme
from benchmarks.run import ROOT, machine, shown, stub_server, write_prompts

# (bucket, frame markers): the first bucket with a marker on a sample's stack takes the sample.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("start-up: imports", ("_find_and_load (<frozen importlib._bootstrap>",)),
    ("httpcore pool: scan of every pooled connection, twice per request",
     ("AsyncConnectionPool._assign_requests_to_connections (",)),
    ("openai SDK: request params transform (TypedDict walk)", ("async_maybe_transform (",)),
    ("openai SDK: response processing (JSON into pydantic models; plain JSON for "
     "cast_to=object)", ("AsyncAPIClient._process_response (",)),
    ("openai SDK: building the request (options, headers, URL, JSON body)",
     ("BaseClient._build_request (", "FinalRequestOptions.construct (",
      "AsyncAPIClient._prepare_options (")),
    ("httpx/httpcore/h11/anyio: send and receive", ("AsyncClient.send (httpx",)),
    ("openai SDK: the rest of create() / post() / request()",
     ("AsyncCompletions.create (", "AsyncAPIClient.post (", "AsyncAPIClient.request (")),
    ("cai client: tenacity, budget, stats", ("Client._send (cai/client.py",)),
    ("cai sample_one: messages, seeds, record, template hashes", ("sample_one (cai/sample.py",)),
    ("cai runner: JSONL writes, progress bar, summary", ("run_stage (cai/runner.py",
                                                        "run_stage.<locals>.worker (")),
    ("baseline: its fan-out coroutine", ("fan_out.<locals>.one (",)),
    ("asyncio event loop, selector, socket transports", ("BaseEventLoop._run_once (",)),
    ("baseline: JSONL write", ("main (benchmarks/baseline_openai.py",)),
]
OTHER = "other: CLI, reading prompts, set-up, shut-down"
# A pool thread parked on its queue is waiting, not working, whatever py-spy's idle check says.
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py:81)",)


def bucket_samples(raw: Path) -> Counter[str]:
    """Samples per bucket from py-spy's raw (collapsed stacks) output."""
    counts: Counter[str] = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].strip() in IDLE_LEAVES:
            continue
        name = next((b for b, markers in BUCKETS
                     if any(m in f for f in frames for m in markers)), OTHER)
        counts[name] += int(n)
    return counts


def profile_one(py_spy: str, cmd: list[str], raw: Path, requests: int,
                env: dict[str, str]) -> dict[str, Any]:
    """Profile one contender; its CPU comes from wait4 on it alone, so py-spy's is left out."""
    started = time.perf_counter()
    target = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Attached after start, so the first fraction of a second of imports goes unsampled.
    # Not --nonblocking: reading a running target's stacks leaves a tenth of them torn.
    spy = subprocess.Popen([py_spy, "record", "--pid", str(target.pid), "--rate", "250",
                            "--format", "raw", "--output", str(raw)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(target.pid, 0)
    target.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    _, spy_err = spy.communicate(timeout=60)
    if target.returncode != 0 or not raw.exists():
        raise RuntimeError(f"profiling {' '.join(cmd)} failed: {spy_err.decode()[-2000:]}")
    ms = 1000 * (usage.ru_utime + usage.ru_stime) / requests
    counts = bucket_samples(raw)
    total = sum(counts.values())
    return {"wall_s_under_profiler": round(wall, 2), "cpu_ms_per_request": round(ms, 3),
            "samples": total,
            "buckets": {b: {"share": round(n / total, 4),
                            "ms_per_request": round(ms * n / total, 3)}
                        for b, n in counts.most_common()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--py-spy", required=True, help="path of a py-spy executable")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--raw-dir", type=Path, default=None,
                        help="keep py-spy's raw stacks here (one file per contender)")
    a = parser.parse_args()
    py = sys.executable
    report: dict[str, Any] = {"machine": machine(), "requests": a.requests,
                              "concurrency": a.concurrency, "latency_s": a.latency}
    with tempfile.TemporaryDirectory(prefix="cai-profile-") as tmp, \
            stub_server(a.latency) as (url, _pid):
        work = Path(tmp)
        prompts = work / "prompts.jsonl"
        write_prompts(prompts, a.requests)
        commands = {
            "baseline": [py, "benchmarks/baseline_openai.py", "--base-url", url, "--prompts",
                         str(prompts), "--out", str(work / "baseline.jsonl"),
                         "--concurrency", str(a.concurrency)],
            "cai": [py, "-m", "cai", "sample", "--prompts", str(prompts), "--n", "1",
                    "--model", "openai:bench", "--base-url", url, "--concurrency",
                    str(a.concurrency), "--no-cache", "--out", str(work / "cai")],
        }
        env = {"OPENAI_API_KEY": "x", "XDG_CACHE_HOME": str(work / "xdg-cache")}
        for name, cmd in commands.items():
            raw_dir = a.raw_dir or work
            raw_dir.mkdir(parents=True, exist_ok=True)
            report[name] = profile_one(a.py_spy, cmd, raw_dir / f"{name}.raw", a.requests, env)
            report[name]["command"] = shown(cmd)
            print(f"{name}: {report[name]['cpu_ms_per_request']:.2f} ms CPU/request")
            for b, v in report[name]["buckets"].items():
                print(f"  {100 * v['share']:5.1f}%  {v['ms_per_request']:6.3f} ms  {b}")
    out = ROOT / "benchmarks" / "results" / "profile.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    scale = out.parent / "scale.json"
    if scale.exists():  # the README shows both tables; refresh it with the new profile
        write_readme(json.loads(scale.read_text(encoding="utf-8")))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
