"""The `quickstart` recipe: no torch stages; the base GGUF is re-encoded and served as is."""

from __future__ import annotations

from pathlib import Path

from appliance import manifest


def test_quickstart_reencodes_the_base_and_packages_it(corpus_overrides, tmp_path):
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    overrides = corpus_overrides | {"evaluate": {"qa_samples": 1, "max_new_tokens": 4,
                                                       "perplexity_samples": 4}}
    recipe = Recipe.load("quickstart", overrides=overrides)
    outputs = Pipeline(recipe, cache_dir=tmp_path / "cache", models_dir=tmp_path / "models").run()

    assert not {"augment", "base", "finetune", "prune"} & set(outputs)
    export = outputs["export"].summary
    assert export["source"].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert export["tokenizer"]["identical"] and "logits" not in export
    version = Path(outputs["package"].summary["folder"])
    gguf = manifest.file_path(version, "gguf")
    assert gguf.name == "erp-smollm2-quickstart-q8_0.gguf"
    with gguf.open("rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert manifest.read(version).lineage["embedder_quantization"] == "dynamic"
