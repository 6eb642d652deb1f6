"""Which way each answer is made: quoted from the evidence, or written by the model and verified.

`answers.mode = "auto"` answers each language in the mode that scored better on the golden set
for the serving model version (measured by the validation gate and stored with the version); a
version nobody measured yet answers extractively, which needs no model at all.
"""

from __future__ import annotations

from collections.abc import Mapping

EXTRACTIVE, GENERATIVE, AUTO = "extractive", "generative", "auto"
MODES = (AUTO, EXTRACTIVE, GENERATIVE)
LANGUAGES = ("ko", "en")

# How a response says it was made (the `answer_mode` extension field).
GENERATED, GENERATED_WITH_REMOVALS = "generated", "generated_with_removals"


def choose(setting: str, language: str, figures: Mapping | None) -> str:
    """The mode for a question in `language` ("ko" or "en"), given the version's golden figures
    ({"ko": {"extractive": {"good": 0.8, ...}, "generative": {...}}, "en": ...})."""
    if setting in (EXTRACTIVE, GENERATIVE):
        return setting
    if setting != AUTO:
        raise ValueError(f"answers.mode must be one of {', '.join(MODES)}, not {setting!r}")
    per_mode = (figures or {}).get(language) or {}
    generative = _good(per_mode.get(GENERATIVE))
    extractive = _good(per_mode.get(EXTRACTIVE))
    if generative is not None and extractive is not None and generative > extractive:
        return GENERATIVE
    return EXTRACTIVE


def _good(figure) -> float | None:
    if isinstance(figure, Mapping):
        figure = figure.get("good")
    return float(figure) if isinstance(figure, (int, float)) else None


def summary(figures: Mapping | None, setting: str = AUTO) -> dict[str, str]:
    """The mode each language gets, for status pages and the admin console."""
    return {language: choose(setting, language, figures) for language in LANGUAGES}
