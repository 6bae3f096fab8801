"""`cai constitution diff`'s report.md and report.html: the plots, labels and word-diff
marks they draw from its report.json."""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup, escape

from cai.reports.render import pyplot, svg

LABELS = {"over_refusal_rate": "over-refusal", "unsafe_compliance_rate": "unsafe compliance",
          "false_premise_agreement_rate": "false-premise agreement",
          "hedge_rate": "hedged answers", "boilerplate_rate": "boilerplate"}


def marked(diff: str) -> Markup:
    """A word diff's [-removed-] and {+added+} as <del> and <ins>, the text escaped."""
    text = str(escape(diff))
    text = re.sub(r"\[-(.*?)-\]", r"<del>\1</del>", text)
    return Markup(re.sub(r"\{\+(.*?)\+\}", r"<ins>\1</ins>", text))


def plots(report: dict[str, Any]) -> dict[str, Any]:
    """The detectors' plot as inline SVG, and whether all its bars are empty."""
    return {"detectors": detectors(report),
            "all_zero": not any(report["detectors"][k][side] for k in LABELS
                                for side in ("old", "new"))}


def detectors(report: dict[str, Any]) -> str:
    """The detectors' rates under the old and the new constitution, side by side; a rate that
    was not measured (no prompt of its kind among those given) is drawn as missing, and said."""
    plt = pyplot()
    names = list(LABELS)
    rates = report["detectors"]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(names) + 1.2))
    ys = range(len(names))
    for side, shift, colour in (("old", -0.2, "#c98b2b"), ("new", 0.2, "#3b6ea8")):
        values = [rates[k][side] for k in names]
        ax.barh([y + shift for y in ys], [v or 0 for v in values], 0.4, label=side,
                color=colour)
        for y, v in zip(ys, values, strict=True):
            if v is None:
                ax.text(0.005, y + shift, "not measured", va="center", fontsize=7,
                        color="#666666")
    ax.set_yticks(list(ys), [LABELS[k] for k in names])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of final answers")
    missing = [LABELS[k] for k in names if rates[k]["old"] is None or rates[k]["new"] is None]
    if missing:
        ax.set_title(f"not measured: {', '.join(missing)} (no prompt of that kind among "
                     "those given)", fontsize=8, loc="left", color="#666666")
    ax.invert_yaxis()
    ax.legend(frameon=False, loc="lower right")
    return svg(fig)
