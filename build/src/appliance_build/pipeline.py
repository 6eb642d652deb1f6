"""Runs a recipe's stages in order; each stage's output is cached under a key made from its
settings and the keys of what it reads, so a re-run resumes after the last completed stage."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from appliance_build import jsonl
from appliance_build.cache import StageCache, StageOutput, file_fingerprint, fingerprint
from appliance_build.errors import BuildError
from appliance_build.recipe import ALL_STAGES, Recipe

CODE_VERSION = 3  # bump when a stage's output format changes, to invalidate old caches
console = Console(stderr=True)


@dataclass
class Context:
    recipe: Recipe
    out: Path
    inputs: dict[str, StageOutput]
    models_dir: Path

    def input(self, name: str) -> StageOutput | None:
        return self.inputs.get(name)

    def need(self, name: str) -> StageOutput:
        if name not in self.inputs:
            raise BuildError(f"Stage needs the output of {name!r}, which this recipe does not run; "
                             f"add it to the recipe's stages.")
        return self.inputs[name]


def is_active(recipe: Recipe, stage: str) -> bool:
    section = recipe.settings.get(stage)
    enabled = section.get("enabled", True) if isinstance(section, dict) else True
    return stage in recipe["stages"] and enabled


# --- stages ------------------------------------------------------------------------------

def stage_load(ctx: Context) -> dict[str, Any]:
    from appliance_build.loading import input_files, load_all

    loaded = load_all(ctx.recipe)
    jsonl.write(ctx.out / "records.jsonl", loaded.records)
    for problem in loaded.problems:
        where = f"{problem['file']}:{problem['line']}" if problem["line"] else problem["file"]
        console.print(f"[yellow]skipped[/] {where}: {problem['reason']}")
    return {"records": len(loaded.records), "by_kind": loaded.counts, "problems": loaded.problems,
            "data_fingerprint": file_fingerprint(input_files(ctx.recipe))}


def stage_clean(ctx: Context) -> dict[str, Any]:
    from appliance_build.cleaning import clean

    cfg = ctx.recipe["clean"]
    records, report = clean(jsonl.read(ctx.need("load").path / "records.jsonl"),
                            near_threshold=cfg["near_duplicate_threshold"], shingle_size=cfg["shingle_size"])
    jsonl.write(ctx.out / "records.jsonl", records)
    return report


def stage_augment(ctx: Context) -> dict[str, Any]:
    from appliance_build.augment import augment

    records = jsonl.read(ctx.need("clean").path / "records.jsonl")
    cfg = ctx.recipe["augment"]
    if cfg["enabled"]:
        records, report = augment(records, seed=ctx.recipe["seed"], variants=cfg["variants_per_question"])
    else:
        report = {"input": len(records), "augmented": 0, "output": len(records)}
    jsonl.write(ctx.out / "records.jsonl", records)
    return report


def stage_validate(ctx: Context) -> dict[str, Any]:
    from appliance_build.basemodel import tokenizer_gguf
    from appliance_build.training_data import Encoder
    from appliance_build.validation import validate

    cfg = ctx.recipe["validate"]
    encoder = Encoder(tokenizer_gguf(ctx.recipe))
    try:
        train, evaluation, report = validate(
            jsonl.read((ctx.input("augment") or ctx.need("clean")).path / "records.jsonl"), count_tokens=encoder.count,
            max_tokens=cfg["max_tokens"], min_answer_chars=cfg["min_answer_chars"],
            languages=cfg["languages"], eval_fraction=cfg["eval_fraction"], seed=ctx.recipe["seed"])
    finally:
        encoder.close()
    if not train or not evaluation:
        raise BuildError(f"After validation the train split has {len(train)} rows and the eval split "
                         f"{len(evaluation)}; both need data. Drops: {report['dropped']}.")
    jsonl.write(ctx.out / "train.jsonl", train)
    jsonl.write(ctx.out / "eval.jsonl", evaluation)
    return report


def stage_embedder_adapt(ctx: Context) -> dict[str, Any]:
    from appliance_build.basemodel import embedder_folder
    from appliance_build.embedder_adapt import adapt_embedder
    from appliance_build.evaluate import load_probes

    validated = ctx.need("validate").path
    sections = [r for r in jsonl.read(ctx.need("clean").path / "records.jsonl") if r["kind"] == "doc"]
    return adapt_embedder(embedder_folder(ctx.recipe), jsonl.read(validated / "train.jsonl"),
                          jsonl.read(validated / "eval.jsonl"), sections,
                          load_probes(ctx.recipe.path(ctx.recipe["data"]["probes"])),
                          ctx.recipe["embedder_adapt"], ctx.out, ctx.recipe["seed"],
                          serve_max_length=ctx.recipe["embedder"]["max_length"])


def stage_base(ctx: Context) -> dict[str, Any]:
    from appliance_build.basemodel import import_base

    return import_base(ctx.recipe, ctx.out)


def stage_grounded(ctx: Context) -> dict[str, Any]:
    from appliance_build.grounded import build_grounded

    return build_grounded(ctx.recipe, ctx.need("validate").path, Path(ctx.need("embedder").summary["folder"]), ctx.out)


def training_splits(ctx: Context) -> tuple[list[dict], list[dict]]:
    """(train, eval) examples the model learns from: grounded ones where that stage ran, else the
    validated question -> answer records."""
    source = ctx.input("grounded") or ctx.need("validate")
    return jsonl.read(source.path / "train.jsonl"), jsonl.read(source.path / "eval.jsonl")


def _encoded_splits(ctx: Context, max_length: int):
    from appliance_build.basemodel import tokenizer_gguf
    from appliance_build.training_data import Encoder

    train_records, eval_records = training_splits(ctx)
    encoder = Encoder(tokenizer_gguf(ctx.recipe))
    try:
        train = encoder.encode(train_records, max_length)
        evaluation = encoder.encode(eval_records, max_length)
        # Every perplexity in the report (torch and llama.cpp) is over this same eval subset.
        return train, evaluation[: ctx.recipe["evaluate"]["perplexity_samples"]], encoder.pad_id
    finally:
        encoder.close()


def stage_finetune(ctx: Context) -> dict[str, Any]:
    from appliance_build.finetune import finetune

    cfg = ctx.recipe["finetune"]
    train, evaluation, pad_id = _encoded_splits(ctx, cfg["max_length"])
    return finetune(Path(ctx.need("base").summary["model_dir"]), train, evaluation, cfg, ctx.out,
                    ctx.recipe["seed"], pad_id)


def stage_prune(ctx: Context) -> dict[str, Any]:
    from appliance_build.prune import prune

    _, evaluation, pad_id = _encoded_splits(ctx, ctx.recipe["finetune"]["max_length"])
    source = ctx.input("finetune") or ctx.need("base")
    return prune(Path(source.summary["model_dir"]), evaluation, ctx.recipe["prune"], ctx.out, pad_id)


def torch_model_dir(ctx: Context) -> Path | None:
    for name in ("prune", "finetune", "base"):
        if name in ctx.inputs:
            return Path(ctx.inputs[name].summary["model_dir"])
    return None


def stage_export(ctx: Context) -> dict[str, Any]:
    from appliance.engine.quantize import quantize
    from appliance_build.basemodel import source_gguf, tokenizer_gguf
    from appliance_build.gguf_export import export_gguf
    from appliance_build.parity import PROBES, logits_parity, tokenizer_identity
    from appliance_build.training_data import Encoder

    cfg, name = ctx.recipe["export"], ctx.recipe["name"]
    tok_gguf = tokenizer_gguf(ctx.recipe)
    model_dir = torch_model_dir(ctx)
    summary: dict[str, Any] = {"files": {}}
    if model_dir is None:
        # No torch stage ran (quickstart): re-encode the base GGUF itself.
        source = source_gguf(ctx.recipe)
        summary["source"] = str(source)
    else:
        source = ctx.out / f"{name}-f16.gguf"
        summary["f16_export"] = export_gguf(model_dir, tok_gguf, source, name=name)
        summary["files"]["f16"] = str(source)
    types = [cfg["gguf_type"], *[t for t in cfg["compare_types"] if t != cfg["gguf_type"]]]
    for file_type in types:
        if file_type == "f16" and model_dir is not None:
            continue
        target = ctx.out / f"{name}-{file_type}.gguf"
        with console.status(f"quantizing to {file_type}"):
            quantize(source, target, file_type)
        summary["files"][file_type] = str(target)
    summary["main"] = summary["files"][cfg["gguf_type"]]
    summary["tokenizer"] = tokenizer_identity(tok_gguf, Path(summary["main"]))
    if not summary["tokenizer"]["identical"]:
        raise BuildError(f"The exported GGUF tokenizes differently from {tok_gguf}: "
                         f"{summary['tokenizer']['mismatches'][:2]}; the export would change the vocabulary.")
    if model_dir is not None and cfg["check_logits"]:
        encoder = Encoder(tok_gguf)
        ids = [encoder.prompt_ids(text) for text in PROBES[:4]]
        encoder.close()
        summary["logits"] = logits_parity(model_dir, source, ids, cfg["logits_tolerance"])
        if not summary["logits"]["within_tolerance"]:
            raise BuildError(f"Exported f16 logits differ from the torch model beyond tolerance: "
                             f"{summary['logits']}; the exporter's tensor mapping is wrong for this model.")
    return summary


def stage_embedder(ctx: Context) -> dict[str, Any]:
    from appliance_build.basemodel import embedder_folder
    from appliance_build.embedder import CONTRACT, export_embedder

    validated = ctx.need("validate").path
    corpus = [r["question"] + "\n" + r["answer"] for r in jsonl.read(validated / "train.jsonl")]
    adapted = ctx.input("embedder_adapt")
    if adapted is not None and adapted.summary["kept"] == "adapted":
        # Its own name tells it apart from the shipped embedder wherever the appliance reports one.
        origin, source = "adapted", Path(adapted.summary["model_dir"])
        name = f"{CONTRACT['name']}-adapted-{adapted.key[:8]}"
    else:
        origin, source, name = "base", embedder_folder(ctx.recipe), CONTRACT["name"]
    summary = export_embedder(source, corpus, ctx.recipe["embedder"], ctx.out, ctx.recipe["seed"], name=name)
    return {**summary, "source": origin, "name": name}


def stage_evaluate(ctx: Context) -> dict[str, Any]:
    from appliance_build.evaluate import evaluate

    return evaluate(ctx)


def stage_package(ctx: Context) -> dict[str, Any]:
    from appliance_build.package import package

    return package(ctx)


def _probe_files(recipe: Recipe) -> list[Path]:
    return [recipe.path(recipe["data"]["probes"])] if recipe["data"]["probes"] else []


def _evaluation_questions(recipe: Recipe) -> list[Path]:
    cfg = recipe["evaluate"]
    return [recipe.path(p) for p in (*cfg["answer_golden"], *cfg["answer_probes"])] if cfg["answers"] else []


def _docs_and_questions(recipe: Recipe) -> list[Path]:
    from appliance_build.loading import document_files

    return document_files(recipe) + _evaluation_questions(recipe)


def _evaluation_files(recipe: Recipe) -> list[Path]:
    """Probes, golden sets and the documents the probes ask about: their bytes key the evaluation."""
    files = _probe_files(recipe) + _evaluation_questions(recipe)
    if recipe["evaluate"]["answers"] and recipe["evaluate"]["answer_probes"]:
        folder = recipe.path(recipe["evaluate"]["answer_probes_dir"])
        files += sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    return files


def _input_files(recipe: Recipe) -> list[Path]:
    from appliance_build.loading import input_files

    return input_files(recipe)


@dataclass
class Stage:
    run: Callable[[Context], dict[str, Any]]
    reads: tuple[str, ...]
    settings: tuple[str, ...]
    cached: bool = True
    files: Callable[[Recipe], list[Path]] | None = None  # files outside the cache it reads: their bytes key it


STAGES: dict[str, Stage] = {
    "load": Stage(stage_load, (), ("data",), files=_input_files),
    "clean": Stage(stage_clean, ("load",), ("clean",)),
    "augment": Stage(stage_augment, ("clean",), ("augment", "seed")),
    "validate": Stage(stage_validate, ("augment|clean",), ("validate", "seed", "base")),
    "embedder_adapt": Stage(stage_embedder_adapt, ("clean", "validate"),
                            ("embedder_adapt", "embedder.max_length", "base.embedder", "data.probes", "seed"),
                            files=_probe_files),
    "base": Stage(stage_base, (), ("base", "seed")),
    "embedder": Stage(stage_embedder, ("validate", "embedder_adapt"), ("embedder", "base.embedder", "seed")),
    "grounded": Stage(stage_grounded, ("validate", "embedder"),
                      ("grounded", "data.docs_dir", "base.model", "base.tokenizer_gguf", "evaluate.answers",
                       "evaluate.answer_golden", "evaluate.answer_probes", "seed"),
                      files=_docs_and_questions),
    "finetune": Stage(stage_finetune, ("validate", "grounded", "base"),
                      ("finetune", "seed", "evaluate.perplexity_samples")),
    "prune": Stage(stage_prune, ("validate", "grounded", "finetune", "base"),
                   ("prune", "finetune", "evaluate.perplexity_samples")),
    "export": Stage(stage_export, ("prune", "finetune", "base"), ("export", "name", "base")),
    "evaluate": Stage(stage_evaluate, ("load", "clean", "augment", "validate", "embedder_adapt", "embedder",
                                       "grounded", "base", "finetune", "prune", "export"), ("evaluate", "data"),
                      files=_evaluation_files),
    "package": Stage(stage_package, ("load", "clean", "augment", "validate", "embedder_adapt", "embedder",
                                     "grounded", "base", "finetune", "prune", "export", "evaluate"),
                     ("package", "name"), cached=False),
}
assert list(STAGES) == ALL_STAGES


class Pipeline:
    def __init__(self, recipe: Recipe, *, cache_dir: Path | None = None, models_dir: Path | None = None):
        self.recipe = recipe
        self.cache = StageCache(cache_dir or recipe.root / "var" / "build-cache")
        self.models_dir = models_dir or recipe.path(recipe["package"]["models_dir"])
        self.outputs: dict[str, StageOutput] = {}
        self.timings: dict[str, float] = {}

    def key(self, stage: str) -> str:
        spec = STAGES[stage]
        parts: dict[str, Any] = {"stage": stage, "code": CODE_VERSION,
                                 "settings": {s: self._setting(s) for s in spec.settings},
                                 "reads": self._read_keys(spec)}
        if spec.files is not None:
            parts["files"] = file_fingerprint(spec.files(self.recipe))
        return fingerprint(parts)

    def _read_keys(self, spec: Stage) -> dict[str, str]:
        """Keys of the outputs a stage reads; "a|b" means a if it ran, else b."""
        keys = {}
        for read in spec.reads:
            present = [name for name in read.split("|") if name in self.outputs]
            if present:
                keys[present[0]] = self.outputs[present[0]].key
        return keys

    def _setting(self, dotted: str) -> Any:
        value: Any = self.recipe.settings
        for part in dotted.split("."):
            value = value[part]
        return value

    def run(self, only: str | None = None) -> dict[str, StageOutput]:
        """Run every active stage (from cache where possible); with `only`, stop after that stage."""
        if only is not None and only not in STAGES:
            raise BuildError(f"Unknown stage {only!r}; stages: {', '.join(STAGES)}.")
        for stage in ALL_STAGES:
            if not is_active(self.recipe, stage):
                continue
            self.outputs[stage] = self.run_stage(stage)
            if stage == only:
                break
        return self.outputs

    def run_stage(self, stage: str) -> StageOutput:
        spec = STAGES[stage]
        key = self.key(stage)
        if spec.cached and (hit := self.cache.get(stage, key)) is not None:
            console.print(f"[green]✓[/] {stage} (cached {hit.path.name})")
            self.timings[stage] = 0.0
            return hit
        console.rule(f"[bold]{stage}")
        work = self.cache.begin(stage, key)
        started = time.perf_counter()
        read = {name for entry in spec.reads for name in entry.split("|")}
        ctx = Context(self.recipe, work, {r: self.outputs[r] for r in read if r in self.outputs}, self.models_dir)
        summary = spec.run(ctx)
        elapsed = time.perf_counter() - started
        summary["wall_s"] = round(elapsed, 2)
        self.timings[stage] = elapsed
        console.print(f"[green]✓[/] {stage} in {elapsed:.1f}s")
        if not spec.cached:
            result = StageOutput(stage, key, work, summary)
            shutil.rmtree(work, ignore_errors=True)
            return result
        return self.cache.commit(stage, key, work, summary)
