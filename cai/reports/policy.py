"""`cai eval policy`'s report.md and report.html: the plots drawn from its report.json."""

from __future__ import annotations

from typing import Any

from cai.reports.render import pyplot, svg


def plots(report: dict[str, Any]) -> dict[str, Any]:
    """The report's plots as inline SVG, and whether the refusal bars are all empty."""
    ref = report.get("reference")
    return {"refusal": refusal_by_category(report),
            "refusal_empty": not _refused(report) and not (ref and _refused(ref)),
            "lengths": length_distributions(report),
            "win": win_rate(report) if report.get("win_rate") is not None else None}


def _refused(figures: dict[str, Any]) -> int:
    return int(figures["refusals"]["partial"] + figures["refusals"]["full"])


def refusal_by_category(report: dict[str, Any]) -> str:
    """Share of answers refused (in full or part) per category, policy beside reference."""
    plt = pyplot()
    cats = list(report["by_category"])
    def share(block: dict[str, Any] | None, c: str) -> float:
        row = (block or {}).get(c)
        if not row or not row["n"]:
            return 0.0
        return (row["refusals"]["partial"] + row["refusals"]["full"]) / row["n"]
    fig, ax = plt.subplots(figsize=(6.5, 0.28 * len(cats) + 1.2))
    ys = range(len(cats))
    ax.barh([y + 0.2 for y in ys], [share(report["by_category"], c) for c in cats], 0.4,
            label="policy", color="#3b6ea8")
    if report.get("reference"):
        ref = report["reference"]["by_category"]
        ax.barh([y - 0.2 for y in ys], [share(ref, c) for c in cats], 0.4,
                label="reference", color="#c98b2b")
    ax.set_yticks(list(ys), [_label(c) for c in cats])
    ax.set_xlim(0, 1)
    ax.set_xlabel("answers refused, in full or part")
    ax.invert_yaxis()
    ax.legend(loc="lower right", frameon=False)
    return svg(fig)


def _label(category: str, width: int = 40) -> str:
    """A category as one line a tick label can hold: a line break in a suite's category
    would draw over its neighbour's label."""
    text = " ".join(category.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def length_distributions(report: dict[str, Any]) -> str:
    plt = pyplot()
    h = report["length_histogram"]
    labels = [f"{lo}+" if i == len(h["bins"]) - 1 else f"{lo}-{h['bins'][i + 1]}"
              for i, lo in enumerate(h["bins"])]
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], h["policy"], 0.4, label="policy", color="#3b6ea8")
    if h.get("reference"):
        ax.bar([x + 0.2 for x in xs], h["reference"], 0.4, label="reference", color="#c98b2b")
    ax.set_xticks(list(xs), labels, rotation=45)
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("answers")
    ax.legend(frameon=False)
    return svg(fig)


def win_rate(report: dict[str, Any]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 1.5))
    rate, (lo, hi) = report["win_rate"], report.get("win_rate_ci95") or (None, None)
    if lo is None or hi is None:
        ax.plot([rate], [1], "o", color="#3b6ea8")
    else:
        ax.errorbar([rate], [1], xerr=[[rate - lo], [hi - rate]], fmt="o", color="#3b6ea8",
                    capsize=4)
    controlled = report.get("win_rate_length_controlled")
    if controlled is None:
        ax.text(0.01, 0, "length-controlled: not measured", va="center", color="#666666")
    else:
        ax.plot([controlled], [0], "D", color="#555555")
    ax.axvline(0.5, color="#999999", linestyle="--", linewidth=1)
    ax.set_yticks([0, 1], ["length-controlled", "win rate (95% CI)"])
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlabel("P(policy better than reference)")
    return svg(fig)
