"""The whole pipeline on a tiny random llama (real tokenizer, real llama.cpp, real embedder):
each stage's contract, the packaged version's manifest, and the appliance serving the result."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from appliance import manifest
from appliance_build import jsonl


def test_bad_data_is_reported_not_fatal(tiny_run):
    _, outputs = tiny_run
    problems = outputs["load"].summary["problems"]
    reasons = {(Path(p["file"]).name, p["line"]): p["reason"] for p in problems}
    assert ("chat_bad.jsonl", 2) in reasons and ("chat_bad.jsonl", 3) in reasons
    assert reasons[("empty.jsonl", None)] == "file is empty"
    assert "does not exist" in reasons[("missing.jsonl", None)]
    assert "wrong columns" in reasons[("qa_wrong_columns.csv", 1)]
    assert ("qa.jsonl", 2) in reasons
    assert outputs["load"].summary["by_kind"]["doc"] >= 6  # md, txt, html, csv, docx, xlsx all read


def test_pii_is_masked_with_counts(tiny_run):
    _, outputs = tiny_run
    text = (outputs["clean"].path / "records.jsonl").read_text(encoding="utf-8")
    for secret in ("4518-1234-5678-9012", "900101-1234567", "helpdesk@hanbit.example", "010-4821-7730"):
        assert secret not in text
    assert outputs["clean"].summary["pii_masked"] == {"email": 1, "rrn": 1, "card": 1, "phone": 1}
    assert outputs["clean"].summary["exact_duplicates"] == 2  # c2-dup, and c1 again in chat_bad.jsonl
    assert outputs["clean"].summary["near_duplicates"] == 1


def test_no_leakage_between_train_and_eval(tiny_run):
    _, outputs = tiny_run
    folder = outputs["validate"].path
    train, evaluation = jsonl.read(folder / "train.jsonl"), jsonl.read(folder / "eval.jsonl")
    assert train and evaluation
    assert not {r["group"] for r in train} & {r["group"] for r in evaluation}
    assert not {r["answer"] for r in train} & {r["answer"] for r in evaluation}
    assert "empty answer" in outputs["validate"].summary["dropped"]
    # A QA pair about a document splits with that document.
    groups = {r["group"] for r in train + evaluation if r["kind"] == "qa"}
    assert "doc:docs/purchasing/po-approval.md" in groups


def test_finetune_and_prune_contracts(tiny_run):
    _, outputs = tiny_run
    tuned = outputs["finetune"].summary
    assert tuned["steps"] == 6 and tuned["eval_loss"] < tuned["base_eval_loss"]
    pruned = outputs["prune"].summary
    assert pruned["linear_sparsity"] == pytest.approx(0.3, abs=0.005)
    assert pruned["kept_pruned"] is True


def test_export_tokenizer_identical_and_logits_match(tiny_run):
    _, outputs = tiny_run
    export = outputs["export"].summary
    assert export["tokenizer"]["identical"] and not export["tokenizer"]["mismatches"]
    assert export["logits"]["within_tolerance"]
    assert export["logits"]["top1_agreement"] > 0.99
    assert set(export["files"]) == {"f16", "q8_0"}


def test_embedder_follows_the_artifact_contract(tiny_run):
    _, outputs = tiny_run
    folder = Path(outputs["embedder"].summary["folder"])
    # The tiny recipe keeps the adapted embedder, which is named apart from the base.
    assert json.loads((folder / "embedder.json").read_text()) == {
        "name": f"all-minilm-l6-v2-adapted-{outputs['embedder_adapt'].key[:8]}", "dim": 384, "max_length": 256,
        "pooling": "mean", "normalize": True, "quantization": "int8"}
    import onnx

    graph = onnx.load(str(folder / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state"]
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)
    from tokenizers import Tokenizer

    Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_evaluate_reports_every_model(tiny_run):
    _, outputs = tiny_run
    folder = outputs["evaluate"].path
    report = json.loads((folder / "report.json").read_text())
    models = [row["model"] for row in report["rows"]]
    assert models[:2] == ["base (torch)", "fine-tuned (torch)"] and "built q8_0" in models
    assert "q8_0_vs_f16_perplexity_delta" in report["comparisons"]
    assert report["retrieval"]["recall@5_int8"] >= 0.0
    assert (folder / "report.png").stat().st_size > 0
    assert "| built q8_0 |" in (folder / "report.md").read_text()


def test_manifest_verifies_and_names_a_bad_file(tiny_run, tmp_path):
    _, outputs = tiny_run
    version = Path(outputs["package"].summary["folder"])
    loaded = manifest.verify(version)
    roles = {entry.role for entry in loaded.files}
    assert roles == {"gguf", "embedder", "report"}
    assert loaded.data_fingerprint and loaded.metrics["prune"]["kept_pruned"]
    copy = tmp_path / "copy"
    shutil.copytree(version, copy)
    gguf = copy / loaded.file("gguf").path
    with gguf.open("r+b") as fh:
        fh.truncate(gguf.stat().st_size - 10)
    with pytest.raises(manifest.ManifestError, match=loaded.file("gguf").path):
        manifest.verify(copy)


def test_appliance_serves_the_packaged_gguf(tiny_run):
    from appliance.llm.base import Finished, GenerationRequest, SamplingParams, TextDelta
    from appliance.llm.local import LocalBackend
    from appliance.settings import EngineSettings

    _, outputs = tiny_run
    backend = LocalBackend(EngineSettings(model_path=outputs["package"].summary["gguf"], slots=2,
                                          max_request_tokens=256))

    async def ask():
        generation = await backend.start(GenerationRequest(
            params=SamplingParams(temperature=0, max_tokens=8),
            messages=({"role": "user", "content": "연차 신청은 어떻게 하나요?"},)))
        events = [event async for event in generation]
        await backend.close()
        return events

    events = asyncio.run(ask())
    assert isinstance(events[-1], Finished) and events[-1].completion_tokens > 0
    assert all(isinstance(e, TextDelta) for e in events[:-1])


def test_rerun_resumes_from_cache(tiny_run):
    from appliance_build.pipeline import Pipeline

    pipeline, outputs = tiny_run
    again = Pipeline(pipeline.recipe, cache_dir=pipeline.cache.root, models_dir=pipeline.models_dir)
    rerun = again.run(only="evaluate")
    assert all(rerun[name].cached for name in rerun) and "embedder_adapt" in rerun
    assert rerun["export"].path == outputs["export"].path
    # Changing one stage's settings re-runs that stage and what follows it, nothing before it.
    pipeline.recipe.settings["prune"] = {**pipeline.recipe["prune"], "sparsity": 0.5}
    try:
        changed = Pipeline(pipeline.recipe, cache_dir=pipeline.cache.root, models_dir=pipeline.models_dir)
        result = changed.run(only="prune")
    finally:
        pipeline.recipe.settings["prune"] = {**pipeline.recipe["prune"], "sparsity": 0.3}
    assert result["finetune"].cached and not result["prune"].cached
    assert result["prune"].summary["linear_sparsity"] == pytest.approx(0.5, abs=0.005)


def test_lora_finetune_merges_into_a_plain_llama(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from appliance_build.finetune import finetune

    pipeline, outputs = tiny_run
    rows = [{"input_ids": [1, 5, 6, 7, 8], "attention_mask": [1] * 5, "labels": [-100, -100, 6, 7, 8]}] * 8
    cfg = {**pipeline.recipe["finetune"], "lora": True, "lora_r": 4, "lora_alpha": 8, "max_steps": 2,
           "eval_steps": 2, "save_steps": 2, "batch_size": 4}
    summary = finetune(Path(outputs["base"].summary["model_dir"]), rows, rows[:2], cfg, tmp_path, seed=0, pad_id=2)
    assert summary["lora"] and summary["steps"] == 2
    merged = AutoModelForCausalLM.from_pretrained(summary["model_dir"])
    assert not any("lora" in name for name, _ in merged.named_parameters())
    # A second call finds the checkpoints of the first and resumes from them.
    assert finetune(Path(outputs["base"].summary["model_dir"]), rows, rows[:2], cfg, tmp_path, seed=0,
                    pad_id=2)["resumed_from_checkpoint"]
