"""The `smoke` recipe on the real base model (SmolLM2-135M from its GGUF) on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance import manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_smoke_recipe_improves_on_the_base(tmp_path):
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    # Fewer steps than the recipe's 16 keep CI under ~10 minutes on 2 cores; the benchmark runs it whole.
    overrides: dict = {"finetune": {"max_steps": 6, "eval_steps": 6, "save_steps": 6},
                       "embedder_adapt": {"max_steps": 4},
                       "export": {"compare_types": ["f16"]}}
    if not (REPO / "appliance/data/sample_kb/docs").is_dir():
        overrides["data"] = {"require_docs": False}  # the KB documents ship with the runtime package
    recipe = Recipe.load("smoke", overrides=overrides)
    outputs = Pipeline(recipe, cache_dir=tmp_path / "cache", models_dir=tmp_path / "models").run()

    tuned = outputs["finetune"].summary
    assert tuned["eval_loss"] < tuned["base_eval_loss"]
    export = outputs["export"].summary
    assert export["tokenizer"]["identical"] and export["logits"]["within_tolerance"]
    report = json.loads((outputs["evaluate"].path / "report.json").read_text())
    assert abs(report["comparisons"]["q8_0_vs_f16_perplexity_delta"]) < 0.01
    adaptation = report["embedder_adaptation"]
    assert adaptation["kept"] in ("base", "adapted") and adaptation["training"]["steps"] == 4
    assert "eval pairs" in adaptation["recall"]["base"] and "eval pairs" in adaptation["recall"]["adapted"]
    assert manifest.verify(Path(outputs["package"].summary["folder"])).lineage["embedder_source"] == adaptation["kept"]
