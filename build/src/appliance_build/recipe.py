"""Recipes: one TOML file per build (`build/recipes/<name>.toml`) over typed defaults."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from appliance_build.errors import RecipeError

RECIPES_DIR = Path(__file__).resolve().parents[2] / "recipes"
REPO_ROOT = Path(__file__).resolve().parents[3]

ALL_STAGES = [
    "load", "clean", "augment", "validate", "embedder_adapt", "base", "embedder", "grounded",
    "finetune", "prune", "export", "evaluate", "package",
]

ADAPT_LOSSES = ("mnrl", "cached_mnrl")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

# Every setting with its default; a recipe may only set keys listed here.
DEFAULTS: dict[str, Any] = {
    "name": "erp-smollm2",
    "description": "",
    "seed": 42,
    "stages": ALL_STAGES,
    "data": {
        "chat_logs": ["build/data/sample/chat_logs.jsonl", "build/data/sample/chat_logs_bad.jsonl"],
        "qa_pairs": ["build/data/sample/qa_pairs.csv", "build/data/sample/qa_pairs.jsonl"],
        "docs_dir": "appliance/data/sample_kb/docs",
        "probes": "appliance/data/sample_kb/probes.jsonl",
        "require_docs": True,
        "max_section_chars": 500,
    },
    "clean": {"near_duplicate_threshold": 0.9, "shingle_size": 3},
    "augment": {"enabled": True, "variants_per_question": 1},
    "validate": {
        "eval_fraction": 0.2,
        "max_tokens": 512,
        "min_answer_chars": 2,
        "languages": ["en", "ko"],
    },
    # Where the examples the model trains on come from when the grounded stage runs: each question
    # is asked of a knowledge base over data.docs_dir through the appliance's own retrieval and
    # evidence selection, and the model learns to answer from that evidence (the served prompt).
    "grounded": {
        "enabled": False,
        "section_questions": 2,  # questions generated per document section (templates, both languages)
        "no_gold_share": 0.2,  # share of answerable questions asked again with their gold document left out
        "max_no_answer_share": 0.25,  # at most this share of the examples teaches the "not in the documents" reply
        "answer_sentences": 3,  # most evidence sentences (or list items, table rows) an extracted target quotes
        "max_tokens": 1600,  # examples longer than this (prompt and answer tokens) are dropped
        "max_train_examples": 0,  # a seeded sample of the training examples (0: all)
        # ... holding at most this many tokens (0: no limit): training time grows with tokens, and a
        # Korean prompt is about three times an English one in the base's tokenizer.
        "max_train_tokens": 0,
        "max_eval_examples": 48,  # eval-split examples kept for the eval loss
    },
    "base": {
        "model": "bundled",  # "bundled", "tiny-random", a .gguf file or a Hugging Face model folder
        "embedder": "bundled",
        "tokenizer_gguf": "",  # a GGUF with the base's vocabulary (needed for a Hugging Face folder)
        "tiny": {},
        # A GGUF base is imported into torch and must give the GGUF's own logits (max difference over
        # the logits' std); a quantized GGUF differs by its quantization (the bundled Q4_1 by 0.35),
        # while a misread one differs by several times the std.
        "logits_tolerance": 0.5,
        "check_logits": True,
    },
    "finetune": {
        "enabled": True,
        "epochs": 3.0,
        "batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-5,
        "warmup_steps": 500,
        "weight_decay": 0.01,
        "logging_steps": 100,
        "eval_steps": 500,
        "save_steps": 1000,
        "max_steps": -1,
        "max_length": 512,
        # "auto": on a GPU bf16 where it supports it, else fp16; on a CPU bf16 autocast where it has AMX,
        # else fp32. "fp32", "fp16", "bf16" force one (fp16 only applies on a GPU, bf16 on a CPU only with AMX).
        "precision": "auto",
        # Examples a step on a GPU, without gradient accumulation (0: batch_size x gradient_accumulation_steps).
        "gpu_batch_size": 0,
        "lora": False,
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
    },
    "prune": {"enabled": True, "sparsity": 0.3, "max_eval_loss_increase": 0.05},
    "export": {
        "gguf_type": "q8_0",
        "compare_types": ["q4_k_m"],
        "logits_tolerance": 0.05,  # max |torch - llama.cpp| logit difference over the logits' std
        "check_logits": True,
    },
    "embedder_adapt": {
        "enabled": True,  # fine-tune the embedder on (question, passage) pairs from the train split
        "epochs": 3.0,
        "max_steps": -1,  # > 0 stops after this many steps (overrides epochs)
        "batch_size": 32,  # also the number of in-batch negatives per query
        "learning_rate": 2e-5,
        "warmup_ratio": 0.1,
        "logging_steps": 10,
        "max_pairs": 5000,  # training pairs at most (a seeded sample); 0 means all
        "max_length": 256,  # tokens per query or passage in training (measuring uses embedder.max_length)
        "loss": "mnrl",  # "mnrl" (MultipleNegativesRankingLoss) or "cached_mnrl" (same loss, gradient caching)
        "mini_batch_size": 16,  # cached_mnrl only: texts per forward pass
        "recall_k": 5,
        # The adapted embedder goes on only if its eval-pair recall@k beats the base's by this much
        # (absolute); otherwise the base does.
        "min_recall_gain": 0.01,
    },
    "embedder": {
        "quantization": "static",  # "static" (calibrated on the corpus) or "dynamic"
        "calibration_samples": 128,
        "min_cosine_to_fp32": 0.97,
        "max_length": 256,
    },
    "evaluate": {
        "qa_samples": 24,
        "max_new_tokens": 64,
        "perplexity_samples": 64,
        # GGUF rows are cheap to score with llama.cpp, and a quantization delta of well under 1%
        # needs many tokens to be measured at all: 0 scores them on the whole eval split.
        "gguf_perplexity_samples": 0,
        "recall_k": 5,
        "plot": True,
        "include_base_gguf": True,
        "compare_fp32_embedder": True,
        # Answer quality through the served path (retrieval, evidence, the GGUF in generative mode with
        # the verifier, and the extractive answer) on the held-out half of golden sets and probes.
        "answers": False,
        "answer_golden": ["appliance/data/golden_qa.jsonl"],  # over data.docs_dir
        "answer_probes_dir": "benchmarks/data/manuals",  # a second knowledge base the probes ask about
        "answer_probes": ["benchmarks/data/probes/en-keystone.jsonl", "benchmarks/data/probes/en-meridian.jsonl",
                          "benchmarks/data/probes/ko-nuri.jsonl", "benchmarks/data/probes/ko-seum.jsonl"],
        "answer_items": 24,  # held-out items per language from each file (0: all)
        "answer_max_tokens": 160,
        "answer_examples": 6,  # answers shown side by side in the report, per language
    },
    "package": {"models_dir": "models", "version": ""},
}


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if key not in base:
            raise RecipeError(
                f"Unknown recipe setting {where}{key!r}; valid ones here: {', '.join(sorted(base))}."
            )
        if isinstance(base[key], dict) and key != "tiny":
            if not isinstance(value, dict):
                raise RecipeError(f"Recipe setting {where}{key!r} must be a table.")
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


class Recipe:
    """A resolved recipe: `settings` (defaults + file + overrides) and the folder paths resolve against."""

    def __init__(self, name: str, settings: dict[str, Any], root: Path, source: Path | None = None):
        self.name = name
        self.settings = settings
        self.root = root
        self.source = source
        unknown = [s for s in settings["stages"] if s not in ALL_STAGES]
        if unknown:
            raise RecipeError(f"Unknown stage(s) {unknown} in recipe {name}; stages: {', '.join(ALL_STAGES)}.")
        if settings["finetune"]["precision"] not in PRECISIONS:
            raise RecipeError(f"finetune.precision is {settings['finetune']['precision']!r} in recipe {name}; "
                              f"use one of: {', '.join(PRECISIONS)}.")
        if settings["embedder_adapt"]["loss"] not in ADAPT_LOSSES:
            raise RecipeError(f"embedder_adapt.loss is {settings['embedder_adapt']['loss']!r} in recipe {name}; "
                              f"use one of: {', '.join(ADAPT_LOSSES)}.")

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def path(self, value: str | Path) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @classmethod
    def load(cls, name_or_path: str | Path, *, root: Path | None = None,
             overrides: dict[str, Any] | None = None) -> "Recipe":
        """`name_or_path` is a recipe name in build/recipes/ or a path to a TOML file."""
        candidate = Path(name_or_path)
        if candidate.suffix != ".toml":
            candidate = RECIPES_DIR / f"{name_or_path}.toml"
        if not candidate.is_file():
            known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.toml")))
            raise RecipeError(f"No recipe {name_or_path!r} ({candidate}); known recipes: {known}.")
        try:
            raw = tomllib.loads(candidate.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise RecipeError(f"Recipe {candidate} is not valid TOML: {exc}.") from exc
        settings = _merge(DEFAULTS, raw, "")
        if overrides:
            settings = _merge(settings, overrides, "")
        return cls(candidate.stem, settings, root or REPO_ROOT, candidate)
