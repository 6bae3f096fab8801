"""The results table in benchmarks/README.md, rendered from results/scale.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def http_rows(key: str, s: dict[str, Any]) -> list[str]:
    rows = []
    for r in s["runs"]:
        rows.append(
            f"| {key} | {r['round']} | {r['contender']} | {r['wall_s']:.2f} | "
            f"{r['throughput_rps']:.1f} | {r['fraction_of_ideal']:.3f} | "
            f"{r['in_process_fraction_of_ideal']:.3f} | {r['client_cpu_ms_per_request']:.2f} | "
            f"{r['stub_cpu_ms_per_request']:.2f} | {r['load_average_1m_before']:.1f} |")
    return rows


def local_rows(s: dict[str, Any]) -> list[str]:
    return [f"| {r['round']} | {r['contender']} | {r['completion_tokens']} | {r['wall_s']:.2f} | "
            f"{r['tokens_per_s_whole_process']:.1f} | {r['in_process_s']:.2f} | "
            f"{r['tokens_per_s_in_process']:.1f} | {r['client_cpu_s']:.1f} | "
            f"{r['load_average_1m_before']:.1f} |" for r in s["runs"]]


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"Measured {m['date']} on {m['nproc']} CPUs ({m['cpu_model']}), Python "
             f"{m['python']}, {m['platform']}, cai at {m['git_commit']} (files under cai/ changed "
             f"since: {m['cai_files_changed_since_commit']}; source hash "
             f"{m['cai_source_sha256']}); load averages (1, 5, 15 min) "
             f"{m['load_average_at_start']} at the start and {m['load_average_at_end']} at the "
             f"end (the machine is shared). Whole run: {results['total_seconds']} s.",
             ""]
    http = {k: v for k, v in results["scenarios"].items() if k != "local"}
    if http:
        lines += ["| scenario | round | contender | wall s | req/s | of ideal | of ideal in "
                  "process | client CPU ms/req | stub CPU ms/req | load 1m |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for key, s in http.items():
            lines += http_rows(f"{key} ({s['requests']} req, c={s['concurrency']}, "
                               f"{s['latency_s']} s)", s)
        lines.append("")
        for key, s in http.items():
            sm = s["summary"]
            per_round = ", ".join(f"{v:.2f}" for v in
                                  sm["throughput_ratio_cai_over_baseline"].values())
            lines.append(f"- {key}: cai/baseline throughput {per_round} by round "
                         f"({sm['throughput_ratio_of_means']:.2f} of means); client CPU per "
                         f"request cai/baseline {sm['cpu_per_request_ratio_of_means']:.2f}.")
        lines.append("")
    if "local" in results["scenarios"]:
        s = results["scenarios"]["local"]
        lines += ["| local round | contender | tokens | wall s | tok/s whole process | "
                  "in-process s | tok/s in process | CPU s | load 1m |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += local_rows(s)
        lines.append("")
        for n, ratios in s["summary"]["ratios"].items():
            lines.append(f"- local {n.replace('_', ' ')}: cai whole process / direct generation "
                         f"loop {ratios['cai_whole_over_direct_generation_loop']:.2f}; whole / "
                         f"whole {ratios['cai_whole_over_direct_whole']:.2f}; cai stage / direct "
                         f"loop {ratios['cai_stage_over_direct_generation_loop']:.2f}.")
        same = s["summary"]["identical_answers_per_round"]
        lines.append(f"- identical answers, cai vs direct: {same} of "
                     f"{s['summary']['answers_per_round']} per round.")
    return "\n".join(lines)


def profile_table(profile: dict[str, Any]) -> str:
    """Client CPU per request by bucket, baseline beside cai, from results/profile.json."""
    m = profile["machine"]
    names = list(dict.fromkeys([*profile["cai"]["buckets"], *profile["baseline"]["buckets"]]))
    lines = [f"Where the client CPU goes ({profile['requests']} requests, concurrency "
             f"{profile['concurrency']}, {profile['latency_s']} s latency; py-spy, {m['date']}, "
             f"cai at {m['git_commit']}, source hash {m.get('cai_source_sha256', '?')}). "
             "Milliseconds split each contender's own CPU, measured under the profiler, which "
             "inflates it; the shares are the finding.", "",
             "| bucket | baseline share | baseline ms/req | cai share | cai ms/req |",
             "|---|---|---|---|---|"]
    for name in names:
        b = profile["baseline"]["buckets"].get(name, {"share": 0.0, "ms_per_request": 0.0})
        c = profile["cai"]["buckets"].get(name, {"share": 0.0, "ms_per_request": 0.0})
        lines.append(f"| {name} | {100 * b['share']:.1f}% | {b['ms_per_request']:.3f} | "
                     f"{100 * c['share']:.1f}% | {c['ms_per_request']:.3f} |")
    lines.append(f"| total | | {profile['baseline']['cpu_ms_per_request']:.2f} | | "
                 f"{profile['cai']['cpu_ms_per_request']:.2f} |")
    return "\n".join(lines)


def write_readme(results: dict[str, Any]) -> None:
    """Replace the table between the markers in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    body = table(results)
    profile = README.parent / "results" / "profile.json"
    if profile.exists():
        body += "\n\n" + profile_table(json.loads(profile.read_text(encoding="utf-8")))
    README.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    write_readme(json.loads((README.parent / "results" / "scale.json").read_text()))
