"""`cai constitution diff`'s report.md and report.html, drawn from its report.json with the
evaluation reports' renderer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from cai.evals.report import pyplot, render, svg

LABELS = {"over_refusal_rate": "over-refusal", "unsafe_compliance_rate": "unsafe compliance",
          "false_premise_agreement_rate": "false-premise agreement",
          "hedge_rate": "hedged answers", "boilerplate_rate": "boilerplate"}


def marked(diff: str) -> Markup:
    """A word diff's [-removed-] and {+added+} as <del> and <ins>, the text escaped."""
    text = str(escape(diff))
    text = re.sub(r"\[-(.*?)-\]", r"<del>\1</del>", text)
    return Markup(re.sub(r"\{\+(.*?)\+\}", r"<ins>\1</ins>", text))


def write_views(out: Path, report: dict[str, Any]) -> None:
    plots = {"detectors": detectors(report),
             "all_zero": not any(report["detectors"][k][side] for k in LABELS
                                 for side in ("old", "new"))}
    (out / "report.md").write_text(render("constitution_diff.md.j2", r=report, labels=LABELS)
                                   + "\n", encoding="utf-8")
    (out / "report.html").write_text(render("constitution_diff.html.j2", r=report,
                                            labels=LABELS, plots=plots, marked=marked),
                                     encoding="utf-8")


def detectors(report: dict[str, Any]) -> str:
    """The detectors' rates under the old and the new constitution, side by side."""
    plt = pyplot()
    names = [k for k in LABELS if report["detectors"][k]["old"] is not None]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(names) + 1.2))
    ys = range(len(names))
    ax.barh([y - 0.2 for y in ys], [report["detectors"][k]["old"] for k in names], 0.4,
            label="old", color="#c98b2b")
    ax.barh([y + 0.2 for y in ys], [report["detectors"][k]["new"] for k in names], 0.4,
            label="new", color="#3b6ea8")
    ax.set_yticks(list(ys), [LABELS[k] for k in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of final answers")
    ax.invert_yaxis()
    ax.legend(frameon=False, loc="lower right")
    return svg(fig)
