"""Side-by-side benchmarks of cai against plain baselines, timed as whole processes.

    .venv/bin/python -m benchmarks.run                 # all three scenarios, two rounds each
    .venv/bin/python -m benchmarks.run --only cpu --repeats 1

Scenarios (issue 4, "Benchmarks"):
- latency: the stub server at 0.5 s latency, 1,280 requests at concurrency 64;
- cpu: the stub at 0.1 s latency, 2,000 requests at concurrency 256;
- local: the embedded model through `cai sample` against llama-cpp-python called directly.

Each contender is a separate process, timed with `time.perf_counter` around `subprocess.run`
(start-up included); its CPU is the RUSAGE_CHILDREN delta over that call. The stub server runs
in its own process, started once per scenario and reaped only after it, so its CPU never lands
in a client's delta; it is read from /proc and reported apart. The machine is shared, so the
contenders run back to back, in ABBA order over two rounds, to spread drift over both.

Results go to benchmarks/results/scale.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.report import write_readme

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")

HTTP_SCENARIOS = {
    "latency": {"latency": 0.5, "requests": 1280, "concurrency": 64},
    "cpu": {"latency": 0.1, "requests": 2000, "concurrency": 256},
}
LOCAL_PROMPTS = "examples/prompts.jsonl"


# ---------------------------------------------------------------- the machine and the clock


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", "cai"], cwd=ROOT,
                             capture_output=True, text=True).stdout.splitlines()
    return {"nproc": int(nproc or os.cpu_count() or 0), "cpu_model": model,
            "git_commit": commit, "cai_files_changed_since_commit": len(changed),
            "cai_source_sha256": source_hash(),
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def source_hash() -> str:
    """A hash of every Python file under cai/ as it is on disk, committed or not: the code
    that was measured, even while someone edits the working tree."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "cai").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one whole process; its wall time and the CPU it (and only it) used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": round(wall, 3),
            "cpu_user_s": round(after.ru_utime - before.ru_utime, 3),
            "cpu_sys_s": round(after.ru_stime - before.ru_stime, 3),
            "load_average_1m_before": round(load, 2), "stdout": proc.stdout}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user+sys) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def stub_server(latency: float) -> Iterator[tuple[str, int]]:
    """`python -m tests.stubs.stub_server` in its own process; yields its URL and pid."""
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "tests.stubs.stub_server", "--port", str(port),
                             "--latency", str(latency)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the stub server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def order(round_no: int, names: list[str]) -> list[str]:
    """ABBA: alternate which contender goes first, so drift in the machine's load is shared."""
    return names if round_no % 2 == 0 else names[::-1]


def count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


# ---------------------------------------------------------------- scenarios 1 and 2: HTTP


def write_prompts(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i:05d}", "prompt": f"Question {i}: in one sentence, "
                                "why is the sky blue at noon?"}) + "\n")


def http_commands(url: str, prompts: Path, out: Path, concurrency: int) -> dict[str, list[str]]:
    return {
        "baseline": [PY, "benchmarks/baseline_openai.py", "--base-url", url, "--prompts",
                     str(prompts), "--out", str(out / "baseline.jsonl"),
                     "--concurrency", str(concurrency)],
        "cai": [PY, "-m", "cai", "sample", "--prompts", str(prompts), "--n", "1",
                "--model", "openai:bench", "--base-url", url, "--concurrency",
                str(concurrency), "--no-cache", "--out", str(out / "cai")],
    }


def http_run(name: str, cmd: list[str], out: Path, stub_pid: int, requests: int,
             ideal: float, env: dict[str, str]) -> dict[str, Any]:
    stub_before = proc_cpu(stub_pid)
    t = timed(cmd, env)
    stub_cpu = proc_cpu(stub_pid) - stub_before
    if name == "baseline":
        written = count_lines(out / "baseline.jsonl")
        in_process = json.loads(t["stdout"])["in_process_seconds"]
    else:
        summary = json.loads((out / "cai" / "summary.json").read_text())
        written = count_lines(out / "cai" / "responses.jsonl")
        in_process = summary["wall_seconds"]  # the stage alone, after imports and set-up
        if summary["done"] != requests or summary["failed"]:
            raise RuntimeError(f"cai did {summary['done']} of {requests}: {summary}")
    if written != requests:
        raise RuntimeError(f"{name} wrote {written} records, not {requests}")
    cpu = t["cpu_user_s"] + t["cpu_sys_s"]
    return {"contender": name, "wall_s": t["wall_s"],
            "throughput_rps": round(requests / t["wall_s"], 1),
            "fraction_of_ideal": round(requests / t["wall_s"] / ideal, 3),
            "in_process_s": in_process,
            "in_process_fraction_of_ideal": round(requests / in_process / ideal, 3),
            "client_cpu_user_s": t["cpu_user_s"], "client_cpu_sys_s": t["cpu_sys_s"],
            "client_cpu_ms_per_request": round(1000 * cpu / requests, 3),
            "stub_cpu_ms_per_request": round(1000 * stub_cpu / requests, 3),
            "load_average_1m_before": t["load_average_1m_before"], "records": written}


def http_scenario(key: str, repeats: int, work: Path) -> dict[str, Any]:
    spec = HTTP_SCENARIOS[key]
    requests, concurrency, latency = spec["requests"], spec["concurrency"], spec["latency"]
    ideal = concurrency / latency
    prompts = work / f"{key}-prompts.jsonl"
    write_prompts(prompts, int(requests))
    runs: list[dict[str, Any]] = []
    env = {"OPENAI_API_KEY": "x", "XDG_CACHE_HOME": str(work / "xdg-cache")}
    with stub_server(latency) as (url, stub_pid):
        commands = {}
        for r in range(repeats):
            for name in order(r, ["baseline", "cai"]):
                out = work / f"{key}-{name}-{r}"
                out.mkdir()
                cmd = http_commands(url, prompts, out, int(concurrency))[name]
                commands[name] = cmd
                run = http_run(name, cmd, out, stub_pid, int(requests), ideal, env)
                runs.append({"round": r + 1, **run})
                print(f"  {key} round {r + 1} {name:8s} {run['throughput_rps']:7.1f} req/s "
                      f"{run['client_cpu_ms_per_request']:6.2f} ms CPU/req", flush=True)
    return {"requests": requests, "concurrency": concurrency, "latency_s": latency,
            "ideal_rps": ideal, "runs": runs,
            "summary": http_summary(runs), "commands": {k: shown(v) for k, v in commands.items()}}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def http_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by = {n: [r for r in runs if r["contender"] == n] for n in ("baseline", "cai")}
    out: dict[str, Any] = {}
    for name, rs in by.items():
        out[name] = {f"mean_{k}": round(mean([r[k] for r in rs]), 3) for k in
                     ("throughput_rps", "fraction_of_ideal", "in_process_fraction_of_ideal",
                      "client_cpu_ms_per_request", "stub_cpu_ms_per_request")}
    rounds = sorted({r["round"] for r in runs})
    out["throughput_ratio_cai_over_baseline"] = {
        f"round_{n}": round(next(r for r in by["cai"] if r["round"] == n)["throughput_rps"]
                            / next(r for r in by["baseline"] if r["round"] == n)
                            ["throughput_rps"], 3) for n in rounds}
    out["throughput_ratio_of_means"] = round(out["cai"]["mean_throughput_rps"]
                                             / out["baseline"]["mean_throughput_rps"], 3)
    out["cpu_per_request_ratio_of_means"] = round(
        out["cai"]["mean_client_cpu_ms_per_request"]
        / out["baseline"]["mean_client_cpu_ms_per_request"], 3)
    return out


# ---------------------------------------------------------------- scenario 3: embedded model


def local_scenario(repeats: int, work: Path, limit: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    commands = {
        "direct": [PY, "benchmarks/direct_llama.py", "--prompts", LOCAL_PROMPTS, "--limit",
                   str(limit), "--out", "{out}/direct.jsonl"],
        "cai": [PY, "-m", "cai", "sample", "--prompts", LOCAL_PROMPTS, "--limit",
                str(limit), "--model", "local", "--n", "1", "--no-cache",
                "--out", "{out}/cai"],
    }
    env = {"XDG_CACHE_HOME": str(work / "xdg-cache")}
    texts: dict[str, dict[str, str]] = {}
    for r in range(repeats):
        for name in order(r, ["direct", "cai"]):
            out = work / f"local-{name}-{r}"
            out.mkdir()
            t = timed([a.replace("{out}", str(out)) for a in commands[name]], env)
            if name == "direct":
                info = json.loads(t["stdout"])
                tokens, in_process = info["completion_tokens"], info["generate_seconds"]
                answers = [json.loads(x) for x in (out / "direct.jsonl").read_text().splitlines()]
                texts[f"direct-{r}"] = {a["id"]: a["response"] for a in answers}
            else:
                summary = json.loads((out / "cai" / "summary.json").read_text())
                tokens, in_process = summary["tokens_out"], summary["wall_seconds"]
                records = [json.loads(x) for x in
                           (out / "cai" / "responses.jsonl").read_text().splitlines()]
                texts[f"cai-{r}"] = {a["id"]: a["responses"][0] for a in records}
            run = {"round": r + 1, "contender": name, "completion_tokens": tokens,
                   "wall_s": t["wall_s"],
                   "tokens_per_s_whole_process": round(tokens / t["wall_s"], 2),
                   "in_process_s": in_process,
                   "tokens_per_s_in_process": round(tokens / in_process, 2),
                   "client_cpu_s": round(t["cpu_user_s"] + t["cpu_sys_s"], 3),
                   "load_average_1m_before": t["load_average_1m_before"]}
            runs.append(run)
            print(f"  local round {r + 1} {name:8s} {run['tokens_per_s_whole_process']:7.1f} "
                  f"tok/s whole, {run['tokens_per_s_in_process']:7.1f} in process", flush=True)
    return {"prompts": LOCAL_PROMPTS, "limit": limit, "runs": runs,
            "summary": local_summary(runs, texts, limit),
            "commands": {k: shown(v) for k, v in commands.items()}}


def local_summary(runs: list[dict[str, Any]], texts: dict[str, dict[str, str]],
                  limit: int) -> dict[str, Any]:
    rounds = sorted({r["round"] for r in runs})
    pick = {(r["round"], r["contender"]): r for r in runs}
    ratios = {}
    for n in rounds:
        cai, direct = pick[(n, "cai")], pick[(n, "direct")]
        ratios[f"round_{n}"] = {
            "cai_whole_over_direct_generation_loop": round(
                cai["tokens_per_s_whole_process"] / direct["tokens_per_s_in_process"], 3),
            "cai_whole_over_direct_whole": round(
                cai["tokens_per_s_whole_process"] / direct["tokens_per_s_whole_process"], 3),
            "cai_stage_over_direct_generation_loop": round(
                cai["tokens_per_s_in_process"] / direct["tokens_per_s_in_process"], 3),
        }
    same = [sum(texts[f"cai-{n - 1}"][i] == t for i, t in texts[f"direct-{n - 1}"].items())
            for n in rounds]
    return {"ratios": ratios, "identical_answers_per_round": same,
            "answers_per_round": limit}


# ---------------------------------------------------------------- the whole run


def shown(cmd: list[str]) -> str:
    """A command as a reader would type it from the repository root."""
    return " ".join("python" if a == PY else a for a in cmd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["latency", "cpu", "local"], action="append",
                        help="run just this scenario (repeatable); default: all three")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per scenario")
    parser.add_argument("--local-prompts", type=int, default=6,
                        help="prompts for the embedded-model scenario")
    parser.add_argument("--out", type=Path, default=RESULTS)
    a = parser.parse_args()
    chosen = a.only or ["latency", "cpu", "local"]
    results: dict[str, Any] = {"machine": machine(), "repeats": a.repeats, "scenarios": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cai-bench-") as tmp:
        work = Path(tmp)
        # Warm the page cache so the first timed process does not pay for cold imports alone.
        subprocess.run([PY, "-c", "import openai, cai.cli, cai.stages.sample"], cwd=ROOT,
                       check=True)
        for key in chosen:
            print(f"{key}:", flush=True)
            if key == "local":
                results["scenarios"][key] = local_scenario(a.repeats, work, a.local_prompts)
            else:
                results["scenarios"][key] = http_scenario(key, a.repeats, work)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if a.out == RESULTS:
        write_readme(results)
    print(f"wrote {a.out} in {results['total_seconds']} s")


if __name__ == "__main__":
    main()
