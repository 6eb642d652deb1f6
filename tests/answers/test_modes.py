import pytest

from appliance.answers.modes import EXTRACTIVE, GENERATIVE, choose, summary

FIGURES = {"en": {"extractive": {"good": 0.7}, "generative": {"good": 0.8}},
           "ko": {"extractive": {"good": 0.8}, "generative": {"good": 0.1}}}


def test_auto_picks_the_better_measured_mode_per_language():
    assert summary(FIGURES) == {"ko": EXTRACTIVE, "en": GENERATIVE}


def test_a_version_nobody_measured_answers_extractively():
    assert summary(None) == {"ko": EXTRACTIVE, "en": EXTRACTIVE}
    assert choose("auto", "en", {"en": {"extractive": {"good": 0.5}}}) == EXTRACTIVE


def test_a_fixed_mode_is_kept_and_a_wrong_one_refused():
    assert choose("generative", "ko", FIGURES) == GENERATIVE
    with pytest.raises(ValueError, match="answers.mode must be one of"):
        choose("creative", "ko", FIGURES)
