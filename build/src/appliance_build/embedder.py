"""Embedder stage: the sentence-transformers model exported to ONNX (optimum) and quantized to int8.

Dynamic int8 quantizes the transformer-fused graph (Attention, SkipLayerNorm, BiasGelu), so
onnxruntime runs QAttention and DynamicQuantizeMatMul kernels. Static int8 is calibrated on the
corpus; it is kept only if its embeddings stay close to the fp32 model's (mean cosine), else
dynamic int8 is written and the report says so.
Output follows the appliance's embedder contract: model.onnx, tokenizer.json, embedder.json.
What embedder.json records beyond the name (pooling, normalisation, dimension, longest input and
the query/passage prefixes) is read from the sentence-transformers folder's own configuration,
so any such model the vendor brings exports the same way as the bundled one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

CONTRACT = {"name": "all-minilm-l6-v2", "dim": 384, "max_length": 256, "pooling": "mean",
            "normalize": True, "quantization": "int8"}
# Written only when they differ from what the runtime assumes without them, so the bundled
# embedder's artifact stays byte for byte what it was (a new fingerprint would re-embed).
OPTIONAL = {"query_prefix": "", "passage_prefix": ""}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# sentence-transformers' pooling flags, by the name embedder.json gives them
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                 "pooling_mode_lasttoken": "last", "pooling_mode_max_tokens": "max"}
PASSAGE_PROMPTS = ("passage", "document", "corpus", "doc")  # names models give the passage side


class OnnxEmbedder:
    """Sentence embeddings from an exported folder, pooled and normalised as its embedder.json
    (or `spec`) says, as the appliance computes them."""

    def __init__(self, folder: Path, max_length: int = 256, spec: dict[str, Any] | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if spec is None:
            file = folder / "embedder.json"
            spec = json.loads(file.read_text()) if file.is_file() else CONTRACT
        self.spec = spec
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length)
        pad_id = spec.get("pad_token_id")  # as the appliance guesses it when embedder.json has none
        self.tokenizer.enable_padding(pad_id=pad_id if pad_id is not None
                                      else self.tokenizer.token_to_id("[PAD]") or 0)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str], batch_size: int = 32, side: str | None = None) -> np.ndarray:
        """`side` "query" or "passage" adds that side's prefix."""
        from appliance.knowledge.embedder import pool

        prefix = self.spec.get(f"{side}_prefix", "") if side else ""
        out = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch([prefix + t for t in texts[start:start + batch_size]])
            feeds = {
                "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
            }
            hidden = self.session.run(["last_hidden_state"],
                                      {k: v for k, v in feeds.items() if k in self.inputs})[0]
            out.append(pool(hidden, feeds["attention_mask"], self.spec.get("pooling", "mean"),
                            bool(self.spec.get("normalize", True))))
        return np.concatenate(out) if out else np.zeros((0, self.spec["dim"]), dtype=np.float32)


def sentence_transformers_spec(folder: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What embedder.json records about a sentence-transformers model folder, read from its
    modules.json, pooling config, sentence_bert_config.json and config_sentence_transformers.json;
    `overrides` (prefixes, pooling, normalize) beat what the folder says."""
    from appliance_build.errors import BuildError

    def read(name: str) -> dict[str, Any]:
        file = folder / name
        return json.loads(file.read_text()) if file.is_file() else {}

    if not (folder / "config.json").is_file():
        raise BuildError(f"{folder} has no config.json, so it is not a model folder; save the model "
                         "with SentenceTransformer(...).save(folder) on a connected machine and copy "
                         "that folder.")
    if (folder / "modules.json").is_file():
        modules = json.loads((folder / "modules.json").read_text())
    else:  # a plain transformers folder: sentence-transformers itself mean-pools those
        Console(stderr=True).print(f"{folder} has no modules.json: exporting it with mean pooling, "
                                   "as sentence-transformers loads such a folder")
        modules = [{"type": "Transformer", "path": ""}, {"type": "Pooling", "path": "1_Pooling"}]
    kinds = {m["type"].rsplit(".", 1)[-1]: m.get("path", "") for m in modules}
    extra = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if extra or "Pooling" not in kinds:
        raise BuildError(f"{folder} has modules the ONNX export would leave out "
                         f"({', '.join(extra) or 'no Pooling module'}); only models made of a "
                         "Transformer, a Pooling and optionally a Normalize module can be exported.")
    pooling_config = read(f"{kinds['Pooling']}/config.json") or {"pooling_mode_mean_tokens": True}
    modes = [name for key, name in POOLING_MODES.items() if pooling_config.get(key)]
    others = [k for k, v in pooling_config.items()
              if k.startswith("pooling_mode_") and v and k not in POOLING_MODES]
    # sentence-transformers 5 writes one "pooling_mode" name (or a list) instead of flags.
    named = pooling_config.get("pooling_mode")
    for mode in [named] if isinstance(named, str) else (named or []):
        short = {"lasttoken": "last", "cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max"}.get(mode, mode)
        (modes if short in POOLING_MODES.values() else others).append(short)
    overrides = overrides or {}
    if (len(modes) != 1 or others) and "pooling" not in overrides:
        raise BuildError(f"{folder} pools with {', '.join(modes + others) or 'nothing'}; the appliance "
                         f"pools with exactly one of {', '.join(POOLING_MODES.values())} (set one "
                         "with --pooling if the model was trained with it).")
    st_config = read("config_sentence_transformers.json")
    prompts = st_config.get("prompts") or {}
    transformer = read(f"{kinds.get('Transformer', '')}/sentence_bert_config.json".lstrip("/"))
    similarity = st_config.get("similarity_fn_name")
    spec = {
        "name": folder.name.lower(),
        "pooling": modes[0] if len(modes) == 1 else None,
        # Unit vectors unless the model was trained for raw dot products (or distances).
        "normalize": "Normalize" in kinds or similarity in (None, "cosine"),
        "max_length": int(transformer.get("max_seq_length") or CONTRACT["max_length"]),
        "query_prefix": prompts.get("query", ""),
        "passage_prefix": next((prompts[k] for k in PASSAGE_PROMPTS if prompts.get(k)), ""),
        **overrides,
    }
    if pooling_config.get("include_prompt") is False and (spec["query_prefix"] or spec["passage_prefix"]):
        raise BuildError(f"{folder} pools without its prompt's tokens, which the ONNX pooling does "
                         "not do; export it with --query-prefix '' --passage-prefix '' to pool "
                         "every token instead.")
    return spec


class _Calibration:
    def __init__(self, tokenizer, texts: list[str], max_length: int):
        self._batches = iter([
            {k: np.array([v], dtype=np.int64) for k, v in tokenizer(t, truncation=True, max_length=max_length).items()
             if k in INPUTS}
            for t in texts
        ])

    def get_next(self):
        return next(self._batches, None)


def export_fp32(source: Path, out: Path) -> Path:
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    model = ORTModelForFeatureExtraction.from_pretrained(str(source), export=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(out)
    return out / "model.onnx"


def quantize_static(fp32: Path, target: Path, tokenizer, texts: list[str], max_length: int) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process
    from onnxruntime.quantization import quantize_static as qs

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        qs(str(prepared), str(target), _Calibration(tokenizer, texts, max_length),
           quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
           activation_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gemm"],
           extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def _large(model: Path) -> bool:
    """Past protobuf's 2 GB a graph keeps its weights in files beside it (bge-m3 in fp32)."""
    return sum(f.stat().st_size for f in model.parent.iterdir() if f.is_file()
               and f.name.startswith(model.name)) > 1_800_000_000


def fuse(fp32: Path, target: Path) -> Path:
    """The fp32 graph with onnxruntime's BERT fusions (BERT, RoBERTa and XLM-R encoders);
    quantizing it yields QAttention. A graph they do not fit is quantized as it is."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((fp32.parent / "config.json").read_text())
    try:  # 0 heads / hidden size: detected from the graph
        model = optimize_model(str(fp32), model_type="bert",
                               num_heads=config.get("num_attention_heads", 0),
                               hidden_size=config.get("hidden_size", 0), opt_level=1)
        model.save_model_to_file(str(target), use_external_data_format=_large(fp32))
    except Exception as exc:  # another architecture: unfused int8 still runs, only slower
        Console(stderr=True).print(f"onnxruntime's BERT fusions do not apply ({exc!r}); "
                                   "quantizing the graph unfused")
        return fp32
    return target


def quantize_dynamic(fp32: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as qd

    large = _large(fp32)
    # Per-channel weights: per-tensor scales lose too much (mean cosine to fp32 about 0.90).
    # Fused operators have no shape inference, hence the default tensor type.
    qd(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True,
       use_external_data_format=large, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    if large:  # int8 weights fit in one file again: the artifact is model.onnx alone
        model = onnx.load(str(target))
        for extra in target.parent.glob(f"{target.name}?*"):
            extra.unlink()
        onnx.save(model, str(target))


def export_embedder(source: Path, corpus: list[str], cfg: dict[str, Any], out: Path, seed: int,
                    name: str = CONTRACT["name"], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """`overrides`: embedder.json fields that beat the folder's own configuration (prefixes,
    pooling, normalisation)."""
    from transformers import AutoTokenizer

    spec = {**CONTRACT, **OPTIONAL, **sentence_transformers_spec(source, overrides), "name": name,
            "max_length": cfg["max_length"]}
    work = out / "fp32"
    fp32 = export_fp32(source, work)
    tokenizer = AutoTokenizer.from_pretrained(str(work))
    spec["pad_token_id"] = tokenizer.pad_token_id
    if spec["pad_token_id"] == (tokenizer.convert_tokens_to_ids("[PAD]") or 0):
        del spec["pad_token_id"]  # the runtime's own guess is right
    rng = np.random.default_rng(seed)
    # Calibrated and compared on passages as the appliance embeds them: with their prefix.
    texts = [spec["passage_prefix"] + corpus[i]
             for i in rng.permutation(len(corpus))[: cfg["calibration_samples"]]] or ["ERP"]
    probe = texts[: min(64, len(texts))]

    final = out / "embedder"
    final.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "tokenizer.json", final / "tokenizer.json")
    reference = OnnxEmbedder(work, cfg["max_length"], {**spec, "dim": 0}).embed(probe)
    spec["dim"] = int(reference.shape[1])

    def cosine_to_fp32() -> float:
        return float((OnnxEmbedder(final, cfg["max_length"], spec).embed(probe) * reference).sum(1).mean())

    tried, fused = {}, None
    method = cfg["quantization"]
    if method == "static":
        quantize_static(fp32, final / "model.onnx", tokenizer, texts, cfg["max_length"])
        tried["static"] = cosine_to_fp32()
        if tried["static"] < cfg["min_cosine_to_fp32"]:
            method = "dynamic"
    if method == "dynamic":
        fused = fuse(fp32, work / "fused.onnx")
        quantize_dynamic(fused, final / "model.onnx")
        tried["dynamic"] = cosine_to_fp32()
    written = {**{k: spec[k] for k in CONTRACT}, **{k: v for k, v in spec.items()
                                                   if k not in CONTRACT and OPTIONAL.get(k) != v}}
    (final / "embedder.json").write_text(json.dumps(written, indent=2, ensure_ascii=False) + "\n")
    return {
        "folder": str(final),
        "fp32_folder": str(work),
        "fp32_fused": str(fused) if fused is not None and fused != fp32 else None,
        "method": method,
        "calibration_texts": len(texts) if "static" in tried else 0,
        "mean_cosine_to_fp32": tried,
        "onnx_bytes_fp32": fp32.stat().st_size,
        "onnx_bytes_int8": (final / "model.onnx").stat().st_size,
    }
