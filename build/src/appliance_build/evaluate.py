"""Evaluate stage: base vs fine-tuned vs pruned vs quantized, side by side.

Torch rows reuse the eval losses the fine-tune and prune stages measured; GGUF rows are measured
here with llama.cpp on the same token ids, so every perplexity is over the same answer tokens.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console

from appliance_build import jsonl
from appliance_build.report import write_report

console = Console(stderr=True)


def load_probes(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [row for row in jsonl.read(path) if row.get("question") and row.get("gold")]


def embedder_recall(ctx, k: int) -> dict[str, Any]:
    """recall@k of the gold document for the KB probes, fp32 export vs int8, over all document sections."""
    from appliance_build.embedder import OnnxEmbedder

    embedded = ctx.input("embedder")
    if embedded is None:
        return {}
    sections = [r for r in jsonl.read(ctx.need("clean").path / "records.jsonl") if r["kind"] == "doc"]
    probes = load_probes(ctx.recipe.path(ctx.recipe["data"]["probes"]))
    if probes:
        queries, gold, source = [p["question"] for p in probes], [p["gold"] for p in probes], "kb probes"
    else:  # without probes: a section's heading should find its own document
        held = [r for r in jsonl.read(ctx.need("validate").path / "eval.jsonl") if r["kind"] == "doc" and r.get("heading")]
        queries, gold, source = [r["heading"] for r in held], [r["doc_path"] for r in held], "eval-split headings"
    if not sections or not queries:
        return {"skipped": "no documents or no queries to measure retrieval"}
    from appliance_build.embedder_adapt import passage_text
    from appliance_build.metrics import recall_at_k

    passages = [passage_text(r) for r in sections]
    sources = [r["doc_path"] for r in sections]
    result = {"queries": len(queries), "passages": len(passages), "query_source": source, "k": k,
              "embedder": embedded.summary.get("source", "base")}
    max_length = ctx.recipe["embedder"]["max_length"]
    embedders = [("int8", Path(embedded.summary["folder"]))]
    if ctx.recipe["evaluate"]["compare_fp32_embedder"]:
        embedders.insert(0, ("fp32", Path(embedded.summary["fp32_folder"])))
    spec = json.loads((Path(embedded.summary["folder"]) / "embedder.json").read_text())
    for label, folder in embedders:
        console.print(f"retrieval recall: {label} embedder, {len(queries)} queries, {len(passages)} passages")
        embedder = OnnxEmbedder(folder, max_length, spec)  # the fp32 folder has no embedder.json
        query_vectors = embedder.embed(queries, side="query")
        passage_vectors = embedder.embed(passages, side="passage")
        for top in sorted({1, k}):
            result[f"recall@{top}_{label}"] = recall_at_k(query_vectors, passage_vectors, sources, gold, top)
    return result


def embedder_adaptation(ctx) -> dict[str, Any]:
    """The adaptation stage's base-vs-adapted figures and its decision, for the report."""
    adapted = ctx.input("embedder_adapt")
    if adapted is None:
        return {}
    summary = adapted.summary
    keys = ("kept", "reason", "k", "min_recall_gain", "train_pairs", "train_pairs_by_kind", "eval_set",
            "eval_pairs_dropped_as_seen_in_training", "probe_set", "recall")
    result = {key: summary[key] for key in keys if key in summary}
    if "training" in summary:
        result["training"] = {k: v for k, v in summary["training"].items() if k != "loss_history"}
    return result


def evaluate(ctx) -> dict[str, Any]:
    from appliance_build.basemodel import source_gguf, tokenizer_gguf
    from appliance_build.llama_eval import answers, mean_loss
    from appliance_build.metrics import token_f1
    from appliance_build.pipeline import training_splits
    from appliance_build.training_data import Encoder

    cfg = ctx.recipe["evaluate"]
    eval_records = jsonl.read(ctx.need("validate").path / "eval.jsonl")
    held_qa = [r for r in eval_records if r["kind"] in ("qa", "chat") and "augmented" not in r["tags"]]
    held_qa = held_qa[: cfg["qa_samples"]]
    encoder = Encoder(tokenizer_gguf(ctx.recipe))
    # The perplexity rows score what the model learns to produce (grounded answers where it learned those).
    encoded = encoder.encode(training_splits(ctx)[1], ctx.recipe["finetune"]["max_length"])
    examples = encoded[: cfg["perplexity_samples"]]  # what the torch rows (fine-tune, prune) used
    gguf_examples = encoded[: cfg["gguf_perplexity_samples"] or len(encoded)]
    prompts = [encoder.prompt_ids(r["question"]) for r in held_qa]
    stop_id = encoder.stop_id
    encoder.close()

    rows: list[dict[str, Any]] = []
    tuned = ctx.input("finetune")
    if tuned is not None:
        rows.append({"model": "base (torch)", "kind": "torch", "eval_loss": tuned.summary["base_eval_loss"],
                     "examples": len(examples)})
        rows.append({"model": "fine-tuned (torch)", "kind": "torch", "eval_loss": tuned.summary["eval_loss"],
                     "examples": len(examples)})
    pruned = ctx.input("prune")
    if pruned is not None:
        rows.append({"model": f"pruned {pruned.summary['linear_sparsity']:.0%} (torch)", "kind": "torch",
                     "eval_loss": pruned.summary["eval_loss_after"], "kept": pruned.summary["kept_pruned"],
                     "examples": len(examples)})

    ggufs: list[tuple[str, Path]] = []
    base_gguf = source_gguf(ctx.recipe)
    if cfg["include_base_gguf"] and base_gguf is not None:
        ggufs.append((f"base GGUF ({base_gguf.name})", base_gguf))
    exported = ctx.input("export")
    if exported is not None:
        ggufs += [(f"{'built' if tuned else 'base'} {file_type}", Path(path))
                  for file_type, path in exported.summary["files"].items()]
    for label, path in ggufs:
        console.print(f"evaluating {label}: perplexity on {len(gguf_examples)} examples, {len(prompts)} answers")
        loss = mean_loss(path, gguf_examples)
        predictions = answers(path, prompts, cfg["max_new_tokens"], stop_id) if prompts else []
        f1 = [token_f1(p, r["answer"]) for p, r in zip(predictions, held_qa)]
        rows.append({"model": label, "kind": "gguf", "path": str(path), "bytes": path.stat().st_size,
                     "eval_loss": loss, "examples": len(gguf_examples),
                     "token_f1": sum(f1) / len(f1) if f1 else None,
                     "samples": [{"question": r["question"], "reference": r["answer"], "answer": p}
                                 for p, r in list(zip(predictions, held_qa))[:3]]})
    for row in rows:
        row["perplexity"] = math.exp(row["eval_loss"])

    by_model = {r["model"]: r for r in rows}
    comparisons = {}
    if exported is not None and tuned is not None:
        f16 = by_model.get("built f16")
        for file_type in exported.summary["files"]:
            row = by_model.get(f"built {file_type}")
            if f16 and row and file_type != "f16":
                comparisons[f"{file_type}_vs_f16_perplexity_delta"] = row["perplexity"] / f16["perplexity"] - 1
    if tuned is not None:
        comparisons["finetune_perplexity_change"] = tuned.summary["perplexity"] / tuned.summary["base_perplexity"] - 1

    result = {
        "answers": answers_through_ggufs(ctx) if cfg["answers"] else {},
        "eval_examples": len(examples),
        "gguf_eval_examples": len(gguf_examples),
        "held_out_qa": len(held_qa),
        "rows": rows,
        "comparisons": comparisons,
        "retrieval": embedder_recall(ctx, cfg["recall_k"]),
        "embedder_adaptation": embedder_adaptation(ctx),
        "stage_wall_s": {name: out.summary.get("wall_s") for name, out in ctx.inputs.items()},
    }
    write_report(ctx, result, ctx.out)
    (ctx.out / "report.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    answers = {k: v for k, v in result["answers"].items() if k != "side_by_side"}
    return {k: v for k, v in result.items() if k not in ("rows", "answers")} | {"answers": answers, "rows": [
        {k: v for k, v in r.items() if k != "samples"} for r in rows]}


def answers_base_gguf(ctx) -> Path | None:
    """The base model as the appliance would serve it (re-encoded to the build's GGUF type), for
    the answer comparison; None where the base is not a GGUF (a random or Hugging Face base)."""
    from appliance.engine.quantize import quantize
    from appliance_build.basemodel import source_gguf

    if ctx.recipe["base"]["model"] == "tiny-random" or not ctx.recipe["evaluate"]["include_base_gguf"]:
        return None
    source = source_gguf(ctx.recipe)
    if source is None:
        return None
    target = ctx.out / f"base-{ctx.recipe['export']['gguf_type']}.gguf"
    with console.status(f"re-encoding the base GGUF to {ctx.recipe['export']['gguf_type']}"):
        quantize(source, target, ctx.recipe["export"]["gguf_type"])
    return target


def answers_through_ggufs(ctx) -> dict[str, Any]:
    """Held-out answer figures of the base and the built GGUF (generative, verified) and of the
    extractive answer, the manifest's answer_figures and the ship decision."""
    import shutil

    from appliance_build.answer_eval import evaluate_answers, manifest_figures
    from appliance_build.ship import ship_decision

    exported = ctx.need("export")
    built = "fine-tuned" if ctx.input("finetune") is not None else "built"
    models = []
    if (base := answers_base_gguf(ctx)) is not None:
        models.append(("base", base))
    models.append((built, Path(exported.summary["main"])))
    grounded = ctx.input("grounded")
    try:
        answers = evaluate_answers(ctx.recipe, models, Path(ctx.need("embedder").summary["folder"]),
                                   ctx.out / "answer-kb", grounded.summary["train_documents"] if grounded else None)
    finally:
        shutil.rmtree(ctx.out / "answer-kb", ignore_errors=True)
        if base is not None:
            base.unlink(missing_ok=True)
    answers["model"] = built
    answers["answer_figures"] = manifest_figures(answers, built)
    answers["ship"] = ship_decision(answers["answer_figures"])
    return answers
