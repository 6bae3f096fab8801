"""The morning report as people read it: the plots of report.md and report.html (offline,
inline), drawn from the loop's report.json."""

from __future__ import annotations

from typing import Any

from cai.reports.render import pyplot, svg


def plots(report: dict[str, Any]) -> dict[str, Any]:
    """The report's plots as inline SVG; none before an iteration was compared."""
    its = [i for i in report["iterations"] if i["win_rate_vs_current"] is not None]
    return {"wins": wins(its), "safety": safety(report, its), "drift": drift(report, its)} \
        if its else {}


def _axes(title: str) -> tuple[Any, Any]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2.4))
    ax.set_xlabel("iteration")
    ax.set_title(title, loc="left", fontsize=9)
    return fig, ax


def _iterations(ax: Any, xs: list[int]) -> None:
    """A tick at each iteration and half a step of room each side: one iteration alone
    otherwise gets an axis of fractions around it."""
    ax.set_xticks(xs)
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)


def wins(its: list[dict[str, Any]]) -> str:
    fig, ax = _axes("candidate's win rate, judged by the evaluator")
    xs = [i["iteration"] for i in its]
    ax.plot(xs, [i["win_rate_vs_current"] for i in its], "o-", color="#3b6ea8",
            label="against the current policy")
    ax.plot(xs, [i["win_rate_vs_start"] for i in its], "s--", color="#c98b2b",
            markerfacecolor="none", markersize=9, label="against the start")  # hollow: an
    # equal rate against the current policy shows through it
    ax.axhline(0.5, color="#999999", linestyle=":", linewidth=1)
    ax.set_ylim(-0.03, 1.03)  # points at 0 and 1 drawn whole
    _iterations(ax, xs)
    ax.legend(frameon=False, fontsize=8)
    return svg(fig)


def safety(report: dict[str, Any], its: list[dict[str, Any]]) -> str:
    fig, ax = _axes("rates of the candidate (iteration 0: the start)")
    xs = [0] + [i["iteration"] for i in its]
    for key, label, colour in (("over_refusal_rate", "over-refusal", "#c0504d"),
                               ("unsafe_compliance_rate", "unsafe compliance", "#555555"),
                               ("hedge_rate", "hedged answers", "#3b6ea8")):
        ys = [report["start"].get(key)] + [i["candidate"].get(key) for i in its]
        ax.plot(xs, [y if y is not None else float("nan") for y in ys], "o-", label=label,
                color=colour)
    ax.set_ylim(-0.03, 1.03)  # points at 0 and 1 drawn whole
    _iterations(ax, xs)
    ax.legend(frameon=False, fontsize=8)
    return svg(fig)


def drift(report: dict[str, Any], its: list[dict[str, Any]]) -> str:
    fig, ax = _axes("mean answer length (words) of the candidate")
    xs = [0] + [i["iteration"] for i in its]
    ys = [report["start"].get("mean_length")] + [i["candidate"].get("mean_length") for i in its]
    ax.plot(xs, [y if y is not None else float("nan") for y in ys], "o-", color="#3b6ea8")
    known = [y for y in ys if y is not None]
    ax.set_ylim(0, 1.1 * max(known) if known and max(known) > 0 else 1)  # the top point whole
    _iterations(ax, xs)
    return svg(fig)
