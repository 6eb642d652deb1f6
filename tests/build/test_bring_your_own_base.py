"""Bring your own base through the recipe's [base] section: a local Hugging Face folder (with a
GGUF of its vocabulary) or a GGUF, each checked for tokenizer and logits parity."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import manifest
from appliance_build.errors import BuildError


@pytest.fixture(scope="module")
def vocabulary() -> Path:
    from appliance.engine.model import bundled_model_path

    return bundled_model_path()


@pytest.fixture(scope="module")
def hf_base(vocabulary, tmp_path_factory) -> Path:
    """A vendor's base as a Hugging Face folder: a tiny random llama with the vocabulary (and the
    tokenizer, converted by transformers) of the bundled GGUF."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from appliance_build.basemodel import TINY_DEFAULTS
    from appliance_build.training_data import Encoder

    encoder = Encoder(vocabulary)
    n_vocab = encoder.n_vocab
    encoder.close()
    folder = tmp_path_factory.mktemp("vendor") / "tiny-vendor-llama"
    torch.manual_seed(3)
    LlamaForCausalLM(LlamaConfig(vocab_size=n_vocab, tie_word_embeddings=True, rope_theta=100000.0, rms_norm_eps=1e-5,
                                 bos_token_id=1, eos_token_id=2, pad_token_id=2, **TINY_DEFAULTS)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(vocabulary.parent), gguf_file=vocabulary.name).save_pretrained(folder)
    return folder


def run(overrides: dict, tmp_path: Path, only: str | None = None):
    from appliance_build.pipeline import Pipeline
    from appliance_build.recipe import Recipe

    recipe = Recipe.load("grounded", overrides=overrides)
    return Pipeline(recipe, cache_dir=tmp_path / "cache", models_dir=tmp_path / "models").run(only=only)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_hugging_face_folder_base_is_checked_fine_tuned_and_shipped(grounded_overrides, hf_base, vocabulary,
                                                                       tmp_path):
    overrides = grounded_overrides | {"base": {"model": str(hf_base), "tokenizer_gguf": str(vocabulary)}}
    outputs = run(overrides, tmp_path)

    checks = outputs["base"].summary["checks"]
    assert checks["tokenizer"] == {"checked": True, "probes": 6, "mismatches": 0}
    assert checks["vocabulary"]["embedding_rows"] == checks["vocabulary"]["tokenizer_tokens"]
    export = outputs["export"].summary
    assert export["tokenizer"]["identical"] and export["logits"]["within_tolerance"]
    packaged = manifest.verify(Path(outputs["package"].summary["folder"]))
    assert packaged.lineage["base_model"] == str(hf_base)
    assert set(packaged.answer_figures) == {"en", "ko"}


def test_a_hugging_face_base_with_another_tokenizer_is_refused(grounded_overrides, hf_base, vocabulary, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    from appliance_build.basemodel import bundled_embedder

    other = tmp_path / "other-vocabulary"
    shutil.copytree(hf_base, other)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
        (other / name).unlink(missing_ok=True)
    AutoTokenizer.from_pretrained(str(bundled_embedder())).save_pretrained(other)  # a BERT word-piece vocabulary
    overrides = grounded_overrides | {"base": {"model": str(other), "tokenizer_gguf": str(vocabulary)}}
    with pytest.raises(BuildError, match="tokenize differently.*base.tokenizer_gguf"):
        run(overrides, tmp_path, only="base")


def test_a_gguf_base_is_imported_with_its_own_logits(grounded_overrides, hf_base, vocabulary, tmp_path):
    from appliance_build.gguf_export import export_gguf

    gguf = tmp_path / "vendor-f16.gguf"
    export_gguf(hf_base, vocabulary, gguf, name="tiny-vendor")
    outputs = run(grounded_overrides | {"base": {"model": str(gguf)}}, tmp_path, only="base")

    base = outputs["base"].summary
    assert base["source_gguf"] == str(gguf) and base["tokenizer_gguf"] == str(gguf)
    logits = base["checks"]["logits"]
    assert logits["within_tolerance"] and logits["top1_agreement"] > 0.99
