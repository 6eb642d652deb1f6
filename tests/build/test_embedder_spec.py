"""What `appliance-build embedder --from` reads from a sentence-transformers folder's own
configuration (the export itself is tested with the runtime, in tests/knowledge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance_build.embedder import sentence_transformers_spec
from appliance_build.errors import BuildError

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
NORMALIZE = {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
DENSE = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}


def model_folder(root: Path, *, modules=(TRANSFORMER, POOLING, NORMALIZE), pooling=None,
                 prompts=None, similarity=None, max_seq_length=512, name="multilingual-e5-small") -> Path:
    folder = root / name
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 384}))
    (folder / "modules.json").write_text(json.dumps(list(modules)))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, **(pooling or {"pooling_mode_mean_tokens": True})}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    config = {"prompts": prompts or {}, **({"similarity_fn_name": similarity} if similarity else {})}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))
    return folder


def test_an_e5_style_folder_gives_its_prompts_pooling_and_length(tmp_path):
    spec = sentence_transformers_spec(model_folder(
        tmp_path, prompts={"query": "query: ", "passage": "passage: "}))
    assert spec == {"name": "multilingual-e5-small", "pooling": "mean", "normalize": True,
                    "max_length": 512, "query_prefix": "query: ", "passage_prefix": "passage: "}


@pytest.mark.parametrize("flag, pooling", [("pooling_mode_cls_token", "cls"),
                                           ("pooling_mode_lasttoken", "last"),
                                           ("pooling_mode_max_tokens", "max")])
def test_pooling_comes_from_the_pooling_module(tmp_path, flag, pooling):
    spec = sentence_transformers_spec(model_folder(tmp_path, pooling={flag: True}))
    assert spec["pooling"] == pooling


def test_a_document_prompt_is_the_passage_prefix_and_flags_beat_the_folder(tmp_path):
    folder = model_folder(tmp_path, prompts={"query": "Represent this question: ", "document": ""})
    assert sentence_transformers_spec(folder)["passage_prefix"] == ""
    spec = sentence_transformers_spec(folder, {"query_prefix": "query: ", "passage_prefix": "passage: "})
    assert (spec["query_prefix"], spec["passage_prefix"]) == ("query: ", "passage: ")


def test_vectors_stay_unnormalised_only_for_a_dot_product_model(tmp_path):
    dot = model_folder(tmp_path, modules=(TRANSFORMER, POOLING), similarity="dot", name="dot")
    cosine = model_folder(tmp_path, modules=(TRANSFORMER, POOLING), name="cosine")
    assert sentence_transformers_spec(dot)["normalize"] is False
    assert sentence_transformers_spec(cosine)["normalize"] is True


def test_a_module_the_export_would_drop_is_refused(tmp_path):
    with pytest.raises(BuildError, match="Dense"):
        sentence_transformers_spec(model_folder(tmp_path, modules=(TRANSFORMER, POOLING, DENSE)))


def test_pooling_the_appliance_cannot_do_is_refused_unless_a_flag_names_one(tmp_path):
    folder = model_folder(tmp_path, pooling={"pooling_mode_mean_sqrt_len_tokens": True})
    with pytest.raises(BuildError, match="--pooling"):
        sentence_transformers_spec(folder)
    assert sentence_transformers_spec(folder, {"pooling": "mean"})["pooling"] == "mean"


def test_a_folder_without_modules_is_mean_pooled_as_sentence_transformers_does(tmp_path):
    folder = model_folder(tmp_path)
    (folder / "modules.json").unlink()
    (folder / "1_Pooling" / "config.json").unlink()
    assert sentence_transformers_spec(folder)["pooling"] == "mean"
    with pytest.raises(BuildError, match="not a model folder"):
        sentence_transformers_spec(tmp_path)
