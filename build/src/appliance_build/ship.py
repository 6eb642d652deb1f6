"""The ship rule: a built model answers generatively only in the languages where its verified
answers beat quoting the evidence on held-out items; a model that beats it nowhere is still
packaged, for the record, but marked extractive only."""

from __future__ import annotations

from typing import Any

from appliance.answers.modes import AUTO, EXTRACTIVE, GENERATIVE, choose


def ship_decision(figures: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """`figures`: {lang: {"extractive": summary, "generative": summary}} (manifest.answer_figures).
    The modes are the ones `answers.mode = "auto"` picks from these figures."""
    modes = {lang: choose(AUTO, lang, figures) for lang in figures}
    reasons = {}
    for lang, per_mode in figures.items():
        generative, extractive = per_mode.get(GENERATIVE, {}), per_mode.get(EXTRACTIVE, {})
        reasons[lang] = (f"verified generative good {generative.get('good', 0):.3f} vs extractive "
                         f"{extractive.get('good', 0):.3f} on {generative.get('n', 0)} held-out items, "
                         f"{generative.get('invented', 0)} invented numbers or codes")
    return {"modes": modes, "extractive_only": bool(figures) and all(m == EXTRACTIVE for m in modes.values()),
            "measured": bool(figures), "reasons": reasons}
